//! The typed R4 model (fhir-sdk, R4B models: the resources Carnet serves are unchanged from R4).
//!
//! The only place that instantiates fhir-sdk types, so its heavy generated code is compiled once.

use fhir_sdk::r4b::resources as r;
use serde::Deserialize;
use serde_json::Value;

/// Why the typed model refused a resource.
#[derive(Debug)]
pub struct ModelError {
    pub message: String,
    /// Where, as a FHIRPath-like location (`Patient.name[0].given[1]`), when it can be told.
    pub at: Option<String>,
}

/// Parses `value` through the typed model and returns the model's own JSON rendering of it.
/// fhir-sdk drops elements it does not know, so the caller compares the two. Reads `value` in
/// place (no copy of the document).
pub fn round_trip(value: &Value) -> Result<Value, ModelError> {
    let resource = r::Resource::deserialize(value).map_err(|e| ModelError {
        message: e.to_string(),
        at: locate(value),
    })?;
    serde_json::to_value(&resource).map_err(|e| ModelError {
        message: e.to_string(),
        at: None,
    })
}

/// Where the typed model fails on `value`: deserialized again as its own type (the
/// `Resource` enum is tagged by `resourceType`, which hides the path), tracking the path.
fn locate(value: &Value) -> Option<String> {
    fn path<T: for<'de> Deserialize<'de>>(value: &Value) -> Option<String> {
        let error = serde_path_to_error::deserialize::<_, T>(value).err()?;
        let path = error.path().to_string();
        // `.` is the document itself; `?` stands for a segment the tracker cannot name (inside
        // a contained resource, itself a tagged enum): keep the part before it.
        let known = path[..path.find('?').unwrap_or(path.len())].trim_end_matches('.');
        (!known.is_empty()).then(|| known.to_owned())
    }
    let resource_type = value.get("resourceType")?.as_str()?;
    let inner = match resource_type {
        "Patient" => path::<r::Patient>(value),
        "DocumentReference" => path::<r::DocumentReference>(value),
        "AllergyIntolerance" => path::<r::AllergyIntolerance>(value),
        "Consent" => path::<r::Consent>(value),
        "Communication" => path::<r::Communication>(value),
        "Appointment" => path::<r::Appointment>(value),
        "Binary" => path::<r::Binary>(value),
        "List" => path::<r::List>(value),
        "Practitioner" => path::<r::Practitioner>(value),
        "PractitionerRole" => path::<r::PractitionerRole>(value),
        "Organization" => path::<r::Organization>(value),
        "RelatedPerson" => path::<r::RelatedPerson>(value),
        "AuditEvent" => path::<r::AuditEvent>(value),
        "Parameters" => path::<r::Parameters>(value),
        _ => None,
    };
    Some(match inner {
        Some(inner) => match within_contained(value, &inner) {
            Some(deeper) => format!("{resource_type}.{deeper}"),
            None => format!("{resource_type}.{inner}"),
        },
        None => resource_type.to_owned(),
    })
}

/// For a failure located at `contained[i]` (the tracker stops at the tagged enum), the path
/// inside that contained resource, located as a resource of its own: `contained[0].gender`.
fn within_contained(value: &Value, inner: &str) -> Option<String> {
    let index: usize = inner
        .strip_prefix("contained[")?
        .strip_suffix(']')?
        .parse()
        .ok()?;
    let contained = value.get("contained")?.get(index)?;
    let located = locate(contained)?;
    let (_, rest) = located.split_once('.')?;
    Some(format!("{inner}.{rest}"))
}

/// The first element of `input` that is absent from `output`, as a FHIRPath-like location.
pub fn first_dropped_element(input: &Value, output: &Value, path: &str) -> Option<String> {
    match (input, output) {
        (Value::Object(a), Value::Object(b)) => {
            a.iter().find_map(|(key, value)| match b.get(key) {
                None => Some(match inside_choice(key, value) {
                    Some(inner) => format!("{path}.{key}.{inner}"),
                    None => format!("{path}.{key}"),
                }),
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

/// Where a choice element's value (`valueAddress`) fails as its data type. fhir-sdk drops a
/// choice value it cannot read instead of failing, so the drop is all the caller sees; this
/// names the element inside it (`valueAddress.use`). Covers the data types whose elements
/// carry required codes, the usual reason for such a drop.
fn inside_choice(key: &str, value: &Value) -> Option<String> {
    use fhir_sdk::r4b::types as t;
    fn path<T: for<'de> Deserialize<'de>>(value: &Value) -> Option<String> {
        let error = serde_path_to_error::deserialize::<_, T>(value).err()?;
        let path = error.path().to_string();
        let known = path[..path.find('?').unwrap_or(path.len())].trim_end_matches('.');
        (!known.is_empty() && known != ".").then(|| known.to_owned())
    }
    macro_rules! by_suffix {
        ($($name:ident),*) => {
            $(if key.ends_with(stringify!($name)) {
                return path::<t::$name>(value);
            })*
        };
    }
    by_suffix!(
        Address,
        Age,
        ContactPoint,
        Count,
        Distance,
        Duration,
        HumanName,
        Identifier,
        Money,
        Quantity,
        Range,
        Ratio,
        Timing,
        ContactDetail,
        Dosage,
        RelatedArtifact,
        DataRequirement,
        ParameterDefinition,
        TriggerDefinition,
        UsageContext,
        Expression
    );
    None
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
    fn an_unreadable_choice_value_is_located_inside_it() {
        let doc = json!({"resourceType": "Patient", "extension": [
            {"url": "https://x.fr/e", "valueString": "a"},
            {"url": "https://x.fr/e", "valueAddress": {"line": ["1"], "use": "bogus"}}]});
        let out = round_trip(&doc).unwrap();
        assert_eq!(
            first_dropped_element(&doc, &out, "Patient").as_deref(),
            Some("Patient.extension[1].valueAddress.use")
        );
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
    fn typed_model_rejects_wrong_types_at_their_element() {
        let err = round_trip(&json!({"resourceType": "Patient", "active": "yes"})).unwrap_err();
        assert_eq!(err.at.as_deref(), Some("Patient.active"));
        let err = round_trip(&json!({"resourceType": "Patient", "gender": "robot"})).unwrap_err();
        assert_eq!(err.at.as_deref(), Some("Patient.gender"));
        let err = round_trip(&json!({"resourceType": "Patient",
            "name": [{"family": "a"}, {"use": "nickname"}, {"use": "bogus"}]}))
        .unwrap_err();
        assert_eq!(err.at.as_deref(), Some("Patient.name[2].use"));
        let err = round_trip(&json!({"resourceType": "Patient",
            "contained": [{"resourceType": "Organization", "active": "x"}]}))
        .unwrap_err();
        assert_eq!(err.at.as_deref(), Some("Patient.contained[0].active"));
        let err = round_trip(&json!({"resourceType": "Patient", "contained": [
            {"resourceType": "Organization", "id": "o"},
            {"resourceType": "Practitioner", "name": [{"use": "bogus"}]}]}))
        .unwrap_err();
        assert_eq!(err.at.as_deref(), Some("Patient.contained[1].name[0].use"));
    }
}
