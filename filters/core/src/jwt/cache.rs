//! The per-worker verified-token cache: a repeated token skips parsing and signature work.
//!
//! It is keyed by a 64-bit SipHash of the token under keys drawn at random per worker (so
//! nobody outside can aim tokens at one bucket), and an entry is used only when its token
//! equals the request's byte for byte: a hash collision is a miss, never a shared verdict.
//! (A SHA-256 key cost ~7000 wasm instructions per 64 bytes of token, most of a cache
//! hit.) It remembers the parsed token and which key (by [`KeyFingerprint`]) gave which
//! verdict. Only that verdict is reused, and only when the
//! request's key lookup lands on the very same key again, so it can never change an outcome:
//! the time claims, audience, required claims and key lookup all run on every request, and a
//! key removed or rotated (from config or a JWKS) simply stops matching.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::rc::Rc;

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
    /// SipHash keys, random per cache (per worker).
    hasher: RandomState,
    entries: HashMap<CacheKey, CachedToken>,
    order: VecDeque<CacheKey>,
}

/// Where a token sits in the cache: its keyed hash.
pub type CacheKey = u64;

impl TokenCache {
    /// A cache of at most `capacity` tokens (0 turns it off).
    pub fn new(capacity: usize) -> TokenCache {
        TokenCache {
            capacity,
            generation: 0,
            hasher: RandomState::new(),
            entries: HashMap::with_capacity(capacity.min(4096)),
            order: VecDeque::with_capacity(capacity.min(4096)),
        }
    }

    /// The key of `token` in the cache.
    pub fn key(&self, token: &str) -> CacheKey {
        self.hasher.hash_one(token)
    }

    /// The entry of the token `raw` (whose key is `key`), if cached.
    pub fn get(&self, key: CacheKey, raw: &str) -> Option<&CachedToken> {
        self.entries.get(&key).filter(|e| e.token.raw() == raw)
    }

    /// Stores `entry` under `key` (replacing whatever token shared it), evicting the oldest
    /// entry when full.
    pub fn put(&mut self, key: CacheKey, entry: CachedToken) {
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

    /// Records `verdict` from the key `by` for the cached token `raw`.
    pub fn record(&mut self, key: CacheKey, raw: &str, by: KeyFingerprint, verdict: bool) {
        if let Some(entry) = self.entries.get_mut(&key).filter(|e| e.token.raw() == raw) {
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
                let key = cache.key(&raw);
                cache.put(key, entry);
                (key, raw)
            })
            .collect();
        assert_eq!(cache.len(), 2);
        assert!(cache.get(keys[0].0, &keys[0].1).is_none());
        assert!(cache.get(keys[1].0, &keys[1].1).is_some());
        assert!(cache.get(keys[2].0, &keys[2].1).is_some());
    }

    #[test]
    fn zero_capacity_caches_nothing() {
        let mut cache = TokenCache::new(0);
        let (raw, entry) = token(1);
        cache.put(cache.key(&raw), entry);
        assert!(cache.is_empty());
    }

    #[test]
    fn a_new_generation_empties_the_cache() {
        let mut cache = TokenCache::new(4);
        cache.sync_generation(1);
        let (raw, entry) = token(1);
        cache.put(cache.key(&raw), entry);
        cache.sync_generation(1);
        assert_eq!(cache.len(), 1);
        cache.sync_generation(2);
        assert!(cache.is_empty());
    }

    #[test]
    fn a_colliding_key_is_a_miss_never_another_tokens_entry() {
        let mut cache = TokenCache::new(4);
        let (raw, entry) = token(1);
        let (other, _) = token(2);
        let key = cache.key(&raw);
        cache.put(key, entry);
        assert!(cache.get(key, &raw).is_some());
        // Another token that (by construction here) lands on the same key.
        assert!(cache.get(key, &other).is_none());
        cache.record(key, &other, KeyFingerprint([7; 16]), true);
        assert_eq!(cache.get(key, &raw).unwrap().verdict, None, "not recorded");
    }

    #[test]
    fn keys_differ_between_caches() {
        let (raw, _) = token(1);
        let keys: std::collections::HashSet<CacheKey> =
            (0..8).map(|_| TokenCache::new(1).key(&raw)).collect();
        assert!(keys.len() > 1, "every worker draws its own hash keys");
    }
}
