//! Tokens whose signature this server has already verified, until they expire: a client
//! sends the same bearer token on every request, and checking an ES256 signature each time
//! costs more than the rest of a read. Only the signature check is remembered, keyed by a
//! digest of the whole token (a token with another signature is another key), and only for
//! the keys it was checked with: once the issuer's keys are fetched again (rotated, or old),
//! the token is checked again with the new ones. Everything else — expiry, audience, the
//! client's registration, its scopes — is checked on every request, so a token the server
//! would now refuse is refused at once.

use ring::digest::{digest, SHA256};
use std::collections::HashMap;
use std::sync::Mutex;

/// Tokens remembered at most; past it, the expired go, and if none has, all (a forgotten token
/// is only verified again).
const CAPACITY: usize = 65_536;

/// The digests of verified tokens, their expiry (`exp`, seconds since the epoch) and the
/// generation of their issuer's keys they were verified with.
#[derive(Default)]
pub struct VerifiedTokens(Mutex<HashMap<[u8; 32], (i64, u64)>>);

/// The key of a token.
pub fn key(token: &str) -> [u8; 32] {
    let mut key = [0; 32];
    key.copy_from_slice(digest(&SHA256, token.as_bytes()).as_ref());
    key
}

impl VerifiedTokens {
    /// Whether the token of `key` was verified with the keys of `generation` and has not
    /// expired at `now`.
    pub fn holds(&self, key: &[u8; 32], now: i64, generation: u64) -> bool {
        let tokens = self.0.lock().unwrap_or_else(|p| p.into_inner());
        tokens
            .get(key)
            .is_some_and(|(exp, checked)| now <= *exp && *checked == generation)
    }

    /// Remembers that the token of `key`, expiring at `exp`, has a signature valid with the
    /// keys of `generation`.
    pub fn remember(&self, key: [u8; 32], exp: i64, generation: u64, now: i64) {
        let mut tokens = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if tokens.len() >= CAPACITY {
            tokens.retain(|_, (exp, _)| now <= *exp);
            if tokens.len() >= CAPACITY {
                tokens.clear();
            }
        }
        tokens.insert(key, (exp, generation));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_held_until_it_expires_or_its_keys_change_and_only_that_token() {
        let tokens = VerifiedTokens::default();
        tokens.remember(key("a.b.c"), 100, 1, 10);
        assert!(tokens.holds(&key("a.b.c"), 100, 1));
        assert!(!tokens.holds(&key("a.b.c"), 101, 1));
        assert!(
            !tokens.holds(&key("a.b.c"), 50, 2),
            "checked with other keys"
        );
        assert!(!tokens.holds(&key("a.b.d"), 50, 1));
    }

    #[test]
    fn a_full_store_makes_room() {
        let tokens = VerifiedTokens::default();
        for i in 0..CAPACITY {
            tokens.remember(key(&i.to_string()), 5, 0, 0);
        }
        tokens.remember(key("fresh"), 100, 0, 10);
        assert!(tokens.holds(&key("fresh"), 10, 0));
        assert_eq!(tokens.0.lock().unwrap().len(), 1, "the expired ones went");
    }
}
