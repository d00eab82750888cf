//! What a repeated request costs the gateway in host calls: the one-VM gateway exists to
//! make each host call once per request, so its budget is checked here, call by call, and
//! against the chain of separate filters doing the same.

// Test helpers outside `#[test]` functions may fail loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use host_test::{Exchange, Host, Plugin, Request};
use portcullis_tests::{paths, tokens};
use serde_json::{json, Value};

const SECRET: &str = "host-calls-only-hmac-secret-0123456789abcdef-0123456789abcdef";

/// The bench's policies: one consumer, an HS256 credential found by `iss`, the token cache
/// on; the group `admins` allowed; a per-minute limit by consumer, never reached.
fn policies() -> [(&'static str, &'static str, Value); 3] {
    [
        (
            "jwt",
            "jwt",
            json!({"consumers": [{"username": "bench", "groups": ["admins"],
                   "credentials": [{"key": "bench-issuer", "algorithm": "HS256",
                                    "secret": SECRET}]}]}),
        ),
        ("acl", "acl", json!({"allow": ["admins"]})),
        (
            "rate-limiting",
            "rate_limiting",
            json!({"minute": 1_000_000_000u64, "limit_by": "consumer"}),
        ),
    ]
}

fn request(token: &str) -> Request {
    Request::new("GET", "/orders")
        .route("orders")
        .header("authorization", &format!("Bearer {token}"))
}

/// The second of two identical requests (the first fills the token cache and creates the
/// counter).
fn repeated(send: &mut dyn FnMut(Request) -> Exchange) -> Exchange {
    let token = tokens::hs256("bench-issuer", SECRET.as_bytes());
    let first = send(request(&token));
    assert_eq!(first.status(), 200, "{}", first.body_text());
    let again = send(request(&token));
    assert_eq!(again.status(), 200, "{}", again.body_text());
    again
}

#[test]
fn a_repeated_request_costs_the_gateway_each_host_call_once() {
    let host = Host::new();
    host.set_unix_time(tokens::now());
    let config: serde_json::Map<String, Value> = policies()
        .into_iter()
        .map(|(_, stage, policy)| (stage.to_owned(), policy))
        .collect();
    let mut gateway = host
        .plugin(paths::wasm("gateway"))
        .name("gateway")
        .config_json(&Value::Object(config))
        .start()
        .unwrap();
    let ex = repeated(&mut |r| gateway.send(r));
    // On the request: the header map (1), the clock (1); Kong's four consumer headers
    // (x-consumer-id, -username, x-credential-identifier, x-consumer-groups: jwt writes the
    // groups and acl's same value costs nothing more); the identity and three decision
    // records (4); a counter per stage and per decision (5); the count read and written
    // (2). On the response: rate-limiting's five headers. 22 in all.
    assert_eq!(ex.host_calls(), 22);
    // Values returned: the header map and the count.
    assert_eq!(ex.reentries(), 2);
    assert_eq!(
        ex.upstream_header("x-consumer-groups").as_deref(),
        Some("admins")
    );

    // The chain of separate filters makes more: acl and rate-limiting each read the
    // identity jwt published (a value returned), and each filter counts its own VM entry.
    let host = Host::new();
    host.set_unix_time(tokens::now());
    let mut chain: Vec<Plugin> = policies()
        .into_iter()
        .map(|(filter, _, policy)| {
            host.plugin(paths::wasm(filter))
                .name(filter)
                .config_json(&policy)
                .start()
                .unwrap()
        })
        .collect();
    let separate = repeated(&mut |r| {
        let mut plugins: Vec<&mut Plugin> = chain.iter_mut().collect();
        host_test::send(&mut plugins, r)
    });
    assert_eq!((separate.host_calls(), separate.reentries()), (26, 4));
}
