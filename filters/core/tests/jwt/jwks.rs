//! JWKS documents: usable keys kept, bad keys skipped and reported, garbage refused.

use portcullis_core::jose::jwks::{parse_jwks, JwksError};
use portcullis_core::jose::Algorithm;
use serde_json::json;

use crate::common::*;

#[test]
fn keeps_good_keys_and_reports_bad_ones() {
    let doc = json!({"keys": [
        rsa_jwk("rsa2048.pub.pem", "rsa"),
        ec_jwk("p256.pub.pem", "P-256", "p256"),
        ec_jwk("p384.pub.pem", "P-384", "p384"),
        ed_jwk("ed"),
        {"kty": "oct", "kid": "hs", "alg": "HS256", "k": b64(HS256_SECRET)},
        {"kty": "oct", "kid": "no-alg", "k": b64(HS256_SECRET)},
        {"kty": "RSA", "kid": "enc", "use": "enc", "n": "AQAB", "e": "AQAB"},
        {"kty": "EC", "kid": "priv", "crv": "P-256", "x": "AA", "y": "AA", "d": "AA"},
        {"kty": "EC", "kid": "k1", "crv": "secp256k1", "x": "AA", "y": "AA"},
        {"kty": "RSA", "kid": "small", "n": rsa_jwk("rsa1024.pub.pem", "x")["n"], "e": "AQAB"},
        {"kty": "EC", "kid": "off-curve", "crv": "P-256", "x": b64([1u8; 32]), "y": b64([2u8; 32])},
        "not an object"
    ]});
    let parsed = parse_jwks(doc.to_string().as_bytes()).unwrap();
    let kids: Vec<_> = parsed
        .set
        .keys()
        .iter()
        .filter_map(|k| k.kid.clone())
        .collect();
    assert_eq!(kids, vec!["rsa", "p256", "p384", "ed", "hs"]);
    assert_eq!(parsed.skipped.len(), 7, "{:#?}", parsed.skipped);
    assert!(parsed.skipped[0].starts_with("keys[5]: \"oct\" key without \"alg\""));
    assert!(parsed.skipped[3].contains("secp256k1"));
    assert!(parsed.skipped[4].contains("1024 bits"));
    assert!(parsed.skipped[5].contains("not on P-256"));
}

#[test]
fn an_rsa_jwk_without_alg_verifies_every_rsa_algorithm_and_nothing_else() {
    let doc = json!({"keys": [rsa_jwk("rsa2048.pub.pem", "rsa")]});
    let parsed = parse_jwks(doc.to_string().as_bytes()).unwrap();
    let key = &parsed.set.keys()[0].key;
    let allowed: Vec<_> = key.algorithms().iter().collect();
    use Algorithm::*;
    assert_eq!(allowed, vec![RS256, RS384, RS512, PS256, PS384, PS512]);
    let mut jwk = rsa_jwk("rsa2048.pub.pem", "rsa");
    jwk["alg"] = json!("PS256");
    let parsed = parse_jwks(json!({"keys": [jwk]}).to_string().as_bytes()).unwrap();
    assert_eq!(
        parsed.set.keys()[0]
            .key
            .algorithms()
            .iter()
            .collect::<Vec<_>>(),
        vec![PS256]
    );
}

#[test]
fn refuses_garbage_whole() {
    type Check = fn(&JwksError) -> bool;
    let cases: Vec<(&[u8], Check)> = vec![
        (b"<html>", |e| *e == JwksError::NotJson),
        (b"[]", |e| *e == JwksError::NotJson),
        (br#"{"keys":{}}"#, |e| *e == JwksError::NoKeysArray),
        (br#"{"keys":[],"keys":[]}"#, |e| *e == JwksError::NotJson),
        (br#"{"keys":[]}"#, |e| {
            matches!(e, JwksError::NoUsableKey(_))
        }),
        (
            br#"{"keys":[{"kty":"RSA"}]}"#,
            |e| matches!(e, JwksError::NoUsableKey(v) if v.len() == 1),
        ),
    ];
    for (doc, expected) in cases {
        let err = parse_jwks(doc).unwrap_err();
        assert!(expected(&err), "{}: {err:?}", String::from_utf8_lossy(doc));
    }
    let huge = vec![b' '; portcullis_core::jose::jwks::MAX_JWKS_BYTES + 1];
    assert!(matches!(parse_jwks(&huge), Err(JwksError::TooLarge(_))));
}
