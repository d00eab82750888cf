//! `failure_delay_ms` (Pingap's `delay`): a refusal is answered only after the delay, from
//! the root context's tick, whatever the reason; an accepted request is never delayed.

use host_test::{Host, Request};
use portcullis_tests::tokens;
use serde_json::json;

const SECRET: &[u8] = b"failure-delay-test-secret-0123456789abcdef";

fn config(delay_ms: u64) -> serde_json::Value {
    json!({
        "consumers": [{ "username": "mobile-app", "credentials": [
            { "key": "mobile-app", "algorithm": "HS256", "secret": String::from_utf8_lossy(SECRET) }
        ]}],
        "failure_delay_ms": delay_ms,
    })
}

#[test]
fn a_refusal_waits_for_the_delay_and_an_acceptance_does_not() {
    let host = Host::new();
    host.set_unix_time(tokens::now());
    let mut jwt = host.start("jwt", &config(300));

    for (what, header) in [
        ("no token", None),
        ("bad token", Some("Bearer not.a.token".to_string())),
        (
            "wrong signature",
            Some(format!(
                "Bearer {}",
                tokens::hs256("mobile-app", b"another-secret-0123456789abcdef-xyz")
            )),
        ),
    ] {
        let before = host.now_nanos();
        let mut request = Request::get("/users");
        if let Some(value) = &header {
            request = request.header("authorization", value);
        }
        let refused = jwt.send(request);
        assert!(refused.stalled.is_none(), "{what}: {:?}", refused.stalled);
        assert_eq!(refused.status(), 401, "{what}");
        assert!(!refused.reached_upstream(), "{what}");
        let waited_ms = (host.now_nanos() - before) / 1_000_000;
        assert!(
            (300..=320).contains(&waited_ms),
            "{what}: answered after {waited_ms} ms"
        );
    }

    let before = host.now_nanos();
    let token = tokens::hs256("mobile-app", SECRET);
    let accepted =
        jwt.send(Request::get("/users").header("authorization", &format!("Bearer {token}")));
    assert_eq!(accepted.status(), 200);
    assert_eq!(
        host.now_nanos(),
        before,
        "an accepted request is not delayed"
    );
}

#[test]
fn without_a_delay_the_refusal_is_immediate() {
    let host = Host::new();
    let mut jwt = host.start("jwt", &config(0));
    let before = host.now_nanos();
    assert_eq!(jwt.send(Request::get("/users")).status(), 401);
    assert_eq!(host.now_nanos(), before);
    assert_eq!(
        jwt.tick_period_ms(),
        0,
        "no tick without remote keys or delays"
    );
}

#[test]
fn clients_that_leave_free_their_place_so_they_cannot_switch_the_delay_off() {
    let host = Host::new();
    host.set_unix_time(tokens::now());
    let mut jwt = host.start("jwt", &config(5000));
    let bad = || Request::get("/users").header("authorization", "Bearer not.a.token");
    // More clients than the queue holds (1024 per worker) send a bad token and leave at
    // once: each frees its place, and the heap is compacted past 4096 entries.
    for i in 0..5000 {
        let left = jwt.send(bad().client_resets_after(std::time::Duration::from_micros(1)));
        assert!(
            left.was_reset(),
            "request {i} was answered: {}",
            left.status()
        );
    }
    // A client that stays still waits the whole delay.
    let before = host.now_nanos();
    let refused = jwt.send(bad());
    assert_eq!(refused.status(), 401);
    let waited_ms = (host.now_nanos() - before) / 1_000_000;
    assert!((5000..=5010).contains(&waited_ms), "{waited_ms} ms");
    jwt.advance(std::time::Duration::from_millis(5020)).unwrap();
    assert_eq!(jwt.tick_period_ms(), 0, "back to no tick");
}
