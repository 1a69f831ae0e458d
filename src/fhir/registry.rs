//! The resource types Carnet serves: one line each.

/// How the server handles one resource type.
#[derive(Debug)]
pub struct ResourceKind {
    pub name: &'static str,
    /// Reference elements (paths below the resource) that place it in a patient's compartment,
    /// from the patient CompartmentDefinition; `Patient` is its own compartment.
    pub compartment: &'static [&'static str],
    /// Elements (of type Identifier) behind the `identifier` search parameter, which
    /// conditional interactions use.
    pub identifier: &'static [&'static str],
    /// Written by the server only: clients may read, never write.
    pub server_written: bool,
}

const fn kind(
    name: &'static str,
    compartment: &'static [&'static str],
    identifier: &'static [&'static str],
    server_written: bool,
) -> ResourceKind {
    ResourceKind {
        name,
        compartment,
        identifier,
        server_written,
    }
}

/// Every resource type Carnet serves.
pub static RESOURCES: &[ResourceKind] = &[
    kind("Patient", &[], &["identifier"], false),
    kind(
        "DocumentReference",
        &["subject", "author"],
        &["masterIdentifier", "identifier"],
        false,
    ),
    kind(
        "AllergyIntolerance",
        &["patient", "recorder", "asserter"],
        &["identifier"],
        false,
    ),
    kind("Consent", &["patient"], &["identifier"], false),
    kind(
        "Communication",
        &["subject", "sender", "recipient"],
        &["identifier"],
        false,
    ),
    kind(
        "Appointment",
        &["participant.actor"],
        &["identifier"],
        false,
    ),
    kind("Binary", &[], &[], false),
    kind("List", &["subject", "source"], &["identifier"], false),
    kind("Practitioner", &[], &["identifier"], false),
    kind("PractitionerRole", &[], &["identifier"], false),
    kind("Organization", &[], &["identifier"], false),
    kind("RelatedPerson", &["patient"], &["identifier"], false),
    kind("AuditEvent", &["agent.who", "entity.what"], &[], true),
];

/// Every type Carnet serves.
pub fn all() -> &'static [ResourceKind] {
    RESOURCES
}

/// The kind registered under `name`, if Carnet serves that type.
pub fn lookup(name: &str) -> Option<&'static ResourceKind> {
    RESOURCES.iter().find(|k| k.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// An official FHIR R4 definition file, or `None` (reported) when the folder is absent.
    fn official(file: &str, check: &str) -> Option<Value> {
        let path = crate::fhir::hl7_source::dir(check)?.join(file);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        Some(serde_json::from_str(&text).unwrap())
    }

    /// The compartment paths above must be exactly those the official definitions give.
    #[test]
    fn compartments_match_the_patient_compartment_definition() {
        let check = "compartments_match_the_patient_compartment_definition";
        let Some(compartment) = official("compartmentdefinition-patient.json", check) else {
            return;
        };
        let parameters = official("search-parameters.json", check).unwrap();
        for kind in RESOURCES.iter().filter(|k| k.name != "Patient") {
            let params: Vec<&str> = compartment["resource"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["code"] == kind.name)
                .and_then(|r| r["param"].as_array())
                .map(|ps| ps.iter().map(|p| p.as_str().unwrap()).collect())
                .unwrap_or_default();
            let mut paths = Vec::new();
            for param in params {
                let definition = parameters["entry"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| &e["resource"])
                    .find(|r| {
                        r["code"] == param
                            && r["base"].as_array().unwrap().iter().any(|b| b == kind.name)
                    })
                    .unwrap_or_else(|| panic!("no parameter {param} on {}", kind.name));
                let prefix = format!("{}.", kind.name);
                for expression in definition["expression"].as_str().unwrap().split(" | ") {
                    if let Some(path) = expression.strip_prefix(&prefix) {
                        let path = path.replace(".where(resolve() is Patient)", "");
                        let path = path.trim_end_matches(".reference").to_owned();
                        if !paths.contains(&path) {
                            paths.push(path);
                        }
                    }
                }
            }
            assert_eq!(kind.compartment, paths.as_slice(), "{}", kind.name);
        }
    }

    /// The identifier paths above must be exactly the `identifier` search parameter's.
    #[test]
    fn identifier_paths_match_the_search_parameter() {
        let check = "identifier_paths_match_the_search_parameter";
        let Some(parameters) = official("search-parameters.json", check) else {
            return;
        };
        for kind in RESOURCES {
            let prefix = format!("{}.", kind.name);
            let paths: Vec<&str> = parameters["entry"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| &e["resource"])
                .filter(|r| {
                    r["code"] == "identifier"
                        && r["base"].as_array().unwrap().iter().any(|b| b == kind.name)
                })
                .flat_map(|r| r["expression"].as_str().unwrap().split(" | "))
                .filter_map(|e| e.strip_prefix(&prefix))
                .collect();
            assert_eq!(kind.identifier, paths.as_slice(), "{}", kind.name);
        }
    }

    #[test]
    fn every_registered_type_has_a_definition() {
        for kind in RESOURCES {
            assert!(
                crate::fhir::validate::is_known_resource_type(kind.name),
                "{}",
                kind.name
            );
        }
        assert!(lookup("Observation").is_none());
    }
}
