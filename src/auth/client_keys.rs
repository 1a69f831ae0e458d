//! The public keys registered clients sign their token requests with (SMART Backend Services,
//! `private_key_jwt`): one JWK in the registration (`jwk`), or a key set the client publishes
//! (`jwks_url`), fetched like an issuer's keys ([`KeyCache`]): https (or http on loopback), a
//! timeout, no redirects, a size bound, cached and fetched again at a bounded rate when a `kid`
//! is unknown.

use super::jwt::Unverified;
use super::key_cache::{self, Fetched, KeyCache};
use super::principal::Client;
use openidconnect::core::CoreJsonWebKey;
use serde_json::Value;
use std::collections::HashMap;
use std::io::Read;
use std::time::Duration;

/// Key sets larger than this are refused (a key set holds a few keys of a few KB).
const MAX_JWKS_BYTES: u64 = 256 * 1024;

/// Members only a private key has: registering one would put the client's secret in our file.
const PRIVATE_MEMBERS: [&str; 7] = ["d", "p", "q", "dp", "dq", "qi", "k"];

/// Checks a registration's key settings when the configuration loads.
pub fn check_registration(client: &Client) -> Result<(), String> {
    match (&client.jwk, &client.jwks_url) {
        (Some(_), Some(_)) => Err("set `jwk` or `jwks_url`, not both".to_owned()),
        (Some(jwk), None) => parse_public_jwk(jwk).map(|_| ()),
        (None, Some(url)) => {
            crate::config::check_fetch_url_of("jwks_url", url).map_err(|e| e.0)?;
            Ok(())
        }
        (None, None) => Ok(()),
    }
}

/// A public RSA or EC signing key, from its JSON text.
pub fn parse_public_jwk(text: &str) -> Result<CoreJsonWebKey, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("`jwk` is not JSON: {e}"))?;
    public_key(&value)
}

fn public_key(value: &Value) -> Result<CoreJsonWebKey, String> {
    let Some(members) = value.as_object() else {
        return Err("the JWK is not a JSON object".to_owned());
    };
    if PRIVATE_MEMBERS.iter().any(|m| members.contains_key(*m)) {
        return Err(
            "the JWK holds a private or symmetric key; register the public key only".into(),
        );
    }
    match members.get("kty").and_then(Value::as_str) {
        Some("RSA" | "EC") => {}
        _ => return Err("the JWK must be an RSA or EC key (kty)".to_owned()),
    }
    serde_json::from_value(value.clone()).map_err(|e| format!("the JWK is not usable: {e}"))
}

/// Every registered client's keys.
pub struct ClientKeys {
    by_client: HashMap<String, Source>,
    http: ureq::Agent,
}

enum Source {
    Fixed(Vec<CoreJsonWebKey>),
    /// A key set at the client's URL.
    Published {
        url: String,
        keys: KeyCache<()>,
    },
}

impl ClientKeys {
    /// The keys of `clients` (registrations already checked); nothing is fetched yet.
    pub fn new(clients: &[Client], min_refresh: Duration) -> ClientKeys {
        let by_client = clients
            .iter()
            .filter_map(|client| {
                let source = match (&client.jwk, &client.jwks_url) {
                    (Some(jwk), _) => {
                        Source::Fixed(parse_public_jwk(jwk).ok().into_iter().collect())
                    }
                    (None, Some(url)) => Source::Published {
                        url: url.clone(),
                        keys: KeyCache::new(min_refresh),
                    },
                    (None, None) => return None,
                };
                Some((client.client_id.clone(), source))
            })
            .collect();
        ClientKeys {
            by_client,
            http: key_cache::http_agent(),
        }
    }

    /// The keys to check `assertion` from `client_id` with; `None` when the client registered
    /// none. May block on the network.
    pub fn keys_for(&self, client_id: &str, assertion: &Unverified) -> Option<Vec<CoreJsonWebKey>> {
        match self.by_client.get(client_id)? {
            Source::Fixed(keys) => Some(keys.clone()),
            Source::Published { url, keys } => Some(keys.keys_for(assertion, || {
                let fetched = fetch(url, &self.http);
                match &fetched {
                    Ok((keys, ())) => {
                        tracing::info!(%url, keys = keys.len(), "client keys fetched")
                    }
                    Err(reason) => {
                        tracing::warn!(%url, %reason, "client keys could not be fetched")
                    }
                }
                fetched
            })),
        }
    }
}

/// Fetches a key set; private, symmetric and unusable keys in it are skipped.
fn fetch(url: &str, http: &ureq::Agent) -> Fetched<()> {
    let response = http.get(url).call().map_err(|e| e.to_string())?;
    if response.status() != 200 {
        return Err(format!(
            "status {} (redirects are not followed)",
            response.status()
        ));
    }
    let mut body = Vec::new();
    response
        .into_reader()
        .take(MAX_JWKS_BYTES + 1)
        .read_to_end(&mut body)
        .map_err(|e| e.to_string())?;
    if body.len() as u64 > MAX_JWKS_BYTES {
        return Err("the key set is too large".to_owned());
    }
    let set: Value = serde_json::from_slice(&body).map_err(|e| format!("not JSON: {e}"))?;
    let keys = set
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("not a JWKS (no `keys` array)")?;
    Ok((keys.iter().filter_map(|k| public_key(k).ok()).collect(), ()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_asymmetric_keys_register() {
        let public = r#"{"kty":"EC","crv":"P-384","x":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","y":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","kid":"k1"}"#;
        assert!(parse_public_jwk(public).is_ok());
        let private = public.replace(r#""kid""#, r#""d":"AAAA","kid""#);
        assert!(parse_public_jwk(&private).unwrap_err().contains("private"));
        assert!(parse_public_jwk(r#"{"kty":"oct","k":"c2VjcmV0"}"#).is_err());
        assert!(parse_public_jwk(r#"{"kty":"OKP"}"#)
            .unwrap_err()
            .contains("kty"));
        assert!(parse_public_jwk("not json").is_err());
        assert!(parse_public_jwk("[]").is_err());
    }
}
