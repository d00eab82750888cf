//! The held mode (`allow_on_headers_stop_iteration: true` in the filter's config) on a host
//! with Envoy's flag of the same name: the response headers wait for the token, so the
//! client gets an exact `content-length`, the cookie, and a clean 502 for any refusal. And
//! what a user gets with the filter's flag but not Envoy's: every login hangs.

// Test code: clippy.toml lets #[test] functions panic, and these helpers are test code too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::*;
use serde_json::json;

/// `body` streamed by the login service: chunked, no content-length.
fn chunked(body: &serde_json::Value) -> UpstreamResponse {
    let body = body.to_string().into_bytes();
    UpstreamResponse::new(200)
        .header("content-type", "application/json")
        .chunks(body.chunks(40).map(<[u8]>::to_vec).collect())
}

#[test]
fn held_headers_carry_the_exact_length_and_the_cookie() {
    let host = Host::new();
    let cookie = json!({"cookie": {"name": "portcullis_token", "same_site": "Strict"}});
    let mut issuer = start_held(&host, &with(config("ES256"), cookie), true);
    for answer in [ok(&profile()), chunked(&profile())] {
        let ex = issuer.send(login(answer));
        let token = token_of(&ex);
        assert_eq!(
            ex.header("content-length"),
            Some(ex.response.body.len().to_string())
        );
        assert_eq!(
            ex.header("content-type").as_deref(),
            Some("application/json")
        );
        assert_eq!(ex.header("cache-control").as_deref(), Some("no-store"));
        let set_cookie = ex.header("set-cookie").unwrap_or_default();
        assert!(
            set_cookie.starts_with(&format!("portcullis_token={token};")),
            "{set_cookie}"
        );
        assert!(set_cookie.contains("Max-Age=900"), "{set_cookie}");
        assert_eq!(claims_of(&token)["sub"], "123");
    }
    assert_eq!(host.metric_value("portcullis_token_issuer_issued_total"), 2);
}

#[test]
fn held_headers_turn_every_refusal_into_a_clean_502() {
    let host = Host::new();
    let mut issuer = start_held(
        &host,
        &with(config("HS256"), json!({"max_body_bytes": 256})),
        true,
    );
    let big = with(profile(), json!({"secret_note": "s3cr3t".repeat(100)}));
    let expired = with(profile(), json!({"exp": NOW - 5}));
    for answer in [ok(&big), chunked(&big), chunked(&expired)] {
        let ex = issuer.send(login(answer));
        assert!(!ex.was_reset() && ex.stalled.is_none(), "{ex:?}");
        assert_eq!(ex.status(), 502);
        assert_eq!(
            ex.header("content-length"),
            Some(ex.response.body.len().to_string())
        );
        assert!(!ex.body_text().contains("s3cr3t"));
        assert!(!ex.body_text().contains("mobile-app"));
    }
    assert_eq!(
        host.metric_value("portcullis_token_issuer_rejected_total"),
        3
    );
}

#[test]
fn answers_that_are_not_tokens_pass_unchanged_when_held() {
    let host = Host::new();
    let mut issuer = start_held(&host, &config("HS256"), true);
    let html = UpstreamResponse::new(200)
        .header("content-type", "text/html")
        .body("<p>hi</p>");
    let refused = UpstreamResponse::new(401)
        .header("content-type", "application/json")
        .body(r#"{"message":"Invalid credentials"}"#);
    let array = UpstreamResponse::new(200)
        .header("content-type", "application/json")
        .chunks(vec![b"[\"mobile-".to_vec(), b"app\"]".to_vec()]);
    for (answer, status, body) in [
        (html, 200, "<p>hi</p>"),
        (refused, 401, r#"{"message":"Invalid credentials"}"#),
        (array, 200, "[\"mobile-app\"]"),
    ] {
        let ex = issuer.send(login(answer));
        assert!(ex.stalled.is_none() && !ex.was_reset(), "{ex:?}");
        assert_eq!((ex.status(), ex.body_text().as_str()), (status, body));
    }
}

#[test]
fn without_envoys_flag_every_held_login_hangs() {
    // The filter holds the headers, Envoy turns that into StopAllIterationAndWatermark: the
    // body never reaches the filter, nothing resumes the response, the client waits until
    // Envoy's timeout.
    let host = Host::new();
    let mut issuer = start_held(&host, &config("HS256"), false);
    for answer in [ok(&profile()), chunked(&profile())] {
        let ex = issuer.send(login(answer));
        assert!(
            ex.stalled
                .as_deref()
                .is_some_and(|why| why.contains("token-issuer paused the response")),
            "{ex:?}"
        );
        assert_eq!(ex.status(), 0);
        assert!(ex.reached_upstream());
    }
    assert_eq!(host.metric_value("portcullis_token_issuer_issued_total"), 0);
    // Requests that are not logins are untouched either way.
    let other = issuer.send(Request::get("/orders").route("orders"));
    assert!(other.stalled.is_none());
    assert_eq!(other.status(), 200);
}
