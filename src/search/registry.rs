//! The standard FHIR R4 search parameters of the resource types Carnet serves, as plain JSON
//! paths the indexer can follow without a FHIRPath engine.
//!
//! The data is `parameters.json`, generated from the official definitions by the test-only
//! `registry_gen` module (see there for its layout) and embedded in the binary.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::LazyLock;

/// The kind of a search parameter, deciding how its values are indexed and matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ParamType {
    String,
    Token,
    Date,
    Reference,
    Uri,
    Number,
    Quantity,
    Composite,
    Special,
}

impl ParamType {
    /// The FHIR code (`search-param-type`), as a CapabilityStatement spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            ParamType::String => "string",
            ParamType::Token => "token",
            ParamType::Date => "date",
            ParamType::Reference => "reference",
            ParamType::Uri => "uri",
            ParamType::Number => "number",
            ParamType::Quantity => "quantity",
            ParamType::Composite => "composite",
            ParamType::Special => "special",
        }
    }
}

/// One place in a resource where a parameter finds its values.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawPath")]
pub struct ParamPath {
    /// JSON property names from the resource root; arrays met on the way are flattened.
    /// Choice elements are already concrete (`deceasedDateTime`).
    pub steps: Vec<String>,
    /// FHIR datatype at the end of `steps` (`CodeableConcept`, `instant`, …). One entry today,
    /// since a choice element yields one path per type.
    pub datatypes: Vec<String>,
    /// `where(resolve() is Patient)`: only references to this resource type count.
    pub only_target: Option<String>,
    /// `where(system='phone')`: only values whose property (first) equals the text (second).
    pub filter: Option<(String, String)>,
}

/// A search parameter of one resource type.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchParam {
    pub code: String,
    #[serde(rename = "type")]
    pub kind: ParamType,
    /// Empty when `unsupported`.
    #[serde(default)]
    pub paths: Vec<ParamPath>,
    /// Resource types a reference parameter may point to (empty for other kinds).
    #[serde(default, rename = "target")]
    pub targets: Vec<String>,
    /// Why Carnet cannot evaluate this parameter; the server should answer 400 with it
    /// rather than ignore the parameter and return too much.
    #[serde(default)]
    pub unsupported: Option<String>,
}

/// `parameters.json` as written, before the `where` object becomes a pair.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawPath {
    steps: Vec<String>,
    datatypes: Vec<String>,
    #[serde(default)]
    only_target: Option<String>,
    #[serde(default, rename = "where")]
    filter: Option<BTreeMap<String, String>>,
}

impl TryFrom<RawPath> for ParamPath {
    type Error = String;

    fn try_from(raw: RawPath) -> Result<Self, String> {
        let filter = match raw.filter {
            None => None,
            Some(filter) if filter.len() == 1 => filter.into_iter().next(),
            Some(_) => return Err("a `where` filter must test exactly one property".into()),
        };
        Ok(ParamPath {
            steps: raw.steps,
            datatypes: raw.datatypes,
            only_target: raw.only_target,
            filter,
        })
    }
}

/// The whole file; its `fhirVersion` is informative only.
#[derive(Deserialize)]
struct Registry {
    /// Resource type → parameters sorted by code (as generated).
    resources: BTreeMap<String, Vec<SearchParam>>,
}

static REGISTRY: LazyLock<Registry> = LazyLock::new(|| {
    serde_json::from_str(include_str!("parameters.json"))
        .unwrap_or_else(|problem| panic!("search/parameters.json is unusable: {problem}"))
});

/// The parameter `code` of `resource_type`, if the type is served and defines it.
pub fn lookup(resource_type: &str, code: &str) -> Option<&'static SearchParam> {
    let params = params_of(resource_type);
    params
        .binary_search_by(|param| param.code.as_str().cmp(code))
        .ok()
        .map(|index| &params[index])
}

/// Every parameter of `resource_type`, sorted by code; empty for a type Carnet does not serve.
pub fn params_of(resource_type: &str) -> &'static [SearchParam] {
    REGISTRY
        .resources
        .get(resource_type)
        .map_or(&[], Vec::as_slice)
}

/// The resource types the registry describes, sorted by name.
pub fn resource_types() -> impl Iterator<Item = &'static str> {
    REGISTRY.resources.keys().map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn param(resource_type: &str, code: &str) -> &'static SearchParam {
        lookup(resource_type, code).unwrap_or_else(|| panic!("{resource_type}.{code} is missing"))
    }

    /// The single path of a supported parameter, as (steps, datatype).
    fn only_path(resource_type: &str, code: &str) -> (Vec<&'static str>, &'static str) {
        let param = param(resource_type, code);
        assert_eq!(param.unsupported, None, "{resource_type}.{code}");
        let [path] = param.paths.as_slice() else {
            panic!("{resource_type}.{code} has {} paths", param.paths.len());
        };
        let steps = path.steps.iter().map(String::as_str).collect();
        (steps, path.datatypes[0].as_str())
    }

    #[test]
    fn serves_the_thirteen_types_with_sorted_codes() {
        let types: Vec<_> = resource_types().collect();
        assert_eq!(types.len(), 13);
        assert!(types.contains(&"Binary") && types.contains(&"AuditEvent"));
        for resource_type in types {
            let codes: Vec<_> = params_of(resource_type).iter().map(|p| &p.code).collect();
            assert!(codes.windows(2).all(|w| w[0] < w[1]), "{resource_type}");
            assert!(lookup(resource_type, "_id").is_some(), "{resource_type}");
            for param in params_of(resource_type) {
                assert_eq!(
                    param.unsupported.is_some(),
                    param.paths.is_empty(),
                    "{}",
                    param.code
                );
            }
        }
        assert!(params_of("Observation").is_empty());
        assert!(lookup("Patient", "no-such-code").is_none());
    }

    #[test]
    fn common_parameters_apply_to_every_type() {
        assert_eq!(
            only_path("Binary", "_lastUpdated"),
            (vec!["meta", "lastUpdated"], "instant")
        );
        assert_eq!(only_path("Patient", "_id"), (vec!["id"], "string"));
        assert_eq!(
            only_path("Consent", "_tag"),
            (vec!["meta", "tag"], "Coding")
        );
        assert_eq!(
            only_path("List", "_security"),
            (vec!["meta", "security"], "Coding")
        );
        assert_eq!(
            only_path("Organization", "_profile"),
            (vec!["meta", "profile"], "canonical")
        );
        assert_eq!(
            only_path("AuditEvent", "_source"),
            (vec!["meta", "source"], "uri")
        );
        assert_eq!(param("Patient", "_lastUpdated").kind, ParamType::Date);
        // Binary is not a DomainResource: it has no narrative to search.
        assert!(lookup("Binary", "_text").is_none());
        assert!(param("Patient", "_text").unsupported.is_some());
    }

    #[test]
    fn document_reference() {
        let patient = param("DocumentReference", "patient");
        assert_eq!(patient.kind, ParamType::Reference);
        assert_eq!(patient.targets, ["Patient"]);
        assert_eq!(patient.paths[0].steps, ["subject"]);
        assert_eq!(patient.paths[0].only_target.as_deref(), Some("Patient"));
        assert_eq!(
            param("DocumentReference", "subject").paths[0].only_target,
            None
        );
        assert_eq!(
            only_path("DocumentReference", "date"),
            (vec!["date"], "instant")
        );
        assert_eq!(
            only_path("DocumentReference", "period"),
            (vec!["context", "period"], "Period")
        );
        assert_eq!(
            only_path("DocumentReference", "type"),
            (vec!["type"], "CodeableConcept")
        );
        assert_eq!(
            only_path("DocumentReference", "category"),
            (vec!["category"], "CodeableConcept")
        );
        assert_eq!(
            only_path("DocumentReference", "contenttype"),
            (vec!["content", "attachment", "contentType"], "code")
        );
        assert_eq!(
            only_path("DocumentReference", "author"),
            (vec!["author"], "Reference")
        );
        let identifier = param("DocumentReference", "identifier");
        let steps: Vec<_> = identifier.paths.iter().map(|p| p.steps.join(".")).collect();
        assert_eq!(steps, ["masterIdentifier", "identifier"]);
        assert_eq!(
            param("DocumentReference", "relationship").kind,
            ParamType::Composite
        );
    }

    #[test]
    fn patient() {
        assert_eq!(
            only_path("Patient", "identifier"),
            (vec!["identifier"], "Identifier")
        );
        assert_eq!(only_path("Patient", "name"), (vec!["name"], "HumanName"));
        assert_eq!(
            only_path("Patient", "family"),
            (vec!["name", "family"], "string")
        );
        assert_eq!(
            only_path("Patient", "given"),
            (vec!["name", "given"], "string")
        );
        assert_eq!(
            only_path("Patient", "birthdate"),
            (vec!["birthDate"], "date")
        );
        assert_eq!(
            only_path("Patient", "address"),
            (vec!["address"], "Address")
        );
        assert_eq!(only_path("Patient", "gender"), (vec!["gender"], "code"));
        assert_eq!(only_path("Patient", "active"), (vec!["active"], "boolean"));
        assert_eq!(
            only_path("Patient", "death-date"),
            (vec!["deceasedDateTime"], "dateTime")
        );
        let phone = &param("Patient", "phone").paths[0];
        assert_eq!(phone.steps, ["telecom"]);
        assert_eq!(phone.datatypes, ["ContactPoint"]);
        assert_eq!(phone.filter, Some(("system".into(), "phone".into())));
        assert_eq!(param("Patient", "telecom").paths[0].filter, None);
        let organization = param("Patient", "organization");
        assert_eq!(organization.paths[0].steps, ["managingOrganization"]);
        assert_eq!(organization.targets, ["Organization"]);
    }

    #[test]
    fn consent_audit_event_appointment() {
        assert_eq!(
            only_path("Consent", "patient"),
            (vec!["patient"], "Reference")
        );
        assert_eq!(only_path("Consent", "date"), (vec!["dateTime"], "dateTime"));
        assert_eq!(
            only_path("Consent", "period"),
            (vec!["provision", "period"], "Period")
        );
        assert_eq!(
            only_path("Consent", "actor"),
            (vec!["provision", "actor", "reference"], "Reference")
        );
        // `Consent.source` is a choice: only its Reference form is a reference.
        assert_eq!(
            only_path("Consent", "source-reference"),
            (vec!["sourceReference"], "Reference")
        );
        assert_eq!(
            only_path("AuditEvent", "agent"),
            (vec!["agent", "who"], "Reference")
        );
        assert_eq!(
            only_path("AuditEvent", "entity"),
            (vec!["entity", "what"], "Reference")
        );
        assert_eq!(
            only_path("AuditEvent", "date"),
            (vec!["recorded"], "instant")
        );
        assert_eq!(only_path("AuditEvent", "type"), (vec!["type"], "Coding"));
        let patient = param("AuditEvent", "patient");
        assert_eq!(patient.paths.len(), 2);
        assert!(patient
            .paths
            .iter()
            .all(|p| p.only_target.as_deref() == Some("Patient")));
        assert_eq!(only_path("Appointment", "date"), (vec!["start"], "instant"));
        assert_eq!(
            only_path("Appointment", "actor"),
            (vec!["participant", "actor"], "Reference")
        );
        assert_eq!(
            param("Appointment", "practitioner").paths[0]
                .only_target
                .as_deref(),
            Some("Practitioner")
        );
    }

    #[test]
    fn other_types() {
        assert_eq!(
            only_path("Communication", "patient"),
            (vec!["subject"], "Reference")
        );
        assert_eq!(
            only_path("Communication", "sent"),
            (vec!["sent"], "dateTime")
        );
        assert_eq!(
            only_path("Communication", "instantiates-canonical"),
            (vec!["instantiatesCanonical"], "canonical")
        );
        assert_eq!(
            only_path("List", "item"),
            (vec!["entry", "item"], "Reference")
        );
        assert_eq!(
            only_path("List", "notes"),
            (vec!["note", "text"], "markdown")
        );
        assert_eq!(only_path("List", "code"), (vec!["code"], "CodeableConcept"));
        assert_eq!(
            only_path("PractitionerRole", "role"),
            (vec!["code"], "CodeableConcept")
        );
        assert_eq!(
            only_path("PractitionerRole", "date"),
            (vec!["period"], "Period")
        );
        assert_eq!(
            only_path("PractitionerRole", "practitioner"),
            (vec!["practitioner"], "Reference")
        );
        assert_eq!(
            only_path("RelatedPerson", "patient"),
            (vec!["patient"], "Reference")
        );
        assert_eq!(param("RelatedPerson", "patient").targets, ["Patient"]);
        assert_eq!(
            only_path("Practitioner", "family"),
            (vec!["name", "family"], "string")
        );
        assert_eq!(
            only_path("AllergyIntolerance", "onset"),
            (vec!["reaction", "onset"], "dateTime")
        );
        let name = param("Organization", "name");
        let steps: Vec<_> = name.paths.iter().map(|p| p.steps.join(".")).collect();
        assert_eq!(steps, ["name", "alias"]);
    }

    /// Every parameter the server must refuse, with its reason, so the list gets reviewed.
    #[test]
    fn unsupported_parameters_are_known() {
        let mut unsupported = BTreeMap::<(&str, &str), Vec<&str>>::new();
        for resource_type in resource_types() {
            for param in params_of(resource_type) {
                if let Some(reason) = &param.unsupported {
                    unsupported
                        .entry((&param.code, reason))
                        .or_default()
                        .push(resource_type);
                }
            }
        }
        let every_type: Vec<_> = resource_types().collect();
        let domain_types: Vec<_> = resource_types().filter(|&t| t != "Binary").collect();
        let phonetic = vec!["Organization", "Patient", "Practitioner", "RelatedPerson"];
        let expected = BTreeMap::from([
            (
                ("_content", "full-text search is not supported"),
                every_type.clone(),
            ),
            (("_query", "named queries are not supported"), every_type),
            (
                ("_text", "searching the narrative is not supported"),
                domain_types,
            ),
            (
                (
                    "deceased",
                    concat!(
                        "`Patient.deceased.exists() and Patient.deceased != false` ",
                        "is not a simple path"
                    ),
                ),
                vec!["Patient"],
            ),
            (("phonetic", "phonetic matching is not supported"), phonetic),
            (
                ("relationship", "composite parameters are not supported"),
                vec!["DocumentReference"],
            ),
        ]);
        assert_eq!(unsupported, expected);
    }
}
