//! Concurrent writers: optimistic locking with If-Match, and versions that never skip or repeat.

use crate::harness::{patient, Server};
use serde_json::json;
use std::sync::Arc;

#[test]
fn of_concurrent_updates_with_the_same_if_match_exactly_one_wins() {
    let s = Arc::new(Server::start());
    let p = s.create(&patient("1"));
    let id = p["id"].as_str().unwrap().to_owned();
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let (s, mut p, id) = (s.clone(), p.clone(), id.clone());
            std::thread::spawn(move || {
                p["gender"] = json!(if i % 2 == 0 { "male" } else { "female" });
                s.send(
                    "PUT",
                    &format!("/Patient/{id}"),
                    &p,
                    &[("If-Match", "W/\"1\"")],
                )
                .status
            })
        })
        .collect();
    let mut statuses: Vec<u16> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    statuses.sort();
    assert_eq!(statuses, [200, 412, 412, 412, 412, 412, 412, 412]);
    let history = s.get(&format!("/Patient/{id}/_history")).json();
    assert_eq!(history["total"], 2);
    assert_eq!(
        s.get(&format!("/Patient/{id}")).json()["meta"]["versionId"],
        "2"
    );
}

#[test]
fn concurrent_updates_without_if_match_all_land_in_order() {
    let s = Arc::new(Server::start());
    let p = s.create(&patient("1"));
    let id = p["id"].as_str().unwrap().to_owned();
    let (writers, each) = (4, 5);
    let threads: Vec<_> = (0..writers)
        .map(|_| {
            let (s, p, id) = (s.clone(), p.clone(), id.clone());
            std::thread::spawn(move || {
                for _ in 0..each {
                    assert_eq!(
                        s.send("PUT", &format!("/Patient/{id}"), &p, &[]).status,
                        200
                    );
                }
            })
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
    let expected = 1 + writers * each;
    let history = s.get(&format!("/Patient/{id}/_history?_count=100")).json();
    let versions: Vec<i64> = history["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            e["resource"]["meta"]["versionId"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert_eq!(versions, (1..=expected as i64).rev().collect::<Vec<_>>());
    let stamps: Vec<&str> = history["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"]["meta"]["lastUpdated"].as_str().unwrap())
        .collect();
    let mut sorted = stamps.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    sorted.dedup();
    assert_eq!(sorted.len(), stamps.len(), "lastUpdated strictly increases");
}
