//! A signing key set fetched over the network and cached, shared by the external issuers' keys
//! and the Backend Services clients' published keys (`jwks_url`): one refresh policy for both.
//!
//! The keys are fetched again when a token names a key not among them (the owner rotated) or
//! when they are old (a withdrawn key must stop being trusted), at most once per `min_refresh`
//! however many unknown `kid`s arrive, and by one request at a time: the others go on with the
//! keys already known, so a flood of unknown `kid`s cannot hold requests hostage to the remote
//! server's response time nor turn into a flood of requests to it.

use super::jwt::{self, Unverified};
use openidconnect::core::CoreJsonWebKey;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long one fetch (each of its HTTP requests) may take, body included.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Keys older than this are fetched again.
const MAX_KEY_AGE: Duration = Duration::from_secs(3600);

/// The HTTP client for key fetches: a timeout, and no redirects (the configured URLs are the
/// only places keys come from).
pub fn http_agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout(FETCH_TIMEOUT)
        .redirects(0)
        .build()
}

/// The keys of one remote key set, and `M`, what else the same fetch learnt (an issuer's
/// discovery document).
pub struct KeyCache<M> {
    min_refresh: Duration,
    state: Mutex<State<M>>,
    /// Held by the one request fetching.
    fetching: Mutex<()>,
}

struct State<M> {
    keys: Vec<CoreJsonWebKey>,
    metadata: Option<M>,
    last_fetch: Option<Instant>,
    /// Successful fetches so far: a signature verified with the keys of one generation is
    /// verified again once others replace them.
    generation: u64,
}

impl<M> State<M> {
    /// Whether the keys were fetched recently enough to be trusted without fetching again.
    fn fresh(&self) -> bool {
        self.last_fetch.is_some_and(|at| at.elapsed() < MAX_KEY_AGE)
    }
}

/// A fetch: the keys and what came with them, or why it failed (logged by the caller).
pub type Fetched<M> = Result<(Vec<CoreJsonWebKey>, M), String>;

impl<M: Clone> KeyCache<M> {
    /// An empty cache: nothing is fetched until a token needs it.
    pub fn new(min_refresh: Duration) -> KeyCache<M> {
        KeyCache {
            min_refresh,
            state: Mutex::new(State {
                keys: Vec::new(),
                metadata: None,
                last_fetch: None,
                generation: 0,
            }),
            fetching: Mutex::new(()),
        }
    }

    /// The keys to check `token` with, fetched again first (by `fetch`) when they are old or
    /// lack the token's `kid` and the policy allows. May block on the network.
    pub fn keys_for(
        &self,
        token: &Unverified,
        fetch: impl FnOnce() -> Fetched<M>,
    ) -> Vec<CoreJsonWebKey> {
        let wanted = {
            let state = self.state();
            !(state.fresh() && jwt::has_key(token, &state.keys)) && self.may_fetch(&state)
        };
        if wanted {
            self.try_refresh(fetch);
        }
        self.state().keys.clone()
    }

    /// What the last successful fetch learnt besides the keys, fetching once first if nothing
    /// was ever fetched (and the policy allows).
    pub fn metadata(&self, fetch: impl FnOnce() -> Fetched<M>) -> Option<M> {
        let wanted = {
            let state = self.state();
            state.metadata.is_none() && self.may_fetch(&state)
        };
        if wanted {
            self.try_refresh(fetch);
        }
        self.state().metadata.clone()
    }

    /// The generation of the keys held, while they are young enough to be trusted without
    /// fetching them again; `None` once they are old (or were never fetched).
    pub fn fresh_generation(&self) -> Option<u64> {
        let state = self.state();
        (state.fresh() && state.generation > 0).then_some(state.generation)
    }

    fn state(&self) -> MutexGuard<'_, State<M>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn may_fetch(&self, state: &State<M>) -> bool {
        state
            .last_fetch
            .is_none_or(|at| at.elapsed() >= self.min_refresh)
    }

    /// Fetches unless another request is doing it or did it too recently (checked again once
    /// the fetch lock is held, so two requests that both saw stale keys fetch once). The state
    /// is locked only to read and store, never across the network; on failure the previous
    /// keys stay.
    fn try_refresh(&self, fetch: impl FnOnce() -> Fetched<M>) {
        let Ok(_fetching) = self.fetching.try_lock() else {
            return;
        };
        {
            let mut state = self.state();
            if !self.may_fetch(&state) {
                return;
            }
            state.last_fetch = Some(Instant::now());
        }
        if let Ok((keys, metadata)) = fetch() {
            let mut state = self.state();
            state.keys = keys;
            state.metadata = Some(metadata);
            state.generation += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use serde_json::json;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn token(kid: &str) -> Unverified {
        let part = |v: serde_json::Value| URL_SAFE_NO_PAD.encode(v.to_string());
        let t = format!(
            "{}.{}.AA",
            part(json!({"alg": "ES256", "kid": kid})),
            part(json!({"iss": "i"}))
        );
        jwt::decode(&t).unwrap()
    }

    fn key(kid: &str) -> CoreJsonWebKey {
        serde_json::from_value(json!({"kty": "EC", "crv": "P-256", "kid": kid,
            "x": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "y": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}))
        .unwrap()
    }

    #[test]
    fn unknown_kids_fetch_at_most_once_per_interval() {
        let cache: KeyCache<&str> = KeyCache::new(Duration::from_secs(3600));
        let fetches = AtomicUsize::new(0);
        let fetch = || {
            fetches.fetch_add(1, Ordering::SeqCst);
            Ok((vec![key("k1")], "meta"))
        };
        assert_eq!(cache.keys_for(&token("k1"), fetch).len(), 1);
        for kid in ["k2", "k3", "k4"] {
            assert_eq!(cache.keys_for(&token(kid), fetch).len(), 1);
        }
        assert_eq!(cache.metadata(fetch), Some("meta"));
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn nobody_waits_for_the_fetch_in_progress_and_a_failure_keeps_the_keys() {
        let cache: KeyCache<()> = KeyCache::new(Duration::ZERO);
        cache.keys_for(&token("k1"), || Ok((vec![key("k1")], ())));
        let (entered, release) = (std::sync::Barrier::new(2), std::sync::Barrier::new(2));
        std::thread::scope(|scope| {
            scope.spawn(|| {
                cache.keys_for(&token("k2"), || {
                    entered.wait();
                    release.wait();
                    Err("down".to_owned())
                })
            });
            entered.wait();
            // While that fetch hangs, another request is answered at once from the cache.
            let keys = cache.keys_for(&token("k2"), || panic!("a second fetch at once"));
            assert_eq!(keys.len(), 1);
            release.wait();
        });
        assert_eq!(cache.keys_for(&token("k1"), || Err("down".into())).len(), 1);
    }
}
