//! A configuration the issuer cannot honour stops it at start, with one log line naming the
//! field: Envoy then refuses the whole config instead of running a filter that issues
//! nothing, or issues weak tokens.

// Test code: clippy.toml lets #[test] functions panic, and these helpers are test code too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::*;
use serde_json::json;

#[test]
fn a_bad_configuration_fails_start_with_the_field_named() {
    let cases = [
        (
            with(
                config("HS256"),
                json!({"keys": [{"kid": "k", "algorithm": "HS256", "secret": "super-secret-key"}]}),
            ),
            "keys[0].secret: 16 bytes, HS256 needs at least 32",
        ),
        (
            with(
                config("HS256"),
                json!({"keys": [{"kid": "k", "algorithm": "HS256", "secret": "abcdabcdabcdabcdabcdabcdabcdabcd"}]}),
            ),
            "keys[0].secret: weak secret",
        ),
        (
            with(config("HS256"), json!({"ttl": 100_000})),
            "ttl: 100000 is outside 1..=86400",
        ),
        (
            with(config("HS256"), json!({"cookie": {"name": "access_token"}})),
            "cookie: needs allow_on_headers_stop_iteration",
        ),
        (
            with(config("HS256"), json!({"jwks_path": "/jwks"})),
            "jwks_path: no RS256, ES256 or EdDSA key",
        ),
        (
            with(config("ES256"), json!({"claims": ["exp"]})),
            "claims[0]",
        ),
        (
            with(config("ES256"), json!({"secret": "x"})),
            "unknown field `secret`",
        ),
        (json!({}), "missing field `auth_paths`"),
    ];
    for (config, needle) in cases {
        let host = Host::new();
        let refused = host.filter("token-issuer").config_json(&config).start();
        let Err(error) = refused else {
            panic!("started with {config}");
        };
        let errors = host.log_messages(LogLevel::Error);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with("portcullis-token-issuer: configuration refused: ")
                && errors[0].contains(needle),
            "{needle}: {errors:?} ({error})"
        );
    }
}

#[test]
fn no_configuration_at_all_is_refused() {
    let host = Host::new();
    let refused = host.filter("token-issuer").start();
    assert!(refused.is_err());
    assert!(host.logged(LogLevel::Error, "missing field `auth_paths`"));
}
