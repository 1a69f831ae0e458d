//! Content negotiation: Accept, _format, _pretty.

use crate::harness::{patient, Server};

#[test]
fn json_is_served_for_fhir_json_json_and_wildcards() {
    let s = Server::start();
    let id = s.create(&patient("1"))["id"].as_str().unwrap().to_owned();
    let path = format!("/Patient/{id}");
    for accept in [
        "application/fhir+json",
        "application/fhir+json;q=0.9, text/html",
        "*/*",
        "application/*",
    ] {
        let r = s.request("GET", &path, &[("Accept", accept)], None);
        assert_eq!(r.status, 200, "{accept}");
        assert!(r
            .header("Content-Type")
            .unwrap()
            .starts_with("application/fhir+json"));
    }
    let r = s.request("GET", &path, &[("Accept", "application/json")], None);
    assert!(r
        .header("Content-Type")
        .unwrap()
        .starts_with("application/json"));
    let r = s.get(&format!("{path}?_format=json"));
    assert!(r
        .header("Content-Type")
        .unwrap()
        .starts_with("application/fhir+json"));
}

#[test]
fn other_formats_are_406_outcomes() {
    let s = Server::start();
    let id = s.create(&patient("1"))["id"].as_str().unwrap().to_owned();
    let path = format!("/Patient/{id}");
    s.request("GET", &path, &[("Accept", "application/fhir+xml")], None)
        .outcome(406);
    s.request("GET", &path, &[("Accept", "text/html")], None)
        .outcome(406);
    s.get(&format!("{path}?_format=xml")).outcome(406);
    s.request("GET", "/metadata", &[("Accept", "application/xml")], None)
        .outcome(406);
}

#[test]
fn pretty_output_is_the_same_resource_indented() {
    let s = Server::start();
    let created = s.create(&patient("1"));
    let id = created["id"].as_str().unwrap();
    let pretty = s.get(&format!("/Patient/{id}?_pretty=true"));
    assert!(
        pretty.body.contains("\n  \"resourceType\": \"Patient\""),
        "{}",
        pretty.body
    );
    assert_eq!(pretty.json(), created);
}

#[test]
fn metadata_describes_what_is_implemented() {
    let s = Server::start();
    let cs = s.get("/metadata").json();
    assert_eq!(cs["resourceType"], "CapabilityStatement");
    assert_eq!(cs["fhirVersion"], "4.0.1");
    let resources = cs["rest"][0]["resource"].as_array().unwrap();
    assert_eq!(resources.len(), 13);
    let patient = resources.iter().find(|r| r["type"] == "Patient").unwrap();
    let codes: Vec<&str> = patient["interaction"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["code"].as_str().unwrap())
        .collect();
    for code in [
        "read",
        "vread",
        "update",
        "delete",
        "history-instance",
        "history-type",
        "create",
    ] {
        assert!(codes.contains(&code), "{code}");
    }
    assert!(
        !codes.contains(&"search-type"),
        "search is not implemented yet"
    );
    assert_eq!(patient["conditionalCreate"], false);
}

#[test]
fn api_docs_are_served_without_external_assets() {
    let s = Server::start();
    let root = s.base.trim_end_matches("/fhir").to_owned();
    let page = s.get(&format!("{root}/docs"));
    assert_eq!(page.status, 200);
    assert!(page
        .header("Content-Type")
        .unwrap()
        .starts_with("text/html"));
    assert!(page.body.contains("<code>POST /fhir/{type}</code>"));
    assert!(!page.body.contains("<script src=\"http"));
    let served = s.get(&format!("{root}/docs/openapi.json"));
    let committed = include_str!("../openapi/carnet.openapi.json");
    assert_eq!(served.body, committed);
}
