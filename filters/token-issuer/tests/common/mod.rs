//! What every token-issuer host-test shares: the login service's answers, configurations for
//! each algorithm (keys from `filters/core/tests/fixtures`), and the check an issued token
//! must pass — the jwt filter itself, on the same host. (The issuer's tokens against the jwt
//! policy, natively and with in-module crypto, are `portcullis-core`'s unit tests.)

// Helpers outside `#[test]` functions may fail loudly, and not every test file uses all of
// them.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    dead_code,
    unused_imports
)]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Value};

pub use host_test::{dist, Exchange, Host, LogLevel, Plugin, Request, UpstreamResponse};
pub use portcullis_tests::tokens;

/// The harness clock at start, in Unix seconds (2026-01-01T00:00:00Z).
pub const NOW: u64 = host_test::EPOCH_START_NANOS / 1_000_000_000;

pub const ISS: &str = "https://login.portcullis.test";
pub const AUD: &str = "orders-api";
pub const JWKS_PATH: &str = "/.well-known/jwks.json";

/// Every algorithm the issuer signs with.
pub const ALGORITHMS: [&str; 6] = ["HS256", "HS384", "HS512", "RS256", "ES256", "EdDSA"];

/// Generated secrets, exactly as long as each hash.
pub fn secret(alg: &str) -> &'static str {
    match alg {
        "HS384" => "nHVuPkh87+YUbPI0CLkbGLhnMniDVg17zEpRDhci7SnQPOEt",
        "HS512" => "MeGW9LzsWg93F55Y3FZFGcuokTEkz1Rxq3tnDb3XuEbX0lyjBkwpvUorAYRPynWe",
        _ => "FVYGMY8NaopOclJ2MtJ8wat3RqUwqi83",
    }
}

/// The `kid` of `alg`'s key: `es256-1`, …
pub fn kid(alg: &str) -> String {
    format!("{}-1", alg.to_lowercase())
}

/// A signing key of `alg`.
pub fn key(alg: &str) -> Value {
    let kid = kid(alg);
    match alg {
        "HS256" | "HS384" | "HS512" => json!({"kid": kid, "algorithm": alg, "secret": secret(alg)}),
        "RS256" => {
            json!({"kid": kid, "algorithm": alg, "private_key": tokens::fixture("rsa2048.key.pem")})
        }
        "ES256" => {
            json!({"kid": kid, "algorithm": alg, "private_key": tokens::fixture("p256.key.pem")})
        }
        _ => {
            json!({"kid": kid, "algorithm": alg, "private_key": tokens::fixture("ed25519.key.pem")})
        }
    }
}

/// The scene: `POST /login` is the login, tokens live 15 minutes, signed by `alg`; the
/// JWKS is published when there is an asymmetric key.
pub fn config(alg: &str) -> Value {
    let mut config = json!({
        "auth_paths": [{"path": "/login", "methods": ["POST"]}],
        "iss": ISS,
        "aud": AUD,
        "ttl": 900,
        "keys": [key(alg)],
    });
    if !alg.starts_with("HS") {
        config["jwks_path"] = json!(JWKS_PATH);
    }
    config
}

/// `base` with `extra`'s top-level members added or replaced.
pub fn with(mut base: Value, extra: Value) -> Value {
    if let (Some(map), Value::Object(more)) = (base.as_object_mut(), extra) {
        map.extend(more);
    }
    base
}

/// Starts the issuer in its held mode (`allow_on_headers_stop_iteration: true` in its own
/// config) on a host whose Envoy flag of the same name is `envoy_flag`: the two must be set
/// together, and `false` shows what a user gets when only the filter's is.
pub fn start_held(host: &Host, config: &Value, envoy_flag: bool) -> Plugin {
    host.filter("token-issuer")
        .allow_on_headers_stop_iteration(envoy_flag)
        .config_json(&with(
            config.clone(),
            json!({"allow_on_headers_stop_iteration": true}),
        ))
        .started()
}

/// What the demo login service answers for mobile-app.
pub fn profile() -> Value {
    json!({"sub": "123", "username": "mobile-app", "groups": ["admins"], "email": "mobile-app@example.com"})
}

/// `POST /login` with mobile-app's credentials, answered by the upstream with `response`.
pub fn login(response: UpstreamResponse) -> Request {
    Request::post("/login")
        .header("content-type", "application/json")
        .body(r#"{"username":"mobile-app","password":"mobile-demo"}"#)
        .route("login")
        .respond(response)
}

/// The login service's success: 200 with `body` as JSON.
pub fn ok(body: &Value) -> UpstreamResponse {
    UpstreamResponse::new(200).json(body)
}

/// The token of an answer that carries one; fails the test, showing the exchange, otherwise.
pub fn token_of(exchange: &Exchange) -> String {
    assert!(exchange.crash.is_none(), "crash: {:?}", exchange.crash);
    assert!(
        exchange.stalled.is_none(),
        "stalled: {:?}",
        exchange.stalled
    );
    assert_eq!(exchange.status(), 200, "{}", exchange.body_text());
    let answer = exchange.body_json();
    assert_eq!(answer["token_type"], "Bearer", "{answer}");
    answer["token"]
        .as_str()
        .unwrap_or_else(|| panic!("no token in {answer}"))
        .to_owned()
}

/// A token's claims, decoded without checking anything.
pub fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

/// A token's header.
pub fn header_of(token: &str) -> Value {
    let header = token.split('.').next().unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap()
}

/// The jwt filter's configuration that trusts the issuer: a provider with `jwks` for
/// asymmetric keys, alice-style consumer credential named by `iss` for HMAC secrets.
pub fn jwt_config(alg: &str, jwks: Option<&str>) -> Value {
    if alg.starts_with("HS") {
        json!({"consumers": [{"username": "login-service", "credentials": [
            {"key": ISS, "algorithm": alg, "secret": secret(alg)}]}],
            "routes": {"login": {"public": true}}})
    } else {
        let jwks: Value = serde_json::from_str(jwks.expect("a JWKS")).unwrap();
        json!({"providers": [{"name": "portcullis-login", "issuer": ISS, "audiences": [AUD],
                              "groups_claim": "groups", "jwks": jwks}],
               "routes": {"login": {"public": true}}})
    }
}

/// The issuer's JWKS document, from its `jwks_path`.
pub fn jwks(issuer: &mut Plugin) -> String {
    let ex = issuer.send(Request::get(JWKS_PATH));
    assert_eq!(ex.status(), 200, "{}", ex.body_text());
    ex.body_text()
}

/// `GET /orders` on route `orders`, with `token` as the bearer.
pub fn orders(token: &str) -> Request {
    Request::get("/orders")
        .header("authorization", &format!("Bearer {token}"))
        .route("orders")
}

/// [`orders`] with `token` through a jwt filter that trusts the issuer ([`jwt_config`]),
/// started on `host` and so at its clock. Accepted, the upstream sees the caller in
/// `X-Consumer-Username`: `sub` for a provider's token, `login-service` for an HMAC one.
pub fn through_jwt(host: &Host, alg: &str, jwks: Option<&str>, token: &str) -> Exchange {
    host.start("jwt", &jwt_config(alg, jwks))
        .send(orders(token))
}
