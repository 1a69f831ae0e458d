//! create, read, vread, update, delete.

use crate::harness::{allergy, patient, Server};
use serde_json::json;

#[test]
fn create_answers_201_with_location_etag_and_the_stored_resource() {
    let s = Server::start();
    let reply = s.send("POST", "/Patient", &patient("1840229123456"), &[]);
    assert_eq!(reply.status, 201, "{}", reply.body);
    let body = reply.json();
    let id = body["id"].as_str().unwrap();
    assert_eq!(id.len(), 36, "server-assigned uuid");
    assert_eq!(body["meta"]["versionId"], "1");
    assert!(body["meta"]["lastUpdated"].as_str().unwrap().ends_with('Z'));
    assert_eq!(reply.header("ETag"), Some("W/\"1\""));
    assert_eq!(
        reply.header("Location").unwrap(),
        format!("{}/Patient/{id}/_history/1", s.base)
    );
    assert!(reply.header("Last-Modified").unwrap().ends_with("GMT"));
    assert!(reply
        .header("Content-Type")
        .unwrap()
        .starts_with("application/fhir+json"));
    assert_eq!(body["name"][0]["family"], "Lévy-Durand");
}

#[test]
fn read_returns_exactly_what_create_returned() {
    let s = Server::start();
    let created = s.send("POST", "/Patient", &patient("1840229123456"), &[]);
    let id = created.json()["id"].as_str().unwrap().to_owned();
    let read = s.get(&format!("/Patient/{id}"));
    assert_eq!(read.status, 200);
    assert_eq!(read.body, created.body);
    assert_eq!(read.header("ETag"), Some("W/\"1\""));
    assert_eq!(
        read.header("Last-Modified"),
        created.header("Last-Modified")
    );
}

#[test]
fn decimals_and_primitive_extensions_are_kept_as_sent() {
    let s = Server::start();
    let text = r#"{"resourceType":"Patient","identifier":[{"system":"urn:oid:1.2.250.1.213.1.4.8","value":"190017512345678"}],"birthDate":"1990-01-01","_birthDate":{"extension":[{"url":"http://example.org/precision","valueDecimal":1.50}]},"extension":[{"url":"http://example.org/weight","valueDecimal":71.500}]}"#;
    let reply = s.request(
        "POST",
        "/Patient",
        &[("Content-Type", "application/fhir+json")],
        Some(text),
    );
    assert_eq!(reply.status, 201, "{}", reply.body);
    let id = reply.json()["id"].as_str().unwrap().to_owned();
    let read = s.get(&format!("/Patient/{id}"));
    assert!(
        read.body.contains(r#""valueDecimal":71.500"#),
        "{}",
        read.body
    );
    assert!(
        read.body.contains(r#""valueDecimal":1.50"#),
        "{}",
        read.body
    );
    assert!(
        read.body.contains(r#""_birthDate":{"extension""#),
        "{}",
        read.body
    );
}

#[test]
fn create_ignores_a_client_id_and_keeps_client_meta() {
    let s = Server::start();
    let mut p = patient("1840229123456");
    p["id"] = json!("chosen-by-client");
    p["meta"] =
        json!({"versionId": "42", "tag": [{"system": "http://example.org/t", "code": "x"}]});
    let body = s.create(&p);
    assert_ne!(body["id"], "chosen-by-client");
    assert_eq!(body["meta"]["versionId"], "1");
    assert_eq!(body["meta"]["tag"][0]["code"], "x");
    assert_eq!(s.get("/Patient/chosen-by-client").status, 404);
}

#[test]
fn update_makes_a_new_version_and_vread_returns_each() {
    let s = Server::start();
    let mut p = s.create(&patient("1840229123456"));
    let id = p["id"].as_str().unwrap().to_owned();
    p["active"] = json!(false);
    let reply = s.send("PUT", &format!("/Patient/{id}"), &p, &[]);
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.header("ETag"), Some("W/\"2\""));
    assert_eq!(reply.json()["meta"]["versionId"], "2");
    assert_eq!(s.get(&format!("/Patient/{id}")).json()["active"], false);
    let v1 = s.get(&format!("/Patient/{id}/_history/1"));
    assert_eq!(v1.status, 200);
    assert!(v1.json().get("active").is_none());
    assert_eq!(v1.header("ETag"), Some("W/\"1\""));
    assert_eq!(
        s.get(&format!("/Patient/{id}/_history/2")).json()["active"],
        false
    );
    assert_eq!(
        s.get(&format!("/Patient/{id}/_history/3")).outcome(404)["code"],
        "not-found"
    );
    assert_eq!(
        s.get(&format!("/Patient/{id}/_history/x")).outcome(404)["code"],
        "not-found"
    );
}

#[test]
fn if_match_must_name_the_current_version() {
    let s = Server::start();
    let mut p = s.create(&patient("1840229123456"));
    let id = p["id"].as_str().unwrap().to_owned();
    p["active"] = json!(true);
    let ok = s.send(
        "PUT",
        &format!("/Patient/{id}"),
        &p,
        &[("If-Match", "W/\"1\"")],
    );
    assert_eq!(ok.status, 200, "{}", ok.body);
    let before = s.version_count();
    p["active"] = json!(false);
    let stale = s.send(
        "PUT",
        &format!("/Patient/{id}"),
        &p,
        &[("If-Match", "W/\"1\"")],
    );
    assert_eq!(stale.outcome(412)["code"], "conflict");
    assert_eq!(s.version_count(), before);
    assert_eq!(s.get(&format!("/Patient/{id}")).json()["active"], true);
}

#[test]
fn update_of_an_unknown_id_needs_update_create() {
    let s = Server::start();
    let mut p = patient("1840229123456");
    p["id"] = json!("ins-1840229123456");
    let reply = s.send("PUT", "/Patient/ins-1840229123456", &p, &[]);
    reply.outcome(405);
    assert_eq!(s.version_count(), 0);

    let s = Server::start_with(&[("CARNET_UPDATE_CREATE", "true")]);
    let reply = s.send("PUT", "/Patient/ins-1840229123456", &p, &[]);
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(reply.json()["id"], "ins-1840229123456");
    assert_eq!(s.get("/Patient/ins-1840229123456").status, 200);
}

#[test]
fn delete_hides_the_resource_but_keeps_its_history() {
    let s = Server::start();
    let p = s.create(&allergy("1840229123456"));
    let id = p["id"].as_str().unwrap().to_owned();
    assert_eq!(
        s.request("DELETE", &format!("/AllergyIntolerance/{id}"), &[], None)
            .status,
        204
    );
    assert_eq!(
        s.get(&format!("/AllergyIntolerance/{id}")).outcome(410)["code"],
        "deleted"
    );
    assert_eq!(
        s.get(&format!("/AllergyIntolerance/{id}/_history/1"))
            .status,
        200
    );
    assert_eq!(
        s.get(&format!("/AllergyIntolerance/{id}/_history/2"))
            .outcome(410)["code"],
        "deleted"
    );
    // Deleting again changes nothing.
    let before = s.version_count();
    assert_eq!(
        s.request("DELETE", &format!("/AllergyIntolerance/{id}"), &[], None)
            .status,
        204
    );
    assert_eq!(s.version_count(), before);
    s.request("DELETE", "/AllergyIntolerance/never-existed", &[], None)
        .outcome(404);
}

#[test]
fn delete_honours_if_match() {
    let s = Server::start();
    let p = s.create(&allergy("1840229123456"));
    let id = p["id"].as_str().unwrap().to_owned();
    s.request(
        "DELETE",
        &format!("/AllergyIntolerance/{id}"),
        &[("If-Match", "W/\"7\"")],
        None,
    )
    .outcome(412);
    assert_eq!(s.get(&format!("/AllergyIntolerance/{id}")).status, 200);
    assert_eq!(
        s.request(
            "DELETE",
            &format!("/AllergyIntolerance/{id}"),
            &[("If-Match", "W/\"1\"")],
            None
        )
        .status,
        204
    );
}

#[test]
fn an_update_after_delete_revives_with_the_next_version() {
    let s = Server::start();
    let p = s.create(&allergy("1840229123456"));
    let id = p["id"].as_str().unwrap().to_owned();
    s.request("DELETE", &format!("/AllergyIntolerance/{id}"), &[], None);
    let reply = s.send("PUT", &format!("/AllergyIntolerance/{id}"), &p, &[]);
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["meta"]["versionId"], "3");
}

#[test]
fn prefer_return_chooses_the_answer_body() {
    let s = Server::start();
    let minimal = s.send(
        "POST",
        "/Patient",
        &patient("1"),
        &[("Prefer", "return=minimal")],
    );
    assert_eq!(minimal.status, 201);
    assert!(minimal.body.is_empty());
    assert!(minimal.header("Location").is_some());
    let outcome = s.send(
        "POST",
        "/Patient",
        &patient("2"),
        &[("Prefer", "return=OperationOutcome")],
    );
    assert_eq!(outcome.status, 201);
    assert_eq!(outcome.json()["resourceType"], "OperationOutcome");
    let full = s.send(
        "POST",
        "/Patient",
        &patient("3"),
        &[("Prefer", "return=representation")],
    );
    assert_eq!(full.json()["resourceType"], "Patient");
}

#[test]
fn every_registered_type_can_be_written_and_read() {
    let s = Server::start();
    let p = s.create(&patient("1840229123456"));
    let subject = json!({"reference": format!("Patient/{}", p["id"].as_str().unwrap())});
    let resources = [
        json!({"resourceType": "Practitioner", "identifier": [{"system": "https://rpps.esante.gouv.fr", "value": "10001234567"}], "name": [{"family": "Martin"}]}),
        json!({"resourceType": "Organization", "identifier": [{"system": "https://finess.esante.gouv.fr", "value": "750000001"}], "name": "Laboratoire Biomed"}),
        json!({"resourceType": "PractitionerRole", "practitioner": {"reference": "Practitioner/x"}}),
        json!({"resourceType": "RelatedPerson", "patient": subject}),
        json!({"resourceType": "AllergyIntolerance", "patient": subject, "code": {"text": "Pénicilline"}}),
        json!({"resourceType": "Consent", "status": "active", "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]}, "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}], "patient": subject, "provision": {"type": "deny", "actor": [{"role": {"text": "bloqué"}, "reference": {"reference": "Practitioner/x"}}]}}),
        json!({"resourceType": "Communication", "status": "completed", "subject": subject, "payload": [{"contentString": "Bonjour"}]}),
        json!({"resourceType": "Appointment", "status": "booked", "participant": [{"actor": subject, "status": "accepted"}]}),
        json!({"resourceType": "List", "status": "current", "mode": "working", "subject": subject}),
        json!({"resourceType": "DocumentReference", "status": "current", "subject": subject, "content": [{"attachment": {"contentType": "application/pdf", "url": "Binary/b1"}}]}),
        json!({"resourceType": "Binary", "contentType": "text/plain", "data": "Qm9uam91cg=="}),
    ];
    // Each type as the party that writes and reads it: the patient their directives,
    // provisioning the guardianships, the lab (by default) the rest.
    let holder = s.token(&[
        "--client-id",
        "test-portal",
        "--scope",
        "patient/*.cruds",
        "--fhir-user",
        &format!("Patient/{}", p["id"].as_str().unwrap()),
    ]);
    let provisioning = s.provisioning_token.clone();
    for r in resources {
        let kind = r["resourceType"].as_str().unwrap();
        let token = match kind {
            "Consent" => Some(&holder),
            "RelatedPerson" => Some(&provisioning),
            _ => None,
        };
        let bearer = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![("Accept", "application/fhir+json")];
        headers.extend(bearer.as_deref().map(|b| ("Authorization", b)));
        let reply = s.request(
            "POST",
            &format!("/{kind}"),
            &[
                headers.clone(),
                vec![("Content-Type", "application/fhir+json")],
            ]
            .concat(),
            Some(&r.to_string()),
        );
        assert_eq!(reply.status, 201, "{kind}: {}", reply.body);
        let created = reply.json();
        // Binary answers raw bytes unless FHIR JSON is asked for.
        let read = s.request(
            "GET",
            &format!("/{kind}/{}", created["id"].as_str().unwrap()),
            &headers,
            None,
        );
        assert_eq!(read.status, 200, "{kind}: {}", read.body);
        assert_eq!(read.json(), created);
    }
}

#[test]
fn audit_events_are_written_by_the_server_only() {
    let s = Server::start();
    let event = json!({"resourceType": "AuditEvent", "type": {"code": "rest"}, "recorded": "2026-01-01T00:00:00Z",
        "agent": [{"requestor": true}], "source": {"observer": {"display": "x"}}});
    s.send("POST", "/AuditEvent", &event, &[]).outcome(405);
    s.send("PUT", "/AuditEvent/a1", &event, &[]).outcome(405);
    s.request("DELETE", "/AuditEvent/a1", &[], None)
        .outcome(405);
    assert_eq!(s.version_count(), 0);
}

#[test]
fn unknown_types_and_ids_are_404_outcomes() {
    let s = Server::start();
    s.get("/Observation/1").outcome(404);
    s.send(
        "POST",
        "/Observation",
        &json!({"resourceType": "Observation"}),
        &[],
    )
    .outcome(404);
    s.get("/Patient/does-not-exist").outcome(404);
    s.get("/Patient/bad%20id").outcome(404);
    s.get("/nowhere/at/all/here/x").outcome(404);
}

#[test]
fn patients_must_carry_an_ins() {
    let s = Server::start();
    let cs = s.get("/metadata").json();
    let profile = cs["rest"][0]["resource"][0]["profile"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(profile.ends_with("carnet-patient"));
    let anonymous = json!({"resourceType": "Patient", "name": [{"family": "Anonyme"}]});
    let reply = s.send("POST", "/Patient", &anonymous, &[]);
    reply.outcome(422);
    let issues = reply.json()["issue"].clone();
    assert!(
        issues
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["code"] == "invariant"
                && i["diagnostics"].as_str().unwrap().contains(&profile))
    );
    let nia = json!({"resourceType": "Patient", "identifier": [{"system": "urn:oid:1.2.250.1.213.1.4.9", "value": "0123456789"}]});
    assert_eq!(s.send("POST", "/Patient", &nia, &[]).status, 201);
    assert_eq!(s.version_count(), 1);
}

#[test]
fn unsupported_methods_are_405_with_allow() {
    let s = Server::start();
    let p = s.create(&patient("1"));
    let id = p["id"].as_str().unwrap();
    let reply = s.request("POST", &format!("/Patient/{id}"), &[], Some("{}"));
    reply.outcome(405);
    assert_eq!(reply.header("Allow"), Some("GET, PUT, DELETE, PATCH"));
    let reply = s.request("DELETE", "/metadata", &[], None);
    reply.outcome(405);
    assert_eq!(reply.header("Allow"), Some("GET"));
    let event = json!({"resourceType": "AuditEvent"});
    let reply = s.send("POST", "/AuditEvent", &event, &[]);
    reply.outcome(405);
    assert_eq!(reply.header("Allow"), Some("GET"));
    assert_eq!(s.version_count(), 1);
}
