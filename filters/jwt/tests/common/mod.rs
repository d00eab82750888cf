//! What every jwt host-test shares: the consumers and providers the tests speak of, tokens
//! signed with OpenSSL (an implementation independent of the filter's) at the harness clock,
//! and the assertions a refusal must meet.

// Helpers outside `#[test]` functions may fail loudly, and not every test file uses all of
// them.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    dead_code,
    unused_imports
)]

use base64::Engine as _;
use openssl::bn::BigNumContext;
use openssl::pkey::PKey;
use serde_json::{json, Value};

pub use host_test::{dist, Exchange, Host, HttpCallReply, LogLevel, Plugin, Request};
pub use portcullis_core::identity::Identity;
pub use portcullis_tests::tokens;

/// The harness clock at start, in Unix seconds (2026-01-01T00:00:00Z).
pub const NOW: u64 = host_test::EPOCH_START_NANOS / 1_000_000_000;

/// Every algorithm the filter verifies.
pub const ALGORITHMS: [&str; 12] = [
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256",
    "ES384", "EdDSA",
];

/// The HMAC secret of `alg`'s credential: exactly as long as the hash, the shortest allowed.
pub fn secret(alg: &str) -> &'static str {
    match alg {
        "HS384" => "0123456789abcdef0123456789abcdef0123456789abcdef",
        "HS512" => "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        _ => "0123456789abcdef0123456789abcdef",
    }
}

/// The credential key (and so the `iss`) of `alg`'s credential: `hs256-key`, `eddsa-key`, …
pub fn key_for(alg: &str) -> String {
    format!("{}-key", alg.to_lowercase())
}

/// alice's credential for `alg`, pinned to it.
pub fn credential(alg: &str) -> Value {
    if alg.starts_with("HS") {
        json!({"key": key_for(alg), "algorithm": alg, "secret": secret(alg)})
    } else {
        json!({"key": key_for(alg), "algorithm": alg, "public_key": tokens::public_pem(alg)})
    }
}

/// The scene every test starts from: consumer alice with a credential for every algorithm,
/// bob whose credential is named by `kid`, a consumer for anonymous requests, and an issuer
/// `https://idp.example` whose keys are an inline JWKS.
pub fn config() -> Value {
    let credentials: Vec<Value> = ALGORITHMS.iter().map(|alg| credential(alg)).collect();
    json!({
        "consumers": [
            {"username": "alice", "id": "c-alice", "custom_id": "ext-1",
             "groups": ["admins", "ops"], "credentials": credentials},
            {"username": "bob", "groups": ["customers"],
             "credentials": [{"key": "bob-kid-1", "algorithm": "HS256", "secret": secret("HS256")}]},
            {"username": "guest", "id": "c-guest"}
        ],
        "providers": [
            {"name": "idp", "issuer": "https://idp.example", "audiences": ["orders-api"],
             "groups_claim": "roles",
             "jwks": {"keys": [rsa_jwk("rsa2048.pub.pem", "idp-rsa"), ec_jwk("p256.pub.pem", "idp-ec")]}}
        ]
    })
}

/// `config()` with `extra`'s top-level members added or replaced.
pub fn config_with(extra: Value) -> Value {
    let mut config = config();
    if let (Some(map), Value::Object(more)) = (config.as_object_mut(), extra) {
        map.extend(more);
    }
    config
}

/// The claims of a good token issued under `iss` at the harness clock: issued 10 s ago,
/// expiring in 10 minutes.
pub fn claims(iss: &str) -> Value {
    json!({"iss": iss, "sub": "alice-sub", "iat": NOW - 10, "exp": NOW + 600})
}

/// `base` with `extra`'s members added or replaced.
pub fn merged(mut base: Value, extra: Value) -> Value {
    if let (Some(map), Value::Object(more)) = (base.as_object_mut(), extra) {
        map.extend(more);
    }
    base
}

/// A token of `alg` with `header` members beside `alg`/`typ` and these claims, signed with
/// the fixture key of `alg` (or its HMAC secret).
pub fn sign(alg: &str, header: Value, claims: Value) -> String {
    let header = merged(json!({"alg": alg, "typ": "JWT"}), header);
    tokens::sign_raw(&header, &claims, secret(alg).as_bytes())
}

/// A good token of alice's credential for `alg`.
pub fn token(alg: &str) -> String {
    sign(alg, json!({}), claims(&key_for(alg)))
}

/// A good token of alice's credential for `alg` with more claims.
pub fn token_with(alg: &str, extra: Value) -> String {
    sign(alg, json!({}), merged(claims(&key_for(alg)), extra))
}

/// `GET path` on the Envoy route `api`.
pub fn get(path: &str) -> Request {
    Request::get(path).route("api")
}

/// `GET /orders` with `Authorization: Bearer <token>`.
pub fn bearer(token: &str) -> Request {
    get("/orders").header("authorization", &format!("Bearer {token}"))
}

/// The identity the filter left in filter state for later filters, decoded as acl decodes it.
pub fn identity(exchange: &Exchange) -> Identity {
    let bytes = exchange
        .filter_state
        .get("wasm.portcullis.identity")
        .unwrap_or_else(|| panic!("no identity in filter state: {:?}", exchange.filter_state));
    Identity::decode(bytes).unwrap()
}

/// Asserts the request was let through, with the answer and the upstream's 200.
pub fn assert_accepted(exchange: &Exchange, what: &str) {
    assert!(exchange.crash.is_none(), "{what}: {:?}", exchange.crash);
    assert!(
        exchange.reached_upstream(),
        "{what}: refused with {} {}",
        exchange.status(),
        exchange.body_text()
    );
    assert_eq!(exchange.status(), 200, "{what}");
}

/// `WWW-Authenticate` when a token was presented (RFC 6750 §3.1).
pub const INVALID_TOKEN: &str = r#"Bearer realm="portcullis", error="invalid_token""#;

/// Sends `request` and asserts the refusal a client sees — 401, exactly `body`, JSON,
/// `WWW-Authenticate` — that nothing reached the upstream, and that the counters
/// `portcullis_jwt_rejected_total` and `portcullis_jwt_rejected_<label>_total` each moved by one.
pub fn assert_refused(
    jwt: &mut Plugin,
    request: Request,
    body: Value,
    label: &str,
    what: &str,
) -> Exchange {
    let host = jwt.host().clone();
    let metric = format!("portcullis_jwt_rejected_{label}_total");
    let (total, reason) = (
        host.metric_value("portcullis_jwt_rejected_total"),
        host.metric_value(&metric),
    );
    let exchange = jwt.send(request);
    assert!(exchange.crash.is_none(), "{what}: {:?}", exchange.crash);
    assert_eq!(
        exchange.status(),
        401,
        "{what}: {} (upstream reached: {})",
        exchange.body_text(),
        exchange.reached_upstream()
    );
    assert!(!exchange.reached_upstream(), "{what}: reached the upstream");
    assert_eq!(
        exchange.body_json(),
        body,
        "{what}: {}",
        exchange.body_text()
    );
    assert_eq!(
        exchange.header("content-type").as_deref(),
        Some("application/json; charset=utf-8"),
        "{what}"
    );
    let challenge = if label == "missing" {
        r#"Bearer realm="portcullis""#
    } else {
        INVALID_TOKEN
    };
    assert_eq!(
        exchange.header("www-authenticate").as_deref(),
        Some(challenge),
        "{what}"
    );
    assert_eq!(
        host.metric_value("portcullis_jwt_rejected_total"),
        total + 1,
        "{what}: portcullis_jwt_rejected_total did not move"
    );
    assert_eq!(
        host.metric_value(&metric),
        reason + 1,
        "{what}: {metric} did not move; metrics: {:?}",
        host.metrics()
            .iter()
            .filter(|m| m.value > 0)
            .map(|m| (&m.name, m.value))
            .collect::<Vec<_>>()
    );
    assert!(
        !exchange
            .filter_state
            .contains_key("wasm.portcullis.identity"),
        "{what}: a refused request left an identity behind"
    );
    exchange
}

/// `{"message": text}`, Kong's error body.
pub fn message(text: &str) -> Value {
    json!({ "message": text })
}

// ---- keys as JWKs, from the PEM fixtures ----

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn public_key(pem_file: &str) -> PKey<openssl::pkey::Public> {
    PKey::public_key_from_pem(tokens::fixture(pem_file).as_bytes()).unwrap()
}

/// The RSA fixture `pem_file` as a JWK with `kid` (no `alg`: any RS/PS algorithm).
pub fn rsa_jwk(pem_file: &str, kid: &str) -> Value {
    let rsa = public_key(pem_file).rsa().unwrap();
    json!({"kty": "RSA", "kid": kid, "use": "sig",
           "n": b64(&rsa.n().to_vec()), "e": b64(&rsa.e().to_vec())})
}

/// The public half of the RSA private key fixture `pem_file`, as a JWK with `kid`.
pub fn rsa_jwk_of_private(pem_file: &str, kid: &str) -> Value {
    let key = PKey::private_key_from_pem(tokens::fixture(pem_file).as_bytes()).unwrap();
    let rsa = key.rsa().unwrap();
    json!({"kty": "RSA", "kid": kid, "use": "sig",
           "n": b64(&rsa.n().to_vec()), "e": b64(&rsa.e().to_vec())})
}

/// The EC fixture `pem_file` (P-256 or P-384) as a JWK with `kid`.
pub fn ec_jwk(pem_file: &str, kid: &str) -> Value {
    let ec = public_key(pem_file).ec_key().unwrap();
    let group = ec.group();
    let size = (group.degree() as usize).div_ceil(8);
    let crv = if size == 32 { "P-256" } else { "P-384" };
    let mut ctx = BigNumContext::new().unwrap();
    let (mut x, mut y) = (
        openssl::bn::BigNum::new().unwrap(),
        openssl::bn::BigNum::new().unwrap(),
    );
    ec.public_key()
        .affine_coordinates(group, &mut x, &mut y, &mut ctx)
        .unwrap();
    json!({"kty": "EC", "crv": crv, "kid": kid,
           "x": b64(&x.to_vec_padded(size as i32).unwrap()),
           "y": b64(&y.to_vec_padded(size as i32).unwrap())})
}

/// The Ed25519 fixture as a JWK with `kid`.
pub fn ed_jwk(kid: &str) -> Value {
    let raw = public_key("ed25519.pub.pem").raw_public_key().unwrap();
    json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": b64(&raw)})
}

/// A token signed with the second RSA fixture key, which no configuration trusts.
pub fn sign_with_other_rsa(alg: &str, header: Value, claims: Value) -> String {
    let key =
        PKey::private_key_from_pem(tokens::fixture("rsa2048-other.key.pem").as_bytes()).unwrap();
    let header = merged(json!({"alg": alg, "typ": "JWT"}), header);
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let md = match &alg[2..] {
        "256" => openssl::hash::MessageDigest::sha256(),
        "384" => openssl::hash::MessageDigest::sha384(),
        _ => openssl::hash::MessageDigest::sha512(),
    };
    let mut signer = openssl::sign::Signer::new(md, &key).unwrap();
    let signature = signer.sign_oneshot_to_vec(input.as_bytes()).unwrap();
    format!("{input}.{}", b64(&signature))
}

/// `token` with its signature segment replaced by `signature` (base64url).
pub fn with_signature(token: &str, signature: &[u8]) -> String {
    let (input, _) = token.rsplit_once('.').unwrap();
    format!("{input}.{}", b64(signature))
}

/// The decoded signature of `token`.
pub fn signature_of(token: &str) -> Vec<u8> {
    let (_, sig) = token.rsplit_once('.').unwrap();
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(sig)
        .unwrap()
}

/// A compact JWS from raw header and payload text, with this raw signature.
pub fn raw_token(header: &str, payload: &str, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        b64(header.as_bytes()),
        b64(payload.as_bytes()),
        b64(signature)
    )
}

/// An HS256 token over raw header and payload text, signed with alice's HS256 secret, so
/// only the shape under test can be wrong.
pub fn hs256_raw(header: &str, payload: &str) -> String {
    let input = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
    let key = PKey::hmac(secret("HS256").as_bytes()).unwrap();
    let mut signer =
        openssl::sign::Signer::new(openssl::hash::MessageDigest::sha256(), &key).unwrap();
    let mac = signer.sign_oneshot_to_vec(input.as_bytes()).unwrap();
    format!("{input}.{}", b64(&mac))
}
