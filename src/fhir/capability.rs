//! The CapabilityStatement, generated from what the server implements.

use super::registry::RESOURCES;
use serde_json::{json, Value};

/// Interactions every client-writable type supports.
const WRITABLE: &[&str] = &[
    "read",
    "vread",
    "update",
    "patch",
    "delete",
    "history-instance",
    "history-type",
    "create",
    "search-type",
];
/// Interactions of server-written types (clients read only).
const READ_ONLY: &[&str] = &[
    "read",
    "vread",
    "history-instance",
    "history-type",
    "search-type",
];

/// The SMART extension that tells clients where to get tokens.
pub const OAUTH_URIS: &str =
    "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris";

/// Builds the CapabilityStatement for a server at `base_url`, dated `date` (its start time);
/// `cors` says whether browser origins are allowed.
pub fn capability_statement(base_url: &str, update_create: bool, date: &str, cors: bool) -> Value {
    let resources: Vec<Value> = RESOURCES
        .iter()
        .map(|kind| {
            let interactions: Vec<&str> = if kind.server_written { READ_ONLY } else { WRITABLE }
                .iter()
                .copied()
                // Binary content is replaced with PUT; it has no JSON elements to patch.
                .filter(|code| !(kind.name == "Binary" && *code == "patch"))
                .collect();
            let profiles: Vec<&str> = super::profiles::for_type(kind.name)
                .map(|p| p.url.as_str())
                .collect();
            // Only the parameters the search engine serves; the others are refused with 400.
            let search_params: Vec<Value> = crate::search::registry::params_of(kind.name)
                .iter()
                .filter(|p| p.unsupported.is_none())
                .map(|p| json!({"name": p.code, "type": p.kind.as_str()}))
                .collect();
            let mut resource = json!({
                "type": kind.name,
                "searchParam": search_params,
                "interaction": interactions.iter().map(|code| json!({"code": code})).collect::<Vec<_>>(),
                "versioning": "versioned-update",
                "readHistory": true,
                "updateCreate": update_create && !kind.server_written,
                "conditionalCreate": !kind.server_written,
                "conditionalRead": "not-supported",
                "conditionalUpdate": !kind.server_written,
                "conditionalDelete": if kind.server_written { "not-supported" } else { "single" },
            });
            if kind.name == "Patient" {
                resource["operation"] = json!([{
                    "name": "everything",
                    "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything",
                    "documentation": "The Patient and the resources of its record the caller may see (its compartment, less a resource filed in another record that names this patient in a later compartment path, found in that record), not the resources they refer to; paged; takes _count, _since and _type.",
                }]);
            }
            // Carnet's profiles apply to every instance of their type.
            if let Some(first) = profiles.first() {
                resource["profile"] = json!(first);
                resource["supportedProfile"] = json!(profiles);
            }
            resource
        })
        .collect();
    json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": date,
        "publisher": "Carnet",
        "kind": "instance",
        "software": {"name": "Carnet", "version": env!("CARGO_PKG_VERSION")},
        "implementation": {"description": "Carnet FHIR R4 server", "url": base_url},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "patchFormat": ["application/json-patch+json", "application/fhir+json"],
        "rest": [{
            "mode": "server",
            "security": {
                "cors": cors,
                "service": [{"coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                    "code": "SMART-on-FHIR",
                }]}],
                "description": "Every interaction but this statement and the discovery documents needs an OAuth2 bearer access token (a JWT from a trusted OpenID Connect issuer) carrying SMART App Launch v2 scopes; see .well-known/smart-configuration. Scopes bound what a token may do; the patient's record rules bound it further, on every read path (searches, includes, chains, _has, history, Binary, conditional matching: totals and pages count only what the caller may see, and a hidden resource answers as a missing one) and on every write: record state (closed, opposed), the patient's Consent directives (block a practitioner or an organization, authorize a practitioner, refuse break-glass), the general practitioner, TRE_A07 visibility labels (MASQUE_PS, INVISIBLE_PATIENT, INVISIBLE_REPRESENTANTS_LEGAUX), the profession matrix, break-glass (purpose_of_use=BTG with break_glass_reason) and guardianship of minors (during RelatedPerson.period). A professional's search names one patient (patient, subject=Patient/…, patient.identifier or the patient's compartment), pages hold at most search.max_count entries, type and system history are refused to professionals, and more distinct patients in an hour than [consent] professional_patients_per_hour answers 429 with Retry-After; feeding systems and professionals find a record header (Patient) by naming it (one INS or id) and list only those of records they fed or may read. A compartment search (Patient/{id}/{type}) returns the patient's record: a resource filed in another record that names the patient in a later compartment path is found in that record. Not yet: the audit trail (AuditEvent), and the messaging and agenda rules (Communication and Appointment follow the record rules).",
            },
            "resource": resources,
            "compartment": ["http://hl7.org/fhir/CompartmentDefinition/patient"],
            "interaction": [{"code": "history-system"}, {"code": "search-system"}],
        }],
    })
}

/// The statement with the SMART `oauth-uris` extension naming the `token` endpoint and, where
/// there is one, the `authorize` endpoint (clients such as fhirclient read them here).
pub fn with_oauth_uris(statement: &Value, token: Option<&str>, authorize: Option<&str>) -> Value {
    let mut statement = statement.clone();
    let uris: Vec<Value> = [("token", token), ("authorize", authorize)]
        .into_iter()
        .filter_map(|(name, uri)| Some(json!({"url": name, "valueUri": uri?})))
        .collect();
    if !uris.is_empty() {
        statement["rest"][0]["security"]["extension"] =
            json!([{"url": OAUTH_URIS, "extension": uris}]);
    }
    statement
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_statement_is_valid_and_honest() {
        let cs = capability_statement("http://h/fhir", false, "2026-11-23T00:00:00Z", true);
        assert_eq!(cs["rest"][0]["security"]["cors"], true);
        let with_uris = with_oauth_uris(&cs, Some("https://i/token"), None);
        assert!(crate::fhir::validate::validate_resource(&with_uris).is_empty());
        assert_eq!(
            with_uris["rest"][0]["security"]["extension"][0]["extension"],
            json!([{"url": "token", "valueUri": "https://i/token"}])
        );
        assert_eq!(with_oauth_uris(&cs, None, None), cs);
        assert!(
            crate::fhir::validate::validate_resource(&cs).is_empty(),
            "{:?}",
            crate::fhir::validate::validate_resource(&cs)
        );
        let audit = cs["rest"][0]["resource"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["type"] == "AuditEvent")
            .unwrap();
        assert!(!audit["interaction"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["code"] == "create"));
        let documents = cs["rest"][0]["resource"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["type"] == "DocumentReference")
            .unwrap();
        let names: Vec<&str> = documents["searchParam"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert!(names.contains(&"patient") && names.contains(&"_lastUpdated"));
        assert!(!names.contains(&"_content") && !names.contains(&"relationship"));
        assert_eq!(
            cs["rest"][0]["security"]["service"][0]["coding"][0]["code"],
            "SMART-on-FHIR"
        );
        let patient = &cs["rest"][0]["resource"][0];
        assert_eq!(patient["type"], "Patient");
        assert_eq!(patient["operation"][0]["name"], "everything");
        assert_eq!(
            patient["profile"],
            "https://carnet.sante.fr/fhir/StructureDefinition/carnet-patient"
        );
    }
}
