//! Turning a request body into a resource the server may store: strict parsing, structural
//! validation against the R4 definitions, then the typed model as a second opinion.

use super::outcome::OutcomeIssue;
use super::{binary, json, model, narrative, profiles, registry, validate};
use serde_json::Value;

/// A resource received from a client, valid against the R4 definitions.
#[derive(Debug)]
pub struct Incoming {
    pub kind: &'static registry::ResourceKind,
    /// The `id` the client put in the body, if any.
    pub id: Option<String>,
    /// The resource with numbers kept as written (see [`json`]); a Binary without its `data`.
    pub document: Value,
    /// The bytes of a Binary.
    pub content: Option<Vec<u8>>,
}

/// Why a body was refused; nothing has been stored.
#[derive(Debug)]
pub struct Rejected {
    /// 400 for unreadable or malformed content, 422 for content the server does not accept.
    pub status: u16,
    pub issues: Vec<OutcomeIssue>,
}

fn rejected(status: u16, issues: Vec<OutcomeIssue>) -> Rejected {
    Rejected { status, issues }
}

/// Parses and validates a request body sent to the `expected` resource type's URL.
pub fn parse(body: &[u8], expected: &str) -> Result<Incoming, Rejected> {
    let text = std::str::from_utf8(body).map_err(|e| {
        rejected(
            400,
            vec![OutcomeIssue::error(
                "structure",
                format!("The body is not UTF-8: {e}"),
            )],
        )
    })?;
    let value: Value = serde_json::from_str(text).map_err(|e| {
        rejected(
            400,
            vec![OutcomeIssue::error(
                "structure",
                format!("The body is not valid JSON: {e}"),
            )],
        )
    })?;
    let resource_type = value
        .get("resourceType")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if value.get("resourceType").is_some() && resource_type != expected {
        return Err(rejected(
            400,
            vec![OutcomeIssue::error(
                "invalid",
                format!("The body is a {resource_type} but the URL names {expected}"),
            )
            .at("resourceType")],
        ));
    }
    if let Some(path) = json::first_duplicate_key(text) {
        let at = format!("{resource_type}.{path}");
        return Err(rejected(
            400,
            vec![
                OutcomeIssue::error("structure", format!("{at} appears twice in one object"))
                    .at(at),
            ],
        ));
    }
    let issues = validate::validate_resource(&value);
    if !issues.is_empty() {
        return Err(rejected(
            400,
            issues
                .into_iter()
                .map(|i| OutcomeIssue::error(i.code.as_str(), i.diagnostics).at(i.expression))
                .collect(),
        ));
    }
    let Some(kind) = registry::lookup(&resource_type) else {
        return Err(rejected(
            422,
            vec![OutcomeIssue::error(
                "not-supported",
                format!("Carnet does not store {resource_type} resources"),
            )
            .at(resource_type)],
        ));
    };
    let typed = model::round_trip(&value).map_err(|e| {
        let at = e.at.unwrap_or_else(|| resource_type.clone());
        rejected(
            400,
            vec![OutcomeIssue::error("value", format!("Invalid {at}: {}", e.message)).at(at)],
        )
    })?;
    if let Some(path) = model::first_dropped_element(&value, &typed, &resource_type) {
        return Err(rejected(
            400,
            vec![OutcomeIssue::error(
                "structure",
                format!("Element {path} is not part of the R4 {resource_type} model"),
            )
            .at(path)],
        ));
    }
    let invariants = resource_invariants(&value, &resource_type);
    if !invariants.is_empty() {
        return Err(rejected(400, invariants));
    }
    let violations = profiles::check(&value);
    if !violations.is_empty() {
        return Err(rejected(422, violations));
    }
    let mut document = json::parse_lossless(text)
        .map_err(|e| rejected(400, vec![OutcomeIssue::error("structure", e.to_string())]))?;
    let content = if kind.name == "Binary" {
        binary::take_data(&mut document).map_err(|issue| rejected(400, vec![issue]))?
    } else {
        None
    };
    Ok(Incoming {
        kind,
        id: value.get("id").and_then(Value::as_str).map(str::to_owned),
        document,
        content,
    })
}

/// Core invariants the structure check does not cover: safe narratives (txt-1) and no
/// contained resource inside a contained resource (dom-2).
fn resource_invariants(value: &Value, resource_type: &str) -> Vec<OutcomeIssue> {
    let mut issues = Vec::new();
    let check_narrative = |resource: &Value, at: &str, issues: &mut Vec<OutcomeIssue>| {
        if let Some(problem) = resource["text"]["div"]
            .as_str()
            .and_then(narrative::problem)
        {
            issues.push(
                OutcomeIssue::error("invariant", format!("txt-1: {problem}"))
                    .at(format!("{at}.text.div")),
            );
        }
    };
    check_narrative(value, resource_type, &mut issues);
    let contained = value["contained"].as_array().cloned().unwrap_or_default();
    for (i, resource) in contained.iter().enumerate() {
        let at = format!("{resource_type}.contained[{i}]");
        check_narrative(resource, &at, &mut issues);
        if resource.get("contained").is_some() {
            issues.push(
                OutcomeIssue::error(
                    "invariant",
                    "dom-2: a contained resource cannot contain resources",
                )
                .at(format!("{at}.contained")),
            );
        }
    }
    issues
}

/// A Binary sent as raw bytes with their own content type (not as FHIR JSON).
pub fn raw_binary(content_type: &str, bytes: Vec<u8>, id: Option<String>) -> Incoming {
    Incoming {
        kind: registry::lookup("Binary").expect("Binary is registered"),
        id,
        document: binary::raw_document(content_type),
        content: Some(bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_patient_is_accepted_with_exact_numbers() {
        let body = br#"{"resourceType":"Patient","name":[{"family":"L\u00e9vy-Dupr\u00e9"}],
            "identifier":[{"system":"urn:oid:1.2.250.1.213.1.4.8","value":"284022912345678"}],
            "extension":[{"url":"http://example.org/weight","valueDecimal":71.50}]}"#;
        let incoming = parse(body, "Patient").unwrap();
        assert_eq!(incoming.kind.name, "Patient");
        assert_eq!(incoming.id, None);
        assert!(json::to_text(&incoming.document, false).contains("71.50"));
    }

    #[test]
    fn errors_name_the_element() {
        let err = parse(
            br#"{"resourceType":"Patient","birthDate":"1980-13-01"}"#,
            "Patient",
        )
        .unwrap_err();
        assert_eq!(err.status, 400);
        assert_eq!(
            err.issues[0].expression.as_deref(),
            Some("Patient.birthDate")
        );
        let err = parse(br#"{"resourceType":"Patient","foo":1}"#, "Patient").unwrap_err();
        assert_eq!(err.issues[0].expression.as_deref(), Some("Patient.foo"));
    }

    #[test]
    fn unreadable_bodies_are_refused() {
        assert_eq!(parse(b"{", "Patient").unwrap_err().status, 400);
        assert_eq!(parse(b"\xff\xfe", "Patient").unwrap_err().status, 400);
        assert_eq!(parse(b"[]", "Patient").unwrap_err().status, 400);
    }

    #[test]
    fn profile_violations_are_422() {
        let err = parse(br#"{"resourceType":"Patient","active":true}"#, "Patient").unwrap_err();
        assert_eq!(err.status, 422);
        assert!(err.issues.iter().any(|i| i.code == "invariant"));
    }

    #[test]
    fn invariants_and_duplicate_keys_are_refused_at_their_element() {
        let script = br#"{"resourceType":"Patient","text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\"><script>x()</script></div>"}}"#;
        let err = parse(script, "Patient").unwrap_err();
        assert_eq!(
            err.issues[0].expression.as_deref(),
            Some("Patient.text.div")
        );
        let nested = br#"{"resourceType":"Patient","contained":[{"resourceType":"Organization","id":"o","contained":[{"resourceType":"Organization","id":"p"}]}]}"#;
        let err = parse(nested, "Patient").unwrap_err();
        assert_eq!(
            err.issues[0].expression.as_deref(),
            Some("Patient.contained[0].contained")
        );
        let twice =
            br#"{"resourceType":"Patient","birthDate":"1990-01-01","birthDate":"2000-01-01"}"#;
        let err = parse(twice, "Patient").unwrap_err();
        assert_eq!(
            err.issues[0].expression.as_deref(),
            Some("Patient.birthDate")
        );
    }

    #[test]
    fn a_body_of_another_type_is_400_at_resource_type() {
        let err = parse(br#"{"resourceType":"Observation"}"#, "Patient").unwrap_err();
        assert_eq!(err.status, 400);
        assert_eq!(err.issues[0].expression.as_deref(), Some("resourceType"));
    }

    #[test]
    fn types_outside_the_registry_are_refused() {
        let err = parse(
            br#"{"resourceType":"Observation","status":"final","code":{"text":"x"}}"#,
            "Observation",
        )
        .unwrap_err();
        assert_eq!(err.status, 422);
        assert_eq!(err.issues[0].code, "not-supported");
    }
}
