//! Identity and authorization: from a bearer token to the one [`Principal`] a request acts as,
//! and the SMART scopes that bound what it may do.
//!
//! The flow is one way: decode the JWT ([`jwt`]), verify it with the keys of a trusted issuer
//! ([`issuers`], [`local_issuer`]), check `exp`/`nbf`/`aud`, then derive the principal from the
//! claims and the client registry ([`principal`], [`scopes`]). Everything but key fetching is pure
//! and unit-tested on its own.

pub mod backend_services;
pub mod client_keys;
pub mod issuers;
pub mod jwt;
pub mod key_cache;
pub mod local_issuer;
pub mod principal;
pub mod scopes;
pub mod verified;

use principal::{AuthError, Claims, Client, Principal};
use scopes::{Interaction, Scopes};
use std::sync::atomic::{AtomicU64, Ordering};

/// An authenticated caller: who it is and what its token may do.
#[derive(Debug, Clone)]
pub struct Access {
    pub principal: Principal,
    /// The token's scopes, already narrowed by the client's registration.
    pub scopes: Scopes,
}

impl Access {
    /// Whether the scopes allow `interaction` on `resource_type` in a context this principal
    /// may use. This is the scope check only: the consent rules narrow further.
    pub fn scope_allows(&self, resource_type: &str, interaction: Interaction) -> bool {
        self.principal
            .allowed_contexts()
            .iter()
            .any(|context| self.scopes.allows(*context, resource_type, interaction))
    }
}

/// Why a request was not authenticated, as the HTTP layer answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    /// 401: no usable token. `error` is the RFC 6750 code (`None` when no token was sent).
    Unauthenticated {
        error: Option<&'static str>,
        message: String,
    },
    /// 403: a valid token that this server will not serve.
    Forbidden { message: String },
    /// 400: a valid token whose request the caller must complete, such as a break-glass
    /// declared without its reason (domain §1: the reason is audited).
    Incomplete { message: String },
}

/// Verifies tokens and derives principals.
pub struct Authenticator {
    issuers: issuers::TrustedIssuers,
    audience: String,
    clients: Vec<Client>,
    /// The longest a token may live, whoever issued it.
    max_lifetime: i64,
    failures: AtomicU64,
    /// Tokens whose signature was verified (the check is not made again until they expire).
    verified: verified::VerifiedTokens,
    /// Signatures checked since start.
    signature_checks: AtomicU64,
}

impl Authenticator {
    /// An authenticator trusting `issuers`, for tokens naming `audience` and living at most
    /// `max_lifetime` seconds.
    pub fn new(
        issuers: issuers::TrustedIssuers,
        audience: String,
        clients: Vec<Client>,
        max_lifetime: i64,
    ) -> Self {
        Authenticator {
            issuers,
            audience,
            clients,
            max_lifetime,
            failures: AtomicU64::new(0),
            verified: verified::VerifiedTokens::default(),
            signature_checks: AtomicU64::new(0),
        }
    }

    /// The issuer clients get tokens from (may fetch its discovery document).
    pub fn primary_provider(&self) -> Option<issuers::Provider> {
        self.issuers.primary_provider()
    }

    /// How many requests were refused authentication since start.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// How many token signatures were checked since start (a token verified once is not
    /// checked again until it expires).
    pub fn signature_checks(&self) -> u64 {
        self.signature_checks.load(Ordering::Relaxed)
    }

    /// Authenticates the `Authorization` header value at time `now` (seconds since the epoch).
    /// May block while an issuer's keys are fetched. Every refusal is logged and counted.
    pub fn authenticate(&self, authorization: Option<&str>, now: i64) -> Result<Access, Denial> {
        let result = self.check(authorization, now, true);
        self.counted(result.expect("a check that may fetch keys always decides"))
    }

    /// [`Authenticator::authenticate`] when it needs no network: the token's signature was
    /// verified before, or its issuer is this server; `None` when checking it could fetch an
    /// issuer's keys (call [`Authenticator::authenticate`] off the async executor then).
    pub fn authenticate_at_once(
        &self,
        authorization: Option<&str>,
        now: i64,
    ) -> Option<Result<Access, Denial>> {
        self.check(authorization, now, false)
            .map(|r| self.counted(r))
    }

    fn counted(&self, result: Result<Access, Denial>) -> Result<Access, Denial> {
        if let Err(denial) = &result {
            let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
            let (status, reason) = match denial {
                Denial::Unauthenticated { message, .. } => (401, message),
                Denial::Forbidden { message } => (403, message),
                Denial::Incomplete { message } => (400, message),
            };
            tracing::warn!(target: "carnet::auth", status, %reason, failures, "authentication refused");
        }
        result
    }

    /// `None` when the signature is to be checked with keys that may have to be fetched and
    /// `may_fetch` is false.
    fn check(
        &self,
        authorization: Option<&str>,
        now: i64,
        may_fetch: bool,
    ) -> Option<Result<Access, Denial>> {
        let Some(header) = authorization else {
            return Some(Err(Denial::Unauthenticated {
                error: None,
                message: "this request needs an access token: send Authorization: Bearer <token>"
                    .to_owned(),
            }));
        };
        let Some(token) = bearer_token(header) else {
            return Some(Err(Denial::Unauthenticated {
                error: Some("invalid_request"),
                message: "the Authorization header must be `Bearer <token>`".to_owned(),
            }));
        };
        let unverified = match jwt::decode(token) {
            Ok(unverified) => unverified,
            Err(e) => return Some(Err(invalid(e))),
        };
        let key = verified::key(token);
        let before = self.issuers.key_generation(&unverified);
        let held = before.is_some_and(|generation| self.verified.holds(&key, now, generation));
        if !held {
            if !may_fetch && !self.issuers.is_local(&unverified) {
                return None;
            }
            self.signature_checks.fetch_add(1, Ordering::Relaxed);
            if let Err(e) = self.issuers.verify_signature(&unverified) {
                return Some(Err(invalid(e)));
            }
            // Remembered with the keys it was checked with: the check may have fetched new
            // ones, and another request may have meanwhile, so only if they did not change.
            let after = self.issuers.key_generation(&unverified);
            let exp = jwt::numeric_date(&unverified.claims, "exp");
            if let (Some(generation), Ok(Some(exp))) = (after, exp) {
                if before == after {
                    self.verified.remember(key, exp, generation, now);
                }
            }
        }
        Some(self.authorize(unverified, now))
    }

    /// The caller a token with a verified signature names, if its claims hold at `now` and
    /// this server serves it.
    fn authorize(&self, unverified: jwt::Unverified, now: i64) -> Result<Access, Denial> {
        jwt::check_claims(&unverified.claims, &self.audience, now, self.max_lifetime)
            .map_err(invalid)?;
        let claims: Claims = serde_json::from_value(serde_json::Value::Object(unverified.claims))
            .map_err(|e| Denial::Unauthenticated {
            error: Some("invalid_token"),
            message: format!("the token's claims are not usable: {e}"),
        })?;
        let (principal, scopes) = principal::derive(&claims, &self.clients).map_err(refusal_of)?;
        refuse_scope_parameters(&scopes).map_err(|message| Denial::Forbidden { message })?;
        Ok(Access { principal, scopes })
    }
}

/// A token refused for what it is (malformed, badly signed, expired…).
fn invalid(error: jwt::TokenError) -> Denial {
    Denial::Unauthenticated {
        error: Some("invalid_token"),
        message: error.to_string(),
    }
}

/// Scope parameters (`?category=…`) are not honoured yet: a token or request carrying one is
/// refused rather than widened. Shared by the gate and the token endpoint.
pub fn refuse_scope_parameters(scopes: &Scopes) -> Result<(), String> {
    match scopes
        .resource_scopes()
        .iter()
        .find(|s| !s.parameters.is_empty())
    {
        None => Ok(()),
        Some(scope) => Err(format!(
            "scope `{scope}` has parameters; this server does not honour scope \
             parameters yet, so it refuses the token rather than widen it"
        )),
    }
}

/// `Bearer <token>`, the scheme case-insensitive (RFC 7235).
fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() && !token.contains(' '))
        .then_some(token)
}

/// A token that cannot describe a caller is invalid (401); a well-formed caller this server will
/// not serve, such as an unregistered client, is forbidden (403).
fn refusal_of(error: AuthError) -> Denial {
    let message = error.message();
    match error {
        AuthError::MissingClientId
        | AuthError::InvalidScope(_)
        | AuthError::MissingClaim { .. }
        | AuthError::InvalidClaim { .. }
        | AuthError::UnsupportedUser { .. }
        | AuthError::UnsupportedPurpose { .. }
        | AuthError::ReasonWithoutBreakGlass => Denial::Unauthenticated {
            error: Some("invalid_token"),
            message,
        },
        AuthError::UnknownClient { .. }
        | AuthError::ClientWithoutOrganization { .. }
        | AuthError::ScopeContextNotAllowed { .. }
        | AuthError::NoResourceScope
        | AuthError::NoScopeGranted { .. }
        | AuthError::BreakGlassNotAllowed { .. } => Denial::Forbidden { message },
        AuthError::BreakGlassWithoutReason => Denial::Incomplete { message },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use local_issuer::LocalIssuer;
    use std::time::Duration;

    const AUDIENCE: &str = "https://carnet.example/fhir";

    struct Fixture {
        issuer: LocalIssuer,
        authenticator: Authenticator,
        dir: std::path::PathBuf,
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn fixture() -> Fixture {
        let dir =
            std::env::temp_dir().join(format!("carnet-auth-{}", uuid::Uuid::new_v4().simple()));
        let issuer =
            LocalIssuer::open(format!("{AUDIENCE}/local-issuer"), &dir.join("key.p8")).unwrap();
        let clients: Vec<Client> = toml::from_str::<toml::Table>(
            r#"
[[c]]
client_id = "lab"
kind = "feeder"
organization = "https://finess.esante.gouv.fr|750000001"
scopes = "system/*.cruds"
"#,
        )
        .unwrap()["c"]
            .clone()
            .try_into()
            .unwrap();
        let trusted = issuers::TrustedIssuers::new(Some(&issuer), &[], Duration::from_secs(10));
        let authenticator = Authenticator::new(trusted, AUDIENCE.to_owned(), clients, 86_400);
        Fixture {
            issuer,
            authenticator,
            dir,
        }
    }

    fn lab_claims() -> Claims {
        Claims {
            client_id: Some("lab".into()),
            scope: "system/Observation.crs".into(),
            ..Claims::default()
        }
    }

    #[test]
    fn a_local_token_authenticates_a_feeding_system() {
        let f = fixture();
        let token = f.issuer.mint(&lab_claims(), AUDIENCE, 1000, 60).unwrap();
        let access = f
            .authenticator
            .authenticate(Some(&format!("Bearer {token}")), 1010)
            .unwrap();
        assert!(matches!(access.principal, Principal::FeedingSystem { .. }));
        assert!(access.scope_allows("Observation", Interaction::Create));
        assert!(!access.scope_allows("Observation", Interaction::Delete));
        assert!(!access.scope_allows("Patient", Interaction::Read));
        assert_eq!(f.authenticator.failures(), 0);
    }

    #[test]
    fn refusals_are_counted_and_say_why() {
        let f = fixture();
        let expired = f.issuer.mint(&lab_claims(), AUDIENCE, 0, 60).unwrap();
        let other_audience = f
            .issuer
            .mint(&lab_claims(), "https://other", 1000, 60)
            .unwrap();
        let unknown_client = f
            .issuer
            .mint(
                &Claims {
                    client_id: Some("nobody".into()),
                    ..lab_claims()
                },
                AUDIENCE,
                1000,
                60,
            )
            .unwrap();
        let auth = |h: Option<String>| f.authenticator.authenticate(h.as_deref(), 1000);
        assert!(matches!(
            auth(None),
            Err(Denial::Unauthenticated { error: None, .. })
        ));
        assert!(matches!(
            auth(Some("Basic abc".into())),
            Err(Denial::Unauthenticated {
                error: Some("invalid_request"),
                ..
            })
        ));
        assert!(matches!(
            auth(Some(format!("Bearer {expired}"))),
            Err(Denial::Unauthenticated {
                error: Some("invalid_token"),
                ..
            })
        ));
        assert!(matches!(
            auth(Some(format!("Bearer {other_audience}"))),
            Err(Denial::Unauthenticated {
                error: Some("invalid_token"),
                ..
            })
        ));
        assert!(matches!(
            auth(Some(format!("bearer {unknown_client}"))),
            Err(Denial::Forbidden { .. })
        ));
        assert_eq!(f.authenticator.failures(), 5);
    }

    #[test]
    fn a_tampered_payload_breaks_the_signature() {
        let f = fixture();
        let token = f.issuer.mint(&lab_claims(), AUDIENCE, 1000, 60).unwrap();
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        let wider = f.issuer.mint(
            &Claims {
                scope: "system/*.cruds".into(),
                ..lab_claims()
            },
            AUDIENCE,
            1000,
            60,
        );
        parts[1] = wider.unwrap().split('.').nth(1).unwrap().to_owned();
        let forged = parts.join(".");
        let denial = f
            .authenticator
            .authenticate(Some(&format!("Bearer {forged}")), 1000)
            .unwrap_err();
        assert!(format!("{denial:?}").contains("signature"), "{denial:?}");
    }

    #[test]
    fn parameterised_scopes_are_refused_not_widened() {
        let f = fixture();
        let claims = Claims {
            scope: "system/Observation.rs?category=laboratory".into(),
            ..lab_claims()
        };
        let token = f.issuer.mint(&claims, AUDIENCE, 1000, 60).unwrap();
        let denial = f
            .authenticator
            .authenticate(Some(&format!("Bearer {token}")), 1000)
            .unwrap_err();
        assert!(
            matches!(denial, Denial::Forbidden { ref message } if message.contains("parameters"))
        );
    }

    /// A token's signature is checked once; its claims and its client on every request, so
    /// that it is refused once expired, and a token with another signature is checked anew.
    #[test]
    fn a_verified_signature_is_remembered_but_nothing_else_is() {
        let f = fixture();
        let token = f.issuer.mint(&lab_claims(), AUDIENCE, 1000, 60).unwrap();
        let header = format!("Bearer {token}");
        for now in [1000, 1010, 1020] {
            assert!(f.authenticator.authenticate(Some(&header), now).is_ok());
        }
        assert!(f
            .authenticator
            .authenticate_at_once(Some(&header), 1030)
            .unwrap()
            .is_ok());
        assert_eq!(f.authenticator.signature_checks(), 1);
        // Past its expiry (and the leeway), refused though its signature was remembered.
        let late = f
            .authenticator
            .authenticate(Some(&header), 1000 + 60 + 3600);
        assert!(
            matches!(late, Err(Denial::Unauthenticated { .. })),
            "{late:?}"
        );
        let checks = f.authenticator.signature_checks();
        // Another token's signature on these claims makes another token, checked and refused,
        // as often as it comes.
        let other = f.issuer.mint(&lab_claims(), AUDIENCE, 1001, 60).unwrap();
        let mut parts: Vec<&str> = token.split('.').collect();
        parts[2] = other.split('.').nth(2).unwrap();
        let forged = format!("Bearer {}", parts.join("."));
        for round in 1..=2 {
            let denial = f
                .authenticator
                .authenticate(Some(&forged), 1010)
                .unwrap_err();
            assert!(format!("{denial:?}").contains("signature"), "{denial:?}");
            assert_eq!(f.authenticator.signature_checks(), checks + round);
        }
    }

    /// Without the network: a local token is decided at once; one from an external issuer
    /// whose signature was never verified is left to the blocking path.
    #[test]
    fn only_an_external_issuer_s_new_token_needs_the_blocking_path() {
        let dir =
            std::env::temp_dir().join(format!("carnet-auth-{}", uuid::Uuid::new_v4().simple()));
        let issuer =
            LocalIssuer::open(format!("{AUDIENCE}/local-issuer"), &dir.join("key.p8")).unwrap();
        let external = "https://idp.invalid/realms/carnet".to_owned();
        let trusted = issuers::TrustedIssuers::new(
            Some(&issuer),
            std::slice::from_ref(&external),
            Duration::from_secs(10),
        );
        let authenticator = Authenticator::new(trusted, AUDIENCE.to_owned(), Vec::new(), 86_400);
        let local = issuer.mint(&lab_claims(), AUDIENCE, 1000, 60).unwrap();
        assert!(authenticator
            .authenticate_at_once(Some(&format!("Bearer {local}")), 1000)
            .is_some());
        let b64 = |v: serde_json::Value| {
            base64::Engine::encode(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                v.to_string(),
            )
        };
        let foreign = format!(
            "{}.{}.c2ln",
            b64(serde_json::json!({"alg": "ES256", "typ": "JWT"})),
            b64(serde_json::json!({"iss": external, "aud": AUDIENCE, "exp": 1060}))
        );
        assert!(authenticator
            .authenticate_at_once(Some(&format!("Bearer {foreign}")), 1000)
            .is_none());
        assert_eq!(authenticator.signature_checks(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
