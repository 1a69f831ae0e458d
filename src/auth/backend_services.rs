//! The local issuer's token endpoint: SMART Backend Services, i.e. the OAuth 2.0
//! `client_credentials` grant with `private_key_jwt` client authentication (RFC 7523). A lab
//! system signs a short-lived assertion with its own key and gets an access token for the scopes
//! it asks, narrowed to its registration exactly as the gate narrows any token.

use super::client_keys::ClientKeys;
use super::jwt::{self, TokenError};
use super::local_issuer::LocalIssuer;
use super::principal::{self, AuthError, Claims, Client, ClientKind};
use super::scopes::parse_scopes;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The only `client_assertion_type` (RFC 7523 §2.2).
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The longest an assertion may live (SMART: `exp` no more than five minutes ahead).
const MAX_ASSERTION_LIFETIME: i64 = 300;

/// How long issued access tokens live (SMART recommends five minutes), unless the server's
/// cap is lower.
const ACCESS_TOKEN_LIFETIME: i64 = 300;

/// Assertion ids remembered at once for one client; beyond, its requests wait for old ones to
/// expire. Counted per client, so one client flooding the endpoint cannot lock out the others
/// (a lab asking a token every second needs about 360).
const MAX_SEEN_PER_CLIENT: usize = 10_000;

/// The signing algorithms announced (SMART requires RS384 and ES384; the others on the
/// gate's allowlist are accepted too).
pub const SIGNING_ALGORITHMS: [&str; 8] = [
    "RS384", "ES384", "RS256", "RS512", "PS256", "PS384", "PS512", "ES256",
];

/// Issues access tokens to clients that prove who they are with their registered key.
pub struct BackendServices {
    issuer: Arc<LocalIssuer>,
    /// This endpoint's URL: the `aud` every assertion must name.
    token_url: String,
    /// The `aud` of the access tokens issued.
    audience: String,
    clients: Vec<Client>,
    keys: ClientKeys,
    max_lifetime: i64,
    /// Per client, the `jti` of the assertions already used, with their `exp`.
    seen: Mutex<HashMap<String, HashMap<String, i64>>>,
}

/// A token granted (RFC 6749 §5.1).
#[derive(Debug)]
pub struct Grant {
    /// Who got it, for the audit log.
    pub client_id: String,
    pub access_token: String,
    pub expires_in: i64,
    pub scope: String,
}

/// A refusal (RFC 6749 §5.2): the HTTP status, the error code and what was wrong.
#[derive(Debug, PartialEq, Eq)]
pub struct OAuthError {
    pub status: u16,
    pub error: &'static str,
    pub description: String,
}

impl OAuthError {
    fn new(status: u16, error: &'static str, description: impl Into<String>) -> OAuthError {
        OAuthError {
            status,
            error,
            description: description.into(),
        }
    }

    fn request(description: impl Into<String>) -> OAuthError {
        OAuthError::new(400, "invalid_request", description)
    }

    fn client(description: impl Into<String>) -> OAuthError {
        OAuthError::new(401, "invalid_client", description)
    }

    fn scope(description: impl Into<String>) -> OAuthError {
        OAuthError::new(400, "invalid_scope", description)
    }
}

impl BackendServices {
    /// The endpoint at `{issuer}/token`, issuing tokens for the configured audience to the
    /// registered clients.
    pub fn new(issuer: Arc<LocalIssuer>, config: &crate::config::Config) -> BackendServices {
        let min_refresh = std::time::Duration::from_secs(config.auth.jwks_min_refresh_seconds);
        BackendServices {
            token_url: token_url(&issuer.url),
            issuer,
            audience: config.audience().to_owned(),
            keys: ClientKeys::new(&config.clients, min_refresh),
            clients: config.clients.clone(),
            max_lifetime: config.max_token_lifetime(),
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Answers a token request (its form parameters) at time `now`. May block while a client's
    /// key set is fetched.
    pub fn grant(&self, form: &[(String, String)], now: i64) -> Result<Grant, OAuthError> {
        let param = |name: &str| -> Result<Option<&str>, OAuthError> {
            let mut values = form.iter().filter(|(k, _)| k == name);
            match (values.next(), values.next()) {
                (Some(_), Some(_)) => Err(OAuthError::request(format!(
                    "parameter `{name}` is sent more than once"
                ))),
                (value, _) => Ok(value.map(|(_, v)| v.as_str())),
            }
        };
        match param("grant_type")? {
            None => return Err(OAuthError::request("parameter `grant_type` is missing")),
            Some("client_credentials") => {}
            Some(_) => {
                return Err(OAuthError::new(
                    400,
                    "unsupported_grant_type",
                    "this endpoint grants client_credentials only",
                ))
            }
        }
        if param("client_assertion_type")? != Some(ASSERTION_TYPE) {
            return Err(OAuthError::client(format!(
                "clients authenticate with private_key_jwt: send client_assertion_type={ASSERTION_TYPE} and a client_assertion"
            )));
        }
        let assertion = param("client_assertion")?
            .ok_or_else(|| OAuthError::client("parameter `client_assertion` is missing"))?;
        let client = self.authenticate(assertion, param("client_id")?, now)?;
        let scope = param("scope")?
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| OAuthError::scope("parameter `scope` is missing"))?;
        self.issue(client, scope, now)
    }

    /// Verifies the assertion: a registered client with a key, its signature, `iss` = `sub` =
    /// the client, `aud` = this endpoint, a short lifetime and a `jti` never seen before.
    fn authenticate(
        &self,
        assertion: &str,
        client_id: Option<&str>,
        now: i64,
    ) -> Result<&Client, OAuthError> {
        let invalid = |e: TokenError| OAuthError::client(format!("client_assertion: {e}"));
        let unverified = jwt::decode(assertion).map_err(invalid)?;
        let issuer = unverified.issuer().map_err(invalid)?;
        // Until the caller has proved it holds a registered key, every failure reads the same,
        // so the answers do not tell which client ids are registered or which have keys; the
        // log keeps the reason for the operator.
        let unproven = |reason: String| {
            tracing::warn!(target: "carnet::auth", client = ?issuer, %reason, "client assertion refused");
            OAuthError::client(
                "client_assertion: the client is not registered here, or the assertion is not \
                 signed by one of its registered keys",
            )
        };
        let client = self
            .clients
            .iter()
            .find(|c| c.client_id == issuer)
            .ok_or_else(|| unproven("the client is not registered".to_owned()))?;
        let keys = self
            .keys
            .keys_for(&client.client_id, &unverified)
            .ok_or_else(|| unproven("the client has no registered key (jwk or jwks_url)".into()))?;
        jwt::verify_signature(&unverified, &keys).map_err(|e| unproven(e.to_string()))?;
        let claims = &unverified.claims;
        if claims.get("sub").and_then(Value::as_str) != Some(client.client_id.as_str()) {
            return Err(OAuthError::client(
                "client_assertion: `sub` must be the client_id, like `iss`",
            ));
        }
        if client_id.is_some_and(|id| id != client.client_id) {
            return Err(OAuthError::client(
                "client_id does not match the assertion's issuer",
            ));
        }
        // One audience: an assertion also meant for another server could be replayed here by
        // that server (the "audience injection" of private_key_jwt).
        let single = match claims.get("aud") {
            Some(Value::Array(auds)) => auds.len() == 1,
            _ => true,
        };
        if !single {
            return Err(OAuthError::client(format!(
                "client_assertion: `aud` must name this token endpoint alone ({})",
                self.token_url
            )));
        }
        jwt::check_claims(claims, &self.token_url, now, MAX_ASSERTION_LIFETIME).map_err(invalid)?;
        let jti = match claims.get("jti") {
            Some(Value::String(jti)) if !jti.is_empty() && jti.len() <= 255 => jti.clone(),
            _ => {
                return Err(OAuthError::client(
                    "client_assertion: `jti` must be a unique string of at most 255 characters",
                ))
            }
        };
        let exp = claims.get("exp").and_then(Value::as_f64).unwrap_or(0.0) as i64;
        self.remember(&client.client_id, jti, exp, now)?;
        Ok(client)
    }

    /// Records an assertion id until its `exp` (and the clock leeway) has passed; a second use
    /// within that time is a replay.
    fn remember(&self, client_id: &str, jti: String, exp: i64, now: i64) -> Result<(), OAuthError> {
        let mut all = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let seen = all.entry(client_id.to_owned()).or_default();
        if seen.len() >= MAX_SEEN_PER_CLIENT / 2 {
            seen.retain(|_, exp| exp.saturating_add(jwt::LEEWAY_SECONDS) >= now);
        }
        if seen.len() >= MAX_SEEN_PER_CLIENT {
            return Err(OAuthError::new(
                503,
                "temporarily_unavailable",
                "too many token requests from this client; try again in a few minutes",
            ));
        }
        match seen.entry(jti) {
            std::collections::hash_map::Entry::Occupied(_) => Err(OAuthError::client(
                "client_assertion: this jti was already used (replay)",
            )),
            std::collections::hash_map::Entry::Vacant(entry) => {
                entry.insert(exp);
                Ok(())
            }
        }
    }

    /// The scopes asked, narrowed by the registration exactly as the gate narrows a token's,
    /// in a token for the client acting on its own behalf.
    fn issue(&self, client: &Client, scope: &str, now: i64) -> Result<Grant, OAuthError> {
        if !matches!(client.kind, ClientKind::Feeder | ClientKind::Provisioning) {
            return Err(OAuthError::new(
                400,
                "unauthorized_client",
                format!(
                    "a {} client acts for a person and cannot use client_credentials",
                    client.kind.as_str()
                ),
            ));
        }
        parse_scopes(scope).map_err(|e| OAuthError::scope(e.to_string()))?;
        let asked = Claims {
            sub: Some(client.client_id.clone()),
            client_id: Some(client.client_id.clone()),
            scope: scope.to_owned(),
            ..Claims::default()
        };
        let (_, granted) = principal::derive(&asked, &self.clients).map_err(|e| match e {
            AuthError::UnknownClient { .. } | AuthError::ClientWithoutOrganization { .. } => {
                OAuthError::new(400, "unauthorized_client", e.message())
            }
            _ => OAuthError::scope(e.message()),
        })?;
        super::refuse_scope_parameters(&granted).map_err(OAuthError::scope)?;
        // Resource scopes only: `openid`, `fhirUser`, `launch/…` or `offline_access` mean
        // nothing for a client acting for itself (no id token, no user, no refresh token).
        let scope = granted
            .resource_scopes()
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(" ");
        let claims = Claims { scope, ..asked };
        let expires_in = ACCESS_TOKEN_LIFETIME.min(self.max_lifetime);
        let access_token = self
            .issuer
            .mint(&claims, &self.audience, now, expires_in)
            .map_err(|e| OAuthError::new(500, "server_error", e))?;
        Ok(Grant {
            client_id: client.client_id.clone(),
            access_token,
            expires_in,
            scope: claims.scope,
        })
    }
}

/// The token endpoint of the local issuer at `issuer_url`.
pub fn token_url(issuer_url: &str) -> String {
    format!("{issuer_url}/token")
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P384_SHA384_FIXED_SIGNING};
    use serde_json::json;

    const NOW: i64 = 1_800_000_000;

    fn key() -> EcdsaKeyPair {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &rng).unwrap();
        EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap()
    }

    fn sign(key: &EcdsaKeyPair, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(json!({"alg": "ES384", "kid": "k"}).to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = key.sign(&SystemRandom::new(), input.as_bytes()).unwrap();
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
    }

    #[test]
    fn one_client_filling_its_replay_memory_does_not_lock_out_the_others() {
        let dir = std::env::temp_dir().join(format!("carnet-bs-{}", uuid::Uuid::new_v4().simple()));
        let issuer = LocalIssuer::open("https://x/fhir/local-issuer".into(), &dir.join("k.p8"));
        let service =
            BackendServices::new(Arc::new(issuer.unwrap()), &crate::config::Config::default());
        let exp = NOW + 300;
        let refused = (0..1_000_000)
            .find_map(|n| service.remember("flooder", n.to_string(), exp, NOW).err())
            .expect("the memory is bounded");
        assert_eq!(
            (refused.status, refused.error),
            (503, "temporarily_unavailable")
        );
        assert_eq!(service.remember("lab", "one".into(), exp, NOW), Ok(()));
        assert_eq!(
            service
                .remember("lab", "one".into(), exp, NOW)
                .unwrap_err()
                .status,
            401
        );
        // Once the flooder's assertions have expired, it is served again.
        let later = exp + jwt::LEEWAY_SECONDS + 1;
        assert_eq!(
            service.remember("flooder", "new".into(), later + 300, later),
            Ok(())
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_signed_assertion_gets_narrowed_scopes_once() {
        let dir = std::env::temp_dir().join(format!("carnet-bs-{}", uuid::Uuid::new_v4().simple()));
        let issuer = LocalIssuer::open("https://x/fhir/local-issuer".into(), &dir.join("k.p8"));
        let client_key = key();
        let point = client_key.public_key().as_ref();
        let jwk = json!({"kty": "EC", "crv": "P-384", "kid": "k",
            "x": URL_SAFE_NO_PAD.encode(&point[1..49]), "y": URL_SAFE_NO_PAD.encode(&point[49..97])});
        let clients = toml::from_str::<toml::Table>(&format!(
            "[[c]]\nclient_id = \"lab\"\nkind = \"feeder\"\norganization = \"o|1\"\n\
             scopes = \"system/*.rs openid fhirUser offline_access\"\njwk = '{jwk}'\n"
        ))
        .unwrap()["c"]
            .clone()
            .try_into()
            .unwrap();
        let config = crate::config::Config {
            base_url: "https://x/fhir".into(),
            clients,
            ..Default::default()
        };
        let service = BackendServices::new(Arc::new(issuer.unwrap()), &config);
        let assertion = sign(
            &client_key,
            &json!({"iss": "lab", "sub": "lab", "aud": "https://x/fhir/local-issuer/token",
                "exp": NOW + 200, "jti": "one"}),
        );
        let form: Vec<(String, String)> = [
            ("grant_type", "client_credentials"),
            (
                "scope",
                "system/Patient.cruds openid fhirUser offline_access",
            ),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", &assertion),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let grant = service.grant(&form, NOW).unwrap();
        assert_eq!(grant.scope, "system/Patient.rs");
        assert_eq!(grant.expires_in, 300);
        let replay = service.grant(&form, NOW + 1).unwrap_err();
        assert_eq!((replay.status, replay.error), (401, "invalid_client"));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
