//! Review 11, against b56733f (SQLite checkpoints off the write path, the statement journal in
//! memory, first versions written without the deletes that could find nothing, and index,
//! consent and lookup rows sent as one JSON array per table).
//!
//! Coverage of what held: the real server on SQLite and PostgreSQL.

use crate::consent::{document, DOCUMENT_ID};
use crate::harness::{self, Server};
use serde_json::{json, Value};

const ODD: &str = "https://example.org/fhir/odd-identifiers";

/// `text` percent-encoded for a query string (every byte but unreserved ASCII).
fn encoded(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The ids a search finds, sorted (asserting 200).
fn found(s: &Server, query: &str) -> Vec<String> {
    let reply = s.get(query);
    assert_eq!(reply.status, 200, "{query}: {}", reply.body);
    let mut ids: Vec<String> = reply.json()["entry"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter(|e| e["search"]["mode"] == "match")
        .map(|e| e["resource"]["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

/// One id, as [`found`] lists it.
fn one(id: &str) -> Vec<String> {
    vec![id.to_owned()]
}

/// A Patient with a NIR and an identifier and family name of odd text (quotes, a backslash,
/// characters of every UTF-8 length, text that looks like JSON or a number, and past the
/// index key's 200 characters when `long`).
fn odd_patient(nir: &str, value: &str, family: &str) -> Value {
    let mut patient = harness::patient(nir);
    patient["identifier"]
        .as_array_mut()
        .unwrap()
        .push(json!({"system": ODD, "value": value}));
    patient["name"] = json!([{"family": family, "given": ["Zoë"]}]);
    patient
}

/// `system|value` as a token search writes it (FHIR escapes `\`, `,`, `$` and `|`), encoded.
fn token_of(system: &str, value: &str) -> String {
    encoded(&format!("{system}|{}", escaped(value)))
}

/// A search value with FHIR's escapes (`\`, `,`, `$`, `|`).
fn escaped(value: &str) -> String {
    let mut escaped = String::new();
    for c in value.chars() {
        if matches!(c, '\\' | ',' | '$' | '|') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// An odd identifier's token search.
fn token(value: &str) -> String {
    token_of(ODD, value)
}

/// Coverage (passes): odd values written through the JSON rows are found by exact searches
/// after a create, an update that changes them, a deletion, and a write over the deletion; and
/// by the patient-identifier lookup (`patient.identifier`, `patient_identifiers` with ON
/// CONFLICT DO NOTHING) in step.
#[test]
fn review11_odd_values_are_found_after_every_write() {
    let s = Server::start();
    let values = [
        "0012".to_owned(),
        "1e5".to_owned(),
        "null".to_owned(),
        "[\"a\",1]".to_owned(),
        "O'Brien \"dit\" l\\Ancien".to_owned(),
        "é ễ 中 😀 x".to_owned(),
        format!("{}ễ", "é".repeat(250)),
        "9223372036854775808".to_owned(),
    ];
    for (i, value) in values.iter().enumerate() {
        let nir = format!("28402751239{i:02}");
        let family = format!("Famille {value}");
        let created = s.create(&odd_patient(&nir, value, &family));
        let id = created["id"].as_str().unwrap().to_owned();
        let by_value = format!("/Patient?identifier={}", token(value));
        let by_family = format!("/Patient?family:exact={}", encoded(&escaped(&family)));
        assert_eq!(found(&s, &by_value), one(&id), "create, {value:?}");
        assert_eq!(found(&s, &by_family), one(&id), "create, {family:?}");
        let doc = document(&id, &format!("doc-{i}"), "11488-4", &[], None, None);
        let doc_id = s.create(&doc)["id"].as_str().unwrap().to_owned();
        let chained = format!("/DocumentReference?patient.identifier={}", token(value));
        assert_eq!(found(&s, &chained), one(&doc_id), "chain, {value:?}");

        // An update that changes the value: the old one finds nothing.
        let changed = format!("{value}-2");
        let mut updated = odd_patient(&nir, &changed, &family);
        updated["id"] = json!(id);
        let reply = s.send("PUT", &format!("/Patient/{id}"), &updated, &[]);
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert!(found(&s, &by_value).is_empty(), "updated, {value:?}");
        assert!(found(&s, &chained).is_empty(), "updated chain, {value:?}");
        let by_changed = format!("/Patient?identifier={}", token(&changed));
        assert_eq!(found(&s, &by_changed), one(&id), "updated, {changed:?}");

        // Back to the first value (a Patient is closed, never deleted).
        let mut back = odd_patient(&nir, value, &family);
        back["id"] = json!(id);
        let reply = s.send("PUT", &format!("/Patient/{id}"), &back, &[]);
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(found(&s, &by_value), one(&id), "back, {value:?}");
        assert_eq!(found(&s, &chained), one(&doc_id), "back chain, {value:?}");
        assert!(found(&s, &by_changed).is_empty(), "back, {changed:?}");

        // The document: its own odd identifier through an update, a deletion and a write
        // over the deletion.
        let doc_token = |v: &str| token_of(DOCUMENT_ID, v);
        let name = format!("doc-{i}");
        let by_doc = format!("/DocumentReference?identifier={}", doc_token(&name));
        assert_eq!(found(&s, &by_doc), one(&doc_id), "document created");
        let odd_name = format!("doc {value}");
        // Only its identifier changes (its type is fixed once written).
        let mut doc = document(&id, &name, "11488-4", &[], None, None);
        doc["identifier"][0]["value"] = json!(odd_name);
        doc["id"] = json!(doc_id);
        let reply = s.send("PUT", &format!("/DocumentReference/{doc_id}"), &doc, &[]);
        assert_eq!(reply.status, 200, "{}", reply.body);
        let by_odd_doc = format!("/DocumentReference?identifier={}", doc_token(&odd_name));
        assert!(found(&s, &by_doc).is_empty(), "document updated");
        assert_eq!(
            found(&s, &by_odd_doc),
            one(&doc_id),
            "document updated {odd_name:?}"
        );
        let deleted = s.request("DELETE", &format!("/DocumentReference/{doc_id}"), &[], None);
        assert_eq!(deleted.status, 204, "{}", deleted.body);
        assert!(found(&s, &by_odd_doc).is_empty(), "document deleted");
        assert!(found(&s, &chained).is_empty(), "document deleted, chain");
        let reply = s.send("PUT", &format!("/DocumentReference/{doc_id}"), &doc, &[]);
        assert!(matches!(reply.status, 200 | 201), "{}", reply.body);
        assert_eq!(found(&s, &by_odd_doc), one(&doc_id), "document revived");
        assert_eq!(found(&s, &chained), [doc_id], "document revived, chain");
    }
}

/// Coverage (passes): the first versions that skip the deletes (a POST, a conditional create,
/// a PUT that creates) leave exactly their own rows: one lookup row per identifier, one index
/// row per value, and a conditional create that matched writes nothing.
#[test]
fn review11_first_versions_write_exactly_their_rows() {
    let s = Server::start_with(&[("CARNET_UPDATE_CREATE", "true")]);
    let value = "première\u{1f600}\\x";
    let criteria = format!("identifier={}", token(value));
    let first = s.send(
        "POST",
        "/Patient",
        &odd_patient("284027512301", value, "Unique"),
        &[("If-None-Exist", &criteria)],
    );
    assert_eq!(first.status, 201, "{}", first.body);
    let id = first.json()["id"].as_str().unwrap().to_owned();
    let again = s.send(
        "POST",
        "/Patient",
        &odd_patient("284027512301", value, "Unique"),
        &[("If-None-Exist", &criteria)],
    );
    assert_eq!(again.status, 200, "{}", again.body);
    let mut chosen = odd_patient("284027512302", value, "Choisie");
    chosen["id"] = json!("review11-chosen");
    let put = s.send("PUT", "/Patient/review11-chosen", &chosen, &[]);
    assert_eq!(put.status, 201, "{}", put.body);
    let both = {
        let mut ids = vec![id.clone(), "review11-chosen".to_owned()];
        ids.sort();
        ids
    };
    assert_eq!(
        found(&s, &format!("/Patient?identifier={}", token(value))),
        both
    );
    let count = |sql: &str| -> i64 { s.select_texts(sql)[0].as_deref().unwrap().parse().unwrap() };
    for patient in [id.as_str(), "review11-chosen"] {
        assert_eq!(
            count(&format!(
                "SELECT CAST(COUNT(*) AS TEXT) AS v FROM patient_identifiers \
                 WHERE patient_id = '{patient}'"
            )),
            2,
            "{patient}: the NIR and the odd identifier"
        );
        assert_eq!(
            count(&format!(
                "SELECT CAST(COUNT(*) AS TEXT) AS v FROM search_tokens \
                 WHERE id = '{patient}' AND param = 'identifier'"
            )),
            2,
            "{patient}"
        );
        assert_eq!(
            count(&format!(
                "SELECT CAST(COUNT(*) AS TEXT) AS v FROM records WHERE patient_id = '{patient}'"
            )),
            1,
            "{patient}"
        );
    }
    // The odd value is stored as written, as text (SQLite: not a number, not a blob).
    let stored = s.select_texts(&format!(
        "SELECT code AS v FROM search_tokens WHERE id = '{id}' AND system = '{ODD}'"
    ));
    assert_eq!(stored, [Some(value.to_owned())]);
}
