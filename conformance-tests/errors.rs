//! Every error a client can provoke: a 4xx OperationOutcome that says what and where, and
//! nothing stored.

use crate::harness::{patient, Server};
use serde_json::json;

const FHIR_JSON: (&str, &str) = ("Content-Type", "application/fhir+json");

/// Sends a raw POST /Patient body and checks: status, issue code, expression, nothing stored.
fn refused(s: &Server, body: &str, status: u16, code: &str, expression: Option<&str>) {
    let before = s.version_count();
    let reply = s.request("POST", "/Patient", &[FHIR_JSON], Some(body));
    let issue = reply.outcome(status);
    assert_eq!(issue["code"], code, "{}", reply.body);
    match expression {
        Some(e) => assert!(
            reply.json()["issue"]
                .as_array()
                .unwrap()
                .iter()
                .any(|i| i["expression"][0] == e),
            "expected an issue at {e}: {}",
            reply.body
        ),
        None => assert!(issue.get("expression").is_none() || issue["expression"].is_array()),
    }
    assert_eq!(
        s.version_count(),
        before,
        "a refused request stored something"
    );
}

#[test]
fn malformed_json_is_400() {
    let s = Server::start();
    refused(&s, "{\"resourceType\":\"Patient\",", 400, "structure", None);
    refused(&s, "not json at all", 400, "structure", None);
    refused(&s, "[]", 400, "structure", None);
    refused(
        &s,
        "{\"resourceType\":\"Patient\",\"active\":true}garbage",
        400,
        "structure",
        None,
    );
}

#[test]
fn unknown_elements_are_400_at_their_path() {
    let s = Server::start();
    refused(
        &s,
        r#"{"resourceType":"Patient","foo":1}"#,
        400,
        "structure",
        Some("Patient.foo"),
    );
    refused(
        &s,
        r#"{"resourceType":"Patient","name":[{"family":"X","nickname":"Y"}]}"#,
        400,
        "structure",
        Some("Patient.name[0].nickname"),
    );
}

#[test]
fn wrong_types_and_malformed_primitives_are_400_at_their_path() {
    let s = Server::start();
    refused(
        &s,
        r#"{"resourceType":"Patient","active":"yes"}"#,
        400,
        "structure",
        Some("Patient.active"),
    );
    refused(
        &s,
        r#"{"resourceType":"Patient","birthDate":"1984-02-30"}"#,
        400,
        "value",
        Some("Patient.birthDate"),
    );
    refused(
        &s,
        r#"{"resourceType":"Patient","birthDate":"29/02/1984"}"#,
        400,
        "value",
        Some("Patient.birthDate"),
    );
    refused(
        &s,
        r#"{"resourceType":"Patient","multipleBirthInteger":1.5}"#,
        400,
        "value",
        Some("Patient.multipleBirthInteger"),
    );
    refused(
        &s,
        r#"{"resourceType":"Patient","name":{"family":"X"}}"#,
        400,
        "structure",
        Some("Patient.name"),
    );
    refused(
        &s,
        r#"{"resourceType":"Patient","gender":""}"#,
        400,
        "value",
        Some("Patient.gender"),
    );
    refused(
        &s,
        r#"{"resourceType":"Patient","active":null}"#,
        400,
        "structure",
        Some("Patient.active"),
    );
}

#[test]
fn missing_required_elements_are_400_at_their_path() {
    let s = Server::start();
    let before = s.version_count();
    let doc = json!({"resourceType": "DocumentReference", "content": [{"attachment": {"url": "Binary/1"}}]});
    let reply = s.send("POST", "/DocumentReference", &doc, &[]);
    let issue = reply.outcome(400);
    assert_eq!(issue["code"], "required");
    assert_eq!(issue["expression"][0], "DocumentReference.status");
    let doc = json!({"resourceType": "DocumentReference", "status": "current", "content": [{"format": {"code": "x"}}]});
    let issue = s.send("POST", "/DocumentReference", &doc, &[]).outcome(400);
    assert_eq!(
        issue["expression"][0],
        "DocumentReference.content[0].attachment"
    );
    assert_eq!(s.version_count(), before);
}

#[test]
fn resource_type_must_match_the_url() {
    let s = Server::start();
    let before = s.version_count();
    let org = json!({"resourceType": "Organization", "name": "CHU"});
    let issue = s.send("POST", "/Patient", &org, &[]).outcome(400);
    assert_eq!(issue["expression"][0], "resourceType");
    assert_eq!(s.version_count(), before);
}

#[test]
fn update_body_id_must_match_the_url() {
    let s = Server::start();
    let p = s.create(&patient("1"));
    let id = p["id"].as_str().unwrap().to_owned();
    let before = s.version_count();
    let mut other = p.clone();
    other["id"] = json!("someone-else");
    assert_eq!(
        s.send("PUT", &format!("/Patient/{id}"), &other, &[])
            .outcome(400)["expression"][0],
        "Patient.id"
    );
    let mut missing = p.clone();
    missing.as_object_mut().unwrap().remove("id");
    assert_eq!(
        s.send("PUT", &format!("/Patient/{id}"), &missing, &[])
            .outcome(400)["expression"][0],
        "Patient.id"
    );
    assert_eq!(s.version_count(), before);
}

#[test]
fn bodies_must_be_fhir_json() {
    let s = Server::start();
    let body = patient("1").to_string();
    s.request(
        "POST",
        "/Patient",
        &[("Content-Type", "application/fhir+xml")],
        Some(&body),
    )
    .outcome(415);
    s.request(
        "POST",
        "/Patient",
        &[("Content-Type", "text/plain")],
        Some(&body),
    )
    .outcome(415);
    s.request("POST", "/Patient", &[], Some(&body)).outcome(415);
    s.request("POST", "/Patient", &[FHIR_JSON], Some("\u{feff}{}"))
        .outcome(400);
    refused(
        &s,
        "{\"resourceType\":\"Patient\",\"gender\":\"fe\u{1}male\"}",
        400,
        "structure",
        None,
    );
    refused(
        &s,
        r#"{"resourceType":"Patient","gender":"fe\u0001male"}"#,
        400,
        "value",
        Some("Patient.gender"),
    );
    assert_eq!(s.version_count(), 0);
}

#[test]
fn oversized_bodies_are_413() {
    let s = Server::start_with(&[("CARNET_LIMITS__BODY_MAX_BYTES", "2000")]);
    let mut big = patient("1");
    big["name"][0]["family"] = json!("x".repeat(3000));
    let issue = s.send("POST", "/Patient", &big, &[]).outcome(413);
    assert_eq!(issue["code"], "too-costly");
    assert_eq!(s.version_count(), 0);
    assert_eq!(s.send("POST", "/Patient", &patient("1"), &[]).status, 201);
}

#[test]
fn deeply_nested_json_is_400() {
    let s = Server::start();
    let depth = 5000;
    let body = format!(
        "{{\"resourceType\":\"Patient\",\"extension\":{}{}}}",
        "[{\"url\":\"http://x\",\"extension\":".repeat(depth),
        "[]".to_owned() + &"}]".repeat(depth)
    );
    refused(&s, &body, 400, "structure", None);
    assert_eq!(s.get("/metadata").status, 200, "the server survives");
}

#[test]
fn bad_headers_and_parameters_are_400() {
    let s = Server::start();
    let p = s.create(&patient("1"));
    let id = p["id"].as_str().unwrap().to_owned();
    let before = s.version_count();
    s.send(
        "PUT",
        &format!("/Patient/{id}"),
        &p,
        &[("If-Match", "version one")],
    )
    .outcome(400);
    let issue = s.get(&format!("/Patient/{id}?_foo=1")).outcome(400);
    assert_eq!(issue["expression"][0], "_foo");
    s.get(&format!("/Patient/{id}?_pretty=maybe")).outcome(400);
    s.get("/_history?_count=-1").outcome(400);
    s.get("/_history?_since=yesterday").outcome(400);
    s.get("/_history?_cursor=abc").outcome(400);
    assert_eq!(s.version_count(), before);
}

#[test]
fn unknown_contained_types_are_refused() {
    let s = Server::start();
    let body = r#"{"resourceType":"Patient","contained":[{"resourceType":"Medication","id":"m"}]}"#;
    refused(&s, body, 400, "not-supported", Some("Patient.contained[0]"));
}

#[test]
fn lenient_where_the_standards_say_so_strict_elsewhere() {
    let s = Server::start();
    // RFC 7240: unknown preference parameters and values are ignored.
    let minimal = s.send(
        "POST",
        "/Patient",
        &patient("1"),
        &[("Prefer", "return=minimal; foo=bar")],
    );
    assert_eq!(minimal.status, 201);
    assert!(minimal.body.is_empty());
    let unknown = s.send(
        "POST",
        "/Patient",
        &patient("2"),
        &[("Prefer", "return=headers-only, respond-async")],
    );
    assert_eq!(unknown.json()["resourceType"], "Patient");
    let id = unknown.json()["id"].as_str().unwrap().to_owned();
    // An unencoded + in _format decodes to a space.
    assert_eq!(
        s.get(&format!("/Patient/{id}?_format=application/fhir+json"))
            .status,
        200
    );
    // Version ids are digits only.
    s.get(&format!("/Patient/{id}/_history/+1")).outcome(404);
    s.send(
        "PUT",
        &format!("/Patient/{id}"),
        &unknown.json(),
        &[("If-Match", "W/\"+1\"")],
    )
    .outcome(400);
    // A body of another type than the URL's is 400, whatever the type.
    let issue = s
        .send(
            "POST",
            "/Patient",
            &json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}}),
            &[],
        )
        .outcome(400);
    assert_eq!(issue["expression"][0], "resourceType");
    assert_eq!(s.version_count(), 2);
}

#[test]
fn unsafe_narratives_nested_contained_and_duplicate_keys_are_400() {
    let s = Server::start();
    let script = r#"{"resourceType":"Patient","identifier":[{"system":"urn:oid:1.2.250.1.213.1.4.8","value":"1"}],"text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\"><img src=\"x\" onerror=\"alert(1)\"/></div>"}}"#;
    refused(&s, script, 400, "invariant", Some("Patient.text.div"));
    let nested = r#"{"resourceType":"Patient","identifier":[{"system":"urn:oid:1.2.250.1.213.1.4.8","value":"1"}],"contained":[{"resourceType":"Organization","id":"o","contained":[{"resourceType":"Organization","id":"p"}]}]}"#;
    refused(
        &s,
        nested,
        400,
        "invariant",
        Some("Patient.contained[0].contained"),
    );
    let twice = r#"{"resourceType":"Patient","identifier":[{"system":"urn:oid:1.2.250.1.213.1.4.8","value":"1"}],"gender":"male","gender":"female"}"#;
    refused(&s, twice, 400, "structure", Some("Patient.gender"));
}
