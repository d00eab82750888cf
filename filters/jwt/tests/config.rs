//! Broken configurations are refused at start — Envoy then refuses the whole config and
//! fails closed — with one error line that names the field; a good one starts and says where
//! signatures will be checked.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use serde_json::{json, Value};

fn one_credential(credential: Value) -> Value {
    json!({"consumers": [{"username": "alice", "credentials": [credential]}]})
}

#[test]
fn a_broken_configuration_is_refused_with_the_field_named_in_the_log() {
    let rows: Vec<(&str, Value, &str)> = vec![
        (
            "short HMAC secret",
            one_credential(json!({"key": "k", "secret": "short"})),
            "consumers[0].credentials[0].secret: 5 bytes, HS256 needs at least 32",
        ),
        (
            "HS512 secret of HS256 length",
            one_credential(json!({"key": "k", "algorithm": "HS512", "secret": secret("HS256")})),
            "consumers[0].credentials[0].secret: 32 bytes, HS512 needs at least 64",
        ),
        (
            "PEM that is not base64",
            one_credential(json!({"key": "k", "algorithm": "RS256",
                "public_key": "-----BEGIN PUBLIC KEY-----\nnot base64!\n-----END PUBLIC KEY-----\n"})),
            "consumers[0].credentials[0].public_key: malformed PEM: PEM Base64 error: invalid Base64 encoding",
        ),
        (
            "a private key where the public one belongs",
            one_credential(json!({"key": "k", "algorithm": "RS256",
                "public_key": tokens::fixture("rsa2048.key.pem")})),
            r#"consumers[0].credentials[0].public_key: PEM label "PRIVATE KEY": expected "PUBLIC KEY" (a private key or certificate is refused)"#,
        ),
        (
            "RSA key too weak",
            one_credential(json!({"key": "k", "algorithm": "RS256",
                "public_key": tokens::fixture("rsa1024.pub.pem")})),
            "consumers[0].credentials[0].public_key: RSA key of 1024 bits, at least 2048 needed",
        ),
        (
            "P-256 key for ES384",
            one_credential(json!({"key": "k", "algorithm": "ES384",
                "public_key": tokens::public_pem("ES256")})),
            "consumers[0].credentials[0].public_key: not a P-384 public key, as ES384 needs",
        ),
        (
            "JWK with a modulus that is not base64url",
            one_credential(json!({"key": "k", "algorithm": "RS256",
                "jwk": {"kty": "RSA", "n": "!!", "e": "AQAB"}})),
            r#"consumers[0].credentials[0].jwk: "n" is not base64url"#,
        ),
        (
            "JWK carrying a private key",
            one_credential(json!({"key": "k", "algorithm": "ES256",
                "jwk": {"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA", "d": "AA"}})),
            "consumers[0].credentials[0].jwk: private key material in a verification key",
        ),
        (
            "inline JWKS without a usable key",
            json!({"providers": [{"name": "idp", "issuer": "https://idp.example",
                "jwks": {"keys": [{"kty": "RSA", "n": "AQAB"}]}}]}),
            r#"providers[0].jwks: JWKS has no usable key: keys[0]: no "e""#,
        ),
        (
            "unknown algorithm",
            one_credential(json!({"key": "k", "algorithm": "HS1", "secret": secret("HS256")})),
            r#"consumers[0].credentials[0].algorithm: "HS1" is not a supported algorithm"#,
        ),
        (
            "unknown top-level field",
            json!({"consumer": []}),
            "consumer: unknown field `consumer`, expected one of `consumers`, `providers`",
        ),
        (
            "misspelt credential field",
            one_credential(json!({"key": "k", "algorithim": "HS256", "secret": secret("HS256")})),
            "consumers[0].credentials[0].algorithim: unknown field `algorithim`, expected one of `key`, `algorithm`",
        ),
        (
            "misspelt route setting",
            json!({"routes": {"orders": {"leway": 3}}}),
            "routes.orders.leway: unknown field `leway`",
        ),
        (
            "leeway beyond a day",
            json!({"leeway": 100000}),
            "leeway: 100000 is outside 0..=86400",
        ),
        (
            "JWKS over ftp",
            json!({"providers": [{"name": "idp", "issuer": "https://idp.example",
                "remote_jwks": {"cluster": "jwks", "uri": "ftp://idp.example/jwks"}}]}),
            "providers[0].remote_jwks.uri: must start with http:// or https://",
        ),
        (
            "anonymous consumer that does not exist",
            json!({"anonymous": "nobody"}),
            r#"anonymous: no consumer named "nobody""#,
        ),
        (
            "claim header that would forge an identity header",
            json!({"claims_to_headers": {"sub": "x-consumer-id"}}),
            r#"claims_to_headers.sub: "x-consumer-id" is reserved"#,
        ),
        (
            "unknown crypto backend",
            json!({"crypto": "fast"}),
            "crypto: unknown variant `fast`, expected `auto` or `in_module`",
        ),
    ];
    // One host compiles the module once; each row starts its own plugin on a clean log.
    let host = Host::new();
    for (what, config, expected) in rows {
        host.clear_logs();
        let error = match host.filter("jwt").config_json(&config).start() {
            Ok(_) => panic!("{what}: started with {config}"),
            Err(error) => error,
        };
        assert_eq!(error.reason, "proxy_on_configure returned false", "{what}");
        let line = format!("portcullis-jwt: configuration refused: {expected}");
        assert!(
            error.logs.iter().any(|l| l.starts_with(&line)),
            "{what}: no line starting {line:?} in {:?}",
            error.logs
        );
        assert!(
            host.logged(LogLevel::Error, &line),
            "{what}: not at error level"
        );
    }
}

#[test]
fn a_configuration_that_is_not_a_json_object_is_refused() {
    for bytes in [
        &b"{not json"[..],
        b"[]",
        b"\"jwt\"",
        br#"{"leeway": 1, "leeway": 2}"#,
    ] {
        let host = Host::new();
        let error = host
            .filter("jwt")
            .config(bytes.to_vec())
            .start()
            .err()
            .unwrap_or_else(|| panic!("{} started", String::from_utf8_lossy(bytes)));
        assert!(
            error.logs.iter().any(|l| l
                == "portcullis-jwt: configuration refused: not a JSON object (or a member name repeats)"),
            "{:?}",
            error.logs
        );
    }
}

#[test]
fn a_good_configuration_starts_and_logs_where_signatures_are_checked() {
    let host = Host::new();
    let _jwt = host.start("jwt", &config());
    assert!(host.logged(
        LogLevel::Info,
        "portcullis-jwt: signatures checked by the host: RS256,RS384,RS512,ES256,ES384; \
         in the module: none (and HS*, PS*, EdDSA)"
    ));
    assert!(
        host.log_messages(LogLevel::Warn).is_empty(),
        "{:?}",
        host.logs()
    );
}
