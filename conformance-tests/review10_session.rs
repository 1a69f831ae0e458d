//! Review 10, against 30e0579 (statements kept prepared per connection and lost connections
//! detected, f8db919; searchsets written as text around the stored bodies, dad84a3; group
//! commit on SQLite's writer, 30e0579).
//!
//! The two findings (first two tests) failed on 30e0579 and were fixed; the others passed
//! and are kept as coverage of what held.

use crate::consent::{document, id_of};
use crate::harness::{self, Server};
use carnet::store::{Store, StoreError};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const NIR: &str = "urn:oid:1.2.250.1.213.1.4.8";

/// Finding, fixed (SQLite): a group-commit batch was one deferred SQLite transaction, so the
/// read snapshot its first unit took stays open for every unit that joins it. When another
/// process commits meanwhile (`carnet reindex` or `carnet import`, which the store documents
/// as running while the server serves), the next unit of the batch that writes cannot upgrade
/// its stale snapshot: SQLite answers SQLITE_BUSY_SNAPSHOT ("database is locked") at once,
/// without waiting busy_timeout, and that request is refused (503). Before 30e0579 each unit
/// began its own transaction and `lock_resource` took the write lock before reading, which is
/// exactly what `db::lock_resource` documents it is for; inside a batch it no longer could.
/// Now a batch takes the write lock when it opens: the other process's create waits for the
/// batch (busy_timeout) instead of invalidating it.
///
/// Two units through the public `Store` API, as two requests do: the first only reads (a
/// conditional update's match, a PATCH of a missing resource, a refused write) and is still
/// running when the second, a write under `Store::locked`, arrives; the server process (the
/// "other process") commits a create between the first unit's read and the second's write.
#[test]
fn a_write_joining_a_batch_is_not_refused_after_another_process_writes() {
    let s = Server::start();
    if !s.database_url().starts_with("sqlite") {
        eprintln!("SQLite only: PostgreSQL has no group commit");
        return;
    }
    let store = Arc::new(Store::open(s.database_url(), 0).unwrap());
    let (read_done, after_read) = mpsc::channel();
    let first = {
        let store = store.clone();
        std::thread::spawn(move || {
            store.unit(|unit| {
                // Any read: the batch's transaction now holds a snapshot.
                unit.filed("Patient", "review10-none")?;
                read_done.send(()).unwrap();
                // Still running when the second unit arrives: it joins this batch.
                std::thread::sleep(Duration::from_millis(2500));
                Ok::<_, StoreError>(())
            })
        })
    };
    after_read.recv().unwrap();
    // Another process writes and commits (WAL: a reader does not block it).
    let created = s.send("POST", "/Patient", &harness::patient("2840275123999"), &[]);
    assert_eq!(created.status, 201, "{}", created.body);
    let second = {
        let store = store.clone();
        std::thread::spawn(move || {
            let started = std::time::Instant::now();
            let result = store.locked("Patient", "review10-x", |_unit| Ok::<_, StoreError>(()));
            (result, started.elapsed())
        })
    };
    first.join().unwrap().unwrap();
    let (second, elapsed) = second.join().unwrap();
    assert!(
        second.is_ok(),
        "a write that arrived after another process's commit was refused after {elapsed:?} \
         (no busy_timeout wait: SQLITE_BUSY_SNAPSHOT): {second:?} (a 503: {})",
        second.as_ref().err().is_some_and(|e| e.is_busy())
    );
}

/// A Patient whose extensions nest `levels` deep (each level an array and an object).
fn deeply_nested_patient(nir: &str, levels: usize) -> Value {
    let mut inner = json!({"url": "https://example.org/fhir/StructureDefinition/leaf",
        "valueString": "fond"});
    for _ in 1..levels {
        inner = json!({"url": "https://example.org/fhir/StructureDefinition/level",
            "extension": [inner]});
    }
    let mut patient = harness::patient(nir);
    patient["extension"] = json!([inner]);
    patient
}

/// JSON nesting depth of `value` (a scalar is 0).
fn depth(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Object(fields) => 1 + fields.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// Finding, fixed (both backends): `_pretty=true` on a search was `json::pretty` over the
/// finished Bundle text, which parses the whole Bundle again; the Bundle nests three levels
/// deeper than its resources (`entry`, the entry, `resource`), so a resource that intake
/// accepted near its depth bound (`json::MAX_DEPTH`, serde_json's limit) makes the Bundle too
/// deep to parse, and `pretty` silently falls back to the compact text. The read of the same
/// resource is indented, and so was the searchset before dad84a3 (each resource was parsed on
/// its own, and the Bundle written from values). Now the Bundle's text is indented as it is
/// (`json::indent`), without parsing.
#[test]
fn a_pretty_searchset_of_a_deeply_nested_resource_is_indented() {
    let s = Server::start();
    let nested = deeply_nested_patient("2840275123401", 63);
    assert_eq!(depth(&nested), 127);
    let created = s.send("POST", "/Patient", &nested, &[]);
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.json()["id"].as_str().unwrap().to_owned();
    let read = s.get(&format!("/Patient/{id}?_pretty=true"));
    assert_eq!(read.status, 200, "{}", read.body);
    assert!(read.body.contains("\n  "), "the read is indented");
    let search = s.get(&format!("/Patient?_id={id}&_pretty=true"));
    assert_eq!(search.status, 200, "{}", search.body);
    assert!(
        search.body.contains("\n  "),
        "_pretty=true answered compact text: {}…",
        &search.body[..search.body.len().min(200)]
    );
}

fn entries(bundle: &Value) -> Vec<Value> {
    bundle["entry"].as_array().cloned().unwrap_or_default()
}

/// Coverage (passes): searchsets written as text are valid JSON and valid FHIR (the harness
/// checks every answer against the R4 schema when present), in every presentation: plain,
/// `_pretty`, `_summary` (true, text, data, count), `_elements`, `_include`, `_revinclude`,
/// system search, `$everything`; a full match carries exactly what a read answers, and
/// `_pretty` changes only whitespace.
#[test]
fn review10_searchsets_are_valid_in_every_presentation() {
    let s = Server::start();
    let p = id_of(&s.create(&harness::patient("2840275123402")));
    let d = id_of(&s.create(&document(&p, "11488-4", "11", &[], None, None)));
    // A decimal keeps its text; a string with characters to escape keeps them.
    let mut weighed = harness::patient("2840275123406");
    weighed["name"][0]["text"] = json!("Éloïse \"à jeun\" \\ 😀");
    weighed["extension"] = json!([{"url": "https://example.org/fhir/StructureDefinition/weight",
        "valueDecimal": 0}]);
    let text = weighed
        .to_string()
        .replace("\"valueDecimal\":0", "\"valueDecimal\":72.50");
    let created = s.request(
        "POST",
        "/Patient",
        &[("Content-Type", "application/fhir+json")],
        Some(&text),
    );
    assert_eq!(created.status, 201, "{}", created.body);
    let o = created.json()["id"].as_str().unwrap().to_owned();
    let paths = [
        format!("/DocumentReference?patient={p}&_include=DocumentReference:subject"),
        format!("/Patient?_id={p}&_revinclude=DocumentReference:subject"),
        format!("/Patient?_id={o}"),
        format!("/DocumentReference?patient={p}&_summary=true"),
        format!("/DocumentReference?patient={p}&_summary=text"),
        format!("/DocumentReference?patient={p}&_summary=data"),
        format!("/DocumentReference?patient={p}&_summary=count"),
        format!("/DocumentReference?patient={p}&_elements=status"),
        format!("/Patient/{p}/$everything"),
        "/DocumentReference?patient=Patient/none".to_owned(),
    ];
    for path in &paths {
        let plain = s.get(path);
        assert_eq!(plain.status, 200, "{path}: {}", plain.body);
        let bundle = plain.json();
        assert_eq!(bundle["type"], "searchset", "{path}");
        let pretty =
            s.get(&format!("{path}&_pretty=true").replacen("everything&", "everything?", 1));
        assert_eq!(pretty.status, 200, "{path}: {}", pretty.body);
        assert!(pretty.body.contains("\n  "), "{path}: not indented");
        let mut pretty = pretty.json();
        let mut plain_value = bundle.clone();
        for b in [&mut pretty, &mut plain_value] {
            b.as_object_mut().unwrap().remove("id");
            b.as_object_mut().unwrap().remove("link");
            b.as_object_mut().unwrap().remove("meta");
        }
        assert_eq!(
            pretty, plain_value,
            "{path}: _pretty changed more than whitespace"
        );
        for entry in entries(&bundle) {
            let resource = &entry["resource"];
            if entry["search"]["mode"] == "outcome" {
                continue;
            }
            let kind = resource["resourceType"].as_str().unwrap();
            let id = resource["id"].as_str().unwrap();
            assert_eq!(
                entry["fullUrl"].as_str().unwrap(),
                format!("{}/{kind}/{id}", s.base),
                "{path}"
            );
            if !path.contains("_summary") && !path.contains("_elements") {
                let read = s.get(&format!("/{kind}/{id}"));
                assert_eq!(
                    &read.json(),
                    resource,
                    "{path}: the entry is not what a read answers"
                );
            }
        }
    }
    // The exact text of a decimal and of escaped characters survives into the searchset.
    let search = s.get(&format!("/Patient?_id={o}"));
    assert!(
        search.body.contains("\"valueDecimal\":72.50"),
        "{}",
        search.body
    );
    let read = s.get(&format!("/Patient/{o}"));
    assert!(
        search.body.contains(&read.body),
        "the stored body is spliced as read"
    );
    let _ = d;
}

/// Coverage (passes): a List found by a search, or included, shows its reader only the entries
/// they may see (the body is rewritten before it is spliced), and a Binary in a searchset is
/// valid JSON.
#[test]
fn review10_lists_and_binaries_in_searchsets() {
    use crate::inprocess::{App, Caller};
    let app = App::start();
    let provisioning = app.token(&Caller::provisioning());
    let feeder = app.token(&Caller::feeding_system());
    let p = id_of(&app.create_as(
        &provisioning,
        &crate::consent::patient("284027512340212", Some("1984-02-29"), None),
    ));
    let hidden = id_of(&app.create_as(
        &feeder,
        &document(&p, "oncology", "11", &["INVISIBLE_PATIENT"], None, None),
    ));
    let shown = id_of(&app.create_as(&feeder, &document(&p, "11488-4", "11", &[], None, None)));
    let list = json!({
        "resourceType": "List",
        "status": "current",
        "mode": "working",
        "subject": {"reference": format!("Patient/{p}")},
        "entry": [{"item": {"reference": format!("DocumentReference/{hidden}")}},
                  {"item": {"reference": format!("DocumentReference/{shown}")}}],
    });
    let l = id_of(&app.create_as(&feeder, &list));
    let holder = app.token(&Caller::patient(&p));
    for path in [
        format!("/List?subject={p}"),
        format!("/List?subject={p}&_pretty=true"),
        format!("/List?_id={l}&_include=List:item"),
        format!("/DocumentReference?_id={shown}&_revinclude=List:item"),
        format!("/Patient/{p}/$everything"),
    ] {
        let reply = app.get_as(&holder, &path);
        assert_eq!(reply.status, 200, "{path}: {}", reply.body);
        let bundle = reply.json();
        assert!(
            !reply.body.contains(&hidden),
            "{path} names the hidden document: {}",
            reply.body
        );
        let lists: Vec<Value> = entries(&bundle)
            .into_iter()
            .filter(|e| e["resource"]["resourceType"] == "List")
            .collect();
        assert!(
            !lists.is_empty(),
            "{path}: the List is missing: {}",
            reply.body
        );
        for entry in lists {
            assert_eq!(
                entry["resource"]["entry"].as_array().map(Vec::len),
                Some(1),
                "{path}"
            );
        }
    }
    let binary = json!({"resourceType": "Binary", "contentType": "text/plain",
        "data": "Ym9uam91ciDDoCB0b3Vz"});
    let b = id_of(&app.create_as(&feeder, &binary));
    let reply = app.get_as(&feeder, &format!("/Binary?_id={b}"));
    if reply.status == 200 {
        let bundle = reply.json();
        for entry in entries(&bundle) {
            assert_eq!(entry["resource"]["resourceType"], "Binary");
        }
    }
}

/// Coverage (passes, both backends; group commit on SQLite): conditional creates of one
/// identifier racing each other — on SQLite they share batches, and the later ones read the
/// first one's uncommitted row through the batch's connection — make exactly one resource,
/// and every answer names it; concurrent PATCHes of one resource (its write queue held
/// across the batch's commit) all apply, none hangs.
#[test]
fn review10_racing_conditional_creates_and_patches_in_batches() {
    let s = Server::start();
    let nir = "2840275123403";
    let condition = format!("identifier={NIR}|{nir}");
    let ids = Mutex::new(BTreeSet::new());
    std::thread::scope(|scope| {
        for _ in 0..12 {
            scope.spawn(|| {
                let reply = s.send(
                    "POST",
                    "/Patient",
                    &harness::patient(nir),
                    &[("If-None-Exist", &condition)],
                );
                assert!(matches!(reply.status, 200 | 201), "{}", reply.body);
                ids.lock()
                    .unwrap()
                    .insert(reply.json()["id"].as_str().unwrap().to_owned());
            });
        }
    });
    let ids = ids.into_inner().unwrap();
    assert_eq!(ids.len(), 1, "several resources for one condition: {ids:?}");
    let search = s.get(&format!("/Patient?{condition}"));
    assert_eq!(search.json()["total"], 1, "{}", search.body);
    let id = ids.into_iter().next().unwrap();
    std::thread::scope(|scope| {
        for i in 0..10 {
            let (s, id) = (&s, &id);
            scope.spawn(move || {
                let patch = json!([{"op": "add", "path": "/name/-",
                    "value": {"family": format!("N{i}")}}]);
                let reply = s.request(
                    "PATCH",
                    &format!("/Patient/{id}"),
                    &[("Content-Type", "application/json-patch+json")],
                    Some(&patch.to_string()),
                );
                assert_eq!(reply.status, 200, "{}", reply.body);
            });
        }
    });
    let read = s.get(&format!("/Patient/{id}")).json();
    assert_eq!(read["meta"]["versionId"], "11");
    assert_eq!(read["name"].as_array().unwrap().len(), 11);
}

/// Coverage (passes, both backends): with eight writers the batches hold several units, and
/// every acknowledged create survives `kill -9` byte for byte.
#[test]
fn review10_acknowledged_creates_of_shared_batches_survive_kill_9() {
    crate::crash::creates_survive_kill_9(8, Duration::from_millis(2000));
}

/// Coverage (passes; PostgreSQL only): after the database drops every connection, the
/// interactions the commit's own test does not cover are answered too: history, conditional
/// create, update, delete, `$everything`, a search with `_include` and a count, a Binary read.
#[test]
fn review10_other_interactions_after_the_database_drops_every_connection() {
    let s = Server::start();
    if !s.database_url().starts_with("postgres") {
        return; // SQLite: no server to drop connections.
    }
    let p = id_of(&s.create(&harness::patient("2840275123404")));
    let d = id_of(&s.create(&document(&p, "11488-4", "11", &[], None, None)));
    let b = id_of(&s.create(
        &json!({"resourceType": "Binary", "contentType": "text/plain",
        "data": "Ym9uam91cg=="}),
    ));
    std::thread::scope(|scope| {
        for _ in 0..6 {
            scope.spawn(|| assert_eq!(s.get(&format!("/Patient/{p}")).status, 200));
        }
    });
    let condition = format!("identifier={NIR}|2840275123405");
    let mut updated = document(&p, "11488-4", "11", &[], None, None);
    updated["id"] = json!(d);
    updated["status"] = json!("superseded");
    type Check<'a> = (&'a str, String, Option<Value>, Vec<(&'a str, &'a str)>, u16);
    let checks: Vec<Check> = vec![
        ("GET", format!("/Patient/{p}/_history"), None, vec![], 200),
        (
            "GET",
            format!("/Patient/{p}/$everything"),
            None,
            vec![],
            200,
        ),
        (
            "GET",
            format!(
                "/DocumentReference?patient={p}&_include=DocumentReference:subject&_total=accurate"
            ),
            None,
            vec![],
            200,
        ),
        (
            "POST",
            "/Patient".to_owned(),
            Some(harness::patient("2840275123405")),
            vec![("If-None-Exist", condition.as_str())],
            201,
        ),
        (
            "PUT",
            format!("/DocumentReference/{d}"),
            Some(updated),
            vec![],
            200,
        ),
        ("GET", format!("/Binary/{b}"), None, vec![], 200),
        (
            "DELETE",
            format!("/DocumentReference/{d}"),
            None,
            vec![],
            204,
        ),
    ];
    for (method, path, body, headers, status) in checks {
        s.drop_database_connections();
        let reply = match &body {
            Some(body) => s.send(method, &path, body, &headers),
            None => s.request(method, &path, &headers, None),
        };
        assert_eq!(reply.status, status, "{method} {path}: {}", reply.body);
    }
}
