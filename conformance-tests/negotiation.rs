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
        "search-type",
    ] {
        assert!(codes.contains(&code), "{code}");
    }
    // Every advertised parameter is one the server answers.
    for param in patient["searchParam"].as_array().unwrap() {
        let name = param["name"].as_str().unwrap();
        let value = match param["type"].as_str().unwrap() {
            "date" => "2024",
            "reference" => "Patient/x",
            _ => "x",
        };
        let reply = s.get(&format!("/Patient?{name}={value}"));
        assert_eq!(reply.status, 200, "{name}: {}", reply.body);
    }
    // Nothing advertised is refused; what is refused is not advertised.
    let names: Vec<&str> = patient["searchParam"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert!(!names.contains(&"_text") && !names.contains(&"phonetic"));
    assert_eq!(patient["conditionalCreate"], true);
    assert_eq!(patient["conditionalDelete"], "single");
    let audit = resources
        .iter()
        .find(|r| r["type"] == "AuditEvent")
        .unwrap();
    assert_eq!(audit["conditionalCreate"], false);
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

#[test]
fn summary_and_elements_subset_a_read() {
    let s = Server::start();
    let mut p = patient("1");
    p["text"] = serde_json::json!({"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">Éloïse</div>"});
    p["photo"] = serde_json::json!([{"contentType": "image/png", "data": "iVBORw=="}]);
    let created = s.create(&p);
    let id = created["id"].as_str().unwrap();
    let subsetted = |r: &serde_json::Value| {
        r["meta"]["tag"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t["code"] == "SUBSETTED"))
    };
    let summary = s.get(&format!("/Patient/{id}?_summary=true")).json();
    assert!(summary.get("photo").is_none() && summary.get("text").is_none());
    assert_eq!(summary["identifier"], created["identifier"]);
    assert!(subsetted(&summary));
    let data = s.get(&format!("/Patient/{id}?_summary=data")).json();
    assert!(data.get("text").is_none() && data.get("photo").is_some());
    let elements = s.get(&format!("/Patient/{id}?_elements=birthDate")).json();
    assert_eq!(elements["birthDate"], "1984-02-29");
    assert!(elements.get("name").is_none() && elements.get("identifier").is_none());
    assert_eq!(elements["id"], id);
    assert!(subsetted(&elements));
    let full = s.get(&format!("/Patient/{id}?_summary=false")).json();
    assert_eq!(full, created);
    let v1 = s
        .get(&format!("/Patient/{id}/_history/1?_elements=gender"))
        .json();
    assert_eq!(v1["gender"], "female");
    assert!(v1.get("birthDate").is_none());
    let issue = s
        .get(&format!("/Patient/{id}?_elements=status"))
        .outcome(400);
    assert_eq!(issue["expression"][0], "_elements");
    s.get(&format!("/Patient/{id}?_summary=maybe")).outcome(400);
}

/// The schema check applied to every response must be able to fail (where it runs).
#[test]
fn the_schema_check_catches_invalid_resources() {
    let invalid = serde_json::json!({"resourceType": "Patient", "gender": 3});
    if let Some(errors) = crate::harness::schema_errors(&invalid) {
        assert!(!errors.is_empty());
    }
}
