//! The per-worker verified-token cache: a repeated token skips parsing and signature work.
//!
//! It is keyed by a fast 64-bit hash of the token, seeded at random per worker, and an
//! entry is used only when its token equals the request's byte for byte: a collision is a
//! miss, never a shared verdict. Collisions cannot flood the map either: two tokens with
//! one key replace each other (a miss, the uncached cost), they never chain. (A SHA-256
//! key cost ~7000 wasm instructions per 64 bytes of token, and SipHash ~5000 for a short
//! token: most of a cache hit.) It remembers the parsed token and which key (by
//! [`KeyFingerprint`]) verified it. That verdict is reused only when the request's key lookup
//! lands on the very same key again, so it can never change an outcome: the time claims,
//! audience, required claims and key lookup all run on every request, and a key removed or
//! rotated (from config or a JWKS) simply stops matching.
//!
//! Only tokens that passed their signature check enter it (a token refused for any reason is
//! never stored), so a client sending junk cannot evict the tokens of real clients. Memory per
//! worker: at most `capacity` entries, each the token (at most the policy's
//! `max_token_bytes`), its decoded header and claims (three quarters of the token's length)
//! and a small index entry per top-level member.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::rc::Rc;

use super::token::Token;
use crate::jose::crypto::KeyFingerprint;

/// What the cache holds for one verified token.
#[derive(Clone, Debug)]
pub struct CachedToken {
    pub token: Rc<Token>,
    /// The key whose check the token passed.
    pub verified_by: KeyFingerprint,
}

/// A bounded map from token hash to [`CachedToken`], evicting the oldest entry first.
#[derive(Debug)]
pub struct TokenCache {
    capacity: usize,
    generation: u64,
    /// The hash's seed, random per cache (per worker).
    seed: u64,
    entries: HashMap<CacheKey, CachedToken, BuildHasherDefault<KeyHasher>>,
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
            seed: RandomState::new().hash_one(0x5eed_u64),
            entries: HashMap::with_capacity_and_hasher(capacity.min(4096), Default::default()),
            order: VecDeque::with_capacity(capacity.min(4096)),
        }
    }

    /// The key of `token` in the cache.
    pub fn key(&self, token: &str) -> CacheKey {
        token_hash(self.seed, token.as_bytes())
    }

    /// The entry of the token `raw` (whose key is `key`), if cached.
    pub fn get(&self, key: CacheKey, raw: &str) -> Option<&CachedToken> {
        self.entries
            .get(&key)
            .filter(|e| same(e.token.raw().as_bytes(), raw.as_bytes()))
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

/// A multiply-rotate hash over 8-byte words (FxHash's step), seeded, with splitmix64's
/// finaliser so every bit of the result depends on every word: a few instructions per 8
/// bytes of token in wasm.
fn token_hash(seed: u64, bytes: &[u8]) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mut h = seed ^ (bytes.len() as u64).wrapping_mul(K);
    let mut words = bytes.chunks_exact(8);
    for word in &mut words {
        let mut w = [0u8; 8];
        w.copy_from_slice(word);
        h = (h.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(K);
    }
    let rest = words.remainder();
    if !rest.is_empty() {
        let mut w = [0u8; 8];
        if let Some(head) = w.get_mut(..rest.len()) {
            head.copy_from_slice(rest);
        }
        h = (h.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(K);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// `a == b`, eight bytes at a time (the byte-wise `memcmp` wasm gets costs ~10
/// instructions a byte).
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let (mut x, mut y) = (a.chunks_exact(8), b.chunks_exact(8));
    let words_equal = (&mut x).zip(&mut y).all(|(p, q)| {
        let (mut u, mut v) = ([0u8; 8], [0u8; 8]);
        u.copy_from_slice(p);
        v.copy_from_slice(q);
        u64::from_ne_bytes(u) == u64::from_ne_bytes(v)
    });
    words_equal && x.remainder() == y.remainder()
}

/// The map's hasher: its keys are hashes already.
#[derive(Default)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used (the keys are u64); anything else still hashes.
        self.0 = token_hash(self.0, bytes);
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
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
                verified_by: KeyFingerprint([n as u8; 16]),
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
    }

    #[test]
    fn the_hash_sees_every_byte_and_the_length() {
        let base = b"eyJhbGciOiJIUzI1NiJ9.eyJuIjoxfQ.c2lnbmF0dXJl".to_vec();
        let mut seen = std::collections::HashSet::new();
        assert!(seen.insert(token_hash(1, &base)));
        for i in 0..base.len() {
            let mut flipped = base.clone();
            flipped[i] ^= 1;
            assert!(seen.insert(token_hash(1, &flipped)), "byte {i}");
        }
        assert!(seen.insert(token_hash(1, &base[..base.len() - 1])));
        let mut padded = base.clone();
        padded.push(0);
        assert!(
            seen.insert(token_hash(1, &padded)),
            "a trailing zero byte counts"
        );
        assert_ne!(
            token_hash(1, &base),
            token_hash(2, &base),
            "the seed counts"
        );
    }

    #[test]
    fn same_is_equality() {
        let a = b"0123456789abcdefXYZ".to_vec();
        for len in 0..=a.len() {
            assert!(same(&a[..len], &a[..len]));
            for i in 0..len {
                let mut b = a[..len].to_vec();
                b[i] ^= 0x20;
                assert!(!same(&a[..len], &b), "len {len}, byte {i}");
            }
            if len > 0 {
                assert!(!same(&a[..len], &a[..len - 1]));
            }
        }
    }

    #[test]
    fn keys_differ_between_caches() {
        let (raw, _) = token(1);
        let keys: std::collections::HashSet<CacheKey> =
            (0..8).map(|_| TokenCache::new(1).key(&raw)).collect();
        assert!(keys.len() > 1, "every worker draws its own hash keys");
    }
}
