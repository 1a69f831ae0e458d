//! Binary: bytes in, bytes out, with the FHIR JSON form on request.

use crate::harness::Server;
use serde_json::json;

/// Bytes that are not valid UTF-8, as a real PDF or image would be.
const PDF: &[u8] = b"%PDF-1.4\n\xff\xfe\x00\x01 compte rendu \xe9\n%%EOF";

fn post_raw(s: &Server, bytes: &[u8]) -> String {
    let reply = s.request_bytes(
        "POST",
        "/Binary",
        &[("Content-Type", "application/pdf")],
        Some(bytes),
    );
    assert_eq!(reply.status, 201, "{}", reply.body);
    reply.json()["id"].as_str().unwrap().to_owned()
}

#[test]
fn raw_upload_reads_back_as_the_same_bytes_with_its_content_type() {
    let s = Server::start();
    let id = post_raw(&s, PDF);
    for accept in [None, Some("application/pdf"), Some("*/*")] {
        let headers: Vec<(&str, &str)> = accept.map(|a| ("Accept", a)).into_iter().collect();
        let reply = s.request_bytes("GET", &format!("/Binary/{id}"), &headers, None);
        assert_eq!(reply.status, 200);
        assert_eq!(reply.bytes, PDF, "Accept {accept:?}");
        assert_eq!(reply.header("Content-Type"), Some("application/pdf"));
        assert_eq!(reply.header("X-Content-Type-Options"), Some("nosniff"));
        assert_eq!(reply.header("ETag"), Some("W/\"1\""));
    }
}

#[test]
fn the_fhir_form_carries_base64_data_on_request() {
    let s = Server::start();
    let id = post_raw(&s, b"Bonjour");
    let reply = s.request(
        "GET",
        &format!("/Binary/{id}"),
        &[("Accept", "application/fhir+json")],
        None,
    );
    let body = reply.json();
    assert_eq!(body["resourceType"], "Binary");
    assert_eq!(body["contentType"], "application/pdf");
    assert_eq!(body["data"], "Qm9uam91cg==");
    assert_eq!(
        s.get(&format!("/Binary/{id}?_format=json")).json()["data"],
        "Qm9uam91cg=="
    );
}

#[test]
fn a_json_upload_is_served_raw() {
    let s = Server::start();
    let created = s.create(
        &json!({"resourceType": "Binary", "contentType": "text/plain", "data": "Qm9uam91cg=="}),
    );
    assert_eq!(created["data"], "Qm9uam91cg==");
    let reply = s.get(&format!("/Binary/{}", created["id"].as_str().unwrap()));
    assert_eq!(reply.bytes, b"Bonjour");
    assert_eq!(reply.header("Content-Type"), Some("text/plain"));
}

#[test]
fn versions_keep_their_own_bytes() {
    let s = Server::start();
    let id = post_raw(&s, b"version one");
    let reply = s.request_bytes(
        "PUT",
        &format!("/Binary/{id}"),
        &[("Content-Type", "text/plain; charset=utf-8")],
        Some(b"version two"),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(s.get(&format!("/Binary/{id}")).bytes, b"version two");
    assert_eq!(
        s.get(&format!("/Binary/{id}")).header("Content-Type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(
        s.get(&format!("/Binary/{id}/_history/1")).bytes,
        b"version one"
    );
    assert_eq!(
        s.get(&format!("/Binary/{id}/_history/1"))
            .header("Content-Type"),
        Some("application/pdf")
    );
    let history = s.get(&format!("/Binary/{id}/_history")).json();
    assert_eq!(history["entry"][0]["resource"]["data"], "dmVyc2lvbiB0d28=");
    assert_eq!(history["entry"][1]["resource"]["data"], "dmVyc2lvbiBvbmU=");
}

#[test]
fn binaries_over_the_limit_are_413_and_not_stored() {
    let s = Server::start_with(&[("CARNET_LIMITS__BINARY_MAX_BYTES", "16")]);
    let reply = s.request_bytes(
        "POST",
        "/Binary",
        &[("Content-Type", "application/pdf")],
        Some(&[7u8; 17]),
    );
    assert_eq!(reply.outcome(413)["code"], "too-costly");
    let big = json!({"resourceType": "Binary", "contentType": "text/plain", "data": "QUFBQUFBQUFBQUFBQUFBQUFB"});
    let issue = s.send("POST", "/Binary", &big, &[]).outcome(413);
    assert_eq!(issue["expression"][0], "Binary.data");
    assert_eq!(s.version_count(), 0);
    post_raw(&s, &[7u8; 16]);
}

#[test]
fn deleted_binaries_are_gone() {
    let s = Server::start();
    let id = post_raw(&s, PDF);
    assert_eq!(
        s.request("DELETE", &format!("/Binary/{id}"), &[], None)
            .status,
        204
    );
    s.get(&format!("/Binary/{id}")).outcome(410);
}

#[test]
fn raw_uploads_need_a_media_type_and_empty_content_has_no_data() {
    let s = Server::start();
    s.request_bytes("POST", "/Binary", &[("Content-Type", ";x=1")], Some(b"x"))
        .outcome(415);
    assert_eq!(s.version_count(), 0);
    let reply = s.request_bytes(
        "POST",
        "/Binary",
        &[("Content-Type", "text/plain")],
        Some(b""),
    );
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert!(reply.json().get("data").is_none());
    let wrapped =
        json!({"resourceType": "Binary", "contentType": "text/plain", "data": "Qm9u\nam91cg=="});
    let created = s.create(&wrapped);
    assert_eq!(
        s.get(&format!("/Binary/{}", created["id"].as_str().unwrap()))
            .bytes,
        b"Bonjour"
    );
}
