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

/// Most JSON elements (values and object members, see [`json::count_elements`]) in one body.
/// A parsed element costs far more memory than its text (a `{"family":"x"}` of 15 bytes
/// becomes ~200 bytes of tree), so a body of millions of tiny elements is refused before
/// parsing rather than multiplied in memory; real resources hold far fewer.
pub const MAX_ELEMENTS: usize = 100_000;

/// Bytes of request bodies being parsed at once across the server: a body waits until its
/// size fits, so a few concurrent bodies at the size limit cannot exhaust memory together.
const PARSE_BUDGET: usize = 64 * 1024 * 1024;

/// Refuses text with more than [`MAX_ELEMENTS`] elements, without parsing it.
pub fn check_element_count(text: &str) -> Result<(), Rejected> {
    let count = json::count_elements(text, MAX_ELEMENTS);
    if count > MAX_ELEMENTS {
        return Err(rejected(
            413,
            vec![OutcomeIssue::error(
                "too-costly",
                format!("The body holds more than {MAX_ELEMENTS} JSON elements"),
            )
            .at(ROOT_EXPRESSION)],
        ));
    }
    Ok(())
}

/// Expression used when the problem is the body as a whole.
const ROOT_EXPRESSION: &str = "$this";

/// Parses and validates a request body sent to the `expected` resource type's URL.
///
/// Bounded in memory: the element count is checked first, bodies parsed at once share
/// [`PARSE_BUDGET`], and each stage drops its copy of the document before the next makes one.
pub fn parse(body: &[u8], expected: &str) -> Result<Incoming, Rejected> {
    let _permit = gate::acquire(body.len(), PARSE_BUDGET);
    let text = std::str::from_utf8(body).map_err(|e| {
        rejected(
            400,
            vec![OutcomeIssue::error(
                "structure",
                format!("The body is not UTF-8: {e}"),
            )],
        )
    })?;
    check_element_count(text)?;
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
    let dropped = model::first_dropped_element(&value, &typed, &resource_type);
    drop(typed);
    if let Some(path) = dropped {
        return Err(rejected(
            400,
            vec![OutcomeIssue::error(
                "structure",
                format!(
                    "Element {path} is not part of the R4 {resource_type} model or holds a value it cannot read (such as a code outside its required value set)"
                ),
            )
            .at(path)],
        ));
    }
    let invariants = resource_invariants(&value, &resource_type);
    if !invariants.is_empty() {
        return Err(rejected(400, invariants));
    }
    if let Some(at) = conditional_reference(&value, &resource_type) {
        return Err(rejected(
            422,
            vec![OutcomeIssue::error(
                "not-supported",
                format!(
                    "{at} is a conditional reference (Type?criteria): Carnet resolves those only \
                     in a transaction Bundle, which it does not take yet; reference the resource \
                     by its id (search it first)"
                ),
            )
            .at(at)],
        ));
    }
    let violations = profiles::check(&value);
    if !violations.is_empty() {
        return Err(rejected(422, violations));
    }
    let id = value.get("id").and_then(Value::as_str).map(str::to_owned);
    drop(value);
    let mut document = json::parse_lossless(text)
        .map_err(|e| rejected(400, vec![OutcomeIssue::error("structure", e.to_string())]))?;
    let content = if kind.name == "Binary" {
        binary::take_data(&mut document).map_err(|issue| rejected(400, vec![issue]))?
    } else {
        None
    };
    Ok(Incoming {
        kind,
        id,
        document,
        content,
    })
}

/// A counting semaphore of bytes for [`parse`]. Parsing runs on blocking threads, so waiting
/// blocks one of them, never the async workers.
mod gate {
    use std::sync::{Condvar, Mutex};

    static IN_USE: Mutex<usize> = Mutex::new(0);
    static FREED: Condvar = Condvar::new();

    /// Bytes held while a body is parsed; released when dropped.
    pub struct Permit(usize);

    /// Waits until `bytes` (at most `budget`: a body larger than the budget runs alone) fit.
    pub fn acquire(bytes: usize, budget: usize) -> Permit {
        let weight = bytes.min(budget);
        let mut in_use = IN_USE.lock().unwrap_or_else(|e| e.into_inner());
        while *in_use + weight > budget {
            in_use = FREED.wait(in_use).unwrap_or_else(|e| e.into_inner());
        }
        *in_use += weight;
        Permit(weight)
    }

    impl Drop for Permit {
        fn drop(&mut self) {
            let mut in_use = IN_USE.lock().unwrap_or_else(|e| e.into_inner());
            *in_use -= self.0;
            FREED.notify_all();
        }
    }

    #[cfg(test)]
    pub fn in_use() -> usize {
        *IN_USE.lock().unwrap()
    }
}

/// Core invariants the structure check does not cover: safe narratives (txt-1) and no
/// contained resource inside a contained resource (dom-2).
/// The path of the first `reference` that is conditional (`Patient?identifier=…`). Outside a
/// transaction nothing resolves it, so it would name nobody: a document "for" a person by INS
/// would land outside their record, where neither its state nor its directives apply.
fn conditional_reference(value: &Value, at: &str) -> Option<String> {
    match value {
        Value::Object(object) => object.iter().find_map(|(key, item)| {
            let path = format!("{at}.{key}");
            match (key.as_str(), item) {
                ("reference", Value::String(reference)) => {
                    let (head, _) = reference.split_once('?')?;
                    let kind = head.rsplit('/').next().unwrap_or(head);
                    validate::is_known_resource_type(kind).then_some(path)
                }
                _ => conditional_reference(item, &path),
            }
        }),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| conditional_reference(item, &format!("{at}[{i}]"))),
        _ => None,
    }
}

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
    fn bodies_of_absurdly_many_elements_are_refused_before_parsing() {
        let names = vec![r#"{"family":"x"}"#; MAX_ELEMENTS].join(",");
        let body = format!(r#"{{"resourceType":"Patient","name":[{names}]}}"#);
        let err = parse(body.as_bytes(), "Patient").unwrap_err();
        assert_eq!(err.status, 413);
        assert_eq!(err.issues[0].code, "too-costly");
    }

    #[test]
    fn the_parse_gate_holds_bytes_until_released() {
        let budget = 1 << 40; // far above what other tests hold at once
        let before = gate::in_use();
        let a = gate::acquire(budget / 2, budget);
        assert!(gate::in_use() >= before + budget / 2);
        let released = std::thread::spawn(move || {
            // Waits for `a`: together they would pass the budget.
            let _b = gate::acquire(budget, budget);
        });
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(!released.is_finished());
        drop(a);
        released.join().unwrap();
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
