//! `authenticate` end to end: every algorithm accepted, every rejection class refused.

use portcullis_core::jose::jwks::parse_jwks;
use portcullis_core::jose::{Algorithm, InModule};
use portcullis_core::jwt::{JwtPolicySet, KeyStore, Rejection, TokenError, TokenLocation};
use portcullis_core::UnixTime;
use serde_json::json;

use crate::common::*;

fn with_token(token: &str) -> Outcome {
    run(&standard(), None, &[("authorization", &bearer(token))])
}

#[test]
fn accepts_a_good_token_for_every_algorithm() {
    for alg in Algorithm::ALL {
        let token = mint(alg, valid_claims(&key_for(alg)), None);
        let accepted = with_token(&token).accepted();
        let id = &accepted.identity();
        assert_eq!(id.username.as_deref(), Some("alice"), "{alg}");
        assert_eq!(
            id.credential.as_deref(),
            Some(key_for(alg).as_str()),
            "{alg}"
        );
        assert!(!id.anonymous);
        assert!(accepted
            .upstream_headers()
            .contains(&("x-consumer-id".into(), "c-alice".into())));
        assert!(accepted
            .upstream_headers()
            .contains(&("x-consumer-groups".into(), "admin, ops".into())));
        assert!(accepted
            .upstream_headers()
            .contains(&("x-jwt-sub".into(), "alice-sub".into())));
    }
}

#[test]
fn rejects_a_flipped_signature_bit_for_every_algorithm() {
    for alg in Algorithm::ALL {
        let token = mint(alg, valid_claims(&key_for(alg)), None);
        let (input, sig) = token.rsplit_once('.').unwrap();
        let mut raw =
            base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, sig).unwrap();
        let last = raw.len() - 1;
        raw[last] ^= 0x01;
        let tampered = format!("{input}.{}", b64(&raw));
        assert_eq!(
            with_token(&tampered).rejection(),
            Rejection::BadSignature,
            "{alg}"
        );
    }
}

#[test]
fn rejects_a_changed_payload_for_every_algorithm() {
    for alg in Algorithm::ALL {
        let token = mint(alg, valid_claims(&key_for(alg)), None);
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        let mut claims = valid_claims(&key_for(alg));
        claims["sub"] = json!("mallory");
        parts[1] = b64(claims.to_string());
        assert_eq!(
            with_token(&parts.join(".")).rejection(),
            Rejection::BadSignature,
            "{alg}"
        );
    }
}

#[test]
fn rejects_a_signature_made_with_another_key() {
    let token = mint_with(
        Algorithm::RS256,
        valid_claims("rs256-key"),
        None,
        Some("rsa2048-other.key.pem"),
    );
    assert_eq!(with_token(&token).rejection(), Rejection::BadSignature);
    let forged = hs256_raw(
        r#"{"alg":"HS256"}"#,
        &valid_claims("hs256-key").to_string(),
        b"another secret of 32 bytes......",
    );
    assert_eq!(with_token(&forged).rejection(), Rejection::BadSignature);
}

#[test]
fn rejects_an_alg_other_than_the_credential_pins() {
    // HS512 token whose iss names the HS256 credential.
    let token = mint(Algorithm::HS512, valid_claims("hs256-key"), None);
    assert_eq!(with_token(&token).rejection(), Rejection::AlgorithmMismatch);
    // PS256 signed with the right RSA key, but the credential pins RS256.
    let token = mint(Algorithm::PS256, valid_claims("rs256-key"), None);
    assert_eq!(with_token(&token).rejection(), Rejection::AlgorithmMismatch);
}

#[test]
fn rejects_key_confusion_with_the_public_key_as_hmac_secret() {
    let pem = fixture("rsa2048.pub.pem");
    let token = hs256_raw(
        r#"{"alg":"HS256"}"#,
        &valid_claims("rs256-key").to_string(),
        pem.as_bytes(),
    );
    assert_eq!(with_token(&token).rejection(), Rejection::AlgorithmMismatch);
}

#[test]
fn rejects_alg_none_in_any_case() {
    for alg in ["none", "None", "NONE"] {
        let token = format!(
            "{}.{}.",
            b64(format!(r#"{{"alg":"{alg}"}}"#)),
            b64(valid_claims("hs256-key").to_string())
        );
        assert_eq!(
            with_token(&token).rejection(),
            Rejection::Malformed(TokenError::AlgNone),
            "{alg}"
        );
        assert_eq!(
            with_token(&token).rejection().kong_body(),
            r#"{"message":"Bad token; invalid alg"}"#
        );
    }
}

#[test]
fn rejects_malformed_tokens_before_any_lookup() {
    let claims = valid_claims("hs256-key").to_string();
    let cases = [
        ("garbage", "Bad token; invalid JSON"),
        ("a.b", "Bad token; invalid JSON"),
        ("e30.e30.e30.e30.e30", "Bad token; invalid JSON"),
    ];
    for (token, message) in cases {
        let rejection = with_token(token).rejection();
        assert!(matches!(rejection, Rejection::Malformed(_)), "{token}");
        assert_eq!(
            rejection.kong_body(),
            format!(r#"{{"message":"{message}"}}"#)
        );
    }
    let dup = hs256_raw(
        r#"{"alg":"HS256"}"#,
        &format!(r#"{{"iss":"x","iss":"hs256-key","exp":{}}}"#, NOW.0 + 60),
        HS256_SECRET.as_bytes(),
    );
    assert!(matches!(
        with_token(&dup).rejection(),
        Rejection::Malformed(TokenError::DuplicateMember(_))
    ));
    let crit = hs256_raw(
        r#"{"alg":"HS256","crit":["urn:x"],"urn:x":1}"#,
        &claims,
        HS256_SECRET.as_bytes(),
    );
    assert_eq!(
        with_token(&crit).rejection(),
        Rejection::Malformed(TokenError::Crit)
    );
    let b64false = hs256_raw(
        r#"{"alg":"HS256","b64":false,"crit":["b64"]}"#,
        &claims,
        HS256_SECRET.as_bytes(),
    );
    assert_eq!(
        with_token(&b64false).rejection(),
        Rejection::Malformed(TokenError::B64)
    );
}

#[test]
fn rejects_ecdsa_signatures_with_r_or_s_zero() {
    let token = mint(Algorithm::ES256, valid_claims("es256-key"), None);
    let (input, _) = token.rsplit_once('.').unwrap();
    let mut zero_s = vec![0u8; 64];
    zero_s[31] = 1;
    let rejection = with_token(&format!("{input}.{}", b64(&zero_s))).rejection();
    assert_eq!(rejection, Rejection::Malformed(TokenError::EcdsaRange));
    assert_eq!(rejection.kong_body(), r#"{"message":"Invalid signature"}"#);
}

#[test]
fn rejects_tokens_over_max_token_bytes() {
    let set = portcullis_core::jwt::JwtPolicySet::from_json(
        json!({"consumers": standard_json()["consumers"], "max_token_bytes": 100})
            .to_string()
            .as_bytes(),
    )
    .unwrap();
    let token = mint(Algorithm::HS256, valid_claims("hs256-key"), None);
    let rejection = run(&set, None, &[("authorization", &bearer(&token))]).rejection();
    assert!(matches!(
        rejection,
        Rejection::Malformed(TokenError::TooLarge { max: 100, .. })
    ));
}

#[test]
fn rejects_a_request_without_a_token_without_an_error_attribute() {
    let rejection = run(
        &standard(),
        None,
        &[("authorization", "Basic Zm9vOmJhcg==")],
    )
    .rejection();
    assert_eq!(rejection, Rejection::Missing);
    assert_eq!(rejection.kong_body(), r#"{"message":"Unauthorized"}"#);
    assert_eq!(
        rejection.www_authenticate("portcullis"),
        r#"Bearer realm="portcullis""#
    );
}

#[test]
fn rejects_several_different_tokens() {
    let a = mint(Algorithm::HS256, valid_claims("hs256-key"), None);
    let b = mint(Algorithm::HS384, valid_claims("hs384-key"), None);
    let path = format!("/x?jwt={b}");
    let rejection = run(
        &standard(),
        None,
        &[("authorization", &bearer(&a)), (":path", &path)],
    )
    .rejection();
    assert_eq!(rejection, Rejection::Multiple);
    assert_eq!(
        rejection.kong_body(),
        r#"{"message":"Multiple tokens provided"}"#
    );
    // The same token twice is one token; a policy that hides credentials learns both
    // places, one that does not has no use for them.
    let path = format!("/x?jwt={a}");
    let headers = [("authorization", bearer(&a)), (":path", path)];
    let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let mut hiding = standard_json();
    hiding["hide_credentials"] = json!(true);
    let hiding = JwtPolicySet::from_json(hiding.to_string().as_bytes()).unwrap();
    assert_eq!(
        run(&hiding, None, &headers).accepted().token_locations,
        vec![
            TokenLocation::Header("authorization".into()),
            TokenLocation::Query("jwt".into())
        ]
    );
    assert!(run(&standard(), None, &headers)
        .accepted()
        .token_locations
        .is_empty());
}

#[test]
fn rejects_expired_not_yet_valid_and_future_tokens() {
    let n = NOW.0;
    let cases = [
        (
            json!({"iss": "hs256-key", "exp": n - 61}),
            Rejection::Expired,
            r#"{"exp":"token expired"}"#,
        ),
        (
            json!({"iss": "hs256-key", "exp": n + 600, "nbf": n + 61}),
            Rejection::NotYetValid,
            r#"{"nbf":"token not valid yet"}"#,
        ),
        (
            json!({"iss": "hs256-key", "exp": n + 600, "iat": n + 61}),
            Rejection::IssuedInFuture,
            r#"{"iat":"token issued in the future"}"#,
        ),
        (
            json!({"iss": "hs256-key"}),
            Rejection::ClaimNotNumber("exp"),
            r#"{"exp":"must be a number"}"#,
        ),
        (
            json!({"iss": "hs256-key", "exp": "tomorrow"}),
            Rejection::ClaimNotNumber("exp"),
            r#"{"exp":"must be a number"}"#,
        ),
    ];
    for (claims, expected, body) in cases {
        let rejection = with_token(&mint(Algorithm::HS256, claims.clone(), None)).rejection();
        assert_eq!(rejection, expected, "{claims}");
        assert_eq!(rejection.kong_body(), body);
        assert_eq!(
            rejection.www_authenticate("r"),
            r#"Bearer realm="r", error="invalid_token""#
        );
    }
    // Within the default 60 s leeway.
    let claims = json!({"iss": "hs256-key", "exp": n - 59, "nbf": n + 59, "iat": n + 59});
    assert!(matches!(
        with_token(&mint(Algorithm::HS256, claims, None)),
        Outcome::Accepted(_)
    ));
}

#[test]
fn route_overrides_apply_leeway_required_claims_and_maximum_expiration() {
    let set = standard();
    let run_strict = |claims| {
        run(
            &set,
            Some("strict-route"),
            &[(
                "authorization",
                &bearer(&mint(Algorithm::HS256, claims, None)),
            )],
        )
    };
    let n = NOW.0;
    assert_eq!(
        run_strict(json!({"iss": "hs256-key", "exp": n, "tenant": "t"})).rejection(),
        Rejection::Expired
    );
    assert_eq!(
        run_strict(json!({"iss": "hs256-key", "exp": n + 60})).rejection(),
        Rejection::MissingClaim("tenant".into())
    );
    let far = run_strict(json!({"iss": "hs256-key", "exp": n + 3601, "tenant": "t"})).rejection();
    assert_eq!(
        far.kong_body(),
        r#"{"exp":"exceeds maximum allowed expiration"}"#
    );
    assert!(matches!(
        run_strict(json!({"iss": "hs256-key", "exp": n + 60, "tenant": "t"})),
        Outcome::Accepted(_)
    ));
}

#[test]
fn public_routes_need_no_token_and_unknown_routes_use_the_default() {
    let set = standard();
    assert_eq!(run(&set, Some("public-route"), &[]), Outcome::Public);
    assert_eq!(
        run(&set, Some("no-such-route"), &[]).rejection(),
        Rejection::Missing
    );
}

#[test]
fn anonymous_stands_in_only_when_no_token_is_presented() {
    let set = standard();
    let accepted = run(&set, Some("anon-route"), &[]).accepted();
    assert!(accepted.identity().anonymous);
    assert_eq!(
        accepted.identity().username.as_deref(),
        Some("anonymous-user")
    );
    assert!(accepted
        .upstream_headers()
        .contains(&("x-anonymous-consumer".into(), "true".into())));
    let bad = format!(
        "Bearer {}",
        mint(
            Algorithm::HS256,
            json!({"iss": "hs256-key", "exp": NOW.0 - 3600}),
            None
        )
    );
    assert_eq!(
        run(&set, Some("anon-route"), &[("authorization", &bad)]).rejection(),
        Rejection::Expired
    );
}

#[test]
fn finds_the_credential_by_key_claim_or_kid() {
    let by_kid = mint(
        Algorithm::HS256,
        json!({"exp": NOW.0 + 60}),
        Some("hs256-key"),
    );
    assert_eq!(
        with_token(&by_kid)
            .accepted()
            .identity()
            .credential
            .as_deref(),
        Some("hs256-key")
    );
    let nothing = mint(Algorithm::HS256, json!({"exp": NOW.0 + 60}), None);
    let rejection = with_token(&nothing).rejection();
    assert_eq!(
        rejection.kong_body(),
        r#"{"message":"No mandatory 'iss' in claims"}"#
    );
    let unknown = mint(Algorithm::HS256, valid_claims("nobody"), None);
    let rejection = with_token(&unknown).rejection();
    assert_eq!(
        rejection.kong_body(),
        r#"{"message":"No credentials found for given 'iss'"}"#
    );
}

#[test]
fn provider_tokens_are_checked_by_kid_issuer_and_audience() {
    let claims = json!({"iss": "https://idp.example", "sub": "bob", "aud": "api", "exp": NOW.0 + 60, "roles": ["reader"]});
    for (alg, kid) in [
        (Algorithm::RS256, "rsa-1"),
        (Algorithm::PS384, "rsa-1"),
        (Algorithm::ES256, "ec-1"),
    ] {
        let accepted = with_token(&mint(alg, claims.clone(), Some(kid))).accepted();
        assert_eq!(
            accepted.identity().username.as_deref(),
            Some("bob"),
            "{alg}"
        );
        assert_eq!(accepted.identity().credential.as_deref(), Some("idp"));
        assert_eq!(accepted.identity().groups, vec!["reader".to_owned()]);
        assert_eq!(accepted.identity().consumer_id, None);
    }
    // No kid: every key fit for the alg is tried.
    assert!(matches!(
        with_token(&mint(Algorithm::RS256, claims.clone(), None)),
        Outcome::Accepted(_)
    ));
    let mut wrong_aud = claims.clone();
    wrong_aud["aud"] = json!(["web"]);
    assert_eq!(
        with_token(&mint(Algorithm::RS256, wrong_aud, Some("rsa-1"))).rejection(),
        Rejection::AudienceMismatch
    );
    let unknown_kid =
        with_token(&mint(Algorithm::RS256, claims.clone(), Some("rsa-9"))).rejection();
    assert_eq!(
        unknown_kid,
        Rejection::UnknownKid {
            provider: "idp".into(),
            kid: "rsa-9".into()
        }
    );
    // The EC key's kid with an RSA alg: the key is not pinned to it.
    assert_eq!(
        with_token(&mint(Algorithm::RS256, claims, Some("ec-1"))).rejection(),
        Rejection::AlgorithmMismatch
    );
}

#[test]
fn a_token_claiming_a_provider_issuer_is_that_providers() {
    // Its kid names a consumer credential, but its iss names the provider: the provider's
    // keys decide.
    let claims = json!({"iss": "https://idp.example", "aud": "api", "exp": NOW.0 + 60});
    let token = mint(Algorithm::HS256, claims, Some("hs256-key"));
    let expected = Rejection::UnknownKid {
        provider: "idp".into(),
        kid: "hs256-key".into(),
    };
    assert_eq!(with_token(&token).rejection(), expected);
}

#[test]
fn remote_keys_come_from_the_key_store_and_follow_rotation() {
    let set = standard();
    let claims = json!({"iss": "https://remote.example", "sub": "carol", "exp": NOW.0 + 60});
    let token = mint(Algorithm::EdDSA, claims, Some("ed-1"));
    let headers = [("authorization", bearer(&token))];
    let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let mut store = KeyStore::new();
    let outcome = run_full(&set, None, &headers, NOW, &InModule, &store, None);
    assert_eq!(
        outcome.rejection(),
        Rejection::KeysUnavailable {
            provider: "remote".into()
        }
    );

    let doc = json!({"keys": [ed_jwk("ed-1")]}).to_string();
    store.install("remote", 1, parse_jwks(doc.as_bytes()).unwrap().set);
    let accepted = run_full(&set, None, &headers, NOW, &InModule, &store, None).accepted();
    assert_eq!(accepted.identity().username.as_deref(), Some("carol"));

    let rotated = json!({"keys": [ec_jwk("p256.pub.pem", "P-256", "ec-2")]}).to_string();
    store.install("remote", 2, parse_jwks(rotated.as_bytes()).unwrap().set);
    let outcome = run_full(&set, None, &headers, NOW, &InModule, &store, None);
    assert_eq!(
        outcome.rejection(),
        Rejection::UnknownKid {
            provider: "remote".into(),
            kid: "ed-1".into()
        }
    );
}

#[test]
fn claims_to_headers_and_payload_header_reach_the_upstream_safely() {
    let mut config = standard_json();
    config["claims_to_headers"] = json!({"sub": "x-jwt-sub", "tenant": "x-tenant", "n": "x-n"});
    config["identity_claims"] = json!(["plan"]);
    config["forward_payload_header"] = json!("x-jwt-payload");
    let set = portcullis_core::jwt::JwtPolicySet::from_json(config.to_string().as_bytes()).unwrap();
    let claims = json!({"iss": "hs256-key", "exp": NOW.0 + 60, "sub": "a\r\nx-admin: 1", "tenant": "t1", "n": 5, "plan": "gold"});
    let token = mint(Algorithm::HS256, claims, None);
    let accepted = run(&set, None, &[("authorization", &bearer(&token))]).accepted();
    let payload = token.split('.').nth(1).unwrap().to_owned();
    assert!(accepted
        .upstream_headers()
        .contains(&("x-tenant".into(), "t1".into())));
    assert!(accepted
        .upstream_headers()
        .contains(&("x-n".into(), "5".into())));
    assert!(accepted
        .upstream_headers()
        .contains(&("x-jwt-payload".into(), payload.into())));
    assert!(!accepted
        .upstream_headers()
        .iter()
        .any(|(n, v)| &**n == "x-jwt-sub" || v.contains('\n')));
    assert_eq!(accepted.dropped_claims, vec!["sub".to_owned()]);
    assert_eq!(
        accepted.identity().claims.get("plan").map(String::as_str),
        Some("gold")
    );
    assert!(set.headers_to_strip().iter().any(|h| h == "x-jwt-payload"));
    assert!(set
        .headers_to_strip()
        .iter()
        .any(|h| h == "x-consumer-username"));
    let sent = [
        ":path",
        "X-Consumer-Username",
        "x-jwt-payload",
        "x-consumer-username",
        "X-JWT-PAYLOAD",
        "x-other",
    ];
    assert_eq!(
        set.forged_headers(sent),
        vec!["x-consumer-username", "x-jwt-payload"]
    );
    assert!(set.forged_headers([":path", "authorization"]).is_empty());
}

#[test]
fn refusal_carries_status_body_realm_and_delay() {
    let mut config = standard_json();
    config["plain_unauthorized_body"] = json!(true);
    config["failure_delay_ms"] = json!(250);
    config["realm"] = json!("orders");
    let set = portcullis_core::jwt::JwtPolicySet::from_json(config.to_string().as_bytes()).unwrap();
    let portcullis_core::jwt::RoutePolicy::Protected(policy) = set.for_route(None) else {
        panic!()
    };
    let refusal = policy.refusal(&Rejection::Expired);
    assert_eq!(refusal.status, 401);
    assert_eq!(refusal.body, r#"{"message":"Unauthorized"}"#);
    assert_eq!(
        refusal.www_authenticate,
        r#"Bearer realm="orders", error="invalid_token""#
    );
    assert_eq!(refusal.delay_ms, 250);
}

#[test]
fn preflight_skips_only_when_configured() {
    let mut config = standard_json();
    config["run_on_preflight"] = json!(false);
    let set = portcullis_core::jwt::JwtPolicySet::from_json(config.to_string().as_bytes()).unwrap();
    let portcullis_core::jwt::RoutePolicy::Protected(policy) = set.for_route(None) else {
        panic!()
    };
    assert!(policy.skips_preflight("OPTIONS"));
    assert!(!policy.skips_preflight("GET"));
    let portcullis_core::jwt::RoutePolicy::Protected(default) = standard().for_route(None).clone()
    else {
        panic!()
    };
    assert!(!default.skips_preflight("OPTIONS"));
}

#[test]
fn time_is_whatever_the_caller_says() {
    let token = mint(
        Algorithm::HS256,
        json!({"iss": "hs256-key", "exp": NOW.0 + 600}),
        None,
    );
    let headers = [("authorization", bearer(&token))];
    let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let later = UnixTime(NOW.0 + 661);
    let outcome = run_full(
        &standard(),
        None,
        &headers,
        later,
        &InModule,
        &KeyStore::new(),
        None,
    );
    assert_eq!(outcome.rejection(), Rejection::Expired);
}

/// A consumer's credential on a policy that forwards no claim hands on what was built at
/// configure time, shared by every request — the same identity, headers and encoding the
/// per-request path builds.
#[test]
fn a_consumer_without_forwarded_claims_hands_on_its_prepared_identity() {
    let mut config = standard_json();
    config.as_object_mut().unwrap().remove("claims_to_headers");
    let set = portcullis_core::jwt::JwtPolicySet::from_json(config.to_string().as_bytes()).unwrap();
    let token = mint(
        Algorithm::HS256,
        valid_claims(&key_for(Algorithm::HS256)),
        None,
    );
    let first = run(&set, None, &[("authorization", &bearer(&token))]).accepted();
    let second = run(&set, None, &[("authorization", &bearer(&token))]).accepted();
    assert!(std::sync::Arc::ptr_eq(&first.handoff, &second.handoff));

    // What the per-request path (a policy forwarding `sub`) builds, without that claim.
    let general = with_token(&token).accepted();
    let mut identity = general.identity().clone();
    identity.claims.clear();
    assert_eq!(first.identity(), &identity);
    let headers: Vec<_> = general
        .upstream_headers()
        .iter()
        .filter(|(name, _)| &**name != "x-jwt-sub")
        .cloned()
        .collect();
    assert_eq!(first.upstream_headers(), headers.as_slice());
    assert_eq!(
        portcullis_core::identity::Identity::decode(first.encoded_identity()).unwrap(),
        identity
    );
}
