//! The login exchange through the token-issuer, branch by branch: which answers become a
//! token, which pass unchanged, which are refused — and that the request itself is never
//! touched.

// Test code: clippy.toml lets #[test] functions panic, and these helpers are test code too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::*;
use serde_json::json;

#[test]
fn a_successful_login_answer_becomes_a_token() {
    let host = Host::new();
    let mut issuer = host.start("token-issuer", &config("ES256"));
    let ex = issuer.send(login(ok(&profile())));
    let token = token_of(&ex);
    assert_eq!(
        ex.body_json(),
        json!({"token": token, "token_type": "Bearer", "expires_in": 900})
    );
    // Envoy sent the headers before the body: no stale length (the new body is framed by
    // the connection), never cached, still JSON.
    assert_eq!(ex.header("content-length"), None);
    assert_eq!(ex.header("cache-control").as_deref(), Some("no-store"));
    assert_eq!(ex.header("pragma").as_deref(), Some("no-cache"));
    assert_eq!(
        ex.header("content-type").as_deref(),
        Some("application/json")
    );
    assert!(!ex.body_text().contains("mobile-app@example.com"));
    let claims = claims_of(&token);
    assert_eq!(claims["sub"], "123");
    assert_eq!(claims["iss"], ISS);
    assert_eq!(claims["aud"], AUD);
    assert_eq!(claims["iat"], NOW);
    assert_eq!(claims["exp"], NOW + 900);
    assert_eq!(
        claims["jti"].as_str().map(str::len),
        Some(22),
        "16 random bytes"
    );
    let checked = through_jwt(&host, "ES256", Some(&jwks(&mut issuer)), &token);
    assert_eq!(
        checked.upstream_header("x-consumer-username").as_deref(),
        Some("123"),
        "{}",
        checked.body_text()
    );
    assert_eq!(host.metric_value("portcullis_token_issuer_issued_total"), 1);
}

#[test]
fn the_login_request_reaches_the_upstream_untouched() {
    let host = Host::new();
    let mut issuer = host.start("token-issuer", &config("HS256"));
    let request = login(ok(&profile())).header("x-client", "app/1.0");
    let sent = request.headers.clone();
    let ex = issuer.send(request);
    let upstream = ex
        .upstream
        .as_ref()
        .expect("the login reached the upstream");
    assert_eq!(
        upstream.body,
        br#"{"username":"mobile-app","password":"mobile-demo"}"#
    );
    for (name, value) in &sent.pairs {
        assert_eq!(upstream.headers.get(name), Some(value.as_slice()), "{name}");
    }
}

#[test]
fn every_jti_is_different() {
    let host = Host::new();
    let mut issuer = host.start("token-issuer", &config("HS256"));
    let jtis: std::collections::HashSet<String> = (0..20)
        .map(|_| claims_of(&token_of(&issuer.send(login(ok(&profile())))))["jti"].to_string())
        .collect();
    assert_eq!(jtis.len(), 20);
}

#[test]
fn a_chunked_answer_is_buffered_whole() {
    let host = Host::new();
    let mut issuer = host.start("token-issuer", &config("HS256"));
    let body = profile().to_string().into_bytes();
    let (a, b) = body.split_at(body.len() / 3);
    let (b, c) = b.split_at(b.len() / 2);
    let chunked = UpstreamResponse::new(200)
        .header("content-type", "application/json; charset=utf-8")
        .chunks(vec![a.to_vec(), b.to_vec(), c.to_vec()]);
    let ex = issuer.send(login(chunked));
    let token = token_of(&ex);
    assert_eq!(claims_of(&token)["username"], "mobile-app");
    let checked = through_jwt(&host, "HS256", None, &token);
    assert_eq!(
        checked.upstream_header("x-consumer-username").as_deref(),
        Some("login-service"),
        "{}",
        checked.body_text()
    );
}

#[test]
fn a_refused_login_passes_through_unchanged() {
    let host = Host::new();
    let mut issuer = host.start("token-issuer", &config("HS256"));
    for status in [401u16, 400, 403, 500, 302] {
        let refusal =
            UpstreamResponse::new(status).json(&json!({"message": "Invalid credentials"}));
        let ex = issuer.send(login(refusal));
        assert_eq!(ex.status(), status);
        assert_eq!(ex.body_json(), json!({"message": "Invalid credentials"}));
        assert_eq!(
            ex.header("content-length").as_deref(),
            Some("33"),
            "{status}"
        );
        assert_eq!(ex.header("cache-control"), None);
        assert!(
            ex.stalled.is_none() && ex.local_response.is_none(),
            "{status}"
        );
    }
    assert_eq!(
        host.metric_value("portcullis_token_issuer_upstream_refusals_total"),
        5
    );
    assert_eq!(host.metric_value("portcullis_token_issuer_issued_total"), 0);
}

#[test]
fn an_answer_that_is_not_json_passes_through_unchanged() {
    let host = Host::new();
    let mut issuer = host.start("token-issuer", &config("HS256"));
    let html = UpstreamResponse::new(200)
        .header("content-type", "text/html")
        .body("<p>welcome</p>");
    let ex = issuer.send(login(html));
    assert_eq!(ex.body_text(), "<p>welcome</p>");
    assert_eq!(ex.header("content-length").as_deref(), Some("14"));
    let compressed = ok(&profile()).header("content-encoding", "gzip");
    let ex = issuer.send(login(compressed));
    assert_eq!(ex.body_json(), profile());
    assert_eq!(
        host.metric_value("portcullis_token_issuer_passed_through_total"),
        2
    );
}

#[test]
fn a_json_answer_that_is_not_an_object_passes_through_unchanged() {
    let host = Host::new();
    let mut issuer = host.start("token-issuer", &config("HS256"));
    let cases: [&[u8]; 4] = [
        b"[\"mobile-app\"]",
        b"\"ok\"",
        b"{\"sub\":",
        br#"{"sub":"1","sub":"2"}"#,
    ];
    for body in cases {
        let answer = UpstreamResponse::new(200)
            .header("content-type", "application/json")
            .body(body);
        let ex = issuer.send(login(answer));
        assert!(ex.stalled.is_none(), "{:?}", ex.stalled);
        assert_eq!(ex.status(), 200);
        assert_eq!(ex.response.body, body);
    }
    assert_eq!(
        host.metric_value("portcullis_token_issuer_passed_through_total"),
        4
    );
}

#[test]
fn an_answer_over_the_limit_is_refused_and_none_of_it_leaks() {
    let host = Host::new();
    let mut issuer = host.start(
        "token-issuer",
        &with(config("HS256"), json!({"max_body_bytes": 256})),
    );
    let big = with(profile(), json!({"secret_note": "s3cr3t".repeat(100)}));
    // A declared content-length over the limit is refused from the response headers, before
    // they leave: the client gets the 502.
    let declared = issuer.send(login(ok(&big)));
    assert_eq!(declared.status(), 502);
    assert_eq!(
        declared.body_json(),
        json!({"message": "Bad gateway: the login response is too large to sign"})
    );
    assert!(!declared.body_text().contains("s3cr3t"));
    // A chunked answer grows over the limit after the 200 has left: Envoy can only reset the
    // stream. The client gets no status and none of the body.
    let streamed = issuer.send(login(chunked(&big)));
    assert!(streamed.was_reset(), "{streamed:?}");
    assert_eq!(streamed.status(), 0);
    assert!(streamed.response.body.is_empty());
    for ex in [&declared, &streamed] {
        assert_eq!(
            ex.local_response.as_ref().map(|(who, _)| who.as_str()),
            Some("token-issuer")
        );
    }
    assert_eq!(
        host.metric_value("portcullis_token_issuer_rejected_total"),
        2
    );
    assert_eq!(
        host.metric_value("portcullis_token_issuer_rejected_too_large_total"),
        2
    );
    assert!(host.logged(LogLevel::Info, "limit 256"));
}

/// `body` as a login service streams it: chunked, 100 bytes a chunk, no content-length.
fn chunked(body: &serde_json::Value) -> UpstreamResponse {
    let body = body.to_string().into_bytes();
    UpstreamResponse::new(200)
        .header("content-type", "application/json")
        .chunks(body.chunks(100).map(<[u8]>::to_vec).collect())
}

#[test]
fn an_earlier_upstream_exp_caps_the_token() {
    let host = Host::new();
    let mut issuer = host.start("token-issuer", &config("HS256"));
    let cases = [
        (json!({"exp": NOW + 60}), Some(60)),
        (json!({"exp": NOW + 86_400}), Some(900)),
        (json!({"exp": NOW - 5}), None),
        (json!({"exp": "never"}), None),
    ];
    for (exp, expires_in) in cases {
        let ex = issuer.send(login(ok(&with(profile(), exp.clone()))));
        match expires_in {
            Some(seconds) => {
                let token = token_of(&ex);
                assert_eq!(ex.body_json()["expires_in"], seconds, "{exp}");
                assert_eq!(claims_of(&token)["exp"], NOW + seconds, "{exp}");
            }
            None => {
                // Refused from the body, after the 200 left: the stream is reset.
                assert!(ex.was_reset(), "{exp}: {ex:?}");
                assert!(!ex.body_text().contains("mobile-app"), "{exp}");
            }
        }
    }
}

#[test]
fn issued_tokens_expire_after_their_ttl() {
    let host = Host::new();
    let mut issuer = host.start("token-issuer", &config("HS256"));
    let token = token_of(&issuer.send(login(ok(&profile()))));
    host.advance(std::time::Duration::from_secs(900));
    let at_expiry = through_jwt(&host, "HS256", None, &token);
    assert!(at_expiry.reached_upstream(), "{}", at_expiry.body_text());
    // The jwt filter allows 60 s of clock skew.
    host.advance(std::time::Duration::from_secs(60));
    let expired = through_jwt(&host, "HS256", None, &token);
    assert_eq!(expired.status(), 401);
    assert_eq!(expired.body_json(), json!({"exp": "token expired"}));
}

#[test]
fn the_allowlist_keeps_other_fields_out_of_the_token() {
    let host = Host::new();
    let mut issuer = host.start(
        "token-issuer",
        &with(config("HS256"), json!({"claims": ["username", "groups"]})),
    );
    let body = with(
        profile(),
        json!({"password_hash": "$2b$12$x", "iss": "evil", "exp_note": 1}),
    );
    let claims = claims_of(&token_of(&issuer.send(login(ok(&body)))));
    assert_eq!(claims["username"], "mobile-app");
    assert_eq!(claims["groups"], json!(["admins"]));
    assert_eq!(claims["sub"], "123");
    assert_eq!(claims["iss"], ISS);
    for dropped in ["email", "password_hash", "exp_note"] {
        assert!(claims.get(dropped).is_none(), "{dropped}: {claims}");
    }
}

#[test]
fn only_the_configured_paths_and_methods_are_logins() {
    let host = Host::new();
    let mut issuer = host.start("token-issuer", &config("HS256"));
    // (`POST /login/` is another spelling of the login: refused, see below.)
    let others = [
        Request::get("/login").respond(ok(&profile())),
        Request::get("/login/").respond(ok(&profile())),
        Request::post("/users").respond(ok(&profile())),
    ];
    for request in others {
        let ex = issuer.send(request);
        assert_eq!(ex.body_json(), profile());
        assert!(ex.header("content-length").is_some());
    }
    let mut with_query = login(ok(&profile()));
    with_query
        .headers
        .replace(":path", b"/login?next=%2Forders");
    let ex = issuer.send(with_query);
    assert!(
        ex.body_json().get("token").is_some(),
        "the query string is ignored"
    );
    assert_eq!(host.metric_value("portcullis_token_issuer_issued_total"), 1);
}

#[test]
fn an_answer_with_trailers_passes_through() {
    let host = Host::new();
    let mut issuer = host.start("token-issuer", &config("HS256"));
    let with_trailers = UpstreamResponse::new(200)
        .header("content-type", "application/json")
        .chunks(vec![profile().to_string().into_bytes()])
        .trailer("x-checksum", "1");
    let ex = issuer.send(login(with_trailers));
    assert!(ex.stalled.is_none() && ex.crash.is_none());
    assert_eq!(ex.body_json(), profile());
}

#[test]
fn the_jwks_endpoint_publishes_the_public_keys() {
    let host = Host::new();
    let rotated = with(
        config("ES256"),
        json!({"keys": [
            {"kid": "old-rsa", "algorithm": "RS256", "private_key": tokens::fixture("rsa2048.key.pem")},
            with(key("ES256"), json!({"active": true})),
            key("HS256"),
        ]}),
    );
    let mut issuer = host.start("token-issuer", &rotated);
    let ex = issuer.send(Request::get(JWKS_PATH));
    assert!(!ex.reached_upstream());
    assert_eq!(ex.status(), 200);
    assert_eq!(
        ex.header("content-type").as_deref(),
        Some("application/json; charset=utf-8")
    );
    let doc = ex.body_json();
    let kids: Vec<&str> = doc["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(
        kids,
        ["es256-1", "old-rsa"],
        "the HMAC secret is never published"
    );
    let parsed = portcullis_core::jose::jwks::parse_jwks(ex.body_text().as_bytes()).unwrap();
    assert!(parsed.skipped.is_empty(), "{:?}", parsed.skipped);
    let post = issuer.send(Request::post(JWKS_PATH).body("{}"));
    assert_eq!(post.status(), 405);
    assert_eq!(post.header("allow").as_deref(), Some("GET, HEAD"));
    assert!(!post.reached_upstream());
    assert_eq!(
        host.metric_value("portcullis_token_issuer_jwks_served_total"),
        1
    );
}

/// The issuer's JWKS, as its endpoint serves it.

#[test]
fn only_the_configured_route_and_cluster_get_their_answers_signed() {
    let host = Host::new();
    let narrowed = with(
        config("HS256"),
        json!({"auth_paths": [{"path": "/login", "methods": ["POST"],
                               "routes": ["login"], "clusters": ["login-service"]}]}),
    );
    let mut issuer = host.start("token-issuer", &narrowed);
    let at = |route: &str, cluster: &str, body: &serde_json::Value| {
        login(ok(body))
            .route(route)
            .property(&["xds", "cluster_name"], cluster.as_bytes())
    };
    let ex = issuer.send(at("login", "login-service", &profile()));
    token_of(&ex);
    // `POST /login` sent with another Host to a virtual host whose upstream answers what
    // the attacker chooses: passed on as it came, never signed.
    let chosen = json!({"sub": "admin", "groups": ["admins"]});
    for (route, cluster) in [
        ("other-vhost", "attacker"),
        ("login", "attacker"),
        ("other-vhost", "login-service"),
    ] {
        let ex = issuer.send(at(route, cluster, &chosen));
        assert_eq!(ex.status(), 200, "{route} {cluster}");
        assert_eq!(ex.body_json(), chosen, "{route} {cluster}: signed");
    }
    assert_eq!(host.metric_value("portcullis_token_issuer_issued_total"), 1);
}

#[test]
fn an_auth_path_spelt_otherwise_never_reaches_the_upstream() {
    let host = Host::new();
    let mut issuer = host.start("token-issuer", &config("HS256"));
    for path in [
        "/login/",
        "/LOGIN",
        "//login",
        "/%6Cogin",
        "/login;x=1",
        "/a/../login",
    ] {
        let ex = issuer.send(
            Request::post(path)
                .header("content-type", "application/json")
                .body(r#"{"username":"mobile-app","password":"mobile-demo"}"#)
                .respond(ok(&profile())),
        );
        assert_eq!(ex.status(), 400, "{path}");
        assert_eq!(ex.body_json(), json!({"message": "Bad request"}), "{path}");
        assert!(!ex.reached_upstream(), "{path}");
    }
    // A GET asking the upstream to run it as the POST login, and an HTTP/2 `post`.
    for header in [
        "x-http-method-override",
        "X-HTTP-Method",
        "x-method-override",
    ] {
        let ex = issuer.send(
            Request::get("/login")
                .header(header, "POST")
                .respond(ok(&profile())),
        );
        assert_eq!(ex.status(), 400, "{header}");
        assert!(!ex.reached_upstream(), "{header}");
    }
    let mut lower = login(ok(&profile()));
    lower.headers.replace(":method", b"post");
    token_of(&issuer.send(lower));
    assert_eq!(
        host.metric_value("portcullis_token_issuer_misspelt_auth_path_total"),
        9
    );
    // Other paths, and the login's own spelling, are untouched.
    assert_eq!(issuer.send(Request::post("/logins")).status(), 200);
    token_of(&issuer.send(login(ok(&profile()))));
}

#[test]
fn with_sub_field_a_login_answer_without_the_subject_passes_unsigned() {
    let host = Host::new();
    let mut issuer = host.start(
        "token-issuer",
        &with(config("HS256"), json!({"sub_field": "sub"})),
    );
    for body in [
        json!({"success": false, "message": "wrong password"}),
        json!({"data": null, "errors": [{"message": "invalid credentials"}]}),
    ] {
        let ex = issuer.send(login(ok(&body)));
        assert_eq!(ex.status(), 200);
        assert_eq!(ex.body_json(), body, "signed an answer without a subject");
    }
    token_of(&issuer.send(login(ok(&profile()))));
    assert_eq!(host.metric_value("portcullis_token_issuer_issued_total"), 1);
}
