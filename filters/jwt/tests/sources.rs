//! Where a token may come from — `Authorization: Bearer`, configured headers, the `jwt`
//! query parameter, cookies — what happens when a request carries two different ones, and
//! `hide_credentials` taking the token out again before the upstream sees it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use serde_json::json;

fn unauthorized() -> serde_json::Value {
    message("Unauthorized")
}

#[test]
fn a_bearer_token_is_accepted_whatever_the_case_of_the_scheme() {
    let host = Host::new();
    let mut jwt = host.start("jwt", &config());
    let token = token("HS256");
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let exchange =
            jwt.send(get("/orders").header("authorization", &format!("{scheme} {token}")));
        assert_accepted(&exchange, scheme);
        assert_eq!(
            exchange
                .upstream_header("x-credential-identifier")
                .as_deref(),
            Some("hs256-key"),
            "{scheme}"
        );
    }
}

#[test]
fn other_authorization_schemes_carry_no_token() {
    let host = Host::new();
    let mut jwt = host.start("jwt", &config());
    let token = token("HS256");
    for value in [
        format!("Basic {token}"),
        format!("Token {token}"),
        token.clone(),
        "Bearer".to_owned(),
    ] {
        assert_refused(
            &mut jwt,
            get("/orders").header("authorization", &value),
            unauthorized(),
            "missing",
            &value,
        );
    }
}

#[test]
fn configured_header_names_are_searched_instead_of_authorization() {
    let host = Host::new();
    let mut jwt = host.start(
        "jwt",
        &config_with(json!({"header_names": ["x-api-token"]})),
    );
    let token = token("ES256");
    for value in [token.clone(), format!("Bearer {token}")] {
        let exchange = jwt.send(get("/orders").header("X-Api-Token", &value));
        assert_accepted(&exchange, &value);
        assert_eq!(
            exchange
                .upstream_header("x-credential-identifier")
                .as_deref(),
            Some("es256-key")
        );
    }
    assert_refused(
        &mut jwt,
        bearer(&token),
        unauthorized(),
        "missing",
        "authorization is no longer searched",
    );
}

#[test]
fn a_token_in_the_jwt_query_parameter_is_accepted() {
    let host = Host::new();
    let mut jwt = host.start("jwt", &config());
    let token = token("HS256");
    let path = format!("/orders?page=2&jwt={token}");
    let exchange = jwt.send(get(&path));
    assert_accepted(&exchange, "?jwt=");
    // Without hide_credentials the upstream sees the path as sent.
    assert_eq!(exchange.upstream_header(":path"), Some(path));

    // Another parameter name, when configured; `jwt` then means nothing.
    let host = Host::new();
    let mut jwt = host.start(
        "jwt",
        &config_with(json!({"uri_param_names": ["access_token"]})),
    );
    assert_accepted(
        &jwt.send(get(&format!("/orders?access_token={token}"))),
        "?access_token=",
    );
    assert_refused(
        &mut jwt,
        get(&format!("/orders?jwt={token}")),
        unauthorized(),
        "missing",
        "?jwt= when only access_token is configured",
    );
}

#[test]
fn a_token_in_a_configured_cookie_is_accepted_and_cookies_are_ignored_otherwise() {
    let token = token("EdDSA");
    let cookie = format!("theme=dark; session={token}; lang=en");

    let host = Host::new();
    let mut jwt = host.start("jwt", &config_with(json!({"cookie_names": ["session"]})));
    let exchange = jwt.send(get("/orders").header("cookie", &cookie));
    assert_accepted(&exchange, "session cookie");
    assert_eq!(
        exchange
            .upstream_header("x-credential-identifier")
            .as_deref(),
        Some("eddsa-key")
    );

    let host = Host::new();
    let mut jwt = host.start("jwt", &config());
    assert_refused(
        &mut jwt,
        get("/orders").header("cookie", &cookie),
        unauthorized(),
        "missing",
        "cookies are not searched by default",
    );
}

#[test]
fn two_different_tokens_in_one_request_are_refused() {
    let host = Host::new();
    let mut jwt = host.start("jwt", &config_with(json!({"cookie_names": ["session"]})));
    let (a, b) = (token("HS256"), token("HS384"));
    let multiple = message("Multiple tokens provided");
    let cases = [
        (
            "two authorization headers",
            get("/orders")
                .header("authorization", &format!("Bearer {a}"))
                .header("authorization", &format!("Bearer {b}")),
        ),
        (
            // What Envoy hands a filter for two Authorization headers: one value, joined.
            "two authorization headers joined by Envoy",
            get("/orders").header("authorization", &format!("Bearer {a},Bearer {b}")),
        ),
        (
            "header and query",
            get(&format!("/orders?jwt={b}")).header("authorization", &format!("Bearer {a}")),
        ),
        ("query twice", get(&format!("/orders?jwt={a}&jwt={b}"))),
        (
            "header and cookie",
            bearer(&a).header("cookie", &format!("session={b}")),
        ),
    ];
    for (what, request) in cases {
        assert_refused(&mut jwt, request, multiple.clone(), "multiple", what);
    }
    // One token in two places is one token.
    let exchange =
        jwt.send(get(&format!("/orders?jwt={a}")).header("authorization", &format!("Bearer {a}")));
    assert_accepted(&exchange, "the same token twice");
}

#[test]
fn hide_credentials_takes_the_token_out_of_wherever_it_was() {
    let host = Host::new();
    let mut jwt = host.start(
        "jwt",
        &config_with(json!({"hide_credentials": true, "cookie_names": ["session"]})),
    );
    let token = token("RS256");

    let exchange = jwt.send(bearer(&token).header("x-trace", "1"));
    assert_accepted(&exchange, "header");
    assert_eq!(exchange.upstream_header("authorization"), None);
    assert_eq!(exchange.upstream_header("x-trace").as_deref(), Some("1"));
    assert_eq!(
        exchange.upstream_header("x-consumer-username").as_deref(),
        Some("alice")
    );

    let exchange = jwt.send(get(&format!("/orders?page=2&jwt={token}&sort=asc")));
    assert_accepted(&exchange, "query");
    assert_eq!(
        exchange.upstream_header(":path").as_deref(),
        Some("/orders?page=2&sort=asc")
    );
    let exchange = jwt.send(get(&format!("/orders?jwt={token}")));
    assert_eq!(
        exchange.upstream_header(":path").as_deref(),
        Some("/orders")
    );

    let exchange =
        jwt.send(get("/orders").header("cookie", &format!("theme=dark; session={token}")));
    assert_accepted(&exchange, "cookie");
    assert_eq!(
        exchange.upstream_header("cookie").as_deref(),
        Some("theme=dark")
    );
    let exchange = jwt.send(get("/orders").header("cookie", &format!("session={token}")));
    assert_accepted(&exchange, "the only cookie");
    assert_eq!(exchange.upstream_header("cookie"), None);

    // The same token in two places is removed from both.
    let exchange = jwt.send(
        get(&format!("/orders?jwt={token}")).header("authorization", &format!("Bearer {token}")),
    );
    assert_accepted(&exchange, "header and query");
    assert_eq!(exchange.upstream_header("authorization"), None);
    assert_eq!(
        exchange.upstream_header(":path").as_deref(),
        Some("/orders")
    );
}

#[test]
fn hide_credentials_takes_out_every_copy_and_nothing_else() {
    let host = Host::new();
    let mut jwt = host.start(
        "jwt",
        &config_with(json!({
            "hide_credentials": true,
            "uri_param_names": ["jwt", "access_token"],
            "cookie_names": ["session", "jwt"]
        })),
    );
    let token = token("HS256");

    // The same token under two parameter names: neither copy may reach the upstream.
    let exchange = jwt.send(get(&format!(
        "/orders?jwt={token}&page=2&access_token={token}"
    )));
    assert_accepted(&exchange, "two parameters");
    assert_eq!(
        exchange.upstream_header(":path").as_deref(),
        Some("/orders?page=2")
    );

    // The same token in two cookies.
    let exchange = jwt.send(get("/orders").header(
        "cookie",
        &format!("session={token}; theme=dark; jwt={token}"),
    ));
    assert_accepted(&exchange, "two cookies");
    assert_eq!(
        exchange.upstream_header("cookie").as_deref(),
        Some("theme=dark")
    );

    // Cookies split over two headers: the other cookies all stay.
    let exchange = jwt.send(
        get("/orders")
            .header("cookie", "theme=dark; lang=en")
            .header("cookie", &format!("session={token}; cart=42")),
    );
    assert_accepted(&exchange, "two cookie headers");
    let cookies = exchange
        .upstream
        .as_ref()
        .unwrap()
        .headers
        .get_all("cookie");
    assert_eq!(cookies.join("; "), "theme=dark; lang=en; cart=42");
}
