//! Configuration: a table of (name, JSON, expected refusal) rows; each refusal names its path.

use portcullis_core::jwt::JwtPolicySet;
use serde_json::{json, Value};

use crate::common::*;

fn consumers_with(credential: Value) -> Value {
    json!({"consumers": [
        {"username": "a", "credentials": [{"key": "ok", "secret": HS256_SECRET}]},
        {"username": "b", "credentials": [credential]}
    ]})
}

fn refusal(config: &Value) -> String {
    match JwtPolicySet::from_json(config.to_string().as_bytes()) {
        Ok(_) => panic!("accepted: {config}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn refuses_bad_configurations_naming_the_path() {
    let rsa = fixture("rsa2048.pub.pem");
    let cases: Vec<(&str, Value, &str)> = vec![
        ("weak HS256 secret", consumers_with(json!({"key": "k", "secret": "twelve bytes"})),
         "consumers[1].credentials[0].secret: 12 bytes, HS256 needs at least 32"),
        ("weak HS512 secret", consumers_with(json!({"key": "k", "algorithm": "HS512", "secret": HS256_SECRET})),
         "consumers[1].credentials[0].secret: 32 bytes, HS512 needs at least 64"),
        ("weak base64 secret", consumers_with(json!({"key": "k", "secret_base64": "c2hvcnQ="})),
         "consumers[1].credentials[0].secret_base64: 5 bytes, HS256 needs at least 32"),
        ("unknown credential field", consumers_with(json!({"key": "k", "secret": HS256_SECRET, "secrt": 1})),
         "consumers[1].credentials[0].secrt: unknown field `secrt`"),
        ("two key materials", consumers_with(json!({"key": "k", "secret": HS256_SECRET, "public_key": rsa})),
         "consumers[1].credentials[0]: needs exactly one of secret, secret_base64, public_key, jwk (got 2)"),
        ("unsupported algorithm", consumers_with(json!({"key": "k", "algorithm": "none", "secret": HS256_SECRET})),
         "consumers[1].credentials[0].algorithm: \"none\" is not a supported algorithm"),
        ("secret for RS256", consumers_with(json!({"key": "k", "algorithm": "RS256", "secret": HS256_SECRET})),
         "consumers[1].credentials[0].secret: RS256 needs public_key or jwk"),
        ("malformed PEM", consumers_with(json!({"key": "k", "algorithm": "RS256", "public_key": "-----BEGIN PUBLIC KEY-----\nno!pe\n-----END PUBLIC KEY-----"})),
         "consumers[1].credentials[0].public_key: malformed PEM"),
        ("private key PEM", consumers_with(json!({"key": "k", "algorithm": "RS256", "public_key": fixture("rsa2048.key.pem")})),
         "consumers[1].credentials[0].public_key: PEM label \"PRIVATE KEY\""),
        ("weak RSA key", consumers_with(json!({"key": "k", "algorithm": "RS256", "public_key": fixture("rsa1024.pub.pem")})),
         "consumers[1].credentials[0].public_key: RSA key of 1024 bits, at least 2048 needed"),
        ("curve does not fit", consumers_with(json!({"key": "k", "algorithm": "ES256", "public_key": fixture("p384.pub.pem")})),
         "consumers[1].credentials[0].public_key: not a P-256 public key, as ES256 needs"),
        ("RSA key for EdDSA", consumers_with(json!({"key": "k", "algorithm": "EdDSA", "public_key": rsa})),
         "consumers[1].credentials[0].public_key: not an Ed25519 public key, as EdDSA needs"),
        ("JWK alg disagrees", consumers_with(json!({"key": "k", "algorithm": "RS256", "jwk": {"alg": "PS256", "kty": "RSA", "n": "AQAB", "e": "AQAB"}})),
         "consumers[1].credentials[0].jwk: JWK \"alg\" PS256 but the credential pins RS256"),
        ("malformed JWK", consumers_with(json!({"key": "k", "algorithm": "ES256", "jwk": {"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}})),
         "consumers[1].credentials[0].jwk: \"x\" is 1 bytes, not 32"),
        ("duplicate credential key", consumers_with(json!({"key": "ok", "secret": HS256_SECRET})),
         "consumers[1].credentials[0].key: \"ok\" is used by another credential"),
        ("unknown top-level field", json!({"leewy": 5}), "leewy: unknown field `leewy`, expected one of `consumers`, `providers`, `routes`, `token_cache_size`, `crypto`, `consumer_source`, `decision_records`, `header_names`"),
        ("not a PEM key", consumers_with(json!({"key": "k", "algorithm": "RS256", "public_key": "-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----"})),
         "consumers[1].credentials[0].public_key: not an RSA public key, as RS256 needs"),
        ("unknown route field", json!({"routes": {"users": {"leewy": 5}}}), "routes.users.leewy: unknown field `leewy`"),
        ("wrong type", json!({"leeway": "60"}), "leeway: invalid type: string \"60\", expected u64"),
        ("negative number", json!({"leeway": -1}), "leeway: invalid value: integer `-1`, expected u64"),
        ("repeated member", json!("placeholder"), "not a JSON object (or a member name repeats)"),
        ("unknown anonymous", json!({"anonymous": "ghost"}), "anonymous: no consumer named \"ghost\""),
        ("maximum_expiration without exp", json!({"exp_required": false, "maximum_expiration": 60}),
         "maximum_expiration: needs exp: set exp_required or list \"exp\" in claims_to_verify"),
        ("claims_to_verify entry", json!({"claims_to_verify": ["exp", "iat"]}),
         "claims_to_verify[1]: \"iat\": only \"exp\" and \"nbf\" can be verified"),
        ("bad header name", json!({"header_names": ["x token"]}), "header_names[0]: \"x token\" is not a header name"),
        ("reserved claim header", json!({"claims_to_headers": {"sub": "X-Consumer-ID"}}),
         "claims_to_headers.sub: \"x-consumer-id\" is reserved"),
        ("realm with a quote", json!({"realm": "a\"b"}), "realm: must be printable ASCII without '\"' or '\\'"),
        ("token size", json!({"max_token_bytes": 10}), "max_token_bytes: 10 is outside 64..=65536"),
        ("nowhere to look", json!({"header_names": [], "uri_param_names": []}),
         "no place to look for a token (header_names, uri_param_names and cookie_names all empty)"),
        ("provider without keys", json!({"providers": [{"name": "p", "issuer": "i"}]}),
         "providers[0]: needs exactly one of jwks, remote_jwks"),
        ("provider bad JWKS", json!({"providers": [{"name": "p", "issuer": "i", "jwks": {"keys": [{"kty": "RSA"}]}}]}),
         "providers[0].jwks: JWKS has no usable key: keys[0]: no \"n\""),
        ("remote without uri", json!({"providers": [{"name": "p", "issuer": "i", "remote_jwks": {"cluster": "c"}}]}),
         "providers[0].remote_jwks: needs exactly one of uri, path"),
        ("remote bad uri", json!({"providers": [{"name": "p", "issuer": "i", "remote_jwks": {"cluster": "c", "uri": "ftp://x/"}}]}),
         "providers[0].remote_jwks.uri: must start with http:// or https://"),
        ("issuer equals a credential key", json!({
            "consumers": [{"username": "a", "credentials": [{"key": "i", "secret": HS256_SECRET}]}],
            "providers": [{"name": "p", "issuer": "i", "jwks": inline_jwks()}]}),
         "providers[0].issuer: \"i\" is already a provider issuer or credential key"),
        ("group with a comma", json!({"consumers": [{"username": "a", "groups": ["x,y"]}]}),
         "consumers[0].groups[0]: must not contain ','"),
        ("username with CRLF", json!({"consumers": [{"username": "a\r\nb"}]}),
         "consumers[0].username: must be non-empty, without control characters"),
    ];
    let mut failures = Vec::new();
    for (name, config, expected) in cases {
        let got = if name == "repeated member" {
            JwtPolicySet::from_json(br#"{"leeway": 1, "leeway": 2}"#)
                .unwrap_err()
                .to_string()
        } else {
            refusal(&config)
        };
        if !got.starts_with(expected) {
            failures.push(format!("{name}:\n  got      {got}\n  expected {expected}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn accepts_every_documented_field() {
    let config = json!({
        "consumers": [{"username": "a", "id": "1", "custom_id": "x", "groups": ["g"], "credentials": [
            {"key": "k1", "algorithm": "HS256", "secret_base64": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, HS256_SECRET)},
            {"key": "k2", "algorithm": "RS256", "rsa_public_key": fixture("rsa2048.pkcs1.pub.pem")},
            {"key": "k3", "algorithm": "ES256", "jwk": ec_jwk("p256.pub.pem", "P-256", "e")},
            {"key": "k4", "algorithm": "HS512", "jwk": {"kty": "oct", "k": b64(HS512_SECRET)}}
        ]}],
        "providers": [{"name": "p", "issuer": "https://p", "audiences": ["a"], "jwks": inline_jwks().to_string(),
                       "username_claim": "email", "groups_claim": "roles"},
                      {"name": "r", "issuer": "https://r", "remote_jwks": {"cluster": "c", "path": "/jwks", "authority": "r.example",
                       "refresh_interval": 60, "min_refresh_interval": 5, "timeout_ms": 1000}}],
        "key_claim_name": "kid", "header_names": ["Authorization", "x-token"], "uri_param_names": [],
        "cookie_names": ["jwt"], "claims_to_verify": ["exp", "nbf"], "exp_required": true, "clock_skew_seconds": 30,
        "maximum_expiration": 86400, "required_claims": ["sub"], "claims_to_headers": {"sub": "X-Sub"},
        "identity_claims": ["tenant"], "forward_payload_header": "x-payload", "hide_credentials": true,
        "anonymous": "a", "run_on_preflight": false, "max_token_bytes": 4096, "plain_unauthorized_body": true,
        "failure_delay_ms": 100, "realm": "api", "decision_records": false,
        "routes": {"health": {"public": true}, "admin": {"leeway": 0, "anonymous": "a"}}
    });
    let set = JwtPolicySet::from_json(config.to_string().as_bytes()).unwrap();
    let remote: Vec<_> = set.remote_jwks().collect();
    assert_eq!(remote.len(), 1);
    assert_eq!(
        (remote[0].authority.as_str(), remote[0].path.as_str()),
        ("r.example", "/jwks")
    );
    let portcullis_core::jwt::RoutePolicy::Protected(policy) = set.for_route(None) else {
        panic!()
    };
    assert_eq!(
        policy.locations().header_names,
        vec!["authorization", "x-token"]
    );
    assert!(policy.hide_credentials());
    assert_eq!(policy.key_claim_name(), "kid");
    assert!(matches!(
        set.for_route(Some("health")),
        portcullis_core::jwt::RoutePolicy::Public
    ));
    assert!(set.needs_route_name());
    assert!(!set.decision_records());
    // Without routes the glue skips reading the route name: every name gets the default.
    let flat = JwtPolicySet::from_json(b"{}").unwrap();
    assert!(!flat.needs_route_name());
    assert!(flat.decision_records());
    assert!(std::ptr::eq(
        flat.for_route(Some("health")),
        flat.for_route(None)
    ));
}

#[test]
fn defaults_are_kongs() {
    let set = JwtPolicySet::from_json(b"{}").unwrap();
    let portcullis_core::jwt::RoutePolicy::Protected(policy) = set.for_route(Some("any")) else {
        panic!()
    };
    assert_eq!(policy.locations().header_names, vec!["authorization"]);
    assert_eq!(policy.locations().uri_param_names, vec!["jwt"]);
    assert!(policy.locations().cookie_names.is_empty());
    assert_eq!(policy.key_claim_name(), "iss");
    assert_eq!(policy.max_token_bytes(), 8192);
    assert!(!policy.hide_credentials());
    assert!(!policy.skips_preflight("OPTIONS"));
    assert!(policy.anonymous().is_none());
}

#[test]
fn remote_uri_splits_into_authority_and_path() {
    let config = json!({"providers": [{"name": "p", "issuer": "i", "remote_jwks": {"cluster": "c", "uri": "https://idp.example:8443/keys?x=1"}}]});
    let set = JwtPolicySet::from_json(config.to_string().as_bytes()).unwrap();
    let remote = set.remote_jwks().next().unwrap();
    assert_eq!(remote.authority, "idp.example:8443");
    assert_eq!(remote.path, "/keys?x=1");
    assert_eq!(
        (
            remote.refresh_interval,
            remote.min_refresh_interval,
            remote.timeout_ms
        ),
        (600, 30, 5000)
    );
}

mod never_panics {
    use super::*;
    use proptest::prelude::*;

    const NAMES: [&str; 16] = [
        "consumers",
        "providers",
        "routes",
        "credentials",
        "username",
        "key",
        "algorithm",
        "secret",
        "public_key",
        "jwk",
        "kty",
        "jwks",
        "remote_jwks",
        "uri",
        "leeway",
        "anonymous",
    ];

    fn json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            prop::sample::select(vec![
                "",
                "HS256",
                "RS256",
                "EC",
                "P-256",
                "AQAB",
                "a",
                "https://x/"
            ])
            .prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 64, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                prop::collection::btree_map(prop::sample::select(NAMES.to_vec()), inner, 0..4)
                    .prop_map(|m| Value::Object(
                        m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
                    )),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        #[test]
        fn on_any_text(text in ".{0,200}") {
            let _ = JwtPolicySet::from_json(text.as_bytes());
        }

        #[test]
        fn on_any_json(value in json()) {
            let _ = JwtPolicySet::from_json(value.to_string().as_bytes());
        }

        #[test]
        fn on_the_standard_config_with_one_member_replaced(name in prop::sample::select(NAMES.to_vec()), value in json()) {
            let mut config = standard_json();
            config["consumers"][0]["credentials"][0][name] = value.clone();
            config[name] = value;
            let _ = JwtPolicySet::from_json(config.to_string().as_bytes());
        }
    }
}
