//! Who may sign, as Envoy runs the filter: Kong consumers found by `iss` or by `kid`, with
//! every algorithm, and issuers with an inline JWKS; and what the upstream and the later
//! filters learn about the caller.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use serde_json::json;

fn alice(credential: &str) -> Identity {
    Identity {
        consumer_id: Some("c-alice".into()),
        username: Some("alice".into()),
        custom_id: Some("ext-1".into()),
        credential: Some(credential.into()),
        groups: vec!["admins".into(), "ops".into()],
        ..Identity::default()
    }
}

#[test]
fn every_algorithm_is_accepted_with_kongs_headers_upstream_and_the_identity_in_filter_state() {
    let host = Host::new();
    let mut jwt = host.start(
        "jwt",
        &config_with(json!({
            "claims_to_headers": {"sub": "x-jwt-sub"},
            "forward_payload_header": "x-jwt-payload"
        })),
    );
    for alg in ALGORITHMS {
        let token = token(alg);
        let exchange = jwt.send(bearer(&token));
        assert_accepted(&exchange, alg);
        let key = key_for(alg);
        let seen = |name: &str| exchange.upstream_header(name);
        assert_eq!(seen("x-consumer-id").as_deref(), Some("c-alice"), "{alg}");
        assert_eq!(
            seen("x-consumer-custom-id").as_deref(),
            Some("ext-1"),
            "{alg}"
        );
        assert_eq!(
            seen("x-consumer-username").as_deref(),
            Some("alice"),
            "{alg}"
        );
        assert_eq!(
            seen("x-credential-identifier").as_deref(),
            Some(key.as_str()),
            "{alg}"
        );
        assert_eq!(
            seen("x-consumer-groups").as_deref(),
            Some("admins, ops"),
            "{alg}"
        );
        assert_eq!(seen("x-anonymous-consumer"), None, "{alg}");
        assert_eq!(seen("x-jwt-sub").as_deref(), Some("alice-sub"), "{alg}");
        assert_eq!(
            seen("x-jwt-payload").as_deref(),
            token.split('.').nth(1),
            "{alg}"
        );
        // The token goes on to the upstream unless hide_credentials says otherwise.
        assert_eq!(
            seen("authorization"),
            Some(format!("Bearer {token}")),
            "{alg}"
        );
        let mut expected = alice(&key);
        expected.claims.insert("sub".into(), "alice-sub".into());
        assert_eq!(identity(&exchange), expected, "{alg}");
    }
    assert_eq!(
        host.metric_value("portcullis_jwt_accepted_total"),
        ALGORITHMS.len() as i64
    );
    assert_eq!(host.metric_value("portcullis_jwt_rejected_total"), 0);
}

#[test]
fn a_consumer_credential_is_found_by_kid_when_iss_names_none() {
    let host = Host::new();
    let mut jwt = host.start("jwt", &config());
    let bob = Identity {
        consumer_id: Some("bob".into()),
        username: Some("bob".into()),
        credential: Some("bob-kid-1".into()),
        groups: vec!["customers".into()],
        ..Identity::default()
    };
    let no_iss = json!({"sub": "bob-sub", "iat": NOW - 10, "exp": NOW + 600});
    let unknown_iss = merged(no_iss.clone(), json!({"iss": "https://elsewhere.example"}));
    for (what, claims) in [("no iss", no_iss), ("unknown iss", unknown_iss)] {
        let exchange = jwt.send(bearer(&sign("HS256", json!({"kid": "bob-kid-1"}), claims)));
        assert_accepted(&exchange, what);
        // A consumer without `id` is known by its username; without custom_id, no header.
        assert_eq!(
            exchange.upstream_header("x-consumer-id").as_deref(),
            Some("bob")
        );
        assert_eq!(exchange.upstream_header("x-consumer-custom-id"), None);
        assert_eq!(
            exchange
                .upstream_header("x-credential-identifier")
                .as_deref(),
            Some("bob-kid-1")
        );
        assert_eq!(
            exchange.upstream_header("x-consumer-groups").as_deref(),
            Some("customers")
        );
        assert_eq!(identity(&exchange), bob, "{what}");
    }
}

#[test]
fn a_credential_named_by_iss_wins_over_the_kid() {
    let host = Host::new();
    let mut jwt = host.start("jwt", &config());
    // iss names alice's HS256 credential; the kid names bob's (same secret): iss decides.
    let token = sign("HS256", json!({"kid": "bob-kid-1"}), claims("hs256-key"));
    let exchange = jwt.send(bearer(&token));
    assert_accepted(&exchange, "iss and kid");
    assert_eq!(
        exchange.upstream_header("x-consumer-username").as_deref(),
        Some("alice")
    );
}

#[test]
fn key_claim_name_names_the_credential_by_another_claim() {
    let host = Host::new();
    let mut jwt = host.start("jwt", &config_with(json!({"key_claim_name": "client_id"})));
    let token = sign(
        "HS256",
        json!({}),
        json!({"client_id": "hs256-key", "iss": "https://whoever.example", "exp": NOW + 600}),
    );
    let exchange = jwt.send(bearer(&token));
    assert_accepted(&exchange, "client_id");
    assert_eq!(
        exchange
            .upstream_header("x-credential-identifier")
            .as_deref(),
        Some("hs256-key")
    );
    // The standard claim no longer names credentials.
    assert_refused(
        &mut jwt,
        bearer(&token_with("HS256", json!({}))),
        message("No mandatory 'client_id' in claims"),
        "missing_key_claim",
        "iss only",
    );
}

#[test]
fn claims_reach_the_upstream_as_configured_headers_and_the_payload_as_one_header() {
    let host = Host::new();
    let mut jwt = host.start(
        "jwt",
        &config_with(json!({
            "claims_to_headers": {"sub": "x-jwt-sub", "email": "x-jwt-email",
                                  "roles": "x-jwt-roles", "tier": "x-jwt-tier"},
            "identity_claims": ["tenant"],
            "forward_payload_header": "x-jwt-payload"
        })),
    );
    let token = token_with(
        "RS256",
        json!({"email": "alice@example.com", "roles": ["reader", "writer"], "tenant": 7}),
    );
    let exchange = jwt.send(bearer(&token));
    assert_accepted(&exchange, "claims");
    let seen = |name: &str| exchange.upstream_header(name);
    assert_eq!(seen("x-jwt-sub").as_deref(), Some("alice-sub"));
    assert_eq!(seen("x-jwt-email").as_deref(), Some("alice@example.com"));
    assert_eq!(seen("x-jwt-roles").as_deref(), Some("reader, writer"));
    // A claim the token lacks sets no header; an identity-only claim sets none either.
    assert_eq!(seen("x-jwt-tier"), None);
    assert_eq!(seen("tenant"), None);
    let payload = token.split('.').nth(1).unwrap();
    assert_eq!(seen("x-jwt-payload").as_deref(), Some(payload));
    let identity = identity(&exchange);
    assert_eq!(identity.claims["sub"], "alice-sub");
    assert_eq!(identity.claims["email"], "alice@example.com");
    assert_eq!(identity.claims["roles"], "reader, writer");
    assert_eq!(identity.claims["tenant"], "7");
    assert!(!identity.claims.contains_key("tier"));
}

#[test]
fn an_issuer_with_an_inline_jwks_is_trusted_for_its_issuer_and_audience() {
    let host = Host::new();
    let mut jwt = host.start("jwt", &config());
    let idp = |extra: serde_json::Value| {
        merged(
            json!({"iss": "https://idp.example", "sub": "user-42", "aud": "orders-api",
                   "roles": ["admins", "auditors"], "iat": NOW - 10, "exp": NOW + 600}),
            extra,
        )
    };
    let cases = [
        (
            "RS256 by kid",
            sign("RS256", json!({"kid": "idp-rsa"}), idp(json!({}))),
        ),
        (
            "PS384 by kid",
            sign("PS384", json!({"kid": "idp-rsa"}), idp(json!({}))),
        ),
        (
            "ES256 by kid",
            sign("ES256", json!({"kid": "idp-ec"}), idp(json!({}))),
        ),
        (
            "RS512 without kid",
            sign("RS512", json!({}), idp(json!({}))),
        ),
        (
            "aud among several",
            sign(
                "ES256",
                json!({"kid": "idp-ec"}),
                idp(json!({"aud": ["billing", "orders-api"]})),
            ),
        ),
    ];
    for (what, token) in cases {
        let exchange = jwt.send(bearer(&token));
        assert_accepted(&exchange, what);
        let seen = |name: &str| exchange.upstream_header(name);
        assert_eq!(
            seen("x-credential-identifier").as_deref(),
            Some("idp"),
            "{what}"
        );
        assert_eq!(
            seen("x-consumer-username").as_deref(),
            Some("user-42"),
            "{what}"
        );
        assert_eq!(
            seen("x-consumer-groups").as_deref(),
            Some("admins, auditors"),
            "{what}"
        );
        // Provider tokens name no Kong consumer.
        assert_eq!(seen("x-consumer-id"), None, "{what}");
        assert_eq!(
            identity(&exchange),
            Identity {
                username: Some("user-42".into()),
                credential: Some("idp".into()),
                groups: vec!["admins".into(), "auditors".into()],
                ..Identity::default()
            },
            "{what}"
        );
    }
}

#[test]
fn an_issuer_refuses_other_audiences_unknown_kids_and_keys_it_does_not_hold() {
    let host = Host::new();
    let mut jwt = host.start("jwt", &config());
    let claims = |aud: serde_json::Value| {
        json!({"iss": "https://idp.example", "sub": "user-42", "aud": aud,
               "iat": NOW - 10, "exp": NOW + 600})
    };
    let audience = message("Audiences in Jwt are not allowed");
    assert_refused(
        &mut jwt,
        bearer(&sign(
            "RS256",
            json!({"kid": "idp-rsa"}),
            claims(json!("billing")),
        )),
        audience.clone(),
        "audience_mismatch",
        "another audience",
    );
    let no_aud = json!({"iss": "https://idp.example", "sub": "u", "exp": NOW + 600});
    assert_refused(
        &mut jwt,
        bearer(&sign("RS256", json!({"kid": "idp-rsa"}), no_aud)),
        audience,
        "audience_mismatch",
        "no audience",
    );
    assert_refused(
        &mut jwt,
        bearer(&sign(
            "RS256",
            json!({"kid": "idp-rsa-2"}),
            claims(json!("orders-api")),
        )),
        message("No credentials found for given 'kid'"),
        "unknown_kid",
        "unknown kid",
    );
    assert_refused(
        &mut jwt,
        bearer(&sign_with_other_rsa(
            "RS256",
            json!({"kid": "idp-rsa"}),
            claims(json!("orders-api")),
        )),
        message("Invalid signature"),
        "bad_signature",
        "signed by a key the issuer does not publish",
    );
    // The RSA key cannot verify ES256, whatever the token says.
    assert_refused(
        &mut jwt,
        bearer(&sign(
            "ES256",
            json!({"kid": "idp-rsa"}),
            claims(json!("orders-api")),
        )),
        message("Invalid algorithm"),
        "algorithm_mismatch",
        "ES256 under the RSA kid",
    );
}
