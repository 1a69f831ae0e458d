//! The issuers whose tokens are trusted, and their signing keys: the local issuer's own key, and
//! external OpenID Connect providers found by discovery, their JWKS cached and fetched again
//! when a token names a key not seen yet (the provider rotated), at a bounded rate.

use super::jwt::{self, TokenError, Unverified};
use super::local_issuer::LocalIssuer;
use openidconnect::core::{CoreJsonWebKey, CoreProviderMetadata};
use openidconnect::IssuerUrl;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long one discovery or JWKS request may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Keys older than this are fetched again, so a key the issuer withdrew stops being trusted
/// even if no token with a new `kid` comes along.
const MAX_KEY_AGE: Duration = Duration::from_secs(3600);

/// Every trusted issuer.
pub struct TrustedIssuers {
    local: Option<(String, Vec<CoreJsonWebKey>)>,
    external: Vec<ExternalIssuer>,
    http: ureq::Agent,
}

/// One external provider and what is known of its keys.
struct ExternalIssuer {
    url: String,
    min_refresh: Duration,
    keys: Mutex<KeyCache>,
    /// Held by the one request fetching keys.
    fetching: Mutex<()>,
}

#[derive(Default)]
struct KeyCache {
    keys: Vec<CoreJsonWebKey>,
    provider: Option<Provider>,
    last_fetch: Option<Instant>,
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
                min_refresh,
                keys: Mutex::new(KeyCache::default()),
                fetching: Mutex::new(()),
            })
            .collect();
        // No redirects: the configured URLs are the only places keys come from.
        let http = ureq::AgentBuilder::new()
            .timeout(FETCH_TIMEOUT)
            .redirects(0)
            .build();
        TrustedIssuers {
            local,
            external,
            http,
        }
    }

    /// The issuer clients should get tokens from: the first external one (its discovery fetched
    /// if never fetched yet), else the local issuer.
    pub fn primary_provider(&self) -> Option<Provider> {
        if let Some(first) = self.external.first() {
            let wanted = {
                let cache = first.cache();
                cache.provider.is_none() && first.may_fetch(&cache)
            };
            if wanted {
                first.try_refresh(&self.http);
            }
            return first.cache().provider.clone();
        }
        self.local.as_ref().map(|(url, _)| Provider {
            issuer: url.clone(),
            jwks_uri: format!("{url}/jwks"),
            authorization_endpoint: None,
            token_endpoint: Some(super::backend_services::token_url(url)),
            grant_types: vec!["client_credentials".to_owned()],
        })
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
        let keys = external.keys_for(token, &self.http)?;
        jwt::verify_signature(token, &keys)
    }
}

impl ExternalIssuer {
    /// The cached keys, fetched again first when the token's key is not among them (or the
    /// keys are old) and the last fetch is old enough. Only one request fetches at a time and
    /// nobody waits for it: the others go on with the keys already known, so a flood of unknown
    /// `kid`s cannot hold requests hostage to the issuer's response time.
    fn keys_for(
        &self,
        token: &Unverified,
        http: &ureq::Agent,
    ) -> Result<Vec<CoreJsonWebKey>, TokenError> {
        let wanted = {
            let cache = self.cache();
            let fresh = cache
                .last_fetch
                .is_some_and(|at| at.elapsed() < MAX_KEY_AGE);
            !(fresh && jwt::has_key(token, &cache.keys)) && self.may_fetch(&cache)
        };
        if wanted {
            self.try_refresh(http);
        }
        let cache = self.cache();
        match cache.keys.is_empty() {
            true => Err(TokenError::IssuerUnavailable),
            false => Ok(cache.keys.clone()),
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, KeyCache> {
        self.keys.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn may_fetch(&self, cache: &KeyCache) -> bool {
        cache
            .last_fetch
            .is_none_or(|at| at.elapsed() >= self.min_refresh)
    }

    /// Fetches discovery and keys unless another request is doing it; the cache is locked only
    /// to read and store, never across the network. On failure the previous keys stay.
    fn try_refresh(&self, http: &ureq::Agent) {
        let Ok(_fetching) = self.fetching.try_lock() else {
            return;
        };
        {
            let mut cache = self.cache();
            if !self.may_fetch(&cache) {
                return;
            }
            cache.last_fetch = Some(Instant::now());
        }
        let fetched = self.fetch(http);
        let mut cache = self.cache();
        match fetched {
            Ok((keys, provider)) => {
                tracing::info!(issuer = %self.url, keys = keys.len(), "issuer keys fetched");
                cache.keys = keys;
                cache.provider = Some(provider);
            }
            Err(reason) => {
                tracing::warn!(issuer = %self.url, %reason, "issuer keys could not be fetched");
            }
        }
    }

    /// Discovery (which checks that the document names this very issuer), then its JWKS.
    fn fetch(&self, http: &ureq::Agent) -> Result<(Vec<CoreJsonWebKey>, Provider), String> {
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
