//! Issue 11, resource intake: nothing a client sends through a body or a patch crashes the
//! server, stores script, escapes the id rule, or costs unbounded memory; errors name the
//! element at fault.

use crate::harness::{patient, Server};
use serde_json::{json, Value};
use std::io::{Read, Write};

const JSON_PATCH: (&str, &str) = ("Content-Type", "application/json-patch+json");
const FHIR_JSON: (&str, &str) = ("Content-Type", "application/fhir+json");

/// The server still answers, and `Patient/{id}` is still at version 1 (nothing was written).
fn unchanged(s: &Server, id: &str, versions: i64) {
    let read = s.get(&format!("/Patient/{id}"));
    assert_eq!(read.status, 200, "{}", read.body);
    assert_eq!(read.json()["meta"]["versionId"], "1");
    assert_eq!(s.version_count(), versions);
    assert_eq!(s.get("/metadata").status, 200);
}

/// `{"x": {"x": … "leaf"}}`, `levels` objects deep.
fn nested(levels: usize) -> Value {
    (0..levels).fold(json!("leaf"), |inner, _| json!({ "x": inner }))
}

#[test]
fn json_patch_copies_into_their_own_leaf_are_refused_not_a_stack_overflow() {
    let s = Server::start();
    let id = s.create(&patient("1"))["id"].as_str().unwrap().to_owned();
    let versions = s.version_count();
    let leaf = "/x".repeat(100);
    let mut ops = vec![json!({"op": "add", "path": "/x", "value": nested(100)})];
    ops.extend((0..7).map(|_| json!({"op": "copy", "from": "/x", "path": leaf})));
    let reply = s.request(
        "PATCH",
        &format!("/Patient/{id}"),
        &[JSON_PATCH],
        Some(&Value::Array(ops).to_string()),
    );
    let issue = reply.outcome(422);
    assert_eq!(issue["code"], "structure");
    assert_eq!(issue["expression"][0], "[1]");
    unchanged(&s, &id, versions);
}

#[test]
fn fhirpath_patch_values_cannot_nest_a_resource_past_the_parse_limit() {
    let s = Server::start();
    let id = s.create(&patient("1"))["id"].as_str().unwrap().to_owned();
    let versions = s.version_count();
    // An extension holding an extension… 55 levels deep, as nested parts (2 JSON levels each).
    let levels = 55;
    let value = (0..levels).fold(
        vec![
            json!({"name": "url", "valueUri": "https://x.fr/e"}),
            json!({"name": "valueString", "valueString": "leaf"}),
        ],
        |inner, _| {
            vec![
                json!({"name": "url", "valueUri": "https://x.fr/e"}),
                json!({"name": "extension", "part": inner}),
            ]
        },
    );
    let add = |path: String| {
        json!({"name": "operation", "part": [{"name": "type", "valueCode": "add"},
            {"name": "path", "valueString": path}, {"name": "name", "valueString": "extension"},
            {"name": "value", "part": value}]})
    };
    let deepest = format!("Patient.extension{}", ".extension".repeat(levels - 1));
    let parameters = json!({"resourceType": "Parameters",
        "parameter": [add("Patient".into()), add(deepest)]});
    let reply = s.request(
        "PATCH",
        &format!("/Patient/{id}"),
        &[FHIR_JSON],
        Some(&parameters.to_string()),
    );
    let issue = reply.outcome(422);
    assert_eq!(issue["code"], "structure", "{}", reply.body);
    assert_eq!(issue["expression"][0], "Parameters.parameter[1]");
    unchanged(&s, &id, versions);
}

#[test]
fn a_patch_of_too_many_operations_is_refused() {
    let s = Server::start();
    let id = s.create(&patient("1"))["id"].as_str().unwrap().to_owned();
    let versions = s.version_count();
    let ops: Vec<Value> = (0..10_001)
        .map(|_| json!({"op": "test", "path": "/gender", "value": "female"}))
        .collect();
    let reply = s.request(
        "PATCH",
        &format!("/Patient/{id}"),
        &[JSON_PATCH],
        Some(&Value::Array(ops).to_string()),
    );
    assert_eq!(reply.outcome(413)["code"], "too-costly");
    unchanged(&s, &id, versions);
}

#[test]
fn every_error_body_is_valid_json_even_when_it_echoes_a_nul() {
    let s = Server::start();
    for handling in ["lenient", "strict"] {
        let prefer = format!("handling={handling}");
        let reply = s.request("GET", "/Patient?%001]}]}=1", &[("Prefer", &prefer)], None);
        let body: Value = serde_json::from_str(&reply.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", reply.body));
        assert!(body["resourceType"].is_string(), "{}", reply.body);
    }
    // An unknown element whose name is a NUL and digits is echoed in the outcome.
    let reply = s.request(
        "POST",
        "/Patient",
        &[FHIR_JSON],
        Some(r#"{"resourceType":"Patient","\u00001":1}"#),
    );
    let issue = reply.outcome(400);
    assert!(issue["expression"][0].is_string(), "{}", reply.body);
    assert_eq!(s.version_count(), 0);
}

/// Sends `method target` as raw HTTP/1.1 (no client-side normalisation of `..`).
fn raw(s: &Server, method: &str, target: &str, body: &str) -> (u16, String) {
    let authority = s.authority();
    let mut stream = std::net::TcpStream::connect(authority).unwrap();
    let request = format!(
        "{method} {target} HTTP/1.1\r\nHost: {authority}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/fhir+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        s.default_token,
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let status = answer[9..12].parse().unwrap();
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[test]
fn ids_made_only_of_dots_are_refused_everywhere() {
    let s = Server::start_with(&[("CARNET_UPDATE_CREATE", "true")]);
    for dots in ["..", ".", "..."] {
        let mut body = patient("1");
        body["id"] = json!(dots);
        let (status, text) = raw(
            &s,
            "PUT",
            &format!("/fhir/Patient/{dots}"),
            &body.to_string(),
        );
        assert!(
            matches!(status, 400 | 404),
            "PUT Patient/{dots}: {status} {text}"
        );
        let outcome: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        assert_eq!(outcome["resourceType"], "OperationOutcome", "{text}");
    }
    // The id in the body, by POST (the server assigns its own) and by PUT to a valid id.
    let mut body = patient("1");
    body["id"] = json!("..");
    let reply = s.send("POST", "/Patient", &body, &[]);
    let issue = reply.outcome(400);
    assert_eq!(issue["expression"][0], "Patient.id");
    let reply = s.send("PUT", "/Patient/ok", &body, &[]);
    assert_eq!(reply.outcome(400)["expression"][0], "Patient.id");
    // The conditional `_id`.
    let reply = s.send("PUT", "/Patient?_id=...", &patient("1"), &[]);
    assert_eq!(reply.outcome(400)["expression"][0], "_id");
    let reply = s.send(
        "POST",
        "/Patient",
        &patient("1"),
        &[("If-None-Exist", "_id=..")],
    );
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert_eq!(s.version_count(), 0);
    assert_eq!(s.get("/Patient/...").status, 404);
    assert_eq!(s.get("/metadata").status, 200);
}

/// POSTs `patient` and returns the refused reply's issues (asserting `status`).
fn refused_issues(s: &Server, patient: &Value, status: u16) -> Vec<Value> {
    let reply = s.send("POST", "/Patient", patient, &[]);
    reply.outcome(status);
    reply.json()["issue"].as_array().unwrap().clone()
}

#[test]
fn validation_errors_point_at_the_element_at_fault() {
    let s = Server::start();
    let mut robot = patient("1");
    robot["gender"] = json!("robot");
    let issues = refused_issues(&s, &robot, 400);
    assert_eq!(issues[0]["expression"], json!(["Patient.gender"]));
    assert_eq!(issues[0]["code"], "value");

    let mut bad_use = patient("1");
    bad_use["name"] = json!([{"family": "A"}, {"family": "B", "use": "bogus"}]);
    let issues = refused_issues(&s, &bad_use, 400);
    assert_eq!(issues[0]["expression"], json!(["Patient.name[1].use"]));

    let mut no_ins = patient("1");
    no_ins["identifier"] = json!([{"system": "urn:oid:1.2.250.1.71.4.2.7", "value": "IPP-1"}]);
    let issues = refused_issues(&s, &no_ins, 422);
    assert!(
        issues.iter().all(|i| i["expression"][0]
            .as_str()
            .unwrap()
            .starts_with("Patient.identifier")),
        "{issues:?}"
    );
    assert!(
        issues.iter().any(|i| i["code"] == "invariant"),
        "{issues:?}"
    );
    assert_eq!(s.version_count(), 0);
    assert_eq!(s.get("/metadata").status, 200);
}

#[test]
fn errors_inside_a_contained_resource_name_the_element_at_fault() {
    let s = Server::start();
    let mut p = patient("1");
    p["contained"] = json!([{"resourceType": "Organization", "id": "o", "name": "Labo"},
        {"resourceType": "Practitioner", "id": "p", "gender": "robot"}]);
    let issues = refused_issues(&s, &p, 400);
    assert_eq!(
        issues[0]["expression"],
        json!(["Patient.contained[1].gender"])
    );
    assert_eq!(issues[0]["code"], "value");
    assert_eq!(s.version_count(), 0);
    assert_eq!(s.get("/metadata").status, 200);
}

#[test]
fn an_unreadable_choice_value_names_the_element_inside_it() {
    let s = Server::start();
    let mut p = patient("1");
    p["extension"] = json!([{"url": "https://x.fr/e", "valueAddress": {"use": "bogus"}}]);
    let issues = refused_issues(&s, &p, 400);
    assert_eq!(
        issues[0]["expression"],
        json!(["Patient.extension[0].valueAddress.use"])
    );
    assert_eq!(s.version_count(), 0);
    assert_eq!(s.get("/metadata").status, 200);
}

#[test]
fn disguised_script_in_the_narrative_is_refused() {
    let s = Server::start();
    let attacks = [
        r#"<a href="&#106;avascript:alert(1)">a</a>"#,
        r#"<a href="java&#x0A;script:alert(1)">a</a>"#,
        "<a href=\"java\tscript:alert(1)\">a</a>",
        r#"<a title="x>" onmouseover="alert(1)">a</a>"#,
        r#"<img alt="x>" src="x" onerror="alert(1)"/>"#,
        r#"<p>unclosed"#,
        r#"<?xml-stylesheet href="x"?>"#,
    ];
    for attack in attacks {
        let mut p = patient("1");
        p["text"] = json!({"status": "generated",
            "div": format!(r#"<div xmlns="http://www.w3.org/1999/xhtml">{attack}</div>"#)});
        let reply = s.send("POST", "/Patient", &p, &[]);
        let issue = reply.outcome(400);
        assert_eq!(issue["code"], "invariant", "{attack}: {}", reply.body);
        assert_eq!(issue["expression"][0], "Patient.text.div", "{attack}");
    }
    assert_eq!(s.version_count(), 0);
    // A safe narrative with links and entities is still stored.
    let mut p = patient("1");
    p["text"] = json!({"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\"><a href=\"https://x.fr/?a=1&amp;b=2\">Dossier</a> &#233;</div>"});
    assert_eq!(s.send("POST", "/Patient", &p, &[]).status, 201);
}

#[test]
fn markup_hidden_from_xml_in_comments_or_cdata_is_refused() {
    let s = Server::start();
    let attacks = [
        r#"<!--><img src="x" onerror="alert(1)">-->"#,
        r#"<!---><img src="x" onerror="alert(1)">-->"#,
        "<p><![CDATA[a><img src=x onerror=alert(1)>]]></p>",
    ];
    let narrative = |attack: &str| {
        json!({"status": "generated",
            "div": format!(r#"<div xmlns="http://www.w3.org/1999/xhtml">{attack}</div>"#)})
    };
    for attack in attacks {
        let mut p = patient("1");
        p["text"] = narrative(attack);
        let issue = s.send("POST", "/Patient", &p, &[]).outcome(400);
        assert_eq!(issue["code"], "invariant", "{attack}");
        assert_eq!(issue["expression"][0], "Patient.text.div", "{attack}");
    }
    assert_eq!(s.version_count(), 0);
    let id = s.create(&patient("1"))["id"].as_str().unwrap().to_owned();
    let versions = s.version_count();
    let ops = json!([{"op": "add", "path": "/text", "value": narrative(attacks[0])}]);
    let reply = s.request(
        "PATCH",
        &format!("/Patient/{id}"),
        &[JSON_PATCH],
        Some(&ops.to_string()),
    );
    assert_eq!(reply.outcome(422)["code"], "invariant", "{}", reply.body);
    unchanged(&s, &id, versions);
}

#[test]
fn a_fhirpath_patch_of_many_where_terms_is_refused_before_it_runs() {
    let s = Server::start();
    let mut p = patient("1");
    p["name"] = Value::Array((0..5000).map(|_| json!({"family": "x"})).collect());
    let id = s.create(&p)["id"].as_str().unwrap().to_owned();
    let versions = s.version_count();
    // 10,000 `or` terms tested against 5,000 names: 50 million comparisons for one operation.
    let terms = vec!["family='a'"; 10_000].join(" or ");
    let parameters = json!({"resourceType": "Parameters", "parameter": [
        {"name": "operation", "part": [{"name": "type", "valueCode": "delete"},
        {"name": "path", "valueString": format!("Patient.name.where({terms})")}]}]});
    let reply = s.request(
        "PATCH",
        &format!("/Patient/{id}"),
        &[FHIR_JSON],
        Some(&parameters.to_string()),
    );
    let issue = reply.outcome(413);
    assert_eq!(issue["code"], "too-costly", "{}", reply.body);
    assert_eq!(issue["expression"][0], "Parameters.parameter[0]");
    unchanged(&s, &id, versions);
}

/// The server's peak resident memory so far (VmHWM), in bytes.
fn peak_rss(s: &Server) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", s.pid())).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM in /proc/<pid>/status");
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

#[test]
fn one_body_costs_at_most_a_small_multiple_of_its_size_in_memory() {
    let s = Server::start();
    s.create(&patient("1"));
    let versions = s.version_count();

    // 2 million tiny names in 30 MB: refused before it is parsed into a tree.
    let names = vec![r#"{"family":"x"}"#; 2_000_000].join(",");
    let body = format!(r#"{{"resourceType":"Patient","name":[{names}]}}"#);
    drop(names);
    let before = peak_rss(&s);
    let started = std::time::Instant::now();
    let reply = s.request("POST", "/Patient", &[FHIR_JSON], Some(&body));
    let elapsed = started.elapsed();
    assert_eq!(reply.outcome(413)["code"], "too-costly");
    let grown = peak_rss(&s).saturating_sub(before);
    eprintln!(
        "{} MB of tiny elements: refused in {elapsed:?}, peak RSS +{} MB",
        body.len() >> 20,
        grown >> 20
    );
    assert!(
        grown <= 10 * body.len() as u64,
        "peak RSS grew by {grown} bytes for a body of {}",
        body.len()
    );
    assert_eq!(s.version_count(), versions);
    drop(body);

    // A large valid resource (a 12 MB photo) is stored within the same bound.
    let mut p = patient("2");
    let data = "QUJD".repeat(3 << 20);
    p["photo"] = json!([{"contentType": "image/png", "data": data}]);
    let body = p.to_string();
    let before = peak_rss(&s);
    let started = std::time::Instant::now();
    let reply = s.request("POST", "/Patient", &[FHIR_JSON], Some(&body));
    let elapsed = started.elapsed();
    assert_eq!(
        reply.status,
        201,
        "{}",
        &reply.body[..reply.body.len().min(500)]
    );
    let grown = peak_rss(&s).saturating_sub(before);
    eprintln!(
        "{} MB Patient: stored in {elapsed:?}, peak RSS +{} MB",
        body.len() >> 20,
        grown >> 20
    );
    assert!(
        grown <= 10 * body.len() as u64,
        "peak RSS grew by {grown} bytes for a body of {}",
        body.len()
    );
    assert_eq!(s.version_count(), versions + 1);
}
