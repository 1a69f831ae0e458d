//! History at instance, type and system level, with _since and paging.

use crate::harness::{allergy, patient, Server};
use serde_json::{json, Value};

fn entries(bundle: &Value) -> Vec<Value> {
    bundle["entry"].as_array().cloned().unwrap_or_default()
}

#[test]
fn instance_history_lists_versions_newest_first_with_the_deletion() {
    let s = Server::start();
    let mut p = s.create(&allergy("1"));
    let id = p["id"].as_str().unwrap().to_owned();
    p["criticality"] = json!("high");
    s.send("PUT", &format!("/AllergyIntolerance/{id}"), &p, &[]);
    s.request("DELETE", &format!("/AllergyIntolerance/{id}"), &[], None);
    let bundle = s.get(&format!("/AllergyIntolerance/{id}/_history")).json();
    assert_eq!(bundle["resourceType"], "Bundle");
    assert_eq!(bundle["type"], "history");
    assert_eq!(bundle["total"], 3);
    let e = entries(&bundle);
    let methods: Vec<&str> = e
        .iter()
        .map(|e| e["request"]["method"].as_str().unwrap())
        .collect();
    assert_eq!(methods, ["DELETE", "PUT", "POST"]);
    assert!(e[0].get("resource").is_none());
    assert_eq!(e[0]["response"]["etag"], "W/\"3\"");
    assert_eq!(e[1]["resource"]["meta"]["versionId"], "2");
    assert_eq!(e[2]["resource"]["meta"]["versionId"], "1");
    assert_eq!(
        e[2]["fullUrl"],
        format!("{}/AllergyIntolerance/{id}", s.base)
    );
    assert_eq!(e[2]["response"]["status"], "201 Created");
    s.get("/Patient/unknown/_history").outcome(404);
}

#[test]
fn type_and_system_history_cover_their_scope() {
    let s = Server::start();
    s.create(&patient("1"));
    s.create(&patient("2"));
    s.create(&json!({"resourceType": "Organization", "name": "CHU de Nantes"}));
    let patients = s.get("/Patient/_history").json();
    assert_eq!(patients["total"], 2);
    assert!(entries(&patients)
        .iter()
        .all(|e| e["resource"]["resourceType"] == "Patient"));
    assert_eq!(s.get("/Organization/_history").json()["total"], 1);
    assert_eq!(s.get("/Consent/_history").json()["total"], 0);
    // The lab's view of the server: what it wrote, the directory, and no record header of a
    // record it did not feed.
    s.create(&allergy("1"));
    let all = s.get("/_history").json();
    assert_eq!(all["total"], 2, "{all}");
    let types: Vec<String> = entries(&all)
        .iter()
        .map(|e| e["resource"]["resourceType"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(types, ["AllergyIntolerance", "Organization"]);
}

#[test]
fn since_keeps_only_later_versions() {
    let s = Server::start();
    let first = s.create(&allergy("1"));
    std::thread::sleep(std::time::Duration::from_millis(20));
    let second = s.create(&allergy("2"));
    let cut = second["meta"]["lastUpdated"].as_str().unwrap();
    let bundle = s
        .get(&format!("/_history?_since={}", cut.replace('+', "%2B")))
        .json();
    let ids: Vec<String> = entries(&bundle)
        .iter()
        .map(|e| e["resource"]["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(bundle["total"], 1, "{bundle}");
    assert_eq!(ids, [second["id"].as_str().unwrap()]);
    assert_ne!(ids[0], first["id"].as_str().unwrap());
    assert_eq!(s.get("/_history?_since=2999-01-01").json()["total"], 0);
}

#[test]
fn paging_walks_every_version_once_even_while_writes_go_on() {
    let s = Server::start();
    let mut expected = Vec::new();
    for i in 0..7 {
        expected.push(
            s.create(&patient(&i.to_string()))["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let mut seen = Vec::new();
    let mut url = "/Patient/_history?_count=3".to_owned();
    let mut pages = 0;
    loop {
        let bundle = s.get(&url).json();
        assert_eq!(bundle["link"][0]["relation"], "self");
        assert!(entries(&bundle).len() <= 3);
        seen.extend(
            entries(&bundle)
                .iter()
                .map(|e| e["resource"]["id"].as_str().unwrap().to_owned()),
        );
        pages += 1;
        if pages == 1 {
            // A write between pages must not shift the pages already being walked.
            s.create(&patient("late"));
        }
        match crate::harness::next_link(&bundle) {
            Some(next) => url = next,
            None => break,
        }
    }
    assert_eq!(pages, 3);
    expected.reverse();
    assert_eq!(seen, expected);
}

#[test]
fn count_is_capped_by_the_configured_maximum() {
    let s = Server::start_with(&[
        ("CARNET_SEARCH__MAX_COUNT", "2"),
        ("CARNET_SEARCH__DEFAULT_COUNT", "1"),
    ]);
    for i in 0..3 {
        s.create(&allergy(&i.to_string()));
    }
    assert_eq!(entries(&s.get("/_history?_count=50").json()).len(), 2);
    assert_eq!(entries(&s.get("/_history").json()).len(), 1);
    assert_eq!(entries(&s.get("/_history?_count=0").json()).len(), 0);
}

/// History pages follow when versions were written, then their key: versions written in the
/// same microsecond (several servers writing at once) are each listed exactly once, in the
/// order of their key, with no global write sequence to break the tie.
#[test]
fn versions_written_in_the_same_microsecond_are_each_paged_once() {
    let s = Server::start();
    let mut written = Vec::new();
    // Written in an order that is not their key's.
    for i in [2, 0, 4, 1, 3] {
        let created = s.create(&allergy(&format!("tie-{i}")));
        written.push(created["id"].as_str().unwrap().to_owned());
    }
    s.execute_sql(
        "UPDATE resource_versions SET last_updated = 1700000000000000 \
         WHERE resource_type = 'AllergyIntolerance'",
    );
    let mut seen = Vec::new();
    let mut url = "/AllergyIntolerance/_history?_count=2".to_owned();
    loop {
        let bundle = s.get(&url).json();
        assert_eq!(bundle["total"], 5);
        seen.extend(entries(&bundle).iter().map(|e| {
            let r = &e["resource"];
            let patient = r["patient"]["reference"].as_str().unwrap().to_owned();
            (patient, r["id"].as_str().unwrap().to_owned())
        }));
        match crate::harness::next_link(&bundle) {
            Some(next) => url = next,
            None => break,
        }
    }
    let mut expected = seen.clone();
    expected.sort();
    expected.reverse();
    assert_eq!(seen, expected, "newest first, ties by record then id");
    let mut ids: Vec<String> = seen.into_iter().map(|(_, id)| id).collect();
    ids.sort();
    written.sort();
    assert_eq!(ids, written, "each version exactly once");
}
