//! The per-worker verified-token cache: a repeated token skips parsing and signature work.
//!
//! It is keyed by the SHA-256 of the token and remembers the parsed token and which key
//! (by [`KeyFingerprint`]) gave which verdict. Only that verdict is reused, and only when the
//! request's key lookup lands on the very same key again, so it can never change an outcome:
//! the time claims, audience, required claims and key lookup all run on every request, and a
//! key removed or rotated (from config or a JWKS) simply stops matching.

use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

use sha2::{Digest, Sha256};

use super::crypto::KeyFingerprint;
use super::token::Token;

/// What the cache holds for one token.
#[derive(Clone, Debug)]
pub struct CachedToken {
    pub token: Rc<Token>,
    /// The last verdict and the key that gave it.
    pub verdict: Option<(KeyFingerprint, bool)>,
}

/// A bounded map from token hash to [`CachedToken`], evicting the oldest entry first.
#[derive(Debug)]
pub struct TokenCache {
    capacity: usize,
    generation: u64,
    entries: HashMap<[u8; 32], CachedToken>,
    order: VecDeque<[u8; 32]>,
}

impl TokenCache {
    /// A cache of at most `capacity` tokens (0 turns it off).
    pub fn new(capacity: usize) -> TokenCache {
        TokenCache {
            capacity,
            generation: 0,
            entries: HashMap::with_capacity(capacity.min(4096)),
            order: VecDeque::with_capacity(capacity.min(4096)),
        }
    }

    /// The key of `token` in the cache.
    pub fn key(token: &str) -> [u8; 32] {
        Sha256::digest(token.as_bytes()).into()
    }

    /// The entry for this key, if cached.
    pub fn get(&self, key: &[u8; 32]) -> Option<&CachedToken> {
        self.entries.get(key)
    }

    /// Stores `entry` under `key`, evicting the oldest entry when full.
    pub fn put(&mut self, key: [u8; 32], entry: CachedToken) {
        if self.capacity == 0 {
            return;
        }
        if self.entries.insert(key, entry).is_none() {
            self.order.push_back(key);
        }
        while self.entries.len() > self.capacity {
            match self.order.pop_front() {
                Some(old) => {
                    self.entries.remove(&old);
                }
                None => break,
            }
        }
    }

    /// Records `verdict` from the key `by` for a cached token.
    pub fn record(&mut self, key: &[u8; 32], by: KeyFingerprint, verdict: bool) {
        if let Some(entry) = self.entries.get_mut(key) {
            entry.verdict = Some((by, verdict));
        }
    }

    /// Drops every entry when the key-set generation the glue tracks (config or any JWKS
    /// install) has changed. Not needed for correctness (verdicts are tied to key
    /// fingerprints) but frees entries verified by keys that are gone.
    pub fn sync_generation(&mut self, generation: u64) {
        if generation != self.generation {
            self.generation = generation;
            self.clear();
        }
    }

    /// Drops every entry.
    pub fn clear(&mut self) {
        self.entries.clear();
        self.order.clear();
    }

    /// Number of cached tokens.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;

    fn token(n: u32) -> (String, CachedToken) {
        let raw = format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256"}"#),
            URL_SAFE_NO_PAD.encode(format!(r#"{{"n":{n}}}"#)),
            URL_SAFE_NO_PAD.encode([1u8; 32])
        );
        let parsed = Token::parse(&raw, 8192).unwrap();
        (
            raw,
            CachedToken {
                token: Rc::new(parsed),
                verdict: None,
            },
        )
    }

    #[test]
    fn stays_within_capacity_evicting_the_oldest() {
        let mut cache = TokenCache::new(2);
        let keys: Vec<_> = (0..3)
            .map(|n| {
                let (raw, entry) = token(n);
                let key = TokenCache::key(&raw);
                cache.put(key, entry);
                key
            })
            .collect();
        assert_eq!(cache.len(), 2);
        assert!(cache.get(&keys[0]).is_none());
        assert!(cache.get(&keys[1]).is_some() && cache.get(&keys[2]).is_some());
    }

    #[test]
    fn zero_capacity_caches_nothing() {
        let mut cache = TokenCache::new(0);
        let (raw, entry) = token(1);
        cache.put(TokenCache::key(&raw), entry);
        assert!(cache.is_empty());
    }

    #[test]
    fn a_new_generation_empties_the_cache() {
        let mut cache = TokenCache::new(4);
        cache.sync_generation(1);
        let (raw, entry) = token(1);
        cache.put(TokenCache::key(&raw), entry);
        cache.sync_generation(1);
        assert_eq!(cache.len(), 1);
        cache.sync_generation(2);
        assert!(cache.is_empty());
    }
}
