//! Binary resources: their bytes are stored apart from the JSON body, never as base64 text.

use super::outcome::OutcomeIssue;
use base64::Engine;
use serde_json::{json, Map, Value};

/// Takes `data` out of a Binary document and decodes it.
pub fn take_data(document: &mut Value) -> Result<Option<Vec<u8>>, OutcomeIssue> {
    let Some(data) = document.as_object_mut().and_then(|o| o.remove("data")) else {
        return Ok(None);
    };
    // base64Binary allows whitespace (MIME line wrapping); the decoder does not.
    let text: String = data
        .as_str()
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map(Some)
        .map_err(|e| {
            OutcomeIssue::error("value", format!("Binary.data is not base64: {e}"))
                .at("Binary.data")
        })
}

/// The Binary document for raw bytes posted with their own content type.
pub fn raw_document(content_type: &str) -> Value {
    json!({"resourceType": "Binary", "contentType": content_type})
}

/// Whether a Content-Type header names a media type (`type/subtype`, parameters allowed).
pub fn is_media_type(header: &str) -> bool {
    let essence = header.split(';').next().unwrap_or("").trim();
    matches!(essence.split_once('/'), Some((t, s)) if !t.is_empty() && !s.is_empty())
}

/// Puts `content` back into a stored Binary document as base64 `data`, in element order
/// (no `data` for empty content: FHIR forbids empty strings).
pub fn with_data(document: &Value, content: &[u8]) -> Value {
    let Some(fields) = document.as_object().filter(|_| !content.is_empty()) else {
        return document.clone();
    };
    let mut out = Map::new();
    for (key, value) in fields {
        out.insert(key.clone(), value.clone());
    }
    out.insert(
        "data".into(),
        Value::String(base64::engine::general_purpose::STANDARD.encode(content)),
    );
    Value::Object(out)
}

/// The `contentType` of a stored Binary document, usable as an HTTP header value
/// (`application/octet-stream` when it is not one).
pub fn content_type(document: &Value) -> String {
    document
        .get("contentType")
        .and_then(Value::as_str)
        .filter(|ct| ct.bytes().all(|b| (0x20..0x7f).contains(&b)) && ct.contains('/'))
        .unwrap_or("application/octet-stream")
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_round_trips_through_bytes() {
        let mut doc =
            json!({"resourceType": "Binary", "contentType": "text/plain", "data": "Qm9uam91cg=="});
        let bytes = take_data(&mut doc).unwrap().unwrap();
        assert_eq!(bytes, b"Bonjour");
        assert!(doc.get("data").is_none());
        assert_eq!(with_data(&doc, &bytes)["data"], "Qm9uam91cg==");
        assert_eq!(content_type(&doc), "text/plain");
        let odd = json!({"contentType": "texte/é"});
        assert_eq!(content_type(&odd), "application/octet-stream");
    }

    #[test]
    fn wrapped_base64_and_media_types() {
        let mut doc = json!({"resourceType": "Binary", "contentType": "text/plain", "data": "Qm9u\nam91cg=="});
        assert_eq!(take_data(&mut doc).unwrap().unwrap(), b"Bonjour");
        assert!(is_media_type("text/plain; charset=utf-8"));
        assert!(!is_media_type(";x=1") && !is_media_type("text") && !is_media_type(""));
        assert!(with_data(&doc, b"").get("data").is_none());
    }

    #[test]
    fn bad_base64_names_the_element() {
        let mut doc = json!({"resourceType": "Binary", "contentType": "text/plain", "data": "!!"});
        assert_eq!(
            take_data(&mut doc).unwrap_err().expression.as_deref(),
            Some("Binary.data")
        );
    }
}
