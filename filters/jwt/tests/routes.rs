//! What a route's policy does with a request beyond checking its token: forged identity
//! headers removed everywhere, the anonymous consumer, CORS preflight, policies picked by
//! Envoy route name, public routes, and how refusals read.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use host_test::Status;
use serde_json::json;

/// Every header a client might forge to pose as someone, with a value no filter would set.
const FORGED: [&str; 8] = [
    "x-consumer-id",
    "x-consumer-custom-id",
    "x-consumer-username",
    "x-credential-identifier",
    "x-consumer-groups",
    "x-anonymous-consumer",
    "x-jwt-sub",
    "x-jwt-payload",
];

fn forged(request: Request) -> Request {
    FORGED
        .iter()
        .fold(request, |r, name| r.header(name, "forged-by-client"))
}

fn scene() -> serde_json::Value {
    config_with(json!({
        "claims_to_headers": {"sub": "x-jwt-sub"},
        "forward_payload_header": "x-jwt-payload",
        "routes": {
            "docs": {"public": true},
            "catalog": {"anonymous": "guest"},
            "admin": {"leeway": 0, "required_claims": ["tenant"], "realm": "admin-api"},
            "partners": {"header_names": ["x-partner-token"], "uri_param_names": []},
            "preflight": {"run_on_preflight": false},
            "quiet": {"plain_unauthorized_body": true}
        }
    }))
}

fn on(route: &str, path: &str) -> Request {
    Request::get(path).route(route)
}

#[test]
fn client_sent_identity_headers_never_reach_the_upstream() {
    let host = Host::new();
    let mut jwt = host.start("jwt", &scene());
    let bob = sign(
        "HS256",
        json!({"kid": "bob-kid-1"}),
        json!({"sub": "bob-sub", "exp": NOW + 600}),
    );
    let cases = [
        (
            "authenticated",
            forged(on("api", "/orders")).header("authorization", &format!("Bearer {bob}")),
        ),
        ("anonymous", forged(on("catalog", "/catalog"))),
        ("public", forged(on("docs", "/docs"))),
    ];
    for (what, request) in cases {
        let exchange = jwt.send(request);
        assert_accepted(&exchange, what);
        let upstream = exchange.upstream.as_ref().unwrap();
        for name in FORGED {
            let values = upstream.headers.get_all(name);
            assert!(
                !values.iter().any(|v| v == "forged-by-client"),
                "{what}: {name} passed as {values:?}"
            );
            assert!(values.len() <= 1, "{what}: {name} twice: {values:?}");
        }
    }
    // What each request did carry is the filter's own word.
    let authenticated =
        jwt.send(forged(on("api", "/orders")).header("authorization", &format!("Bearer {bob}")));
    let seen = |name: &str| authenticated.upstream_header(name);
    assert_eq!(seen("x-consumer-username").as_deref(), Some("bob"));
    assert_eq!(seen("x-jwt-sub").as_deref(), Some("bob-sub"));
    assert_eq!(seen("x-consumer-custom-id"), None);
    assert_eq!(seen("x-anonymous-consumer"), None);
    assert_eq!(seen("x-jwt-payload").as_deref(), bob.split('.').nth(1));
    let public = jwt.send(forged(on("docs", "/docs")));
    for name in FORGED {
        assert_eq!(public.upstream_header(name), None, "public: {name}");
    }
    assert!(!public.filter_state.contains_key("wasm.portcullis.identity"));
}

#[test]
fn without_a_token_the_anonymous_consumer_stands_in_but_a_bad_token_is_still_refused() {
    let host = Host::new();
    let mut jwt = host.start("jwt", &scene());
    let exchange = jwt.send(on("catalog", "/catalog"));
    assert_accepted(&exchange, "no token");
    let seen = |name: &str| exchange.upstream_header(name);
    assert_eq!(seen("x-anonymous-consumer").as_deref(), Some("true"));
    assert_eq!(seen("x-consumer-username").as_deref(), Some("guest"));
    assert_eq!(seen("x-consumer-id").as_deref(), Some("c-guest"));
    assert_eq!(seen("x-credential-identifier"), None);
    assert_eq!(
        identity(&exchange),
        Identity {
            consumer_id: Some("c-guest".into()),
            username: Some("guest".into()),
            anonymous: true,
            ..Identity::default()
        }
    );

    // A good token on the same route is its consumer, not the anonymous one.
    let exchange = jwt.send(
        on("catalog", "/catalog").header("authorization", &format!("Bearer {}", token("EdDSA"))),
    );
    assert_accepted(&exchange, "good token");
    assert_eq!(
        exchange.upstream_header("x-consumer-username").as_deref(),
        Some("alice")
    );
    assert_eq!(exchange.upstream_header("x-anonymous-consumer"), None);
    assert!(!identity(&exchange).anonymous);

    let bad = [
        (
            "expired",
            token_with("HS256", json!({"exp": NOW - 3600})),
            json!({"exp": "token expired"}),
            "expired",
        ),
        (
            "flipped",
            resign_flipped(&token("HS256")),
            message("Invalid signature"),
            "bad_signature",
        ),
        (
            "garbage",
            "not-a-token".to_owned(),
            message("Bad token; invalid JSON"),
            "malformed",
        ),
    ];
    for (what, token, body, label) in bad {
        assert_refused(
            &mut jwt,
            on("catalog", "/catalog").header("authorization", &format!("Bearer {token}")),
            body,
            label,
            what,
        );
    }
    assert_eq!(host.metric_value("portcullis_jwt_accepted_total"), 2);
}

fn resign_flipped(token: &str) -> String {
    let mut signature = signature_of(token);
    signature[0] ^= 1;
    with_signature(token, &signature)
}

#[test]
fn run_on_preflight_false_lets_cors_preflight_through_unauthenticated() {
    let host = Host::new();
    let mut jwt = host.start("jwt", &scene());
    let preflight = |route: &str| {
        Request::new("OPTIONS", "/orders")
            .route(route)
            .header("origin", "https://shop.example")
            .header("access-control-request-method", "POST")
    };
    let exchange = jwt.send(forged(preflight("preflight")));
    assert_accepted(&exchange, "OPTIONS with run_on_preflight false");
    assert_eq!(exchange.upstream_header("x-consumer-username"), None);
    assert!(!exchange
        .filter_state
        .contains_key("wasm.portcullis.identity"));
    // Only OPTIONS is spared, and only where configured.
    assert_refused(
        &mut jwt,
        on("preflight", "/orders"),
        message("Unauthorized"),
        "missing",
        "GET on the preflight route",
    );
    assert_refused(
        &mut jwt,
        preflight("api"),
        message("Unauthorized"),
        "missing",
        "OPTIONS where run_on_preflight defaults to true",
    );
}

#[test]
fn each_route_gets_its_own_policy_and_unlisted_routes_the_default() {
    let host = Host::new();
    let mut jwt = host.start("jwt", &scene());
    let token = token_with("HS256", json!({"exp": NOW + 600}));
    let with = |route: &str| on(route, "/x").header("authorization", &format!("Bearer {token}"));

    assert_accepted(&jwt.send(with("api")), "default policy");
    assert_accepted(&jwt.send(with("some-unlisted-route")), "unlisted route");
    assert_accepted(
        &jwt.send(Request::get("/x").header("authorization", &format!("Bearer {token}"))),
        "no route name",
    );
    assert_accepted(
        &jwt.send(on("docs", "/docs")),
        "public route without a token",
    );

    // The admin route wants a tenant, and answers with its own realm.
    let exchange = assert_refused_with_realm(&mut jwt, with("admin"));
    assert_eq!(
        exchange.body_json(),
        json!({"tenant": "required claim missing"})
    );
    let tenant = token_with("HS256", json!({"tenant": "t1"}));
    assert_accepted(
        &jwt.send(on("admin", "/x").header("authorization", &format!("Bearer {tenant}"))),
        "admin with a tenant",
    );

    // Partners send their token in their own header, and nowhere else.
    assert_refused(
        &mut jwt,
        with("partners"),
        message("Unauthorized"),
        "missing",
        "partners via authorization",
    );
    assert_refused(
        &mut jwt,
        on("partners", &format!("/x?jwt={token}")),
        message("Unauthorized"),
        "missing",
        "partners via ?jwt=",
    );
    assert_accepted(
        &jwt.send(on("partners", "/x").header("x-partner-token", &token)),
        "partners via x-partner-token",
    );
}

fn assert_refused_with_realm(jwt: &mut Plugin, request: Request) -> Exchange {
    let exchange = jwt.send(request);
    assert_eq!(exchange.status(), 401, "{}", exchange.body_text());
    assert!(!exchange.reached_upstream());
    assert_eq!(
        exchange.header("www-authenticate").as_deref(),
        Some(r#"Bearer realm="admin-api", error="invalid_token""#)
    );
    exchange
}

#[test]
fn a_whole_gateway_can_be_public_but_for_the_routes_that_say_otherwise() {
    let host = Host::new();
    let mut jwt = host.start(
        "jwt",
        &config_with(json!({"public": true, "routes": {"payments": {"public": false}}})),
    );
    assert_accepted(&jwt.send(on("users", "/users")), "public by default");
    assert_refused(
        &mut jwt,
        on("payments", "/payments"),
        message("Unauthorized"),
        "missing",
        "payments",
    );
    assert_accepted(
        &jwt.send(
            on("payments", "/payments")
                .header("authorization", &format!("Bearer {}", token("ES384"))),
        ),
        "payments with a token",
    );
}

#[test]
fn plain_unauthorized_body_hides_the_reason_from_the_client_but_not_from_the_operator() {
    let host = Host::new();
    let mut jwt = host.start("jwt", &scene());
    let expired = token_with("HS256", json!({"exp": NOW - 3600}));
    let request = on("quiet", "/x").header("authorization", &format!("Bearer {expired}"));
    assert_refused(
        &mut jwt,
        request,
        message("Unauthorized"),
        "expired",
        "expired on the quiet route",
    );
    assert!(host.logged(LogLevel::Info, "portcullis-jwt: rejected: token expired"));
    let request = on("quiet", "/x").header("authorization", "Bearer a.b");
    assert_refused(
        &mut jwt,
        request,
        message("Unauthorized"),
        "malformed",
        "two segments",
    );
    assert!(host.logged(
        LogLevel::Info,
        "portcullis-jwt: rejected: malformed token: 2 segments, a JWS has 3"
    ));
    // Other routes keep Kong's bodies.
    let request = on("api", "/x").header("authorization", &format!("Bearer {expired}"));
    assert_refused(
        &mut jwt,
        request,
        json!({"exp": "token expired"}),
        "expired",
        "expired elsewhere",
    );
}

#[test]
fn forged_identity_headers_are_removed_even_when_their_bytes_are_not_utf8() {
    let host = Host::new();
    let mut jwt = host.start("jwt", &scene());
    let bob = sign(
        "HS256",
        json!({"kid": "bob-kid-1"}),
        json!({"sub": "bob-sub", "exp": NOW + 600}),
    );
    // obs-text (bytes 0x80-0xff) is legal in an HTTP/1.1 header value, and Envoy passes it.
    let forge = |request: Request| {
        FORGED
            .iter()
            .fold(request, |r, name| r.header_bytes(name, b"admins\xff"))
    };
    let cases = [
        (
            "authenticated",
            forge(on("api", "/orders")).header("authorization", &format!("Bearer {bob}")),
        ),
        ("anonymous", forge(on("catalog", "/catalog"))),
        ("public", forge(on("docs", "/docs"))),
    ];
    for (what, request) in cases {
        let exchange = jwt.send(request);
        assert_accepted(&exchange, what);
        let upstream = exchange.upstream.as_ref().unwrap();
        for name in FORGED {
            assert!(
                upstream
                    .headers
                    .pairs
                    .iter()
                    .all(|(k, v)| k != name || !v.ends_with(b"\xff")),
                "{what}: the client's {name} reached the upstream"
            );
        }
    }
}

#[test]
fn a_token_whose_bytes_are_not_utf8_is_a_bad_token_not_no_token() {
    let host = Host::new();
    let mut jwt = host.start("jwt", &scene());
    let mut value = format!("Bearer {}", token("HS256")).into_bytes();
    value.push(0xff);
    // On a route with an anonymous consumer, a bad token must not pass as no token.
    let exchange = jwt.send(on("catalog", "/catalog").header_bytes("authorization", &value));
    assert_eq!(exchange.status(), 401, "{}", exchange.body_text());
    assert!(!exchange.reached_upstream());
    assert_eq!(
        exchange.body_json(),
        message("Bad token; invalid signature")
    );
    assert_eq!(
        exchange.header("www-authenticate").as_deref(),
        Some(INVALID_TOKEN)
    );
}

#[test]
fn a_header_map_the_host_cannot_give_is_refused_with_500_never_let_through() {
    let host = Host::new();
    let mut jwt = host.start("jwt", &scene());
    host.fail_header_maps(Some(Status::NotFound));
    // Nothing can be read, not even the forged identity headers to strip: on a public route,
    // on the anonymous route and with a token, the answer is the same refusal.
    for route in ["docs", "catalog", "api"] {
        let exchange = jwt.send(forged(on(route, "/x")));
        assert!(exchange.crash.is_none(), "{route}: {:?}", exchange.crash);
        assert_eq!(exchange.status(), 500, "{route}: {}", exchange.body_text());
        assert!(!exchange.reached_upstream(), "{route}");
        assert_eq!(
            exchange.body_json(),
            json!({"message": "An unexpected error occurred"}),
            "{route}"
        );
    }
    assert_eq!(
        host.metric_value("portcullis_jwt_rejected_headers_unreadable_total"),
        3
    );
    assert!(host.logged(LogLevel::Error, "header map"));
    host.fail_header_maps(None);
    assert_accepted(&jwt.send(on("docs", "/x")), "after the host recovers");
}

#[test]
fn a_forged_identity_header_sent_repeatedly_and_in_any_letter_case_is_removed_entirely() {
    let host = Host::new();
    let mut jwt = host.start("jwt", &scene());
    let request = on("docs", "/docs")
        .header("X-Consumer-Username", "admin")
        .header("x-consumer-username", "root")
        .header("X-CONSUMER-GROUPS", "admins")
        .header("x-consumer-username", "again");
    let exchange = jwt.send(request);
    assert_accepted(&exchange, "public");
    let upstream = exchange.upstream.as_ref().unwrap();
    for (name, _) in &upstream.headers.pairs {
        let name = name.to_ascii_lowercase();
        assert!(
            name != "x-consumer-username" && name != "x-consumer-groups",
            "{name} reached the upstream"
        );
    }
}
