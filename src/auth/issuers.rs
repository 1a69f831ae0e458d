//! The issuers whose tokens are trusted, and their signing keys: the local issuer's own key, and
//! external OpenID Connect providers found by discovery, their JWKS cached and fetched again
//! when a token names a key not seen yet (the provider rotated), at a bounded rate.

use super::jwt::{self, TokenError, Unverified};
use super::key_cache::{self, Fetched, KeyCache};
use super::local_issuer::LocalIssuer;
use openidconnect::core::{CoreJsonWebKey, CoreProviderMetadata};
use openidconnect::IssuerUrl;
use std::time::Duration;

/// Every trusted issuer.
pub struct TrustedIssuers {
    local: Option<(String, Vec<CoreJsonWebKey>)>,
    external: Vec<ExternalIssuer>,
    http: ureq::Agent,
}

/// One external provider, its keys and its discovery document.
struct ExternalIssuer {
    url: String,
    keys: KeyCache<Provider>,
}

/// What clients need to know of an issuer to get tokens (for the SMART configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provider {
    pub issuer: String,
    pub jwks_uri: String,
    pub authorization_endpoint: Option<String>,
    pub token_endpoint: Option<String>,
    /// The grant types its discovery document lists.
    pub grant_types: Vec<String>,
}

impl TrustedIssuers {
    /// The local issuer (if on) and the configured external issuer URLs. Nothing is fetched yet:
    /// a provider that is down at start must not keep the server from starting.
    pub fn new(
        local: Option<&LocalIssuer>,
        external: &[String],
        min_refresh: Duration,
    ) -> TrustedIssuers {
        let local = local.map(|issuer| {
            let jwk = serde_json::from_value(issuer.jwk()).expect("our JWK is a valid JWK");
            (issuer.url.clone(), vec![jwk])
        });
        let external = external
            .iter()
            .map(|url| ExternalIssuer {
                // Compared exactly, as OpenID Connect requires: a trailing slash is part of
                // the issuer identifier.
                url: url.clone(),
                keys: KeyCache::new(min_refresh),
            })
            .collect();
        TrustedIssuers {
            local,
            external,
            http: key_cache::http_agent(),
        }
    }

    /// The issuer clients should get tokens from: the first external one (its discovery fetched
    /// if never fetched yet), else the local issuer.
    pub fn primary_provider(&self) -> Option<Provider> {
        if let Some(first) = self.external.first() {
            return first.keys.metadata(|| first.fetch(&self.http));
        }
        self.local.as_ref().map(|(url, _)| Provider {
            issuer: url.clone(),
            jwks_uri: format!("{url}/jwks"),
            authorization_endpoint: None,
            token_endpoint: Some(super::backend_services::token_url(url)),
            grant_types: vec!["client_credentials".to_owned()],
        })
    }

    /// Which keys `token`'s issuer has now, as a number that changes when they are replaced
    /// (fetched again): this server's own never change; an external issuer's are `None` once
    /// old enough to be fetched again, or if the issuer is not trusted.
    pub fn key_generation(&self, token: &Unverified) -> Option<u64> {
        if self.is_local(token) {
            return Some(0);
        }
        let issuer = token.issuer().ok()?;
        let external = self.external.iter().find(|e| e.url == issuer)?;
        external.keys.fresh_generation()
    }

    /// Whether the keys of `token`'s issuer are this server's own, so that checking its
    /// signature fetches nothing.
    pub fn is_local(&self, token: &Unverified) -> bool {
        match (&self.local, token.issuer()) {
            (Some((url, _)), Ok(issuer)) => url == issuer,
            _ => false,
        }
    }

    /// Verifies the token's signature with the keys of the issuer it names. May block on the
    /// network (discovery, JWKS), so call it off the async executor.
    pub fn verify_signature(&self, token: &Unverified) -> Result<(), TokenError> {
        let issuer = token.issuer()?;
        if let Some((url, keys)) = &self.local {
            if url == issuer {
                return jwt::verify_signature(token, keys);
            }
        }
        let external = self
            .external
            .iter()
            .find(|e| e.url == issuer)
            .ok_or(TokenError::UntrustedIssuer)?;
        let keys = external.keys.keys_for(token, || external.fetch(&self.http));
        if keys.is_empty() {
            return Err(TokenError::IssuerUnavailable);
        }
        jwt::verify_signature(token, &keys)
    }
}

impl ExternalIssuer {
    /// [`Self::discover`], logged.
    fn fetch(&self, http: &ureq::Agent) -> Fetched<Provider> {
        let fetched = self.discover(http);
        match &fetched {
            Ok((keys, _)) => {
                tracing::info!(issuer = %self.url, keys = keys.len(), "issuer keys fetched")
            }
            Err(reason) => {
                tracing::warn!(issuer = %self.url, %reason, "issuer keys could not be fetched")
            }
        }
        fetched
    }

    /// Discovery (which checks that the document names this very issuer), then its JWKS.
    fn discover(&self, http: &ureq::Agent) -> Fetched<Provider> {
        let url = IssuerUrl::new(self.url.clone()).map_err(|e| e.to_string())?;
        let metadata = CoreProviderMetadata::discover(&url, http).map_err(|e| {
            let mut reason = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                reason.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            reason
        })?;
        let jwks_uri = metadata.jwks_uri().to_string();
        crate::config::check_fetch_url(&jwks_uri).map_err(|e| e.to_string())?;
        let provider = Provider {
            issuer: self.url.clone(),
            jwks_uri: metadata.jwks_uri().to_string(),
            authorization_endpoint: Some(metadata.authorization_endpoint().to_string()),
            token_endpoint: metadata.token_endpoint().map(|t| t.to_string()),
            // RFC 8414: without the member, the provider supports these two.
            grant_types: match metadata.grant_types_supported() {
                Some(types) => types
                    .iter()
                    .filter_map(|t| serde_json::to_value(t).ok()?.as_str().map(str::to_owned))
                    .collect(),
                None => vec!["authorization_code".to_owned(), "implicit".to_owned()],
            },
        };
        Ok((metadata.jwks().keys().clone(), provider))
    }
}
