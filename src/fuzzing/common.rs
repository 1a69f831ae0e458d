//! What several targets share: picking the resource type an input is about, reading a query
//! or a patch target's input, and the intake pipeline a patched document goes through before
//! it is stored (as `fhir::writes` does).

use crate::fhir::{incoming, json, registry};
use serde_json::Value;

/// The served type named by `name`, else Patient (the type most inputs are about).
pub(super) fn kind(name: &str) -> &'static registry::ResourceKind {
    registry::lookup(name)
        .or_else(|| registry::lookup("Patient"))
        .expect("Patient is served")
}

/// What a query target reads of its input: `Type?query` (the form of an `If-None-Exist`
/// header, or a seed naming its type) as the served type and the query's pairs, decoded as
/// the server decodes a query string; without a known type, Patient and the whole text as
/// the query. `None` for input that is not UTF-8 or not a query string.
pub(super) fn query_input(
    data: &[u8],
) -> Option<(&'static registry::ResourceKind, Vec<(String, String)>)> {
    let text = std::str::from_utf8(data).ok()?;
    let (kind, query) = match text.split_once('?') {
        Some((name, query)) if registry::lookup(name).is_some() => (kind(name), query),
        _ => (kind("Patient"), text),
    };
    Some((kind, serde_urlencoded::from_str(query).ok()?))
}

/// Every document the server writes back is valid JSON (issue 11, item 6).
pub(super) fn assert_renders(document: &Value) {
    let text = json::to_text(document, false);
    if let Err(e) = serde_json::from_str::<Value>(&text) {
        panic!("rendered document is not JSON ({e}): {text:?}");
    }
}

/// A patched resource goes through the same intake as a body: render, parse, validate.
pub(super) fn intake(document: &Value, kind: &registry::ResourceKind) {
    assert_renders(document);
    let text = json::to_text(document, false);
    if let Ok(accepted) = incoming::parse(text.as_bytes(), kind.name) {
        assert_renders(&accepted.document);
    }
}

/// Bound of a patched document's size (the server uses `limits.body_max_bytes`).
pub(super) const MAX_PATCHED_BYTES: usize = 1 << 20;

/// What a patch target reads of its input: the resource to patch, read losslessly as the
/// server reads a stored body (a stored Patient, or the one the input brings with
/// `{"resource": …, "patch": …}`), its served type, and the patch (read with serde_json, as
/// the server reads a patch body); `None` for input that is not JSON.
pub(super) fn patch_input(data: &[u8]) -> Option<(Value, &'static registry::ResourceKind, Value)> {
    let text = std::str::from_utf8(data).ok()?;
    let input = serde_json::from_str::<Value>(text).ok()?;
    let (resource, patch) = target_and_patch(input);
    let resource = json::parse_lossless(&resource.to_string()).ok()?;
    let kind = kind(resource["resourceType"].as_str().unwrap_or_default());
    Some((resource, kind, patch))
}

/// The resource to patch and the patch.
fn target_and_patch(input: Value) -> (Value, Value) {
    match input {
        Value::Object(mut fields) if fields.contains_key("patch") => {
            let patch = fields.remove("patch").unwrap_or_default();
            let resource = fields.remove("resource").unwrap_or_else(base_patient);
            (resource, patch)
        }
        patch => (base_patient(), patch),
    }
}

/// A stored Patient with repeating, nested and primitive-extension elements to aim at.
fn base_patient() -> Value {
    json::parse_lossless(
        r#"{"resourceType":"Patient","id":"p1","meta":{"versionId":"1"},
        "identifier":[{"system":"urn:oid:1.2.250.1.213.1.4.8","value":"1234567890123"}],
        "name":[{"family":"Martin","given":["Anne","Marie"]}],
        "gender":"female","birthDate":"1980-02-03",
        "_birthDate":{"extension":[{"url":"http://example.org/x","valueDecimal":1.50}]},
        "telecom":[{"system":"phone","value":"0102030405"}],
        "contact":[{"name":{"family":"Durand"},"telecom":[{"system":"email","value":"a@b.fr"}]}],
        "text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">Anne</div>"}}"#,
    )
    .expect("the base Patient is JSON")
}
