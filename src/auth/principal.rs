//! Who is asking: exactly one [`Principal`] per request, from claims an issuer already verified
//! and the client registry (`[[clients]]` in the configuration).
//!
//! The accepted combinations are the table "Client kinds and principals" of the public interface;
//! anything else is refused. Claims a kind does not use are ignored, except a break-glass claim:
//! silently dropping a declared emergency would mislead the caller about what was audited.

use super::scopes::{narrow, parse_scopes, Context, ScopeError, Scopes};
use serde::{Deserialize, Serialize};

/// The claims of an access token that decide the principal (public contract: these names are
/// what `carnet token` mints and integrators send).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Space-separated SMART scopes; missing means none (and the token is then refused).
    #[serde(default)]
    pub scope: String,
    /// `Patient/{id}`, `RelatedPerson/{id}` or `Practitioner/{id}`.
    #[serde(rename = "fhirUser", default, skip_serializing_if = "Option::is_none")]
    pub fhir_user: Option<String>,
    /// Launch context: the patient an app acts for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient: Option<String>,
    /// ANS TRE_G15 profession code (`10` médecin, `21` pharmacien…).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profession: Option<String>,
    /// `Organization/{id}` the professional acts for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization: Option<String>,
    /// v3-ActReason code: `TREAT` (default) or `BTG`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose_of_use: Option<String>,
    /// Free text, required with `BTG`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub break_glass_reason: Option<String>,
}

/// What a registered client is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientKind {
    /// The national insurer's record provisioning.
    Provisioning,
    /// Clinical software: LIS, RIS, hospital EHR, GP software.
    Feeder,
    /// The record holder's own web and mobile apps.
    Portal,
    /// A certified catalogue app.
    App,
}

impl ClientKind {
    /// The configuration spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ClientKind::Provisioning => "provisioning",
            ClientKind::Feeder => "feeder",
            ClientKind::Portal => "portal",
            ClientKind::App => "app",
        }
    }
}

/// One `[[clients]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Client {
    pub client_id: String,
    pub kind: ClientKind,
    /// The organization the client acts for, as an identifier `system|value`.
    #[serde(default)]
    pub organization: Option<String>,
    /// The most its tokens may carry.
    pub scopes: Scopes,
    /// Its public key (a JWK as a JSON string), for the local issuer's token endpoint.
    #[serde(default)]
    pub jwk: Option<String>,
    /// Where its public keys are published (a JWKS), instead of `jwk`.
    #[serde(default)]
    pub jwks_url: Option<String>,
}

/// Why a professional acts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Purpose {
    /// v3-ActReason `TREAT`, the default.
    Treatment,
    /// v3-ActReason `BTG`: a declared emergency, always with its reason (it is audited).
    BreakGlass { reason: String },
}

/// Who a request acts as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// The record holder (`fhirUser=Patient/{id}`).
    Patient { id: String },
    /// A guardian (`fhirUser=RelatedPerson/{id}`); which minor they act for is resolved later.
    Guardian { related_person_id: String },
    /// A health professional acting through clinical software.
    Professional {
        practitioner_id: String,
        /// ANS TRE_G15 code.
        profession: String,
        /// The id of the Organization they act for (from `Organization/{id}`).
        organization: String,
        purpose: Purpose,
    },
    /// Clinical software feeding records on its own behalf.
    FeedingSystem {
        client_id: String,
        /// The registration's organization, `system|value`.
        organization: String,
    },
    /// A certified app acting for the patient of its launch context.
    CatalogueApp {
        client_id: String,
        patient_id: String,
    },
    /// The record-provisioning client.
    Provisioning { client_id: String },
}

impl Principal {
    /// The scope contexts this principal may use; a token carrying another is refused rather
    /// than trimmed, since it means the client was set up wrongly.
    pub fn allowed_contexts(&self) -> &'static [Context] {
        match self {
            Principal::Patient { .. } | Principal::Guardian { .. } => {
                &[Context::Patient, Context::User]
            }
            Principal::Professional { .. } => &[Context::User],
            Principal::CatalogueApp { .. } => &[Context::Patient],
            Principal::FeedingSystem { .. } | Principal::Provisioning { .. } => &[Context::System],
        }
    }

    /// A short name for messages and logs.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Principal::Patient { .. } => "patient",
            Principal::Guardian { .. } => "guardian",
            Principal::Professional { .. } => "professional",
            Principal::FeedingSystem { .. } => "feeding system",
            Principal::CatalogueApp { .. } => "catalogue app",
            Principal::Provisioning { .. } => "provisioning client",
        }
    }
}

/// Why no principal could be derived. The HTTP layer picks 401 or 403 per variant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("the token has no client_id")]
    MissingClientId,
    #[error("client `{client_id}` is not registered")]
    UnknownClient { client_id: String },
    #[error("client `{client_id}` is registered without an organization")]
    ClientWithoutOrganization { client_id: String },
    #[error("{0}")]
    InvalidScope(ScopeError),
    #[error("claim `{claim}` is missing: a {kind} client needs it")]
    MissingClaim {
        claim: &'static str,
        kind: &'static str,
    },
    #[error("claim `{claim}` is invalid: {reason}")]
    InvalidClaim { claim: &'static str, reason: String },
    #[error("a {kind} client cannot act as `{fhir_user}`")]
    UnsupportedUser {
        kind: &'static str,
        fhir_user: String,
    },
    #[error("scope `{scope}` is not allowed for a {principal}")]
    ScopeContextNotAllowed {
        scope: String,
        principal: &'static str,
    },
    #[error("the token carries no resource scope")]
    NoResourceScope,
    #[error("none of the token's scopes is allowed by the registration of client `{client_id}`")]
    NoScopeGranted { client_id: String },
    #[error("purpose_of_use `{code}` is not supported (TREAT or BTG)")]
    UnsupportedPurpose { code: String },
    #[error("break-glass (purpose_of_use=BTG) requires a non-empty break_glass_reason")]
    BreakGlassWithoutReason,
    #[error("break_glass_reason is only allowed with purpose_of_use=BTG")]
    ReasonWithoutBreakGlass,
    #[error("break-glass is only for professionals, not a {principal}")]
    BreakGlassNotAllowed { principal: &'static str },
}

impl AuthError {
    /// The text for the OperationOutcome's diagnostics (contains no token contents beyond the
    /// offending claim or scope).
    pub fn message(&self) -> String {
        self.to_string()
    }
}

/// Derives the principal and the scopes it may use: the token's scopes narrowed by what the
/// client is registered for.
pub fn derive(claims: &Claims, registry: &[Client]) -> Result<(Principal, Scopes), AuthError> {
    // The registry comes first: an unregistered client gets nothing, whatever else it claims.
    let client = registered_client(claims, registry)?;
    let token_scopes = parse_scopes(&claims.scope).map_err(AuthError::InvalidScope)?;
    let purpose = purpose(claims)?;
    let principal = match client.kind {
        ClientKind::Portal => portal(claims)?,
        ClientKind::Feeder => feeder(claims, client, purpose.clone())?,
        ClientKind::App => app(claims, client)?,
        ClientKind::Provisioning => provisioning(claims, client)?,
    };
    if purpose != Purpose::Treatment && !matches!(principal, Principal::Professional { .. }) {
        return Err(AuthError::BreakGlassNotAllowed {
            principal: principal.kind_name(),
        });
    }
    check_contexts(&token_scopes, &principal)?;
    let mut granted = narrow(&token_scopes, &client.scopes);
    if matches!(principal, Principal::Provisioning { .. }) {
        granted = narrow(&granted, &PROVISIONING_LIMIT);
    }
    if granted.is_empty() {
        return Err(AuthError::NoScopeGranted {
            client_id: client.client_id.clone(),
        });
    }
    Ok((principal, granted))
}

/// What record provisioning may ever do, whatever its registration says: manage the record
/// holders, professionals and organizations (find, create, update), record a person's
/// opposition (interfaces, "Record lifecycle"), and read no clinical data.
static PROVISIONING_LIMIT: std::sync::LazyLock<Scopes> = std::sync::LazyLock::new(|| {
    parse_scopes(
        "system/Patient.crus system/Practitioner.crus system/PractitionerRole.crus \
         system/Organization.crus system/RelatedPerson.crus system/Consent.crus",
    )
    .expect("valid scopes")
});

/// A claim that is absent or blank counts as absent, so `--fhir-user ""` means "no user".
fn present(claim: &Option<String>) -> Option<&str> {
    claim.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

fn registered_client<'a>(claims: &Claims, registry: &'a [Client]) -> Result<&'a Client, AuthError> {
    let client_id = present(&claims.client_id).ok_or(AuthError::MissingClientId)?;
    registry
        .iter()
        .find(|c| c.client_id == client_id)
        .ok_or_else(|| AuthError::UnknownClient {
            client_id: client_id.to_owned(),
        })
}

/// `TREAT` when absent; `BTG` only with a reason; every other code refused rather than treated
/// as `TREAT`, since the audit trail must record the purpose that was really declared.
fn purpose(claims: &Claims) -> Result<Purpose, AuthError> {
    let reason = present(&claims.break_glass_reason);
    match (present(&claims.purpose_of_use), reason) {
        (Some("BTG"), Some(reason)) => Ok(Purpose::BreakGlass {
            reason: reason.to_owned(),
        }),
        (Some("BTG"), None) => Err(AuthError::BreakGlassWithoutReason),
        (None | Some("TREAT"), None) => Ok(Purpose::Treatment),
        (None | Some("TREAT"), Some(_)) => Err(AuthError::ReasonWithoutBreakGlass),
        (Some(code), _) => Err(AuthError::UnsupportedPurpose {
            code: code.to_owned(),
        }),
    }
}

/// The record holder's apps: a Patient or a RelatedPerson, nothing else.
fn portal(claims: &Claims) -> Result<Principal, AuthError> {
    let kind = ClientKind::Portal.as_str();
    let fhir_user = present(&claims.fhir_user).ok_or(AuthError::MissingClaim {
        claim: "fhirUser",
        kind,
    })?;
    match user_reference(fhir_user)? {
        ("Patient", id) => Ok(Principal::Patient { id: id.to_owned() }),
        ("RelatedPerson", id) => Ok(Principal::Guardian {
            related_person_id: id.to_owned(),
        }),
        _ => Err(unsupported_user(kind, fhir_user)),
    }
}

/// Clinical software: on its own (no `fhirUser`) it is a feeding system; with a practitioner it
/// is that professional, who must say what they are and where they act.
fn feeder(claims: &Claims, client: &Client, purpose: Purpose) -> Result<Principal, AuthError> {
    let kind = ClientKind::Feeder.as_str();
    let Some(fhir_user) = present(&claims.fhir_user) else {
        return Ok(Principal::FeedingSystem {
            client_id: client.client_id.clone(),
            organization: registered_organization(client)?,
        });
    };
    let practitioner_id = match user_reference(fhir_user)? {
        ("Practitioner", id) => id.to_owned(),
        _ => return Err(unsupported_user(kind, fhir_user)),
    };
    let profession = present(&claims.profession).ok_or(AuthError::MissingClaim {
        claim: "profession",
        kind,
    })?;
    if !profession.bytes().all(|b| b.is_ascii_digit()) {
        return Err(AuthError::InvalidClaim {
            claim: "profession",
            reason: "expected an ANS TRE_G15 code such as 10 or 21".to_owned(),
        });
    }
    let organization = present(&claims.organization).ok_or(AuthError::MissingClaim {
        claim: "organization",
        kind,
    })?;
    Ok(Principal::Professional {
        practitioner_id,
        profession: profession.to_owned(),
        organization: typed_id("organization", organization, "Organization")?,
        purpose,
    })
}

/// A catalogue app acts for the patient of its launch context only. `fhirUser` is not read: the
/// app's rights come from that context, whoever launched it.
fn app(claims: &Claims, client: &Client) -> Result<Principal, AuthError> {
    let patient = present(&claims.patient).ok_or(AuthError::MissingClaim {
        claim: "patient",
        kind: ClientKind::App.as_str(),
    })?;
    Ok(Principal::CatalogueApp {
        client_id: client.client_id.clone(),
        patient_id: fhir_id("patient", patient)?.to_owned(),
    })
}

/// A system client: a user in the token would not match any row of the table.
fn provisioning(claims: &Claims, client: &Client) -> Result<Principal, AuthError> {
    if let Some(fhir_user) = present(&claims.fhir_user) {
        return Err(unsupported_user(
            ClientKind::Provisioning.as_str(),
            fhir_user,
        ));
    }
    Ok(Principal::Provisioning {
        client_id: client.client_id.clone(),
    })
}

/// A feeding system's organization is what its AuditEvents name, so a registration without one
/// cannot feed.
fn registered_organization(client: &Client) -> Result<String, AuthError> {
    present(&client.organization)
        .map(str::to_owned)
        .ok_or_else(|| AuthError::ClientWithoutOrganization {
            client_id: client.client_id.clone(),
        })
}

/// Every resource scope must use a context the principal may use; at least one must be present.
fn check_contexts(scopes: &Scopes, principal: &Principal) -> Result<(), AuthError> {
    if scopes.is_empty() {
        return Err(AuthError::NoResourceScope);
    }
    let allowed = principal.allowed_contexts();
    match scopes
        .resource_scopes()
        .iter()
        .find(|s| !allowed.contains(&s.context))
    {
        Some(scope) => Err(AuthError::ScopeContextNotAllowed {
            scope: scope.to_string(),
            principal: principal.kind_name(),
        }),
        None => Ok(()),
    }
}

/// `Type/id` as a relative reference. Absolute URLs are refused for now: accepting one would need
/// the server's base URL to tell ours from another server's.
fn user_reference(fhir_user: &str) -> Result<(&str, &str), AuthError> {
    let invalid = || AuthError::InvalidClaim {
        claim: "fhirUser",
        reason: "expected Patient/{id}, RelatedPerson/{id} or Practitioner/{id}".to_owned(),
    };
    let (resource_type, id) = fhir_user.split_once('/').ok_or_else(invalid)?;
    fhir_id("fhirUser", id)?;
    match resource_type {
        "Patient" | "RelatedPerson" | "Practitioner" => Ok((resource_type, id)),
        _ => Err(invalid()),
    }
}

/// The id of `{expected}/{id}`.
fn typed_id(claim: &'static str, reference: &str, expected: &str) -> Result<String, AuthError> {
    match reference.split_once('/') {
        Some((resource_type, id)) if resource_type == expected => {
            Ok(fhir_id(claim, id)?.to_owned())
        }
        _ => Err(AuthError::InvalidClaim {
            claim,
            reason: format!("expected {expected}/{{id}}"),
        }),
    }
}

/// A FHIR id: 1 to 64 of `A-Z a-z 0-9 - .`.
fn fhir_id<'a>(claim: &'static str, id: &'a str) -> Result<&'a str, AuthError> {
    let valid = (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if valid {
        Ok(id)
    } else {
        Err(AuthError::InvalidClaim {
            claim,
            reason: format!("`{id}` is not a FHIR id"),
        })
    }
}

fn unsupported_user(kind: &'static str, fhir_user: &str) -> AuthError {
    AuthError::UnsupportedUser {
        kind,
        fhir_user: fhir_user.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::scopes::Interaction;

    fn client(client_id: &str, kind: ClientKind, scopes: &str) -> Client {
        Client {
            client_id: client_id.to_owned(),
            kind,
            organization: Some("https://finess.esante.gouv.fr|750000001".to_owned()),
            scopes: parse_scopes(scopes).unwrap(),
            jwk: None,
            jwks_url: None,
        }
    }

    fn registry() -> Vec<Client> {
        vec![
            client("portal", ClientKind::Portal, "patient/*.cruds user/*.cruds"),
            client("lab", ClientKind::Feeder, "system/*.cruds user/*.cruds"),
            client(
                "app",
                ClientKind::App,
                "patient/Observation.rs patient/DocumentReference.rs",
            ),
            client(
                "insurer",
                ClientKind::Provisioning,
                "system/Patient.cru system/Organization.cru",
            ),
        ]
    }

    fn claims(client_id: &str, scope: &str) -> Claims {
        Claims {
            client_id: Some(client_id.to_owned()),
            scope: scope.to_owned(),
            ..Claims::default()
        }
    }

    fn professional_claims() -> Claims {
        Claims {
            fhir_user: Some("Practitioner/p1".to_owned()),
            profession: Some("10".to_owned()),
            organization: Some("Organization/7".to_owned()),
            ..claims("lab", "user/*.rs")
        }
    }

    fn ok(claims: &Claims) -> (Principal, Scopes) {
        derive(claims, &registry()).expect("derivation")
    }

    fn err(claims: &Claims) -> AuthError {
        derive(claims, &registry()).expect_err("refusal")
    }

    #[test]
    fn claims_use_the_contract_names() {
        let json = r#"{"sub":"s","client_id":"lab","scope":"user/*.rs","fhirUser":"Practitioner/p1",
            "patient":"9","profession":"10","organization":"Organization/7",
            "purpose_of_use":"BTG","break_glass_reason":"coma"}"#;
        let claims: Claims = serde_json::from_str(json).unwrap();
        assert_eq!(claims.fhir_user.as_deref(), Some("Practitioner/p1"));
        assert_eq!(claims.purpose_of_use.as_deref(), Some("BTG"));
        assert_eq!(claims.break_glass_reason.as_deref(), Some("coma"));
        let back = serde_json::to_value(&claims).unwrap();
        assert_eq!(back["fhirUser"], "Practitioner/p1");
        assert_eq!(back["client_id"], "lab");
        let minimal: Claims = serde_json::from_str("{}").unwrap();
        assert_eq!(minimal, Claims::default());
        assert_eq!(serde_json::to_string(&minimal).unwrap(), r#"{"scope":""}"#);
    }

    #[test]
    fn client_registry_entry_deserializes() {
        let json = r#"{"client_id":"lab-biomed-75","kind":"feeder",
            "organization":"https://finess.esante.gouv.fr|750000001","scopes":"system/*.cruds"}"#;
        let client: Client = serde_json::from_str(json).unwrap();
        assert_eq!(client.kind, ClientKind::Feeder);
        assert!(client
            .scopes
            .allows(Context::System, "Binary", Interaction::Create));
        for kind in ["provisioning", "portal", "app"] {
            let json = format!(r#"{{"client_id":"x","kind":"{kind}","scopes":""}}"#);
            let client: Client = serde_json::from_str(&json).unwrap();
            assert_eq!(client.kind.as_str(), kind);
        }
        let bad = r#"{"client_id":"x","kind":"insurer","scopes":""}"#;
        assert!(serde_json::from_str::<Client>(bad).is_err());
    }

    #[test]
    fn portal_patient() {
        let claims = Claims {
            fhir_user: Some("Patient/123".to_owned()),
            ..claims("portal", "patient/*.rs openid")
        };
        let (principal, scopes) = ok(&claims);
        assert_eq!(
            principal,
            Principal::Patient {
                id: "123".to_owned()
            }
        );
        assert!(scopes.allows(Context::Patient, "DocumentReference", Interaction::Read));
    }

    #[test]
    fn portal_guardian() {
        let claims = Claims {
            fhir_user: Some("RelatedPerson/rp-1".to_owned()),
            ..claims("portal", "user/*.cruds")
        };
        let (principal, _) = ok(&claims);
        assert_eq!(
            principal,
            Principal::Guardian {
                related_person_id: "rp-1".to_owned()
            }
        );
    }

    #[test]
    fn portal_refuses_other_users_and_system_scopes() {
        let practitioner = Claims {
            fhir_user: Some("Practitioner/p1".to_owned()),
            ..claims("portal", "user/*.rs")
        };
        assert!(matches!(
            err(&practitioner),
            AuthError::UnsupportedUser { .. }
        ));
        let nobody = claims("portal", "patient/*.rs");
        assert_eq!(
            err(&nobody),
            AuthError::MissingClaim {
                claim: "fhirUser",
                kind: "portal"
            }
        );
        let system = Claims {
            fhir_user: Some("Patient/1".to_owned()),
            ..claims("portal", "system/*.rs")
        };
        assert!(matches!(
            err(&system),
            AuthError::ScopeContextNotAllowed {
                principal: "patient",
                ..
            }
        ));
    }

    #[test]
    fn malformed_fhir_user_is_refused() {
        for fhir_user in [
            "123",
            "Patient/",
            "Patient/a b",
            "Device/1",
            "https://other.example/fhir/Patient/1",
        ] {
            let claims = Claims {
                fhir_user: Some(fhir_user.to_owned()),
                ..claims("portal", "patient/*.rs")
            };
            assert!(
                matches!(
                    err(&claims),
                    AuthError::InvalidClaim {
                        claim: "fhirUser",
                        ..
                    }
                ),
                "{fhir_user}"
            );
        }
    }

    #[test]
    fn feeder_without_user_is_a_feeding_system() {
        let (principal, scopes) = ok(&claims("lab", "system/DocumentReference.c system/Binary.c"));
        assert_eq!(
            principal,
            Principal::FeedingSystem {
                client_id: "lab".to_owned(),
                organization: "https://finess.esante.gouv.fr|750000001".to_owned(),
            }
        );
        assert!(scopes.allows(Context::System, "Binary", Interaction::Create));
        assert!(!scopes.allows(Context::System, "Binary", Interaction::Read));
    }

    #[test]
    fn feeding_system_needs_system_scopes_only() {
        for scope in [
            "patient/*.rs",
            "user/*.rs",
            "system/*.c patient/Observation.r",
        ] {
            assert!(
                matches!(
                    err(&claims("lab", scope)),
                    AuthError::ScopeContextNotAllowed {
                        principal: "feeding system",
                        ..
                    }
                ),
                "{scope}"
            );
        }
    }

    #[test]
    fn feeding_system_needs_a_registered_organization() {
        let mut registry = registry();
        registry[1].organization = None;
        assert_eq!(
            derive(&claims("lab", "system/*.c"), &registry).unwrap_err(),
            AuthError::ClientWithoutOrganization {
                client_id: "lab".to_owned()
            }
        );
    }

    #[test]
    fn feeder_with_practitioner_is_a_professional() {
        let (principal, scopes) = ok(&professional_claims());
        assert_eq!(
            principal,
            Principal::Professional {
                practitioner_id: "p1".to_owned(),
                profession: "10".to_owned(),
                organization: "7".to_owned(),
                purpose: Purpose::Treatment,
            }
        );
        assert!(scopes.allows(Context::User, "Observation", Interaction::Search));
        let explicit = Claims {
            purpose_of_use: Some("TREAT".to_owned()),
            ..professional_claims()
        };
        assert_eq!(ok(&explicit).0, principal);
    }

    #[test]
    fn professional_needs_profession_and_organization() {
        let without_profession = Claims {
            profession: None,
            ..professional_claims()
        };
        assert_eq!(
            err(&without_profession),
            AuthError::MissingClaim {
                claim: "profession",
                kind: "feeder"
            }
        );
        let without_organization = Claims {
            organization: Some("  ".to_owned()),
            ..professional_claims()
        };
        assert_eq!(
            err(&without_organization),
            AuthError::MissingClaim {
                claim: "organization",
                kind: "feeder"
            }
        );
        let bad_profession = Claims {
            profession: Some("médecin".to_owned()),
            ..professional_claims()
        };
        assert!(matches!(
            err(&bad_profession),
            AuthError::InvalidClaim {
                claim: "profession",
                ..
            }
        ));
        let bad_organization = Claims {
            organization: Some("Practitioner/7".to_owned()),
            ..professional_claims()
        };
        assert!(matches!(
            err(&bad_organization),
            AuthError::InvalidClaim {
                claim: "organization",
                ..
            }
        ));
    }

    #[test]
    fn professional_needs_user_scopes_only() {
        for scope in ["system/*.rs", "patient/*.rs", "user/*.rs system/Binary.c"] {
            let claims = Claims {
                scope: scope.to_owned(),
                ..professional_claims()
            };
            assert!(
                matches!(
                    err(&claims),
                    AuthError::ScopeContextNotAllowed {
                        principal: "professional",
                        ..
                    }
                ),
                "{scope}"
            );
        }
    }

    #[test]
    fn feeder_refuses_a_patient_user() {
        let claims = Claims {
            fhir_user: Some("Patient/1".to_owned()),
            ..professional_claims()
        };
        assert!(matches!(
            err(&claims),
            AuthError::UnsupportedUser { kind: "feeder", .. }
        ));
    }

    #[test]
    fn break_glass_with_reason() {
        let claims = Claims {
            purpose_of_use: Some("BTG".to_owned()),
            break_glass_reason: Some("unconscious patient in the ER".to_owned()),
            ..professional_claims()
        };
        let (principal, _) = ok(&claims);
        let Principal::Professional { purpose, .. } = principal else {
            panic!("not a professional: {principal:?}");
        };
        assert_eq!(
            purpose,
            Purpose::BreakGlass {
                reason: "unconscious patient in the ER".to_owned()
            }
        );
    }

    #[test]
    fn break_glass_without_reason_is_refused() {
        for reason in [None, Some(""), Some("   ")] {
            let claims = Claims {
                purpose_of_use: Some("BTG".to_owned()),
                break_glass_reason: reason.map(str::to_owned),
                ..professional_claims()
            };
            assert_eq!(err(&claims), AuthError::BreakGlassWithoutReason);
        }
    }

    #[test]
    fn other_purposes_are_refused() {
        for code in ["HPAYMT", "treat", "ETREAT"] {
            let claims = Claims {
                purpose_of_use: Some(code.to_owned()),
                ..professional_claims()
            };
            assert_eq!(
                err(&claims),
                AuthError::UnsupportedPurpose {
                    code: code.to_owned()
                }
            );
        }
        let reason_alone = Claims {
            break_glass_reason: Some("why".to_owned()),
            ..professional_claims()
        };
        assert_eq!(err(&reason_alone), AuthError::ReasonWithoutBreakGlass);
    }

    #[test]
    fn break_glass_is_for_professionals_only() {
        let claims = Claims {
            fhir_user: Some("Patient/1".to_owned()),
            purpose_of_use: Some("BTG".to_owned()),
            break_glass_reason: Some("x".to_owned()),
            ..claims("portal", "patient/*.rs")
        };
        assert_eq!(
            err(&claims),
            AuthError::BreakGlassNotAllowed {
                principal: "patient"
            }
        );
    }

    #[test]
    fn app_with_launch_context_is_a_catalogue_app() {
        let claims = Claims {
            patient: Some("123".to_owned()),
            ..claims("app", "launch/patient patient/*.rs")
        };
        let (principal, scopes) = ok(&claims);
        assert_eq!(
            principal,
            Principal::CatalogueApp {
                client_id: "app".to_owned(),
                patient_id: "123".to_owned()
            }
        );
        // The registration bounds the wildcard to the two registered types.
        assert!(scopes.allows(Context::Patient, "Observation", Interaction::Read));
        assert!(!scopes.allows(Context::Patient, "Condition", Interaction::Read));
        // Not registered, so dropped by narrowing.
        assert!(!scopes.has(crate::auth::scopes::OtherScope::LaunchPatient));
    }

    #[test]
    fn app_needs_launch_context_and_patient_scopes() {
        assert_eq!(
            err(&claims("app", "patient/*.rs")),
            AuthError::MissingClaim {
                claim: "patient",
                kind: "app"
            }
        );
        let bad_patient = Claims {
            patient: Some("Patient/123".to_owned()),
            ..claims("app", "patient/*.rs")
        };
        assert!(matches!(
            err(&bad_patient),
            AuthError::InvalidClaim {
                claim: "patient",
                ..
            }
        ));
        let user_scopes = Claims {
            patient: Some("123".to_owned()),
            ..claims("app", "user/*.rs")
        };
        assert!(matches!(
            err(&user_scopes),
            AuthError::ScopeContextNotAllowed {
                principal: "catalogue app",
                ..
            }
        ));
    }

    #[test]
    fn provisioning_client() {
        let (principal, scopes) = ok(&claims("insurer", "system/*.cruds"));
        assert_eq!(
            principal,
            Principal::Provisioning {
                client_id: "insurer".to_owned()
            }
        );
        assert!(scopes.allows(Context::System, "Patient", Interaction::Update));
        assert!(!scopes.allows(Context::System, "Patient", Interaction::Delete));
        assert!(!scopes.allows(Context::System, "DocumentReference", Interaction::Read));
    }

    #[test]
    fn provisioning_never_reads_clinical_data_even_if_registered_for_it() {
        let mut registry = registry();
        registry.push(client("wide", ClientKind::Provisioning, "system/*.cruds"));
        let wide = Claims {
            client_id: Some("wide".to_owned()),
            scope: "system/*.cruds".to_owned(),
            ..Claims::default()
        };
        let (_, scopes) = derive(&wide, &registry).unwrap();
        for kind in [
            "Patient",
            "Practitioner",
            "PractitionerRole",
            "Organization",
            "RelatedPerson",
        ] {
            assert!(
                scopes.allows(Context::System, kind, Interaction::Create),
                "{kind}"
            );
            assert!(
                scopes.allows(Context::System, kind, Interaction::Search),
                "{kind}"
            );
            assert!(
                !scopes.allows(Context::System, kind, Interaction::Delete),
                "{kind}"
            );
        }
        // Oppositions: provisioning records them; which Consents it then reads (only its
        // own) is the consent engine's rule.
        assert!(scopes.allows(Context::System, "Consent", Interaction::Create));
        assert!(!scopes.allows(Context::System, "Consent", Interaction::Delete));
        for kind in ["Observation", "DocumentReference", "Binary", "AuditEvent"] {
            assert!(
                !scopes.allows(Context::System, kind, Interaction::Read),
                "{kind}"
            );
            assert!(
                !scopes.allows(Context::System, kind, Interaction::Create),
                "{kind}"
            );
        }
        let clinical_only = Claims {
            scope: "system/Observation.rs".to_owned(),
            ..wide
        };
        assert!(matches!(
            derive(&clinical_only, &registry),
            Err(AuthError::NoScopeGranted { .. })
        ));
    }

    #[test]
    fn provisioning_refuses_users_and_non_system_scopes() {
        let with_user = Claims {
            fhir_user: Some("Practitioner/1".to_owned()),
            ..claims("insurer", "system/*.cruds")
        };
        assert!(matches!(
            err(&with_user),
            AuthError::UnsupportedUser {
                kind: "provisioning",
                ..
            }
        ));
        assert!(matches!(
            err(&claims("insurer", "user/Patient.cru")),
            AuthError::ScopeContextNotAllowed { .. }
        ));
    }

    #[test]
    fn unknown_or_missing_client_gets_nothing() {
        let unknown = Claims {
            fhir_user: Some("Patient/1".to_owned()),
            ..claims("mutuelle", "patient/*.cruds system/*.cruds")
        };
        assert_eq!(
            err(&unknown),
            AuthError::UnknownClient {
                client_id: "mutuelle".to_owned()
            }
        );
        let missing = Claims {
            client_id: None,
            ..unknown.clone()
        };
        assert_eq!(err(&missing), AuthError::MissingClientId);
        assert!(derive(&professional_claims(), &[]).is_err());
    }

    #[test]
    fn malformed_scope_claim_is_refused() {
        let claims = claims("lab", "system/*.cruds system/Binary.x");
        let error = err(&claims);
        assert!(matches!(error, AuthError::InvalidScope(_)));
        assert!(
            error.message().contains("system/Binary.x"),
            "{}",
            error.message()
        );
    }

    #[test]
    fn token_without_resource_scopes_is_refused() {
        assert_eq!(err(&claims("lab", "")), AuthError::NoResourceScope);
        assert_eq!(err(&claims("lab", "openid")), AuthError::NoResourceScope);
    }

    #[test]
    fn scopes_are_narrowed_by_the_registration() {
        let claims = claims("insurer", "system/Patient.cruds system/Practitioner.cruds");
        let (_, scopes) = ok(&claims);
        assert_eq!(scopes.to_string(), "system/Patient.cru");
        let nothing_left = Claims {
            scope: "system/Observation.rs".to_owned(),
            ..claims
        };
        assert_eq!(
            err(&nothing_left),
            AuthError::NoScopeGranted {
                client_id: "insurer".to_owned()
            }
        );
    }

    #[test]
    fn messages_say_why() {
        let cases = [
            (AuthError::MissingClientId, "client_id"),
            (
                AuthError::UnknownClient {
                    client_id: "x".to_owned(),
                },
                "not registered",
            ),
            (AuthError::BreakGlassWithoutReason, "break_glass_reason"),
            (
                AuthError::ScopeContextNotAllowed {
                    scope: "patient/*.rs".to_owned(),
                    principal: "feeding system",
                },
                "patient/*.rs",
            ),
        ];
        for (error, needle) in cases {
            assert!(error.message().contains(needle), "{}", error.message());
        }
    }
}
