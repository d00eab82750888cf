//! What each row runs: the tokens it sends, and the configurations of Envoy's native filters
//! and of Portcullis's, side by side. The cost fixture's rows are in [`crate::cost`].

use portcullis_tests::{config, tokens};
use serde_json::json;

const ISSUER: &str = "bench-issuer";
const SECRET: &[u8] = b"bench-only-hmac-secret-0123456789abcdef-0123456789abcdef-0123";
pub const ALGORITHMS: [&str; 4] = ["HS256", "RS256", "ES256", "EdDSA"];

fn secret_for(alg: &str) -> &'static [u8] {
    if alg.starts_with("HS") {
        SECRET
    } else {
        b""
    }
}

/// When every bench token was issued, and until when it holds: fixed, so every run sends the
/// same tokens and host-test counts the same instructions for them (the signature's values
/// steer how much work an in-module check does). Issued at host-test's start clock,
/// 2026-01-01T00:00:00Z, valid to 2100-01-01: ten digits each, as the run-time Unix times
/// the tokens carried before, so they are as long.
const ISSUED_AT: u64 = 1_767_225_600;
const EXPIRES_AT: u64 = 4_102_444_800;

/// The bench's token of `alg`, the same on every run: HMAC, RSASSA-PKCS1-v1_5 and Ed25519
/// signatures are deterministic, and ES256 is signed with RFC 6979's deterministic nonce
/// (OpenSSL's, which `tokens` signs with, is random).
pub fn token(alg: &str) -> String {
    // `groups` is for Envoy's rbac (Portcullis acl takes the consumer's configured groups).
    let header = json!({ "alg": alg, "typ": "JWT" });
    let claims = json!({ "iss": ISSUER, "sub": ISSUER, "iat": ISSUED_AT, "exp": EXPIRES_AT,
                         "groups": ["admins"] });
    if alg != "ES256" {
        return tokens::sign_raw(&header, &claims, secret_for(alg));
    }
    let input = format!(
        "{}.{}",
        tokens::b64(header.to_string()),
        tokens::b64(claims.to_string())
    );
    format!(
        "{input}.{}",
        tokens::b64(es256_deterministic(input.as_bytes()))
    )
}

/// The JWS signature (`r||s`) of `input` with the P-256 fixture key, nonce per RFC 6979.
fn es256_deterministic(input: &[u8]) -> Vec<u8> {
    use p256::ecdsa::signature::Signer;
    use p256::pkcs8::DecodePrivateKey;
    let key = p256::ecdsa::SigningKey::from_pkcs8_pem(&tokens::fixture("p256.key.pem"))
        .expect("the P-256 fixture key");
    let signature: p256::ecdsa::Signature = key.try_sign(input).expect("ES256 signs");
    signature.to_bytes().to_vec()
}

pub const ACL: &str = r#"{"allow":["admins"]}"#;
pub const RATE_LIMIT: &str = r#"{"minute":1000000000,"limit_by":"consumer"}"#;
pub const RATE_LIMIT_IP: &str = r#"{"minute":1000000000,"limit_by":"ip"}"#;

/// Envoy's rbac with the acl policy: the jwt payload's `groups` must hold `admins`.
pub const NATIVE_RBAC: &str = r#"- name: envoy.filters.http.rbac
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC
    rules:
      action: ALLOW
      policies:
        admins:
          permissions: [{ any: true }]
          principals:
          - metadata:
              filter: envoy.filters.http.jwt_authn
              path: [{ key: jwt_payload }, { key: groups }]
              value: { list_match: { one_of: { string_match: { exact: admins } } } }"#;

/// Envoy's local_ratelimit with a bucket that never runs dry; with `headers`, answering its
/// draft rate-limit headers on every response (`x-ratelimit-limit`, `-remaining`, `-reset`),
/// where Portcullis answers Kong's five.
pub fn native_rate_limit(headers: bool) -> String {
    let headers = if headers {
        "\n    enable_x_ratelimit_headers: DRAFT_VERSION_03"
    } else {
        ""
    };
    format!(
        r#"- name: envoy.filters.http.local_ratelimit
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit
    stat_prefix: bench
    token_bucket: {{ max_tokens: 1000000000, tokens_per_fill: 1000000000, fill_interval: 1s }}{headers}
    filter_enabled:
      runtime_key: bench_rl_enabled
      default_value: {{ numerator: 100, denominator: HUNDRED }}
    filter_enforced:
      runtime_key: bench_rl_enforced
      default_value: {{ numerator: 100, denominator: HUNDRED }}"#
    )
}

/// The cluster-wide limit: high enough never to refuse, within the protocol's `uint32`.
pub const SERVICE_LIMIT_PER_MINUTE: u32 = 100_000_000;
/// The rate limit service's cluster in every Envoy that calls it.
pub const SERVICE_CLUSTER: &str = "ratelimit";
/// Each service row counts under its own domain, so Redis tells their counts apart.
pub const PORTCULLIS_DOMAIN: &str = "bench-portcullis";
pub const NATIVE_DOMAIN: &str = "bench-native";

/// Portcullis `policy: redis` by IP; a failed call is a 500 (not a silent local fallback).
pub fn redis_rate_limit() -> String {
    json!({
        "minute": SERVICE_LIMIT_PER_MINUTE,
        "limit_by": "ip",
        "policy": "redis",
        "rate_limit_service": {
            "cluster": SERVICE_CLUSTER, "domain": PORTCULLIS_DOMAIN, "timeout": 1000
        },
        "fault_tolerant": false,
    })
    .to_string()
}

/// Envoy's native ratelimit filter against the same service, the way
/// `tests/tests/ratelimit_interop.rs` configures it: set_metadata carries the limit, the
/// descriptor is what Portcullis sends (`portcullis_policy=global`, then the client address),
/// and a failed call is a 500. The actions sit in the filter's own `rate_limits`: the bench
/// route is a `direct_response`, which has no route action to hold them.
pub fn native_service_rate_limit() -> String {
    format!(
        r#"- name: envoy.filters.http.set_metadata
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.filters.http.set_metadata.v3.Config
    metadata:
    - metadata_namespace: portcullis.ratelimit
      value:
        global: {{ requests_per_unit: {SERVICE_LIMIT_PER_MINUTE}, unit: MINUTE }}
- name: envoy.filters.http.ratelimit
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimit
    domain: {NATIVE_DOMAIN}
    failure_mode_deny: true
    timeout: 1s
    rate_limit_service:
      transport_api_version: V3
      grpc_service: {{ envoy_grpc: {{ cluster_name: {SERVICE_CLUSTER} }} }}
    rate_limits:
    - actions:
      - generic_key: {{ descriptor_key: portcullis_policy, descriptor_value: global }}
      - remote_address: {{}}
      limit:
        dynamic_metadata:
          metadata_key: {{ key: portcullis.ratelimit, path: [ {{ key: global }} ] }}"#
    )
}

pub fn portcullis_jwt_config(alg: &str, cache: bool, in_module: bool) -> String {
    let mut credential = json!({ "key": ISSUER, "algorithm": alg });
    if alg.starts_with("HS") {
        credential["secret"] = json!(String::from_utf8_lossy(SECRET));
    } else {
        credential["public_key"] = json!(tokens::public_pem(alg));
    }
    let mut config = json!({
        "consumers": [{ "username": "bench", "groups": ["admins"], "credentials": [credential] }],
    });
    if !cache {
        config["token_cache_size"] = json!(0);
    }
    if in_module {
        config["crypto"] = json!("in_module");
    }
    config.to_string()
}

/// The one-VM gateway's configuration running the separate filters' `jwt`, `acl` and
/// `rate_limiting` configurations, each as it is (`portcullis_core::gateway`).
pub fn gateway_config(jwt: &str, acl: &str, rate_limiting: &str) -> String {
    format!(r#"{{"jwt":{jwt},"acl":{acl},"rate_limiting":{rate_limiting}}}"#)
}

/// A filter's (or stage's) configuration `object` with `"decision_records": false`.
pub fn without_records(object: &str) -> String {
    let mut value: serde_json::Value =
        serde_json::from_str(object).expect("the bench's own configurations are JSON");
    value["decision_records"] = json!(false);
    value.to_string()
}

pub fn native_jwt(alg: &str, cache: bool) -> String {
    native_jwt_with(alg, cache, "")
}

/// Envoy's jwt_authn handing the token's claims on as four request headers, as Portcullis
/// hands on Kong's four (`x-consumer-id`, `x-consumer-username`, `x-credential-identifier`,
/// `x-consumer-groups`; jwt_authn has no consumers, so they come from `sub` and `iss`).
pub fn native_jwt_with_headers(alg: &str) -> String {
    native_jwt_with(
        alg,
        false,
        "\n        claim_to_headers:\
         \n        - { header_name: x-consumer-id, claim_name: sub }\
         \n        - { header_name: x-consumer-username, claim_name: sub }\
         \n        - { header_name: x-credential-identifier, claim_name: iss }\
         \n        - { header_name: x-consumer-groups, claim_name: iss }",
    )
}

fn native_jwt_with(alg: &str, cache: bool, extra: &str) -> String {
    let jwks = json!({ "keys": [tokens::jwk(alg, "bench", secret_for(alg))] }).to_string();
    let cache = if cache {
        "\n        jwt_cache_config: { jwt_cache_size: 1000 }"
    } else {
        ""
    };
    format!(
        r#"- name: envoy.filters.http.jwt_authn
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication
    providers:
      bench:
        issuer: {ISSUER}
        forward: true
        payload_in_metadata: jwt_payload
        local_jwks: {{ inline_string: {jwks} }}{cache}{extra}
    rules:
    - match: {{ prefix: / }}
      requires: {{ provider_name: bench }}"#,
        jwks = config::quote(&jwks),
    )
}
