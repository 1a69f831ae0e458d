//! The typed R4 model (fhir-sdk, R4B models: the resources Carnet serves are unchanged from R4).
//!
//! The only place that instantiates fhir-sdk types, so its heavy generated code is compiled once.

use fhir_sdk::r4b::resources::Resource;
use serde_json::Value;

/// Parses `value` through the typed model and returns the model's own JSON rendering of it.
/// fhir-sdk drops elements it does not know, so the caller compares the two.
pub fn round_trip(value: &Value) -> Result<Value, String> {
    let resource: Resource = serde_json::from_value(value.clone()).map_err(|e| e.to_string())?;
    serde_json::to_value(&resource).map_err(|e| e.to_string())
}

/// The first element of `input` that is absent from `output`, as a FHIRPath-like location.
pub fn first_dropped_element(input: &Value, output: &Value, path: &str) -> Option<String> {
    match (input, output) {
        (Value::Object(a), Value::Object(b)) => {
            a.iter().find_map(|(key, value)| match b.get(key) {
                None => Some(format!("{path}.{key}")),
                Some(other) => first_dropped_element(value, other, &format!("{path}.{key}")),
            })
        }
        (Value::Array(a), Value::Array(b)) => {
            if a.len() != b.len() {
                return Some(path.to_owned());
            }
            a.iter()
                .zip(b)
                .enumerate()
                .find_map(|(i, (x, y))| first_dropped_element(x, y, &format!("{path}[{i}]")))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn typed_model_round_trips_a_document_reference() {
        let doc = json!({
            "resourceType": "DocumentReference",
            "status": "current",
            "subject": {"reference": "Patient/p1"},
            "content": [{"attachment": {"contentType": "application/pdf", "url": "Binary/b1"}}],
            "extension": [{"url": "http://example.org/x", "valueDecimal": 1.5}]
        });
        let out = round_trip(&doc).unwrap();
        assert_eq!(first_dropped_element(&doc, &out, "DocumentReference"), None);
    }

    #[test]
    fn dropped_elements_are_found() {
        let a = json!({"name": [{"family": "Durand", "x": 1}]});
        let b = json!({"name": [{"family": "Durand"}]});
        assert_eq!(
            first_dropped_element(&a, &b, "Patient"),
            Some("Patient.name[0].x".into())
        );
    }

    #[test]
    fn typed_model_rejects_wrong_types() {
        assert!(round_trip(&json!({"resourceType": "Patient", "active": "yes"})).is_err());
    }
}
