//! The issuer's rules end to end: configuration, which responses become tokens, and tokens
//! the jwt filter's own policy accepts (and refuses once tampered or expired).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};

use super::*;
use crate::jose::jwks::parse_jwks;
use crate::jose::InModule;
use crate::jwt::{
    authenticate, JwtPolicySet, KeyStore, Rejection, RoutePolicy, TokenSources, Verifier,
};

const NOW: UnixTime = UnixTime(1_767_225_600);
const JTI: [u8; 16] = [0x5a; 16];
const ISS: &str = "https://login.portcullis.test";
const AUD: &str = "orders-api";

const ALGORITHMS: [&str; 6] = ["HS256", "HS384", "HS512", "RS256", "ES256", "EdDSA"];

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap()
}

fn secret(alg: &str) -> &'static str {
    match alg {
        "HS384" => "nHVuPkh87+YUbPI0CLkbGLhnMniDVg17zEpRDhci7SnQPOEt",
        "HS512" => "MeGW9LzsWg93F55Y3FZFGcuokTEkz1Rxq3tnDb3XuEbX0lyjBkwpvUorAYRPynWe",
        _ => "FVYGMY8NaopOclJ2MtJ8wat3RqUwqi83",
    }
}

fn key(alg: &str, kid: &str) -> Value {
    match alg {
        "HS256" | "HS384" | "HS512" => json!({"kid": kid, "algorithm": alg, "secret": secret(alg)}),
        "RS256" => json!({"kid": kid, "algorithm": alg, "private_key": fixture("rsa2048.key.pem")}),
        "ES256" => json!({"kid": kid, "algorithm": alg, "private_key": fixture("p256.key.pem")}),
        _ => json!({"kid": kid, "algorithm": alg, "private_key": fixture("ed25519.key.pem")}),
    }
}

fn config(alg: &str) -> Value {
    json!({
        "auth_paths": [{"path": "/login", "methods": ["POST"]}],
        "iss": ISS,
        "aud": AUD,
        "ttl": 900,
        "keys": [key(alg, &format!("{}-1", alg.to_lowercase()))],
    })
}

fn with(mut base: Value, extra: Value) -> Value {
    if let (Some(map), Value::Object(more)) = (base.as_object_mut(), extra) {
        map.extend(more);
    }
    base
}

fn issuer(config: &Value) -> TokenIssuer {
    TokenIssuer::from_json(config.to_string().as_bytes())
        .unwrap_or_else(|e| panic!("config refused: {e}"))
}

fn issued(issuer: &TokenIssuer, body: &Value) -> Issued {
    match issuer.issue(body.to_string().as_bytes(), NOW, JTI, &InModuleSigner) {
        BodyOutcome::Issued(issued) => issued,
        other => panic!("not issued: {other:?}"),
    }
}

fn profile() -> Value {
    json!({"sub": "123", "username": "mobile-app", "groups": ["admins"], "email": "m@example.com"})
}

/// The jwt filter's policy that trusts `issuer`: a provider with its JWKS for asymmetric
/// keys, a consumer credential named by `iss` for HMAC secrets.
fn jwt_policy(alg: &str, issuer: &TokenIssuer) -> JwtPolicySet {
    let config = if alg.starts_with("HS") {
        json!({"consumers": [{"username": "login-service", "credentials": [
            {"key": ISS, "algorithm": alg, "secret": secret(alg)}]}]})
    } else {
        let jwks: Value = serde_json::from_str(issuer.jwks()).unwrap();
        json!({"providers": [{"name": "portcullis-login", "issuer": ISS,
                              "audiences": [AUD], "jwks": jwks}]})
    };
    JwtPolicySet::from_json(config.to_string().as_bytes()).unwrap()
}

fn verify(set: &JwtPolicySet, token: &str, now: UnixTime) -> Result<String, Rejection> {
    let RoutePolicy::Protected(policy) = set.for_route(None) else {
        panic!("public route");
    };
    let bearer = format!("Bearer {token}");
    let sources =
        TokenSources::from_headers(policy.locations(), [("authorization", bearer.as_str())]);
    let keys = KeyStore::new();
    let mut verifier = Verifier {
        backend: &InModule,
        remote_keys: &keys,
        cache: None,
        source: None,
    };
    authenticate(&sources, policy, now, &mut verifier)
        .map(|accepted| accepted.identity().username.clone().unwrap_or_default())
}

fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

fn header_of(token: &str) -> Value {
    let header = token.split('.').next().unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap()
}

#[test]
fn every_algorithm_issues_tokens_the_jwt_filter_accepts() {
    for alg in ALGORITHMS {
        let issuer = issuer(&config(alg));
        let token = issued(&issuer, &profile()).token;
        assert_eq!(header_of(&token)["alg"], alg);
        assert_eq!(
            header_of(&token)["kid"],
            format!("{}-1", alg.to_lowercase())
        );
        let set = jwt_policy(alg, &issuer);
        let accepted = verify(&set, &token, NOW);
        assert!(accepted.is_ok(), "{alg}: {accepted:?}");
        if !alg.starts_with("HS") {
            // A provider's tokens name the caller by `sub`.
            assert_eq!(accepted.unwrap(), "123", "{alg}");
        }
    }
}

#[test]
fn tampered_and_expired_tokens_are_refused_by_the_jwt_filter() {
    for alg in ALGORITHMS {
        let issuer = issuer(&config(alg));
        let set = jwt_policy(alg, &issuer);
        let token = issued(&issuer, &profile()).token;
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        let mut claims = claims_of(&token);
        claims["groups"] = json!(["root"]);
        parts[1] = URL_SAFE_NO_PAD.encode(claims.to_string());
        let tampered = parts.join(".");
        assert_eq!(
            verify(&set, &tampered, NOW),
            Err(Rejection::BadSignature),
            "{alg}"
        );
        // 900 s of life and the jwt filter's 60 s of leeway later.
        let later = UnixTime(NOW.secs() + 900 + 60);
        assert_eq!(
            verify(&set, &token, later),
            Err(Rejection::Expired),
            "{alg}"
        );
    }
}

#[test]
fn the_answer_carries_the_token_its_type_and_lifetime() {
    let issuer = issuer(&config("ES256"));
    let issued = issued(&issuer, &profile());
    let answer: Value = serde_json::from_str(&issued.body).unwrap();
    assert_eq!(
        answer,
        json!({"token": issued.token, "token_type": "Bearer", "expires_in": 900})
    );
    assert!(issued.body.starts_with(r#"{"token":""#), "{}", issued.body);
    let claims = claims_of(&issued.token);
    assert_eq!(claims["iss"], ISS);
    assert_eq!(claims["aud"], AUD);
    assert_eq!(claims["iat"], NOW.secs());
    assert_eq!(claims["exp"], NOW.secs() + 900);
    assert_eq!(claims["jti"], URL_SAFE_NO_PAD.encode(JTI));
    assert_eq!(claims["groups"], json!(["admins"]));
    assert_eq!(issued.set_cookie, None);
    // Who logged in, for the access log: the token's own `sub`.
    assert!(issued.subject.is_some());
    assert_eq!(issued.subject.as_deref(), claims["sub"].as_str());
    let headers = issued.headers();
    assert!(headers.contains(&("content-length", issued.body.len().to_string())));
    assert!(headers.contains(&("cache-control", "no-store".to_owned())));
}

#[test]
fn an_earlier_upstream_exp_shortens_the_token_and_a_later_one_does_not_lengthen_it() {
    let issuer = issuer(&config("HS256"));
    let short = issued(&issuer, &with(profile(), json!({"exp": NOW.secs() + 120})));
    assert_eq!(short.expires_in, 120);
    assert_eq!(claims_of(&short.token)["exp"], NOW.secs() + 120);
    let long = issued(
        &issuer,
        &with(profile(), json!({"exp": NOW.secs() + 999_999})),
    );
    assert_eq!(long.expires_in, 900);
    let passed = issuer.issue(
        with(profile(), json!({"exp": NOW.secs() - 1}))
            .to_string()
            .as_bytes(),
        NOW,
        JTI,
        &InModuleSigner,
    );
    assert_eq!(passed, BodyOutcome::Refused(Refusal::ExpPassed));
}

#[test]
fn the_allowlist_keeps_only_the_listed_fields() {
    let issuer = issuer(&with(
        config("HS256"),
        json!({"claims": ["username", "groups"]}),
    ));
    let body = with(
        profile(),
        json!({"password_hash": "$2b$…", "internal_id": 9}),
    );
    let claims = claims_of(&issued(&issuer, &body).token);
    assert_eq!(claims["username"], "mobile-app");
    assert_eq!(claims["groups"], json!(["admins"]));
    for dropped in ["email", "password_hash", "internal_id"] {
        assert!(claims.get(dropped).is_none(), "{dropped} leaked: {claims}");
    }
    assert_eq!(
        claims["sub"], "123",
        "sub comes from sub_field, not the allowlist"
    );
}

#[test]
fn only_json_objects_become_tokens() {
    let issuer = issuer(&config("HS256"));
    let cases: [(&[u8], &str); 5] = [
        (b"plain text", "not JSON (or a member repeats)"),
        (b"[1,2]", "not a JSON object"),
        (b"\"token\"", "not a JSON object"),
        (
            br#"{"sub":"1","sub":"2"}"#,
            "not JSON (or a member repeats)",
        ),
        (b"", "not JSON (or a member repeats)"),
    ];
    for (body, reason) in cases {
        assert_eq!(
            issuer.issue(body, NOW, JTI, &InModuleSigner),
            BodyOutcome::PassThrough(reason),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
}

#[test]
fn a_body_over_the_limit_is_refused_before_it_is_parsed() {
    let issuer = issuer(&with(config("HS256"), json!({"max_body_bytes": 64})));
    let big = json!({"sub": "1", "pad": "x".repeat(100)}).to_string();
    let outcome = issuer.issue(big.as_bytes(), NOW, JTI, &InModuleSigner);
    let BodyOutcome::Refused(refusal) = outcome else {
        panic!("{outcome:?}");
    };
    assert_eq!(refusal.status(), 502);
    assert_eq!(refusal.metric_label(), "too_large");
    assert!(
        !refusal.body().contains("pad"),
        "nothing of the body in the answer"
    );
    assert_eq!(issuer.check_size(64), Ok(()));
    assert!(issuer.check_size(65).is_err());
}

#[test]
fn responses_are_sorted_on_their_headers() {
    let issuer = issuer(&with(config("HS256"), json!({"max_body_bytes": 100})));
    let head = |status: &'static str, content_type: Option<&'static str>| ResponseHead {
        status: Some(status),
        content_type,
        ..ResponseHead::default()
    };
    let json = Some("application/json; charset=utf-8");
    let cases = [
        (head("200", json), HeadDecision::Buffer),
        (
            head("201", Some("application/problem+json")),
            HeadDecision::Buffer,
        ),
        (head("401", json), HeadDecision::UpstreamRefusal),
        (head("302", None), HeadDecision::UpstreamRefusal),
        (head("500", json), HeadDecision::UpstreamRefusal),
        (
            head("200", Some("text/html")),
            HeadDecision::PassThrough("not JSON (content-type)"),
        ),
        (
            head("200", None),
            HeadDecision::PassThrough("not JSON (content-type)"),
        ),
        (
            ResponseHead {
                end_of_stream: true,
                ..head("200", json)
            },
            HeadDecision::PassThrough("no body"),
        ),
        (
            ResponseHead {
                content_encoding: Some("gzip"),
                ..head("200", json)
            },
            HeadDecision::PassThrough("content-encoding"),
        ),
        (
            ResponseHead {
                content_length: Some("100"),
                ..head("200", json)
            },
            HeadDecision::Buffer,
        ),
        (
            ResponseHead {
                content_length: Some("101"),
                ..head("200", json)
            },
            HeadDecision::Refuse(Refusal::BodyTooLarge { len: 101, max: 100 }),
        ),
        (
            ResponseHead {
                status: None,
                ..head("200", json)
            },
            HeadDecision::UpstreamRefusal,
        ),
    ];
    for (head, expected) in cases {
        assert_eq!(issuer.inspect(&head), expected, "{head:?}");
    }
}

#[test]
fn logins_are_recognised_by_exact_path_and_method() {
    let issuer = issuer(&with(
        config("ES256"),
        json!({"auth_paths": [{"path": "/login", "methods": ["POST"]}, {"path": "/sso"}],
               "jwks_path": "/.well-known/jwks.json"}),
    ));
    let cases = [
        ("POST", "/login", RequestRoute::Login),
        ("POST", "/login?next=/orders", RequestRoute::Login),
        ("GET", "/login", RequestRoute::Other),
        ("post", "/login", RequestRoute::Login),
        ("POST", "/login/", RequestRoute::Misspelt),
        ("POST", "/LOGIN", RequestRoute::Misspelt),
        ("POST", "//login", RequestRoute::Misspelt),
        ("POST", "/%6Cogin", RequestRoute::Misspelt),
        ("POST", "/login;jsessionid=1", RequestRoute::Misspelt),
        ("POST", "/x/../login?next=/", RequestRoute::Misspelt),
        ("POST", "/Login/./", RequestRoute::Misspelt),
        ("GET", "/login/", RequestRoute::Other),
        ("POST", "/login/more", RequestRoute::Other),
        ("POST", "/logins", RequestRoute::Other),
        ("PUT", "/sso", RequestRoute::Login),
        ("GET", "/.well-known/jwks.json", RequestRoute::Jwks),
        ("HEAD", "/.well-known/jwks.json?x=1", RequestRoute::Jwks),
        (
            "POST",
            "/.well-known/jwks.json",
            RequestRoute::JwksMethodNotAllowed,
        ),
        ("GET", "/orders", RequestRoute::Other),
    ];
    for (method, path, expected) in cases {
        assert_eq!(
            issuer.route(method, path, &Upstream::default()),
            expected,
            "{method} {path}"
        );
        if expected != RequestRoute::Other {
            assert!(issuer.watches(path), "{path}");
        }
    }
    for path in ["/orders", "/logins", "/login/more", "/", ""] {
        assert!(!issuer.watches(path), "{path}");
    }
    // A method-override header on a login limited to some methods: the upstream could run a
    // GET as the POST login. Refused; a login open to every method is a login anyway.
    let overridden = Upstream {
        method_overridden: true,
        ..Upstream::default()
    };
    assert!(issuer.limits_methods());
    assert_eq!(
        issuer.route("GET", "/login", &overridden),
        RequestRoute::Misspelt
    );
    assert_eq!(
        issuer.route("POST", "/login", &overridden),
        RequestRoute::Misspelt
    );
    assert_eq!(
        issuer.route("PUT", "/sso", &overridden),
        RequestRoute::Login
    );
    assert_eq!(
        issuer.route("GET", "/orders", &overridden),
        RequestRoute::Other
    );
}

#[test]
fn the_jwks_publishes_every_asymmetric_key_and_no_secret() {
    let rotated = with(
        config("RS256"),
        json!({"keys": [
            key("HS256", "hmac"),
            key("RS256", "rsa-old"),
            with(key("ES256", "ec-new"), json!({"active": true})),
            key("EdDSA", "ed"),
        ]}),
    );
    let current = issuer(&rotated);
    assert_eq!(current.active_key().kid(), "ec-new");
    let doc: Value = serde_json::from_str(current.jwks()).unwrap();
    let kids: Vec<&str> = doc["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(kids, ["ec-new", "rsa-old", "ed"]);
    for jwk in doc["keys"].as_array().unwrap() {
        assert_eq!(jwk["use"], "sig");
        assert!(jwk.get("d").is_none() && jwk.get("k").is_none(), "{jwk}");
    }
    let parsed = parse_jwks(current.jwks().as_bytes()).unwrap();
    assert_eq!(parsed.set.len(), 3);
    assert!(parsed.skipped.is_empty(), "{:?}", parsed.skipped);
    // Tokens of a retired key still verify against the published set.
    let old = issuer(&with(
        config("RS256"),
        json!({"keys": [key("RS256", "rsa-old")]}),
    ));
    let token = issued(&old, &profile()).token;
    assert!(verify(&jwt_policy("RS256", &current), &token, NOW).is_ok());
}

#[test]
fn the_cookie_carries_the_token_with_its_attributes() {
    let base = with(
        config("HS256"),
        json!({"allow_on_headers_stop_iteration": true}),
    );
    let cases = [
        (
            json!({"name": "access_token"}),
            "; Path=/; Max-Age=900; HttpOnly; Secure; SameSite=Lax",
        ),
        (
            json!({"name": "t", "http_only": false, "secure": false, "same_site": "Strict", "path": "/api"}),
            "; Path=/api; Max-Age=900; SameSite=Strict",
        ),
        (
            json!({"name": "t", "same_site": "None"}),
            "; Path=/; Max-Age=900; HttpOnly; Secure; SameSite=None",
        ),
    ];
    for (cookie, attributes) in cases {
        let issuer = issuer(&with(base.clone(), json!({ "cookie": cookie })));
        let issued = issued(&issuer, &profile());
        let name = cookie["name"].as_str().unwrap();
        let expected = format!("{name}={}{attributes}", issued.token);
        assert_eq!(issued.set_cookie.as_deref(), Some(expected.as_str()));
        assert!(issued.headers().contains(&("set-cookie", expected)));
    }
}

#[test]
fn the_host_signature_forms_become_jws_signatures() {
    use ring::signature::{
        EcdsaKeyPair, RsaKeyPair, ECDSA_P256_SHA256_ASN1_SIGNING, RSA_PKCS1_SHA256,
    };
    let rng = ring::rand::SystemRandom::new();
    let input = b"header.payload";
    for alg in ["RS256", "ES256"] {
        let issuer = issuer(&config(alg));
        let key = issuer.active_key();
        let (hash, pkcs8) = key.host_arguments().unwrap();
        assert_eq!(hash, "sha256");
        // What BoringSSL answers: RSA as is, ECDSA in DER.
        let host_signature = if alg == "RS256" {
            let pair = RsaKeyPair::from_pkcs8(pkcs8).unwrap();
            let mut out = vec![0; pair.public().modulus_len()];
            pair.sign(&RSA_PKCS1_SHA256, &rng, input, &mut out).unwrap();
            out
        } else {
            let pair =
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8, &rng).unwrap();
            pair.sign(&rng, input).unwrap().as_ref().to_vec()
        };
        let jws = key.jws_signature_from_host(&host_signature).unwrap();
        assert!(key.verifies(input, &jws), "{alg}");
        if alg == "ES256" {
            assert_eq!(jws.len(), 64);
        }
        assert_eq!(key.jws_signature_from_host(b"garbage"), None, "{alg}");
    }
    let ed = issuer(&config("EdDSA"));
    assert_eq!(ed.active_key().host_arguments(), None);
}

#[test]
fn bad_configurations_are_refused_with_their_path() {
    let base = config("HS256");
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "unknown field",
            with(base.clone(), json!({"secret": "x"})),
            "unknown field `secret`",
        ),
        (
            "no iss",
            json!({"auth_paths": [{"path": "/login"}], "keys": [key("HS256", "k")]}),
            "missing field `iss`",
        ),
        (
            "empty iss",
            with(base.clone(), json!({"iss": ""})),
            "iss: empty",
        ),
        (
            "no auth path",
            with(base.clone(), json!({"auth_paths": []})),
            "auth_paths: empty",
        ),
        (
            "relative path",
            with(base.clone(), json!({"auth_paths": [{"path": "login"}]})),
            "auth_paths[0].path",
        ),
        (
            "query in path",
            with(base.clone(), json!({"auth_paths": [{"path": "/login?x"}]})),
            "auth_paths[0].path",
        ),
        (
            "lower-case method",
            with(
                base.clone(),
                json!({"auth_paths": [{"path": "/login", "methods": ["post"]}]}),
            ),
            "auth_paths[0].methods[0]",
        ),
        (
            "path twice",
            with(
                base.clone(),
                json!({"auth_paths": [{"path": "/a"}, {"path": "/a"}]}),
            ),
            "auth_paths[1].path",
        ),
        (
            "ttl over max_ttl",
            with(base.clone(), json!({"ttl": 7200, "max_ttl": 3600})),
            "ttl: 7200 is outside 1..=3600",
        ),
        ("zero ttl", with(base.clone(), json!({"ttl": 0})), "ttl: 0"),
        (
            "max_ttl over a year",
            with(base.clone(), json!({"max_ttl": 31_536_001})),
            "max_ttl",
        ),
        ("aud number", with(base.clone(), json!({"aud": 7})), "aud:"),
        (
            "reserved claim",
            with(base.clone(), json!({"claims": ["username", "exp"]})),
            "claims[1]: \"exp\" is a registered claim",
        ),
        (
            "weak secret",
            with(
                base.clone(),
                json!({"keys": [{"kid": "k", "algorithm": "HS256", "secret": "super-secret-key"}]}),
            ),
            "keys[0].secret: 16 bytes, HS256 needs at least 32",
        ),
        (
            "typed secret",
            with(
                base.clone(),
                json!({"keys": [{"kid": "k", "algorithm": "HS256", "secret": "passwordpasswordpasswordpassword"}]}),
            ),
            "keys[0].secret: weak secret",
        ),
        (
            "secret and key",
            with(
                base.clone(),
                json!({"keys": [with(key("HS256", "k"), json!({"private_key": "x"}))]}),
            ),
            "keys[0]: exactly one of",
        ),
        (
            "bad base64",
            with(
                base.clone(),
                json!({"keys": [{"kid": "k", "algorithm": "HS256", "secret_base64": "%%%"}]}),
            ),
            "keys[0].secret_base64: not base64",
        ),
        (
            "unknown algorithm",
            with(
                base.clone(),
                json!({"keys": [{"kid": "k", "algorithm": "PS256", "private_key": "x"}]}),
            ),
            "keys[0].algorithm",
        ),
        (
            "rsa key for es256",
            with(
                base.clone(),
                json!({"keys": [{"kid": "k", "algorithm": "ES256", "private_key": fixture("rsa2048.key.pem")}]}),
            ),
            "keys[0].private_key: not a P-256",
        ),
        (
            "public key",
            with(
                base.clone(),
                json!({"keys": [{"kid": "k", "algorithm": "RS256", "private_key": fixture("rsa2048.pub.pem")}]}),
            ),
            "keys[0].private_key: PEM label",
        ),
        (
            "no key",
            with(base.clone(), json!({"keys": []})),
            "keys: empty",
        ),
        (
            "kid twice",
            with(
                base.clone(),
                json!({"keys": [key("HS256", "k"), with(key("HS384", "k"), json!({"active": true}))]}),
            ),
            "keys[1].kid",
        ),
        (
            "none active",
            with(
                base.clone(),
                json!({"keys": [key("HS256", "a"), key("HS384", "b")]}),
            ),
            "keys: no key is active",
        ),
        (
            "two active",
            with(
                base.clone(),
                json!({"keys": [with(key("HS256", "a"), json!({"active": true})), with(key("HS384", "b"), json!({"active": true}))]}),
            ),
            "keys[1].active",
        ),
        (
            "cookie without held headers",
            with(base.clone(), json!({"cookie": {"name": "t"}})),
            "cookie: needs allow_on_headers_stop_iteration",
        ),
        (
            "bad cookie name",
            with(
                base.clone(),
                json!({"allow_on_headers_stop_iteration": true, "cookie": {"name": "a b"}}),
            ),
            "cookie.name",
        ),
        (
            "SameSite=None without Secure",
            with(
                base.clone(),
                json!({"allow_on_headers_stop_iteration": true, "cookie": {"name": "t", "same_site": "None", "secure": false}}),
            ),
            "cookie.same_site",
        ),
        (
            "unknown SameSite",
            with(
                base.clone(),
                json!({"allow_on_headers_stop_iteration": true, "cookie": {"name": "t", "same_site": "lax"}}),
            ),
            "cookie.same_site",
        ),
        (
            "body limit",
            with(base.clone(), json!({"max_body_bytes": 0})),
            "max_body_bytes: 0",
        ),
        (
            "jwks of secrets",
            with(base.clone(), json!({"jwks_path": "/jwks"})),
            "jwks_path: no RS256, ES256 or EdDSA key",
        ),
        (
            "jwks on the login path",
            with(config("ES256"), json!({"jwks_path": "/login"})),
            "jwks_path: \"/login\" is also an auth path",
        ),
        (
            "crypto",
            with(base.clone(), json!({"crypto": "host"})),
            "crypto: unknown variant",
        ),
    ];
    for (name, config, needle) in cases {
        let error = TokenIssuer::from_json(config.to_string().as_bytes())
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(error.contains(needle), "{name}: {error}");
    }
    for bytes in [&b"[]"[..], b"{\"iss\":\"a\",\"iss\":\"b\"}", b"not json"] {
        assert!(TokenIssuer::from_json(bytes).is_err());
    }
}

#[test]
fn a_lone_key_is_active_and_defaults_are_sane() {
    let issuer = issuer(&json!({
        "auth_paths": [{"path": "/login"}],
        "iss": ISS,
        "keys": [key("HS256", "only")],
    }));
    assert_eq!(issuer.active_key().kid(), "only");
    assert_eq!(issuer.max_body_bytes(), 16 * 1024);
    assert!(!issuer.holds_headers());
    assert_eq!(issuer.crypto(), CryptoChoice::Auto);
    assert_eq!(issuer.jwks(), "");
    let token = issued(&issuer, &profile()).token;
    let claims = claims_of(&token);
    assert_eq!(claims["exp"], NOW.secs() + 3600);
    assert!(claims.get("aud").is_none());
    assert_eq!(claims["sub"], "123");
}

#[test]
fn in_module_signatures_verify_with_an_independent_library() {
    use ring::signature::{
        RsaPublicKeyComponents, UnparsedPublicKey, ECDSA_P256_SHA256_FIXED, ED25519,
        RSA_PKCS1_2048_8192_SHA256,
    };
    let b64 = |v: &Value| URL_SAFE_NO_PAD.decode(v.as_str().unwrap()).unwrap();
    for alg in ["RS256", "ES256", "EdDSA"] {
        let issuer = issuer(&config(alg));
        let token = issued(&issuer, &profile()).token;
        let (input, signature) = token.rsplit_once('.').unwrap();
        let signature = URL_SAFE_NO_PAD.decode(signature).unwrap();
        let jwks: Value = serde_json::from_str(issuer.jwks()).unwrap();
        let jwk = &jwks["keys"][0];
        let verified = match alg {
            "RS256" => RsaPublicKeyComponents {
                n: b64(&jwk["n"]),
                e: b64(&jwk["e"]),
            }
            .verify(&RSA_PKCS1_2048_8192_SHA256, input.as_bytes(), &signature),
            "ES256" => {
                let point = [vec![4u8], b64(&jwk["x"]), b64(&jwk["y"])].concat();
                UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
                    .verify(input.as_bytes(), &signature)
            }
            _ => UnparsedPublicKey::new(&ED25519, b64(&jwk["x"]))
                .verify(input.as_bytes(), &signature),
        };
        assert!(verified.is_ok(), "{alg}");
    }
}

#[test]
fn routes_and_clusters_narrow_which_logins_are_signed() {
    let issuer = issuer(&with(
        config("ES256"),
        json!({"auth_paths": [
            {"path": "/login", "routes": ["login"], "clusters": ["login-service"]},
            {"path": "/sso", "clusters": ["sso-a", "sso-b"]},
        ]}),
    ));
    assert!(issuer.needs_upstream());
    let at = |route, cluster| Upstream {
        route: Some(route),
        cluster: Some(cluster),
        method_overridden: false,
    };
    let cases = [
        ("/login", at("login", "login-service"), RequestRoute::Login),
        // Another virtual host whose upstream answers anything: never signed.
        ("/login", at("other-vhost", "attacker"), RequestRoute::Other),
        ("/login", at("login", "attacker"), RequestRoute::Other),
        (
            "/login",
            at("other-vhost", "login-service"),
            RequestRoute::Other,
        ),
        ("/login", Upstream::default(), RequestRoute::Other),
        ("/sso", at("any", "sso-b"), RequestRoute::Login),
        ("/sso", at("any", "sso-c"), RequestRoute::Other),
        // A misspelling is refused only where the login would have been signed.
        (
            "/LOGIN",
            at("login", "login-service"),
            RequestRoute::Misspelt,
        ),
        ("/LOGIN", at("other-vhost", "attacker"), RequestRoute::Other),
    ];
    for (path, upstream, expected) in cases {
        assert_eq!(
            issuer.route("POST", path, &upstream),
            expected,
            "{path} {upstream:?}"
        );
    }
    let plain = self::issuer(&config("ES256"));
    assert!(!plain.needs_upstream());
}

#[test]
fn with_sub_field_set_an_answer_without_a_subject_is_never_signed() {
    let issuer = issuer(&with(config("HS256"), json!({"sub_field": "userId"})));
    for body in [
        json!({"success": false, "message": "wrong password"}),
        json!({"errors": [{"message": "invalid credentials"}]}),
        json!({"userId": null}),
        json!({"userId": {"id": 1}}),
    ] {
        assert_eq!(
            issuer.issue(body.to_string().as_bytes(), NOW, [7; 16], &InModuleSigner),
            BodyOutcome::PassThrough("no subject (sub_field) in the answer"),
            "{body}"
        );
    }
    assert!(matches!(
        issuer.issue(br#"{"userId": 42}"#, NOW, [7; 16], &InModuleSigner),
        BodyOutcome::Issued(_)
    ));
    // Left out, the default field is not required (Pingap's behaviour).
    let lenient = self::issuer(&config("HS256"));
    assert!(matches!(
        lenient.issue(br#"{"success": false}"#, NOW, [7; 16], &InModuleSigner),
        BodyOutcome::Issued(_)
    ));
}
