//! Review 9: the Patient identifier lookup (`patient_identifiers`), the first page's own total,
//! and the remembered token signatures.

use crate::consent::document;
use crate::harness::{self, Server};
use carnet::store::{Store, StoreError, Version};
use serde_json::{json, Value};
use std::cell::Cell;
use std::collections::BTreeSet;

const NIR: &str = "urn:oid:1.2.250.1.213.1.4.8";
const LOCAL: &str = "urn:example:rv9";

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|i| i.to_string()).collect()
}

fn lookup(s: &Server) -> BTreeSet<String> {
    s.select_texts(
        "SELECT system || '|' || value || ' ' || patient_id AS v FROM patient_identifiers",
    )
    .into_iter()
    .flatten()
    .collect()
}

fn ids(reply: &harness::Reply) -> BTreeSet<String> {
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.json()["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["search"]["mode"] != "include")
        .map(|e| e["resource"]["id"].as_str().unwrap().to_owned())
        .collect()
}

fn documents_of(s: &Server, identifier: &str) -> BTreeSet<String> {
    let query = serde_urlencoded::to_string([("patient.identifier", identifier)]).unwrap();
    ids(&s.get(&format!("/DocumentReference?{query}")))
}

fn id_of(v: &Value) -> String {
    v["id"].as_str().unwrap().to_owned()
}

/// Finding, fixed: `carnet reindex` runs while the server serves, and its batch reads the
/// current bodies before writing their rows. A Patient whose identifier was changed (PUT)
/// between the two got the OLD identifier back in the lookup and the index, so a search by the
/// old identifier was pinned to this patient's record (`record::by_id` replaces the chain) and
/// returned the documents of a patient who no longer has it. The reindex now writes a
/// resource's rows under its write lock and only if the body read is still current. The
/// `index_of` callback is where the concurrent write is made to happen, deterministically.
/// (SQLite serialises the two writers: skipped there.)
#[test]
fn review9_a_write_during_reindex_keeps_the_identifier_lookup_current() {
    let s = Server::start();
    if !s.database_url().starts_with("postgres") {
        eprintln!("PostgreSQL only (CARNET_TEST_DATABASE_URL)");
        return;
    }
    let mut holder = harness::patient("2840275123411");
    let p = id_of(&s.create(&holder));
    let d = id_of(&s.create(&document(&p, "11488-4", "11", &[], None, None)));
    assert_eq!(
        documents_of(&s, &format!("{NIR}|2840275123411")),
        set(&[&d])
    );

    let store = Store::open(s.database_url(), harness::partitions()).unwrap();
    let written = Cell::new(false);
    holder["id"] = json!(p);
    holder["identifier"] = json!([{"system": NIR, "value": "2840275123412"}]);
    store
        .reindex(|version: &Version| -> Result<_, StoreError> {
            if version.resource_type == "Patient" && !written.replace(true) {
                // Another request changes the Patient's INS while the reindex holds its body.
                let reply = s.send("PUT", &format!("/Patient/{p}"), &holder, &[]);
                assert_eq!(reply.status, 200, "{}", reply.body);
            }
            let document: Value = serde_json::from_slice(&version.body).unwrap();
            let index = carnet::search::index::rows(&version.resource_type, &document, "http://x");
            Ok((index, None))
        })
        .unwrap();
    assert!(written.get());
    let current = s.get(&format!("/Patient/{p}")).json();
    assert_eq!(current["identifier"][0]["value"], "2840275123412");
    let by_old = documents_of(&s, &format!("{NIR}|2840275123411"));
    let by_current = documents_of(&s, &format!("{NIR}|2840275123412"));
    let patients_by_old = ids(&s.get(&format!("/Patient?identifier={NIR}|2840275123411")));
    let rows = lookup(&s);
    assert!(
        by_old.is_empty() && by_current == set(&[&d]),
        "Patient/{p} now has only {NIR}|2840275123412, yet \
         DocumentReference?patient.identifier=…411 (old) -> {by_old:?}, \
         …412 (current) -> {by_current:?}; Patient?identifier=…411 -> {patients_by_old:?}; \
         patient_identifiers = {rows:?}"
    );
}

/// COVERAGE (passes at f957d0d): the lookup follows every write path tried: an identifier
/// moved from one Patient to another, JSON Patch, FHIRPath Patch, a conditional update,
/// duplicates in one Patient, identifiers differing by case and without system. (The server
/// has no transaction/batch Bundles: `POST /` is 405.)
#[test]
fn review9_the_identifier_lookup_follows_every_write_path() {
    let s = Server::start();
    let a = id_of(&s.create(&harness::patient("1000000000001")));
    let b = id_of(&s.create(&harness::patient("1000000000002")));
    let da = id_of(&s.create(&document(&a, "11488-4", "11", &[], None, None)));
    let db = id_of(&s.create(&document(&b, "11488-4", "11", &[], None, None)));

    // Move 001 from A to B (no transaction/batch Bundles on this server: B updated first,
    // then A).
    let mut pb = harness::patient("1000000000001");
    pb["id"] = json!(b);
    let mut pa = harness::patient("1000000000003");
    pa["id"] = json!(a);
    for (id, body) in [(&b, &pb), (&a, &pa)] {
        let reply = s.send("PUT", &format!("/Patient/{id}"), body, &[]);
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    assert_eq!(
        lookup(&s),
        set(&[
            &format!("{NIR}|1000000000001 {b}"),
            &format!("{NIR}|1000000000003 {a}")
        ])
    );
    assert_eq!(
        documents_of(&s, &format!("{NIR}|1000000000001")),
        set(&[&db])
    );
    assert!(documents_of(&s, &format!("{NIR}|1000000000002")).is_empty());

    // JSON Patch, then FHIRPath Patch.
    let patch = json!([{"op": "replace", "path": "/identifier/0/value", "value": "1000000000004"}]);
    let reply = s.request(
        "PATCH",
        &format!("/Patient/{a}"),
        &[("Content-Type", "application/json-patch+json")],
        Some(&patch.to_string()),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        documents_of(&s, &format!("{NIR}|1000000000004")),
        set(&[&da])
    );
    assert!(documents_of(&s, &format!("{NIR}|1000000000003")).is_empty());
    let fhirpath = json!({"resourceType": "Parameters", "parameter": [{"name": "operation", "part": [
        {"name": "type", "valueCode": "replace"},
        {"name": "path", "valueString": "Patient.identifier[0].value"},
        {"name": "value", "valueString": "1000000000005"}
    ]}]});
    let reply = s.send("PATCH", &format!("/Patient/{a}"), &fhirpath, &[]);
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        documents_of(&s, &format!("{NIR}|1000000000005")),
        set(&[&da])
    );
    assert!(documents_of(&s, &format!("{NIR}|1000000000004")).is_empty());

    // Conditional update by identifier; duplicates, case, no system.
    let mut cond = harness::patient("1000000000005");
    cond["identifier"] = json!([
        {"system": NIR, "value": "1000000000008"},
        {"system": LOCAL, "value": "ABC"}, {"system": LOCAL, "value": "ABC"},
        {"system": LOCAL, "value": "abc"}, {"value": "1000000000005"}
    ]);
    let reply = s.send(
        "PUT",
        &format!("/Patient?identifier={NIR}|1000000000005"),
        &cond,
        &[],
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        lookup(&s),
        set(&[
            &format!("{NIR}|1000000000001 {b}"),
            &format!("{NIR}|1000000000008 {a}"),
            &format!("{LOCAL}|ABC {a}"),
            &format!("{LOCAL}|abc {a}")
        ])
    );
    assert!(documents_of(&s, &format!("{NIR}|1000000000005")).is_empty());
    assert_eq!(documents_of(&s, &format!("{LOCAL}|ABC")), set(&[&da]));
    assert!(documents_of(&s, &format!("{LOCAL}|Abc")).is_empty());
}

/// COVERAGE (passes at f957d0d): a first page read from the start that holds every match is
/// its own total, and counts only matches: at the `_count` boundary, with `_count=0`,
/// `_include`/`_revinclude`, `_sort`, over several types, `_summary=count`, `_total=none`,
/// POST `_search`.
#[test]
fn review9_the_first_page_s_total_counts_matches_only() {
    let s = Server::start();
    let p = id_of(&s.create(&harness::patient("2000000000001")));
    let q = id_of(&s.create(&harness::patient("2000000000002")));
    for (patient, code) in [(&p, "1"), (&p, "2"), (&p, "3"), (&q, "4"), (&q, "5")] {
        s.create(&document(
            patient,
            &format!("11488-{code}"),
            "11",
            &[],
            None,
            None,
        ));
    }
    let total = |path: &str| -> Value {
        let reply = s.get(path);
        assert_eq!(reply.status, 200, "{path}: {}", reply.body);
        reply.json()["total"].clone()
    };
    for (path, expected) in [
        ("/DocumentReference?_count=5", json!(5)),
        ("/DocumentReference?_count=6", json!(5)),
        ("/DocumentReference?_count=4", json!(5)),
        ("/DocumentReference?_count=0", json!(5)),
        (
            "/DocumentReference?_count=10&_include=DocumentReference:subject",
            json!(5),
        ),
        ("/DocumentReference?_count=10&_sort=-date", json!(5)),
        (
            "/Patient?_count=10&_revinclude=DocumentReference:subject",
            json!(2),
        ),
        ("/?_type=Patient,DocumentReference&_count=10", json!(7)),
        ("/?_type=Patient,DocumentReference&_count=7", json!(7)),
        ("/?_type=Patient,DocumentReference&_count=6", json!(7)),
        ("/DocumentReference?_summary=count", json!(5)),
        ("/DocumentReference?_total=none", Value::Null),
        ("/DocumentReference?_total=accurate&_count=10", json!(5)),
        (&format!("/DocumentReference?patient={q}"), json!(2)),
        (&format!("/Patient/{q}/DocumentReference"), json!(2)),
    ] {
        assert_eq!(total(path), expected, "{path}");
    }
    let reply = s.request(
        "POST",
        "/DocumentReference/_search",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        Some("_count=10"),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["total"], json!(5));
}

/// COVERAGE (passes at f957d0d): a token whose signature was remembered (seen twice with the
/// same keys) is checked again once the external issuer's keys are replaced, and refused when
/// its key is gone; one with a changed payload (same signature) is refused although the
/// original is remembered.
#[test]
fn review9_a_remembered_signature_does_not_outlive_its_key() {
    use crate::oidc_issuer::OidcIssuer;
    let mut issuer = OidcIssuer::start(&["test-feeder"]);
    let s = Server::start_configured(
        &format!("[[auth.issuers]]\nurl = \"{}\"\n", issuer.url),
        &[("CARNET_AUTH__JWKS_MIN_REFRESH_SECONDS", "1")],
    );
    let before = issuer.token("test-feeder", "system/*.rs", &s.base, &[]);
    for _ in 0..3 {
        assert_eq!(s.get_as(&before, "/Patient/_history").status, 200);
    }
    // The same signature over other claims (another client) is refused.
    let parts: Vec<&str> = before.split('.').collect();
    let payload =
        base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, parts[1])
            .unwrap();
    let mut claims: Value = serde_json::from_slice(&payload).unwrap();
    claims["scope"] = json!("system/*.cruds");
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            claims.to_string()
        ),
        parts[2]
    );
    s.get_as(&tampered, "/Patient/_history").outcome(401);

    issuer.restart(|keys| std::fs::remove_file(keys).unwrap());
    let after = issuer.token("test-feeder", "system/*.rs", &s.base, &[]);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert_eq!(s.get_as(&after, "/Patient/_history").status, 200);
    s.get_as(&before, "/Patient/_history").outcome(401);
}
