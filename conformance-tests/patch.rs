//! PATCH: JSON Patch and FHIRPath Patch, by id and by criteria.

use crate::harness::{patient, Server};
use serde_json::{json, Value};

const JSON_PATCH: (&str, &str) = ("Content-Type", "application/json-patch+json");
const FHIR_JSON: (&str, &str) = ("Content-Type", "application/fhir+json");
const TRE_A07: &str = "https://mos.esante.gouv.fr/NOS/TRE_A07-StatutVisibiliteDocument/FHIR/TRE-A07-StatutVisibiliteDocument";

fn patch(
    s: &Server,
    path: &str,
    content_type: (&str, &str),
    body: &Value,
    extra: &[(&str, &str)],
) -> crate::harness::Reply {
    let mut headers = vec![content_type];
    headers.extend_from_slice(extra);
    s.request("PATCH", path, &headers, Some(&body.to_string()))
}

fn document(s: &Server) -> Value {
    s.create(
        &json!({"resourceType": "DocumentReference", "status": "current",
        "masterIdentifier": {"system": "urn:ietf:rfc:3986", "value": "urn:oid:1.2.250.1.999.1"},
        "subject": {"reference": "Patient/p1"},
        "content": [{"attachment": {"contentType": "application/pdf", "url": "Binary/b1"}}]}),
    )
}

#[test]
fn json_patch_makes_a_new_version() {
    let s = Server::start();
    let p = s.create(&patient("1"));
    let id = p["id"].as_str().unwrap();
    let ops = json!([{"op": "add", "path": "/active", "value": false}, {"op": "replace", "path": "/gender", "value": "other"}]);
    let reply = patch(
        &s,
        &format!("/Patient/{id}"),
        JSON_PATCH,
        &ops,
        &[("If-Match", "W/\"1\"")],
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.header("ETag"), Some("W/\"2\""));
    let read = s.get(&format!("/Patient/{id}")).json();
    assert_eq!(read["active"], false);
    assert_eq!(read["gender"], "other");
    assert_eq!(read["name"], p["name"]);
    let history = s.get(&format!("/Patient/{id}/_history")).json();
    assert_eq!(history["entry"][0]["request"]["method"], "PATCH");
}

#[test]
fn fhirpath_patch_masks_and_unmasks_a_document() {
    let s = Server::start();
    let doc = document(&s);
    let id = doc["id"].as_str().unwrap();
    // MASQUE_PS is the patient's to set (domain §3, §5).
    let holder = s.token(&[
        "--client-id",
        "test-portal",
        "--scope",
        "patient/*.cruds",
        "--fhir-user",
        "Patient/p1",
    ]);
    let as_holder = format!("Bearer {holder}");
    let as_holder = [("Authorization", as_holder.as_str())];
    let add = json!({"resourceType": "Parameters", "parameter": [{"name": "operation", "part": [
        {"name": "type", "valueCode": "add"},
        {"name": "path", "valueString": "DocumentReference"},
        {"name": "name", "valueString": "securityLabel"},
        {"name": "value", "valueCodeableConcept": {"coding": [{"system": TRE_A07, "code": "MASQUE_PS"}]}}]}]});
    let reply = patch(
        &s,
        &format!("/DocumentReference/{id}"),
        FHIR_JSON,
        &add,
        &as_holder,
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        s.get(&format!("/DocumentReference/{id}")).json()["securityLabel"][0]["coding"][0]["code"],
        "MASQUE_PS"
    );
    let delete = json!({"resourceType": "Parameters", "parameter": [{"name": "operation", "part": [
        {"name": "type", "valueCode": "delete"},
        {"name": "path", "valueString": "DocumentReference.securityLabel.where(coding.code = 'MASQUE_PS')"}]}]});
    assert_eq!(
        patch(
            &s,
            &format!("/DocumentReference/{id}"),
            FHIR_JSON,
            &delete,
            &as_holder
        )
        .status,
        200
    );
    assert!(s
        .get(&format!("/DocumentReference/{id}"))
        .json()
        .get("securityLabel")
        .is_none());
}

#[test]
fn conditional_patch_by_identifier() {
    let s = Server::start();
    let doc = document(&s);
    let ops = json!([{"op": "replace", "path": "/status", "value": "entered-in-error"}]);
    let url = "/DocumentReference?identifier=urn:ietf:rfc:3986|urn:oid:1.2.250.1.999.1";
    let reply = patch(&s, url, JSON_PATCH, &ops, &[]);
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["id"], doc["id"]);
    assert_eq!(reply.json()["status"], "entered-in-error");
    patch(
        &s,
        "/DocumentReference?identifier=urn:ietf:rfc:3986|nothing",
        JSON_PATCH,
        &ops,
        &[],
    )
    .outcome(404);
    document(&s);
    let before = s.version_count();
    patch(&s, url, JSON_PATCH, &ops, &[]).outcome(412);
    patch(
        &s,
        "/DocumentReference?status=current",
        JSON_PATCH,
        &ops,
        &[],
    )
    .outcome(400);
    assert_eq!(s.version_count(), before);
}

#[test]
fn refused_patches_change_nothing() {
    let s = Server::start();
    let p = s.create(&patient("1"));
    let id = p["id"].as_str().unwrap().to_owned();
    let path = format!("/Patient/{id}");
    let before = s.version_count();
    let stale = json!([{"op": "replace", "path": "/gender", "value": "male"}]);
    patch(&s, &path, JSON_PATCH, &stale, &[("If-Match", "W/\"9\"")]).outcome(412);
    let failed_test = json!([{"op": "test", "path": "/gender", "value": "male"}, {"op": "remove", "path": "/name"}]);
    assert_eq!(
        patch(&s, &path, JSON_PATCH, &failed_test, &[]).outcome(409)["code"],
        "processing"
    );
    let nowhere = json!([{"op": "remove", "path": "/telecom"}]);
    patch(&s, &path, JSON_PATCH, &nowhere, &[]).outcome(422);
    let invalid = json!([{"op": "replace", "path": "/birthDate", "value": "le 29 février"}]);
    let issue = patch(&s, &path, JSON_PATCH, &invalid, &[]).outcome(422);
    assert_eq!(issue["expression"][0], "Patient.birthDate");
    let no_ins = json!([{"op": "remove", "path": "/identifier"}]);
    patch(&s, &path, JSON_PATCH, &no_ins, &[]).outcome(422);
    let new_id = json!([{"op": "replace", "path": "/id", "value": "other"}]);
    patch(&s, &path, JSON_PATCH, &new_id, &[]).outcome(400);
    patch(&s, &path, JSON_PATCH, &json!({"op": "remove"}), &[]).outcome(400);
    patch(&s, &path, ("Content-Type", "text/plain"), &stale, &[]).outcome(415);
    patch(
        &s,
        &path,
        FHIR_JSON,
        &json!({"resourceType": "Patient"}),
        &[],
    )
    .outcome(400);
    assert_eq!(s.version_count(), before);
    assert_eq!(s.get(&path).body, s.get(&format!("{path}/_history/1")).body);
}

#[test]
fn patch_targets_must_exist_and_be_patchable() {
    let s = Server::start();
    let ops = json!([{"op": "add", "path": "/criticality", "value": "low"}]);
    patch(&s, "/AllergyIntolerance/nobody", JSON_PATCH, &ops, &[]).outcome(404);
    let p = s.create(&crate::harness::allergy("1"));
    let id = p["id"].as_str().unwrap();
    s.request("DELETE", &format!("/AllergyIntolerance/{id}"), &[], None);
    patch(
        &s,
        &format!("/AllergyIntolerance/{id}"),
        JSON_PATCH,
        &ops,
        &[],
    )
    .outcome(410);
    let b =
        s.create(&json!({"resourceType": "Binary", "contentType": "text/plain", "data": "eA=="}));
    patch(
        &s,
        &format!("/Binary/{}", b["id"].as_str().unwrap()),
        JSON_PATCH,
        &ops,
        &[],
    )
    .outcome(405);
}

#[test]
fn a_patch_cannot_blow_up_the_resource() {
    let s = Server::start_with(&[("CARNET_LIMITS__BODY_MAX_BYTES", "100000")]);
    let p = s.create(&patient("1"));
    let doubling: Vec<Value> = (0..30)
        .map(|_| json!({"op": "copy", "from": "/name", "path": "/name/-"}))
        .collect();
    let issue = patch(
        &s,
        &format!("/Patient/{}", p["id"].as_str().unwrap()),
        JSON_PATCH,
        &Value::Array(doubling),
        &[],
    )
    .outcome(413);
    assert_eq!(issue["code"], "too-costly");
    assert_eq!(s.version_count(), 1);
}
