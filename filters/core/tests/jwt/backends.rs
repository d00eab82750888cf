//! Backends agree, and the cache never changes an outcome.
//!
//! `RingHost` stands in for Envoy's `verify_signature`: it takes exactly what
//! `host_verify_input` prepares (hash name, SPKI DER, DER ECDSA signature, text) and checks
//! it with ring, BoringSSL's descendant, as the host would.

use std::cell::Cell;

use portcullis_core::jose::crypto::{
    ecdsa_der, host_capable, host_verify_input, AlgorithmSet, CryptoError, SplitBackend,
};
use portcullis_core::jose::jwks::parse_jwks;
use portcullis_core::jose::{Algorithm, InModule, PreparedKey, SignatureBackend};
use portcullis_core::jwt::{KeyStore, Rejection, TokenCache};
use portcullis_core::UnixTime;
use ring::signature::{self as ring_sig, UnparsedPublicKey, VerificationAlgorithm};
use rsa::pkcs8::spki::{der::Decode, SubjectPublicKeyInfoRef};
use serde_json::json;

use crate::common::*;

struct RingHost;

impl SignatureBackend for RingHost {
    fn verify(
        &self,
        alg: Algorithm,
        key: &PreparedKey,
        input: &[u8],
        signature: &[u8],
    ) -> Result<bool, CryptoError> {
        let Some(call) = host_verify_input(alg, key, input, signature)? else {
            return Ok(false);
        };
        let spki = SubjectPublicKeyInfoRef::from_der(call.public_key)
            .map_err(|e| CryptoError::Host(e.to_string()))?;
        let raw = spki.subject_public_key.raw_bytes();
        let rsa = spki.algorithm.oid.to_string() == "1.2.840.113549.1.1.1";
        let algorithm: &'static dyn VerificationAlgorithm =
            match (rsa, raw.len(), call.hash_function) {
                (true, _, "sha256") => &ring_sig::RSA_PKCS1_2048_8192_SHA256,
                (true, _, "sha384") => &ring_sig::RSA_PKCS1_2048_8192_SHA384,
                (true, _, "sha512") => &ring_sig::RSA_PKCS1_2048_8192_SHA512,
                (false, 65, "sha256") => &ring_sig::ECDSA_P256_SHA256_ASN1,
                (false, 97, "sha384") => &ring_sig::ECDSA_P384_SHA384_ASN1,
                other => return Err(CryptoError::Host(format!("unexpected host call {other:?}"))),
            };
        Ok(UnparsedPublicKey::new(algorithm, raw)
            .verify(call.text, &call.signature)
            .is_ok())
    }
}

fn key(alg: Algorithm) -> PreparedKey {
    match public_pem(alg) {
        Some(pem) => PreparedKey::from_pem(alg, &pem).unwrap(),
        None => PreparedKey::hmac(alg, secret_for(alg).as_bytes()).unwrap(),
    }
}

/// Every good token, and for each a set of bad signatures: flipped bits, truncated,
/// over-long, empty, all-zero, all-0xff, and a signature made with another key.
fn corpus(alg: Algorithm) -> Vec<(String, Vec<u8>, Vec<u8>)> {
    let token = mint(alg, valid_claims("x"), None);
    let (input, sig) = token.rsplit_once('.').unwrap();
    let sig =
        base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, sig).unwrap();
    let mut cases = vec![("good".to_owned(), input.as_bytes().to_vec(), sig.clone())];
    let mut push =
        |name: &str, s: Vec<u8>| cases.push((name.to_owned(), input.as_bytes().to_vec(), s));
    for i in [0, sig.len() / 2, sig.len() - 1] {
        let mut s = sig.clone();
        s[i] ^= 0x80;
        push(&format!("flip byte {i}"), s);
    }
    push("truncated", sig[..sig.len() - 1].to_vec());
    push("over-long", [sig.clone(), vec![0]].concat());
    push("empty", Vec::new());
    push("zero", vec![0; sig.len()]);
    push("all ff", vec![0xff; sig.len()]);
    if matches!(alg, Algorithm::ES256 | Algorithm::ES384) {
        let half = sig.len() / 2;
        push("r zero", [vec![0; half], sig[half..].to_vec()].concat());
        push("s zero", [sig[..half].to_vec(), vec![0; half]].concat());
    }
    if matches!(alg, Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512) {
        let other = mint_with(alg, valid_claims("x"), None, Some("rsa2048-other.key.pem"));
        let other_sig = other.rsplit_once('.').unwrap().1;
        let other_sig =
            base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, other_sig)
                .unwrap();
        push("other key", other_sig);
    }
    let mut longer = input.as_bytes().to_vec();
    longer.push(b'x');
    cases.push(("good signature, other text".to_owned(), longer, sig));
    cases
}

#[test]
fn host_and_in_module_backends_agree_on_every_token() {
    for alg in Algorithm::ALL {
        let key = key(alg);
        for (name, input, sig) in corpus(alg) {
            let in_module = InModule.verify(alg, &key, &input, &sig);
            assert_eq!(
                in_module.as_ref().ok().copied(),
                Some(name == "good"),
                "{alg} {name}: in-module"
            );
            if host_capable().contains(alg) {
                assert_eq!(
                    RingHost.verify(alg, &key, &input, &sig),
                    in_module,
                    "{alg} {name}: host differs"
                );
            } else {
                assert_eq!(
                    host_verify_input(alg, &key, &input, &sig).unwrap_err(),
                    CryptoError::Unsupported(alg)
                );
            }
        }
    }
}

#[test]
fn backends_refuse_a_key_not_pinned_to_the_alg() {
    let rs = key(Algorithm::RS256);
    assert_eq!(
        InModule.verify(Algorithm::PS256, &rs, b"x", b"y"),
        Err(CryptoError::KeyMismatch(Algorithm::PS256))
    );
    assert_eq!(
        RingHost.verify(Algorithm::ES256, &rs, b"x", b"y"),
        Err(CryptoError::KeyMismatch(Algorithm::ES256))
    );
}

#[test]
fn split_backend_sends_each_algorithm_to_its_backend() {
    struct Refuse;
    impl SignatureBackend for Refuse {
        fn verify(
            &self,
            alg: Algorithm,
            _: &PreparedKey,
            _: &[u8],
            _: &[u8],
        ) -> Result<bool, CryptoError> {
            Err(CryptoError::Host(format!("host asked for {alg}")))
        }
    }
    let split = SplitBackend {
        host: Refuse,
        host_algorithms: AlgorithmSet::only(Algorithm::RS256),
    };
    let token = mint(Algorithm::ES256, valid_claims("x"), None);
    let (input, sig) = token.rsplit_once('.').unwrap();
    let sig =
        base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, sig).unwrap();
    assert_eq!(
        split.verify(
            Algorithm::ES256,
            &key(Algorithm::ES256),
            input.as_bytes(),
            &sig
        ),
        Ok(true)
    );
    assert!(split
        .verify(Algorithm::RS256, &key(Algorithm::RS256), b"x", b"y")
        .is_err());
}

#[test]
fn ecdsa_der_is_minimal() {
    let mut raw = vec![0u8; 64];
    raw[0] = 0x80; // r with the high bit set: needs a 0x00 pad
    raw[31] = 1;
    raw[63] = 5; // s = 5: leading zeros stripped
    let der = ecdsa_der(Algorithm::ES256, &raw).unwrap();
    assert_eq!(&der[..5], &[0x30, 33 + 2 + 3, 0x02, 33, 0x00]);
    assert_eq!(&der[der.len() - 3..], &[0x02, 0x01, 0x05]);
    assert_eq!(ecdsa_der(Algorithm::ES256, &[0u8; 64]), None);
}

#[test]
fn host_input_carries_hash_name_and_spki() {
    let key = key(Algorithm::RS384);
    let token = mint(Algorithm::RS384, valid_claims("x"), None);
    let (input, sig) = token.rsplit_once('.').unwrap();
    let sig =
        base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, sig).unwrap();
    let call = host_verify_input(Algorithm::RS384, &key, input.as_bytes(), &sig)
        .unwrap()
        .unwrap();
    assert_eq!(call.hash_function, "sha384");
    assert_eq!(call.public_key, key.spki_der().unwrap());
    assert_eq!(call.text, input.as_bytes());
    assert_eq!(&*call.signature, sig.as_slice());
    assert_eq!(
        host_verify_input(Algorithm::RS384, &key, b"x", &sig[1..]).unwrap(),
        None
    );
}

struct Counting<'a>(&'a Cell<u32>);

impl SignatureBackend for Counting<'_> {
    fn verify(
        &self,
        alg: Algorithm,
        key: &PreparedKey,
        input: &[u8],
        sig: &[u8],
    ) -> Result<bool, CryptoError> {
        self.0.set(self.0.get() + 1);
        InModule.verify(alg, key, input, sig)
    }
}

fn headers(token: &str) -> Vec<(&'static str, String)> {
    vec![("authorization", bearer(token))]
}

fn as_refs<'a>(h: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    h.iter().map(|(n, v)| (*n, v.as_str())).collect()
}

#[test]
fn cache_skips_the_signature_on_a_repeated_token() {
    let set = standard();
    let calls = Cell::new(0);
    let mut cache = TokenCache::new(16);
    let h = headers(&mint(Algorithm::RS256, valid_claims("rs256-key"), None));
    let first = run_full(
        &set,
        None,
        &as_refs(&h),
        NOW,
        &Counting(&calls),
        &KeyStore::new(),
        Some(&mut cache),
    )
    .accepted();
    let second = run_full(
        &set,
        None,
        &as_refs(&h),
        NOW,
        &Counting(&calls),
        &KeyStore::new(),
        Some(&mut cache),
    )
    .accepted();
    assert_eq!(calls.get(), 1);
    assert!(!first.cache_hit && second.cache_hit);
    assert_eq!(first.identity(), second.identity());
}

#[test]
fn cache_still_checks_exp_and_nbf_on_every_hit() {
    let set = standard();
    let mut cache = TokenCache::new(16);
    let h = headers(&mint(
        Algorithm::HS256,
        json!({"iss": "hs256-key", "exp": NOW.0 + 100, "nbf": NOW.0 - 10}),
        None,
    ));
    let at = |t: u64, cache: &mut TokenCache| {
        run_full(
            &set,
            None,
            &as_refs(&h),
            UnixTime(t),
            &InModule,
            &KeyStore::new(),
            Some(cache),
        )
    };
    assert!(matches!(at(NOW.0, &mut cache), Outcome::Accepted(_)));
    assert_eq!(at(NOW.0 + 200, &mut cache).rejection(), Rejection::Expired);
    assert_eq!(
        at(NOW.0 - 100, &mut cache).rejection(),
        Rejection::NotYetValid
    );
}

#[test]
fn cache_does_not_reuse_a_verdict_after_the_key_changes() {
    let set = standard();
    let mut cache = TokenCache::new(16);
    let mut store = KeyStore::new();
    let claims = json!({"iss": "https://remote.example", "sub": "carol", "exp": NOW.0 + 60});
    let h = headers(&mint(Algorithm::ES256, claims, Some("k")));
    store.install(
        "remote",
        1,
        parse_jwks(
            json!({"keys": [ec_jwk("p256.pub.pem", "P-256", "k")]})
                .to_string()
                .as_bytes(),
        )
        .unwrap()
        .set,
    );
    let ok = run_full(
        &set,
        None,
        &as_refs(&h),
        NOW,
        &InModule,
        &store,
        Some(&mut cache),
    );
    assert!(matches!(ok, Outcome::Accepted(_)));
    // Same kid, other key material: the cached verdict belongs to the old key.
    let other = json!({"keys": [ec_jwk("p256-other.pub.pem", "P-256", "k")]});
    store.install(
        "remote",
        2,
        parse_jwks(other.to_string().as_bytes()).unwrap().set,
    );
    let rejected = run_full(
        &set,
        None,
        &as_refs(&h),
        NOW,
        &InModule,
        &store,
        Some(&mut cache),
    );
    assert_eq!(rejected.rejection(), Rejection::BadSignature);
}

#[test]
fn cache_never_changes_an_outcome() {
    let set = standard();
    let mut requests: Vec<(Option<&str>, String)> = Vec::new();
    for alg in Algorithm::ALL {
        let good = mint(alg, valid_claims(&key_for(alg)), None);
        let (input, _) = good.rsplit_once('.').unwrap();
        let forged = format!(
            "{input}.{}",
            good.rsplit_once('.')
                .unwrap()
                .1
                .chars()
                .rev()
                .collect::<String>()
        );
        let expired = mint(alg, json!({"iss": key_for(alg), "exp": NOW.0 - 1000}), None);
        let wrong_alg = mint(
            alg,
            valid_claims(if alg == Algorithm::HS256 {
                "hs384-key"
            } else {
                "hs256-key"
            }),
            None,
        );
        for token in [good, forged, expired, wrong_alg] {
            requests.push((None, token.clone()));
            requests.push((Some("strict-route"), token));
        }
    }
    let mut cache = TokenCache::new(8); // small: evictions happen too
    for round in 0..3 {
        for (route, token) in &requests {
            let h = headers(token);
            let plain = run_full(
                &set,
                *route,
                &as_refs(&h),
                NOW,
                &InModule,
                &KeyStore::new(),
                None,
            );
            let cached = run_full(
                &set,
                *route,
                &as_refs(&h),
                NOW,
                &InModule,
                &KeyStore::new(),
                Some(&mut cache),
            );
            let strip = |o: Outcome| match o {
                Outcome::Accepted(mut a) => {
                    a.cache_hit = false;
                    Outcome::Accepted(a)
                }
                other => other,
            };
            assert_eq!(strip(plain), strip(cached), "round {round} route {route:?}");
        }
    }
}

#[test]
fn only_verified_tokens_enter_the_cache_so_junk_cannot_evict_them() {
    let set = standard();
    let calls = Cell::new(0);
    let mut cache = TokenCache::new(2);
    let run = |h: &[(&'static str, String)], cache: &mut TokenCache| {
        run_full(
            &set,
            None,
            &as_refs(h),
            NOW,
            &Counting(&calls),
            &KeyStore::new(),
            Some(cache),
        )
    };
    let good = headers(&mint(Algorithm::RS256, valid_claims("rs256-key"), None));
    assert!(matches!(run(&good, &mut cache), Outcome::Accepted(_)));
    assert_eq!(cache.len(), 1);
    // A flood of distinct forged tokens (a valid header and claims, a signature that does
    // not verify), expired ones and unparsable ones: none is stored.
    for n in 0..50u64 {
        let claims = json!({"iss": "rs256-key", "exp": NOW.0 + 60, "n": n});
        let genuine = mint(Algorithm::RS256, claims, None);
        let (signed, _) = genuine.rsplit_once('.').unwrap();
        let forged = format!("{signed}.{}", "A".repeat(342));
        assert_eq!(
            run(&headers(&forged), &mut cache).rejection(),
            Rejection::BadSignature
        );
        let expired = json!({"iss": "rs256-key", "exp": NOW.0 - 3600, "n": n});
        let expired = headers(&mint(Algorithm::RS256, expired, None));
        assert_eq!(run(&expired, &mut cache).rejection(), Rejection::Expired);
        assert!(matches!(
            run(&headers(&format!("junk.{n}.x")), &mut cache).rejection(),
            Rejection::Malformed(_)
        ));
    }
    assert_eq!(cache.len(), 1, "a refused token was cached");
    // The verified token is still there: its next request skips the signature check.
    let before = calls.get();
    assert!(run(&good, &mut cache).accepted().cache_hit);
    assert_eq!(calls.get(), before);
}
