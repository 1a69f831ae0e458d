//! Conditional create, update and delete on `identifier` (and `_id`).

use crate::harness::{allergy, patient, Server};
use serde_json::json;
use std::sync::Arc;

const NIR: &str = "urn:oid:1.2.250.1.213.1.4.8";

fn appointment(identifier: &str, status: &str) -> serde_json::Value {
    json!({"resourceType": "Appointment", "status": status,
        "identifier": [{"system": "https://agenda.example.fr", "value": identifier}],
        "participant": [{"actor": {"reference": "Patient/p1"}, "status": "accepted"}]})
}

#[test]
fn if_none_exist_returns_the_existing_resource_instead_of_creating() {
    let s = Server::start();
    let criteria = format!("identifier={NIR}|284022912345678");
    let first = s.send(
        "POST",
        "/Patient",
        &patient("284022912345678"),
        &[("If-None-Exist", &criteria)],
    );
    assert_eq!(first.status, 201, "{}", first.body);
    let again = s.send(
        "POST",
        "/Patient",
        &patient("284022912345678"),
        &[("If-None-Exist", &criteria)],
    );
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.json()["id"], first.json()["id"]);
    assert_eq!(s.version_count(), 1);
    let other = s.send(
        "POST",
        "/Patient",
        &patient("1"),
        &[("If-None-Exist", &format!("identifier={NIR}|1"))],
    );
    assert_eq!(other.status, 201);
}

#[test]
fn if_none_exist_with_several_matches_is_412() {
    let s = Server::start();
    s.create(&patient("7"));
    s.create(&patient("7"));
    let before = s.version_count();
    let reply = s.send(
        "POST",
        "/Patient",
        &patient("7"),
        &[("If-None-Exist", "identifier=7")],
    );
    assert_eq!(reply.outcome(412)["code"], "conflict");
    assert_eq!(s.version_count(), before);
}

#[test]
fn concurrent_conditional_creates_make_one_resource() {
    let s = Arc::new(Server::start());
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let s = s.clone();
            std::thread::spawn(move || {
                s.send(
                    "POST",
                    "/Patient",
                    &patient("190017512345678"),
                    &[(
                        "If-None-Exist",
                        "identifier=urn:oid:1.2.250.1.213.1.4.8|190017512345678",
                    )],
                )
                .status
            })
        })
        .collect();
    let mut statuses: Vec<u16> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    statuses.sort();
    assert_eq!(statuses, [200, 200, 200, 200, 200, 200, 200, 201]);
    assert_eq!(s.version_count(), 1);
}

#[test]
fn unsupported_criteria_are_refused_and_nothing_is_stored() {
    let s = Server::start();
    let issue = s
        .send(
            "POST",
            "/Patient",
            &patient("1"),
            &[("If-None-Exist", "name=Durand")],
        )
        .outcome(400);
    assert_eq!(issue["code"], "not-supported");
    assert_eq!(issue["expression"][0], "name");
    s.send("PUT", "/Appointment", &appointment("a", "booked"), &[])
        .outcome(400);
    s.request("DELETE", "/Patient", &[], None).outcome(400);
    assert_eq!(s.version_count(), 0);
}

#[test]
fn conditional_update_creates_then_updates_by_business_identifier() {
    let s = Server::start();
    let url = "/Appointment?identifier=https://agenda.example.fr|rdv-42";
    let created = s.send("PUT", url, &appointment("rdv-42", "booked"), &[]);
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.json()["id"].as_str().unwrap().to_owned();
    let updated = s.send("PUT", url, &appointment("rdv-42", "cancelled"), &[]);
    assert_eq!(updated.status, 200, "{}", updated.body);
    assert_eq!(updated.json()["id"], id.as_str());
    assert_eq!(updated.json()["meta"]["versionId"], "2");
    assert_eq!(
        s.get(&format!("/Appointment/{id}")).json()["status"],
        "cancelled"
    );
    let stale = s.send(
        "PUT",
        url,
        &appointment("rdv-42", "booked"),
        &[("If-Match", "W/\"1\"")],
    );
    stale.outcome(412);
    let mut wrong_id = appointment("rdv-42", "booked");
    wrong_id["id"] = json!("someone-else");
    s.send("PUT", url, &wrong_id, &[]).outcome(400);
}

#[test]
fn conditional_update_with_several_matches_is_412() {
    let s = Server::start();
    s.create(&appointment("dup", "booked"));
    s.create(&appointment("dup", "booked"));
    let before = s.version_count();
    s.send(
        "PUT",
        "/Appointment?identifier=dup",
        &appointment("dup", "noshow"),
        &[],
    )
    .outcome(412);
    assert_eq!(s.version_count(), before);
}

#[test]
fn conditional_delete_removes_the_one_match() {
    let s = Server::start();
    let a = s.create(&appointment("rdv-1", "booked"));
    assert_eq!(
        s.request(
            "DELETE",
            "/Appointment?identifier=https://agenda.example.fr|rdv-1",
            &[],
            None
        )
        .status,
        204
    );
    s.get(&format!("/Appointment/{}", a["id"].as_str().unwrap()))
        .outcome(410);
    let before = s.version_count();
    assert_eq!(
        s.request(
            "DELETE",
            "/Appointment?identifier=https://agenda.example.fr|rdv-1",
            &[],
            None
        )
        .status,
        204
    );
    assert_eq!(s.version_count(), before, "nothing left to delete");
    s.create(&appointment("rdv-2", "booked"));
    s.create(&appointment("rdv-2", "booked"));
    s.request("DELETE", "/Appointment?identifier=rdv-2", &[], None)
        .outcome(412);
}

#[test]
fn the_identifier_index_follows_updates_and_deletes() {
    let s = Server::start();
    let mut p = s.create(&allergy("111"));
    let id = p["id"].as_str().unwrap().to_owned();
    p["identifier"][0]["value"] = json!("222");
    s.send("PUT", &format!("/AllergyIntolerance/{id}"), &p, &[]);
    let old = s.send(
        "POST",
        "/AllergyIntolerance",
        &allergy("111"),
        &[("If-None-Exist", "identifier=111")],
    );
    assert_eq!(old.status, 201, "the old identifier no longer matches");
    let new = s.send(
        "POST",
        "/AllergyIntolerance",
        &allergy("222"),
        &[("If-None-Exist", "identifier=222")],
    );
    assert_eq!(new.status, 200);
    assert_eq!(new.json()["id"], id.as_str());
    s.request("DELETE", &format!("/AllergyIntolerance/{id}"), &[], None);
    let after_delete = s.send(
        "POST",
        "/AllergyIntolerance",
        &allergy("222"),
        &[("If-None-Exist", "identifier=222")],
    );
    assert_eq!(
        after_delete.status, 201,
        "a deleted resource does not match"
    );
}

#[test]
fn conditional_update_never_touches_a_resource_the_criteria_did_not_select() {
    let s = Server::start();
    let victim = s.create(&patient("1"));
    let victim_id = victim["id"].as_str().unwrap().to_owned();
    let mut hijack = patient("1");
    hijack["id"] = json!(victim_id.clone());
    hijack["gender"] = json!("male");
    let url = format!("/Patient?identifier={NIR}|nomatch");
    s.send("PUT", &url, &hijack, &[]).outcome(405);
    let s2 = Server::start_with(&[("CARNET_UPDATE_CREATE", "true")]);
    let victim2 = s2.create(&patient("1"));
    hijack["id"] = victim2["id"].clone();
    s2.send("PUT", &url, &hijack, &[]).outcome(409);
    assert_eq!(s2.version_count(), 1);
    assert_eq!(
        s.get(&format!("/Patient/{victim_id}")).json()["gender"],
        "female"
    );
    let mut other = patient("1");
    other["id"] = json!("b");
    s2.send("PUT", "/Patient?_id=a", &other, &[]).outcome(400);
    s.send("PUT", &url, &patient("1"), &[("If-Match", "W/\"1\"")])
        .outcome(412);
    assert_eq!(s.version_count(), 1);
}

#[test]
fn invalid_ids_in_criteria_are_refused() {
    let s = Server::start_with(&[("CARNET_UPDATE_CREATE", "true")]);
    let issue = s
        .send("PUT", "/Patient?_id=a%20b%2Fc", &patient("1"), &[])
        .outcome(400);
    assert_eq!(issue["expression"][0], "_id");
    s.send(
        "PUT",
        "/Patient?_id=a%0D%0AX-Injected:%201",
        &patient("1"),
        &[],
    )
    .outcome(400);
    s.send(
        "POST",
        "/Binary",
        &json!({"resourceType": "Binary", "contentType": "text/plain"}),
        &[("If-None-Exist", "identifier=x")],
    )
    .outcome(400);
    assert_eq!(s.version_count(), 0);
}
