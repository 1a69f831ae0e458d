//! Compact JWS access tokens: decoding, the algorithm allowlist, signature verification against
//! an issuer's keys, and the registered claims (`iss`, `aud`, `exp`, `nbf`, `iat`) with a cap on
//! how long a token may live.
//!
//! Errors never quote the token: they name what was wrong, so they can be logged and returned.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use openidconnect::core::{CoreJsonWebKey, CoreJsonWebKeyType, CoreJwsSigningAlgorithm};
use openidconnect::{JsonWebKey, JsonWebKeyAlgorithm};
use serde_json::{Map, Value};

/// Seconds of clock difference tolerated on `exp` and `nbf`.
pub const LEEWAY_SECONDS: i64 = 60;

/// The latest time a claim may name: 9999-12-31T23:59:59Z. Anything later (`1e300`) is not a
/// time but a way to mint a token that never expires.
const MAX_NUMERIC_DATE: i64 = 253_402_300_799;

/// Tokens larger than this are refused before any decoding work.
const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is not a compact JWS: {0}")]
    Malformed(&'static str),
    #[error("signing algorithm {0} is not accepted (asymmetric RS*, PS*, ES256, ES384 only)")]
    UnsupportedAlgorithm(String),
    #[error("the token header lists critical extensions this server does not understand")]
    CriticalExtension,
    #[error("the token's issuer is not trusted")]
    UntrustedIssuer,
    #[error("the issuer's keys could not be fetched")]
    IssuerUnavailable,
    #[error("no key of the issuer matches the token's kid")]
    UnknownKey,
    #[error("the signature does not verify")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet (nbf)")]
    NotYetValid,
    #[error("the token is not meant for this server (aud)")]
    WrongAudience,
    #[error("claim `{0}` is missing or has the wrong type")]
    MissingClaim(&'static str),
    #[error("claim `{0}` is not a plausible time (whole seconds between 1970 and 9999)")]
    ImplausibleTime(&'static str),
    #[error("the token was issued in the future (iat)")]
    IssuedInTheFuture,
    #[error("the token lives longer than this server accepts ({0} s at most)")]
    TooLong(i64),
}

/// A token split and decoded, its signature not yet checked.
#[derive(Debug)]
pub struct Unverified {
    pub algorithm: CoreJwsSigningAlgorithm,
    pub kid: Option<String>,
    pub claims: Map<String, Value>,
    signing_input: String,
    signature: Vec<u8>,
}

impl Unverified {
    /// The `iss` claim, which says whose keys to check the signature with.
    pub fn issuer(&self) -> Result<&str, TokenError> {
        self.claims
            .get("iss")
            .and_then(Value::as_str)
            .ok_or(TokenError::MissingClaim("iss"))
    }
}

/// Splits and decodes a compact JWS, refusing `none`, HMAC and every algorithm not on the list.
pub fn decode(token: &str) -> Result<Unverified, TokenError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(TokenError::Malformed("it is too large"));
    }
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed("expected three dot-separated parts"));
    };
    let header = json_object(header, "header")?;
    let claims = json_object(payload, "payload")?;
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| TokenError::Malformed("the signature is not base64url"))?;
    if header.contains_key("crit") {
        return Err(TokenError::CriticalExtension);
    }
    let algorithm = match header.get("alg").and_then(Value::as_str) {
        Some(name) => accepted_algorithm(name)?,
        None => return Err(TokenError::Malformed("the header has no alg")),
    };
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(kid)) => Some(kid.clone()),
        Some(_) => return Err(TokenError::Malformed("kid is not a string")),
    };
    let (signing_input, _) = token.rsplit_once('.').expect("three parts were found");
    let signing_input = signing_input.to_owned();
    Ok(Unverified {
        algorithm,
        kid,
        claims,
        signing_input,
        signature,
    })
}

fn json_object(part: &str, what: &'static str) -> Result<Map<String, Value>, TokenError> {
    let bytes = URL_SAFE_NO_PAD.decode(part).map_err(|_| {
        TokenError::Malformed(if what == "header" {
            "the header is not base64url"
        } else {
            "the payload is not base64url"
        })
    })?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(TokenError::Malformed(if what == "header" {
            "the header is not a JSON object"
        } else {
            "the payload is not a JSON object"
        })),
    }
}

/// Only asymmetric signatures: with HMAC the verification key is a shared secret, and an
/// attacker who signs with the issuer's *public* key as the secret must get nowhere.
fn accepted_algorithm(name: &str) -> Result<CoreJwsSigningAlgorithm, TokenError> {
    use CoreJwsSigningAlgorithm as A;
    let algorithm = match name {
        "RS256" => A::RsaSsaPkcs1V15Sha256,
        "RS384" => A::RsaSsaPkcs1V15Sha384,
        "RS512" => A::RsaSsaPkcs1V15Sha512,
        "PS256" => A::RsaSsaPssSha256,
        "PS384" => A::RsaSsaPssSha384,
        "PS512" => A::RsaSsaPssSha512,
        "ES256" => A::EcdsaP256Sha256,
        "ES384" => A::EcdsaP384Sha384,
        other => {
            let shown: String = other
                .chars()
                .take(16)
                .filter(char::is_ascii_graphic)
                .collect();
            return Err(TokenError::UnsupportedAlgorithm(shown));
        }
    };
    Ok(algorithm)
}

/// Checks the signature with the issuer key the header names (or, without a `kid`, any key of
/// the issuer that fits the algorithm). Symmetric keys are never used, whatever the JWKS says.
pub fn verify_signature(token: &Unverified, keys: &[CoreJsonWebKey]) -> Result<(), TokenError> {
    let candidates: Vec<&CoreJsonWebKey> = keys
        .iter()
        .filter(|key| *key.key_type() != CoreJsonWebKeyType::Symmetric)
        .filter(|key| {
            key.key_use()
                .is_none_or(|u| *u == openidconnect::core::CoreJsonWebKeyUse::Signature)
        })
        .filter(|key| match key.signing_alg() {
            JsonWebKeyAlgorithm::Unspecified => true,
            JsonWebKeyAlgorithm::Algorithm(alg) => *alg == token.algorithm,
            JsonWebKeyAlgorithm::Unsupported => false,
        })
        .filter(|key| match &token.kid {
            Some(kid) => key.key_id().is_some_and(|k| k.as_str() == kid),
            None => true,
        })
        .collect();
    if candidates.is_empty() {
        return Err(TokenError::UnknownKey);
    }
    let verified = candidates.iter().any(|key| {
        key.verify_signature(
            &token.algorithm,
            token.signing_input.as_bytes(),
            &token.signature,
        )
        .is_ok()
    });
    if verified {
        Ok(())
    } else {
        Err(TokenError::BadSignature)
    }
}

/// Whether some key of `keys` carries the token's `kid` (a miss may mean the issuer rotated).
pub fn has_key(token: &Unverified, keys: &[CoreJsonWebKey]) -> bool {
    match &token.kid {
        Some(kid) => keys
            .iter()
            .any(|key| key.key_id().is_some_and(|k| k.as_str() == kid)),
        None => !keys.is_empty(),
    }
}

/// Checks `exp` (required), `nbf` and `iat` (when present), the lifetime (at most
/// `max_lifetime` seconds from now, and from `iat` when present) and `aud` (must name
/// `audience`).
pub fn check_claims(
    claims: &Map<String, Value>,
    audience: &str,
    now: i64,
    max_lifetime: i64,
) -> Result<(), TokenError> {
    let exp = numeric_date(claims, "exp")?.ok_or(TokenError::MissingClaim("exp"))?;
    let nbf = numeric_date(claims, "nbf")?;
    let iat = numeric_date(claims, "iat")?;
    if now.saturating_sub(LEEWAY_SECONDS) > exp {
        return Err(TokenError::Expired);
    }
    if nbf.is_some_and(|nbf| now.saturating_add(LEEWAY_SECONDS) < nbf) {
        return Err(TokenError::NotYetValid);
    }
    if iat.is_some_and(|iat| now.saturating_add(LEEWAY_SECONDS) < iat) {
        return Err(TokenError::IssuedInTheFuture);
    }
    let too_far = exp.saturating_sub(now) > max_lifetime.saturating_add(LEEWAY_SECONDS);
    if too_far || iat.is_some_and(|iat| exp.saturating_sub(iat) > max_lifetime) {
        return Err(TokenError::TooLong(max_lifetime));
    }
    let names_us = match claims.get("aud") {
        Some(Value::String(aud)) => same_audience(aud, audience),
        Some(Value::Array(auds)) => auds
            .iter()
            .any(|a| a.as_str().is_some_and(|a| same_audience(a, audience))),
        _ => return Err(TokenError::MissingClaim("aud")),
    };
    if names_us {
        Ok(())
    } else {
        Err(TokenError::WrongAudience)
    }
}

/// A trailing slash is not a different server.
fn same_audience(claimed: &str, audience: &str) -> bool {
    claimed.trim_end_matches('/') == audience.trim_end_matches('/')
}

/// Seconds since the epoch, between 1970 and 9999. Fractional values are allowed by RFC 7519
/// and truncated; negative, huge (`1e300`) and non-numeric values are refused.
pub(crate) fn numeric_date(
    claims: &Map<String, Value>,
    name: &'static str,
) -> Result<Option<i64>, TokenError> {
    let Some(value) = claims.get(name) else {
        return Ok(None);
    };
    let Value::Number(n) = value else {
        return Err(TokenError::MissingClaim(name));
    };
    let seconds = match n.as_i64() {
        Some(whole) => Some(whole),
        None if n.is_f64() => n
            .as_f64()
            .filter(|f| (0.0..=MAX_NUMERIC_DATE as f64).contains(f))
            .map(|f| f as i64),
        None => None, // an integer beyond i64
    };
    seconds
        .filter(|s| (0..=MAX_NUMERIC_DATE).contains(s))
        .map(Some)
        .ok_or(TokenError::ImplausibleTime(name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn encode(value: &Value) -> String {
        URL_SAFE_NO_PAD.encode(value.to_string())
    }

    fn token(header: Value, payload: Value) -> String {
        format!(
            "{}.{}.{}",
            encode(&header),
            encode(&payload),
            URL_SAFE_NO_PAD.encode([1u8; 64])
        )
    }

    #[test]
    fn none_and_hmac_are_refused_before_any_key_is_looked_at() {
        for alg in ["none", "HS256", "HS384", "HS512", "None", "", "RS1"] {
            let t = token(json!({"alg": alg}), json!({"iss": "x"}));
            assert!(
                matches!(decode(&t), Err(TokenError::UnsupportedAlgorithm(_))),
                "{alg}"
            );
        }
        let unsigned = format!(
            "{}.{}.",
            encode(&json!({"alg": "none"})),
            encode(&json!({}))
        );
        assert!(decode(&unsigned).is_err());
    }

    #[test]
    fn malformed_tokens_are_refused() {
        for t in [
            "",
            "a",
            "a.b",
            "a.b.c.d",
            "!!.e30.AA",
            "e30.e30.!!",
            "W10.e30.AA",
        ] {
            assert!(matches!(decode(t), Err(TokenError::Malformed(_))), "{t}");
        }
        let critical = token(json!({"alg": "ES256", "crit": ["exp"]}), json!({}));
        assert_eq!(
            decode(&critical).unwrap_err(),
            TokenError::CriticalExtension
        );
        assert!(decode(&"a".repeat(MAX_TOKEN_BYTES + 1)).is_err());
    }

    #[test]
    fn decoding_keeps_the_signing_input_exactly() {
        let t = token(
            json!({"alg": "ES256", "kid": "k1"}),
            json!({"iss": "https://i"}),
        );
        let decoded = decode(&t).unwrap();
        assert_eq!(decoded.kid.as_deref(), Some("k1"));
        assert_eq!(decoded.issuer().unwrap(), "https://i");
        assert_eq!(decoded.signing_input, t.rsplit_once('.').unwrap().0);
    }

    #[test]
    fn time_and_audience_claims_are_checked_with_leeway() {
        let aud = "https://fhir.example/fhir";
        let ok = |c: Value| check_claims(c.as_object().unwrap(), aud, 1000, 86_400);
        assert_eq!(ok(json!({"exp": 1001, "aud": aud})), Ok(()));
        assert_eq!(
            ok(json!({"exp": 1000 - LEEWAY_SECONDS, "aud": aud})),
            Ok(())
        );
        assert_eq!(
            ok(json!({"exp": 1000 - LEEWAY_SECONDS - 1, "aud": aud})),
            Err(TokenError::Expired)
        );
        assert_eq!(
            ok(json!({"aud": aud})),
            Err(TokenError::MissingClaim("exp"))
        );
        assert_eq!(
            ok(json!({"exp": "2000", "aud": aud})),
            Err(TokenError::MissingClaim("exp"))
        );
        assert_eq!(
            ok(json!({"exp": 2000, "nbf": 1000 + LEEWAY_SECONDS + 1, "aud": aud})),
            Err(TokenError::NotYetValid)
        );
        assert_eq!(ok(json!({"exp": 2000, "nbf": 1030, "aud": aud})), Ok(()));
        assert_eq!(
            ok(json!({"exp": 2000, "aud": [ "other", format!("{aud}/")]})),
            Ok(())
        );
        assert_eq!(
            ok(json!({"exp": 2000, "aud": "https://fhir.example/fhir2"})),
            Err(TokenError::WrongAudience)
        );
        assert_eq!(
            ok(json!({"exp": 2000})),
            Err(TokenError::MissingClaim("aud"))
        );
        // Extreme and absurd values are refused, never overflow.
        for exp in [
            json!(i64::MAX),
            json!(1e300),
            json!(u64::MAX),
            json!(-5),
            json!(-0.5),
        ] {
            assert_eq!(
                ok(json!({"exp": exp, "aud": aud})),
                Err(TokenError::ImplausibleTime("exp")),
                "{exp}"
            );
        }
        assert_eq!(
            ok(json!({"exp": 2000, "nbf": i64::MAX, "aud": aud})),
            Err(TokenError::ImplausibleTime("nbf"))
        );
        assert_eq!(
            ok(json!({"exp": 2000, "iat": 1e300, "aud": aud})),
            Err(TokenError::ImplausibleTime("iat"))
        );
        assert_eq!(ok(json!({"exp": 2000.75, "aud": aud})), Ok(()));
    }

    #[test]
    fn the_token_lifetime_is_capped() {
        let aud = "https://fhir.example/fhir";
        let check = |c: Value| check_claims(c.as_object().unwrap(), aud, 1000, 600);
        assert_eq!(check(json!({"exp": 1600, "aud": aud})), Ok(()));
        assert_eq!(
            check(json!({"exp": 1600 + LEEWAY_SECONDS + 1, "aud": aud})),
            Err(TokenError::TooLong(600))
        );
        // With `iat`, the whole lifetime counts, even when most of it has passed.
        assert_eq!(check(json!({"exp": 1500, "iat": 900, "aud": aud})), Ok(()));
        assert_eq!(
            check(json!({"exp": 1500, "iat": 800, "aud": aud})),
            Err(TokenError::TooLong(600))
        );
        assert_eq!(
            check(json!({"exp": 1500, "iat": 1000 + LEEWAY_SECONDS + 1, "aud": aud})),
            Err(TokenError::IssuedInTheFuture)
        );
    }

    #[test]
    fn a_symmetric_key_in_the_key_set_is_never_used() {
        let t = token(json!({"alg": "RS256"}), json!({}));
        let decoded = decode(&t).unwrap();
        let symmetric = CoreJsonWebKey::new_symmetric(b"secret".to_vec());
        assert_eq!(
            verify_signature(&decoded, &[symmetric]),
            Err(TokenError::UnknownKey)
        );
    }
}
