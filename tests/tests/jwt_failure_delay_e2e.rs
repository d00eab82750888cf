//! The jwt filter's `failure_delay_ms` in a real Envoy: refusals are answered after the delay
//! (from the root context's tick, through `set_effective_context`), acceptances at once.

use std::time::{Duration, Instant};

use portcullis_tests::config::portcullis_filter;
use portcullis_tests::{client, tokens, Envoy, Gateway, Upstream};
use serde_json::json;

const SECRET: &[u8] = b"failure-delay-e2e-secret-0123456789abcdef";

#[test]
fn refusals_wait_for_the_delay_in_envoy() {
    let users = Upstream::start("users");
    let config = json!({
        "consumers": [{ "username": "mobile-app", "credentials": [
            { "key": "mobile-app", "algorithm": "HS256", "secret": String::from_utf8_lossy(SECRET) }
        ]}],
        "failure_delay_ms": 400,
    })
    .to_string();
    let gateway = Gateway::new()
        .route("users", "/users", &users)
        .filter(portcullis_filter("jwt", Some(&config)));
    let envoy = Envoy::builder(gateway.render())
        .concurrency(2)
        .start()
        .unwrap_or_else(|e| panic!("{e:#}"));

    for header in [None, Some("Bearer not.a.token")] {
        let headers: Vec<(&str, &str)> = header.map(|h| ("authorization", h)).into_iter().collect();
        let start = Instant::now();
        let reply = client::get(&envoy.url("/users"), &headers);
        let took = start.elapsed();
        assert_eq!(reply.status, 401, "{header:?}: {}", reply.text());
        assert!(
            took >= Duration::from_millis(400) && took < Duration::from_secs(3),
            "{header:?}: answered after {took:?}"
        );
    }
    assert_eq!(users.count(), 0);

    let token = format!("Bearer {}", tokens::hs256("mobile-app", SECRET));
    let start = Instant::now();
    let reply = client::get(&envoy.url("/users"), &[("authorization", &token)]);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(
        start.elapsed() < Duration::from_millis(400),
        "{:?}",
        start.elapsed()
    );
}
