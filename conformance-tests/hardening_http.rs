//! Hardening of the HTTP surface (issue 11): concurrent writes to one resource, slow clients,
//! errors raised before Carnet's handlers, and content negotiation edges.

use crate::harness::{patient, Reply, Server};
use serde_json::json;
use std::sync::Arc;

/// How many writers race on one resource.
const RACERS: usize = 40;

/// Runs `RACERS` copies of `request` at once and returns their replies.
fn race(
    s: &Arc<Server>,
    request: impl Fn(&Server, usize) -> Reply + Send + Sync + 'static,
) -> Vec<Reply> {
    let request = Arc::new(request);
    let barrier = Arc::new(std::sync::Barrier::new(RACERS));
    let threads: Vec<_> = (0..RACERS)
        .map(|i| {
            let (s, request, barrier) = (s.clone(), request.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                request(&s, i)
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

/// Every reply is a 200, or a 409/412 OperationOutcome; returns how many were 200.
fn accepted(replies: &[Reply]) -> usize {
    for reply in replies {
        if reply.status != 200 {
            let issue = reply.outcome(reply.status);
            assert!([409, 412].contains(&reply.status), "{}", reply.body);
            assert_eq!(issue["code"], "conflict", "{}", reply.body);
        }
    }
    replies.iter().filter(|r| r.status == 200).count()
}

fn history_total(s: &Server, id: &str) -> i64 {
    s.get(&format!("/Patient/{id}/_history?_count=1")).json()["total"]
        .as_i64()
        .unwrap()
}

#[test]
fn forty_parallel_puts_without_if_match_all_land() {
    let s = Arc::new(Server::start());
    let p = s.create(&patient("1"));
    let id = p["id"].as_str().unwrap().to_owned();
    let replies = race(&s, move |s, i| {
        let mut p = p.clone();
        p["name"][0]["family"] = json!(format!("Racer{i}"));
        s.send(
            "PUT",
            &format!("/Patient/{}", p["id"].as_str().unwrap()),
            &p,
            &[],
        )
    });
    let ok = accepted(&replies);
    assert_eq!(ok, RACERS, "no write without If-Match is refused here");
    assert_eq!(history_total(&s, &id), 1 + ok as i64);
    let current = s.get(&format!("/Patient/{id}")).json();
    assert_eq!(current["meta"]["versionId"], (1 + ok).to_string());
    // Every version number was given once: the answers name 2..=41 exactly.
    let mut versions: Vec<i64> = replies
        .iter()
        .map(|r| {
            r.json()["meta"]["versionId"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    versions.sort();
    assert_eq!(versions, (2..=1 + RACERS as i64).collect::<Vec<_>>());
}

#[test]
fn forty_parallel_patches_without_if_match_lose_no_element() {
    let s = Arc::new(Server::start());
    let id = s.create(&patient("1"))["id"].as_str().unwrap().to_owned();
    let target = format!("/Patient/{id}");
    let replies = race(&s, move |s, i| {
        // Even racers send JSON Patch, odd ones FHIRPath Patch: both read-modify-write.
        if i % 2 == 0 {
            let ops =
                json!([{"op": "add", "path": "/name/-", "value": {"family": format!("Racer{i}")}}]);
            s.request(
                "PATCH",
                &target,
                &[("Content-Type", "application/json-patch+json")],
                Some(&ops.to_string()),
            )
        } else {
            let parameters = json!({"resourceType": "Parameters", "parameter": [{
                "name": "operation",
                "part": [
                    {"name": "type", "valueCode": "add"},
                    {"name": "path", "valueString": "Patient"},
                    {"name": "name", "valueString": "name"},
                    {"name": "value", "valueHumanName": {"family": format!("Racer{i}")}}
                ]
            }]});
            s.send("PATCH", &target, &parameters, &[])
        }
    });
    let ok = accepted(&replies);
    let current = s.get(&format!("/Patient/{id}")).json();
    let names = current["name"].as_array().unwrap();
    assert_eq!(
        names.len(),
        1 + ok,
        "one name per accepted patch: {current}"
    );
    for (i, reply) in replies.iter().enumerate() {
        let family = json!(format!("Racer{i}"));
        let present = names.iter().any(|n| n["family"] == family);
        assert_eq!(present, reply.status == 200, "racer {i}: {}", reply.status);
    }
    assert_eq!(history_total(&s, &id), 1 + ok as i64);
    assert_eq!(current["meta"]["versionId"], (1 + ok).to_string());
}

#[test]
fn if_match_still_pins_the_version_under_the_lock() {
    let s = Arc::new(Server::start());
    let p = s.create(&patient("1"));
    let id = p["id"].as_str().unwrap().to_owned();
    let replies = race(&s, move |s, i| {
        let ops =
            json!([{"op": "add", "path": "/name/-", "value": {"family": format!("Racer{i}")}}]);
        s.request(
            "PATCH",
            &format!("/Patient/{}", p["id"].as_str().unwrap()),
            &[
                ("Content-Type", "application/json-patch+json"),
                ("If-Match", "W/\"1\""),
            ],
            Some(&ops.to_string()),
        )
    });
    let mut statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
    statuses.sort();
    assert_eq!(statuses[0], 200);
    assert!(statuses[1..].iter().all(|s| *s == 412), "{statuses:?}");
    for reply in replies.iter().filter(|r| r.status == 412) {
        assert_eq!(reply.outcome(412)["code"], "conflict");
    }
    assert_eq!(history_total(&s, &id), 2);
    assert_eq!(
        s.get(&format!("/Patient/{id}")).json()["name"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}
