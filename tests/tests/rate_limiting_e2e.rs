//! The rate-limiting filter in a real Envoy with two workers, hammered by many concurrent
//! connections: exactly the limit gets through per window whichever worker serves each
//! request, the rest get Kong's 429 with Kong's and the IETF draft's headers, the global and
//! the payments policies stack, clients behind a trusted proxy are told apart by
//! `X-Forwarded-For` (with `use_remote_address: true`, Envoy's own entry skipped as Envoy's
//! `xff_num_trusted_hops` skips it) and cannot forge a fresh counter, a per-second window opens again after `Retry-After`, and a broken
//! configuration keeps Envoy from starting with the field named in its log.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use portcullis_tests::config::{portcullis_filter, refused};
use portcullis_tests::load::{self, room_in_this_minute, statuses};
use portcullis_tests::{client, Envoy, Gateway, Reply, Upstream};
use serde_json::{json, Value};

/// Concurrent connections in a burst.
const CONNECTIONS: usize = 32;

fn start(gateway: &Gateway) -> Envoy {
    Envoy::builder(gateway.render())
        .concurrency(2)
        .start()
        .unwrap_or_else(|e| panic!("{e:#}"))
}

fn rate_limiting(config: &Value) -> String {
    portcullis_filter("rate-limiting", Some(&config.to_string()))
}

/// Sleeps until 50 ms past the next whole second.
fn next_second() {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let left = Duration::from_secs(1) - Duration::from_nanos(now.subsec_nanos().into());
    std::thread::sleep(left + Duration::from_millis(50));
}

/// `total` GETs of `path`, from `CONNECTIONS` threads at once, each request on its own
/// connection (so both workers serve them); `headers_for(i)` gives request `i`'s headers.
fn burst(
    envoy: &Envoy,
    path: &str,
    total: usize,
    headers_for: impl Fn(usize) -> Vec<(String, String)> + Sync,
) -> Vec<Reply> {
    load::burst(&[envoy.url(path)], CONNECTIONS, total, headers_for)
}

fn no_headers(_: usize) -> Vec<(String, String)> {
    Vec::new()
}

fn number(reply: &Reply, name: &str) -> u64 {
    reply
        .header(name)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} missing or not a number in {:?}", reply.headers))
}

/// A counter of the filter, summed over Envoy's workers (wasm metrics keep their own name
/// in Prometheus).
fn metric(envoy: &Envoy, name: &str) -> f64 {
    let series = format!("portcullis_rate_limiting_{name}_total{{}}");
    envoy
        .metric(&series)
        .unwrap_or_else(|| panic!("no {series} in:\n{}", envoy.stats_prometheus()))
}

/// Connections each Envoy worker accepted on the gateway listener.
fn worker_connections(envoy: &Envoy, worker: u32) -> u64 {
    let series = format!("envoy_listener_worker_downstream_cx_total{{envoy_worker_id=\"{worker}\"");
    envoy
        .stats_prometheus()
        .lines()
        .filter(|line| line.starts_with(&series))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

fn assert_kong_429(reply: &Reply, limit: u64) {
    assert_eq!(reply.status, 429, "{}", reply.text());
    assert_eq!(reply.json(), json!({"message": "API rate limit exceeded"}));
    assert_eq!(
        reply.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(number(reply, "x-ratelimit-limit-minute"), limit);
    assert_eq!(number(reply, "x-ratelimit-remaining-minute"), 0);
    assert_eq!(number(reply, "ratelimit-limit"), limit);
    assert_eq!(number(reply, "ratelimit-remaining"), 0);
    let reset = number(reply, "ratelimit-reset");
    assert!((1..=60).contains(&reset), "RateLimit-Reset {reset}");
    assert_eq!(number(reply, "retry-after"), reset);
}

#[test]
fn exactly_the_limit_gets_through_two_workers_then_kongs_429() {
    const LIMIT: u64 = 40;
    let users = Upstream::start("users");
    let envoy = start(
        &Gateway::new()
            .route("users", "/users", &users)
            .filter(rate_limiting(&json!({"minute": LIMIT, "limit_by": "ip"}))),
    );
    room_in_this_minute(20);
    let replies = burst(&envoy, "/users", 160, no_headers);

    assert_eq!(statuses(&replies), BTreeMap::from([(200, 40), (429, 120)]));
    assert_eq!(users.count(), 40, "the upstream saw exactly the limit");
    // Every admitted request saw its own remaining count: 39 down to 0, each once.
    let mut remaining: Vec<u64> = replies
        .iter()
        .filter(|r| r.status == 200)
        .map(|r| {
            assert_eq!(number(r, "x-ratelimit-limit-minute"), LIMIT);
            assert_eq!(number(r, "ratelimit-limit"), LIMIT);
            assert_eq!(
                number(r, "ratelimit-remaining"),
                number(r, "x-ratelimit-remaining-minute")
            );
            assert!(r.header("retry-after").is_none());
            number(r, "x-ratelimit-remaining-minute")
        })
        .collect();
    remaining.sort_unstable();
    assert_eq!(remaining, (0..LIMIT).collect::<Vec<_>>());
    for refused in replies.iter().filter(|r| r.status == 429) {
        assert_kong_429(refused, LIMIT);
    }
    for worker in [0, 1] {
        assert!(
            worker_connections(&envoy, worker) > 0,
            "worker {worker} served nothing"
        );
    }
    assert_eq!(metric(&envoy, "allowed"), 40.0);
    assert_eq!(metric(&envoy, "limited"), 120.0);
    assert_eq!(metric(&envoy, "faults"), 0.0);
    assert!(envoy.wait_for_log("limited ip:127.0.0.1 by global minute: 40 of 40 used"));
}

#[test]
fn the_global_and_the_payments_limits_both_apply_on_payments() {
    let users = Upstream::start("users");
    let payments = Upstream::start("payments");
    let orders = Upstream::start("orders");
    let envoy = start(
        &Gateway::new()
            .route("users", "/users", &users)
            .route("payments", "/payments", &payments)
            .route("orders", "/orders", &orders)
            .filter(rate_limiting(&json!({
                "minute": 100, "limit_by": "ip",
                "routes": {"payments": {"minute": 20}}
            }))),
    );
    room_in_this_minute(25);
    let on_payments = burst(&envoy, "/payments", 40, no_headers);
    assert_eq!(
        statuses(&on_payments),
        BTreeMap::from([(200, 20), (429, 20)])
    );
    assert_eq!(payments.count(), 20);
    for refused in on_payments.iter().filter(|r| r.status == 429) {
        assert_kong_429(refused, 20);
    }
    // The 20 refusals did not count globally: 80 of the global 100 are left for the rest.
    let on_users = burst(&envoy, "/users", 100, no_headers);
    assert_eq!(statuses(&on_users), BTreeMap::from([(200, 80), (429, 20)]));
    assert_eq!(users.count(), 80);
    for refused in on_users.iter().filter(|r| r.status == 429) {
        assert_kong_429(refused, 100);
    }
    let orders_reply = client::get(&envoy.url("/orders"), &[]);
    assert_kong_429(&orders_reply, 100);
    assert_eq!(orders.count(), 0);
    assert!(envoy.wait_for_log("by routes.payments minute: 20 of 20 used"));
    assert!(envoy.wait_for_log("by global minute: 100 of 100 used"));
}

/// The client IP each hop count takes, as the log of a refusal names it. The test client is
/// the last trusted proxy; with `use_remote_address: true` Envoy appends an entry for it (its
/// own address: the peer is loopback), and the filter must skip that entry as Envoy's own
/// `xff_num_trusted_hops` does.
#[test]
fn trusted_hops_take_the_entry_envoys_own_setting_would() {
    let users = Upstream::start("users");
    let mut gateway = Gateway::new().use_remote_address(true);
    let mut routes = serde_json::Map::new();
    for hops in 0..=2 {
        gateway = gateway.route(&format!("h{hops}"), &format!("/h{hops}"), &users);
        routes.insert(
            format!("h{hops}"),
            json!({"minute": 1, "limit_by": "ip", "xff_num_trusted_hops": hops}),
        );
    }
    let envoy = start(&gateway.filter(rate_limiting(&json!({ "routes": routes }))));
    room_in_this_minute(5);
    // The client wrote 6.6.6.6; a first proxy saw the client as 198.51.100.7, a second
    // proxy saw the first as 203.0.113.9; the test client is the proxy Envoy's peer sees.
    let xff = [("x-forwarded-for", "6.6.6.6, 198.51.100.7, 203.0.113.9")];
    for (hops, client) in [(0, "127.0.0.1"), (1, "203.0.113.9"), (2, "198.51.100.7")] {
        let path = format!("/h{hops}");
        assert_eq!(client::get(&envoy.url(&path), &xff).status, 200, "{path}");
        assert_kong_429(&client::get(&envoy.url(&path), &xff), 1);
        let line = format!("limited ip:{client} by routes.h{hops} minute");
        assert!(envoy.wait_for_log(&line), "{line} not in:\n{}", envoy.log());
    }
    // What the filters (and the upstream) got: the header with Envoy's own entry appended.
    let seen = users.requests()[0]
        .header("x-forwarded-for")
        .unwrap_or_default()
        .to_owned();
    let entries: Vec<&str> = seen.split(',').map(str::trim).collect();
    assert_eq!(entries.len(), 4, "{seen}");
    assert_eq!(entries[..3], ["6.6.6.6", "198.51.100.7", "203.0.113.9"]);
}

#[test]
fn clients_behind_a_trusted_proxy_each_get_their_own_limit() {
    const CLIENTS: usize = 5;
    const LIMIT: usize = 7;
    let users = Upstream::start("users");
    let envoy = start(
        &Gateway::new()
            .use_remote_address(true)
            .route("users", "/users", &users)
            .filter(rate_limiting(
                &json!({"minute": LIMIT, "limit_by": "ip", "xff_num_trusted_hops": 1}),
            )),
    );
    room_in_this_minute(20);
    let client_of = |i: usize| format!("198.51.100.{}", i % CLIENTS + 1);
    let replies = burst(&envoy, "/users", CLIENTS * 20, |i| {
        // What a client writes itself comes first, a fresh forgery every request; the
        // trusted proxy (this test) appended the client it saw.
        vec![(
            "x-forwarded-for".to_owned(),
            format!("6.6.{}.{}, {}", i / 250, i % 250, client_of(i)),
        )]
    });
    assert_eq!(
        statuses(&replies),
        BTreeMap::from([(200, CLIENTS * LIMIT), (429, CLIENTS * (20 - LIMIT))])
    );
    let mut admitted: BTreeMap<String, usize> = BTreeMap::new();
    for request in users.requests() {
        let xff = request.header("x-forwarded-for").unwrap_or_default();
        let client = xff
            .split(',')
            .map(str::trim)
            .find(|e| e.starts_with("198.51.100."))
            .unwrap_or_default()
            .to_owned();
        *admitted.entry(client).or_insert(0) += 1;
    }
    assert_eq!(admitted.len(), CLIENTS, "{admitted:?}");
    assert!(admitted.values().all(|n| *n == LIMIT), "{admitted:?}");
    assert!(envoy.wait_for_log("limited ip:198.51.100.1 by global minute"));
}

#[test]
fn a_client_forging_forwarded_for_gets_no_fresh_counter() {
    const LIMIT: usize = 5;
    let users = Upstream::start("users");
    let envoy = start(
        &Gateway::new()
            .use_remote_address(true)
            .route("users", "/users", &users)
            .filter(rate_limiting(
                &json!({"minute": LIMIT, "limit_by": "ip", "xff_num_trusted_hops": 1}),
            )),
    );
    room_in_this_minute(20);
    // One client behind the proxy, forging one, two or no entries of its own every time.
    let replies = burst(&envoy, "/users", 40, |i| {
        let forged = match i % 3 {
            0 => format!("10.{}.0.1, ", i),
            1 => format!("10.{i}.0.1, 10.{i}.0.2, "),
            _ => String::new(),
        };
        vec![(
            "x-forwarded-for".to_owned(),
            format!("{forged}198.51.100.7"),
        )]
    });
    assert_eq!(
        statuses(&replies),
        BTreeMap::from([(200, LIMIT), (429, 40 - LIMIT)])
    );
    assert_eq!(users.count(), LIMIT);
    assert!(envoy.wait_for_log("limited ip:198.51.100.7 by global minute"));
}

#[test]
fn a_per_second_window_opens_again_after_retry_after() {
    let users = Upstream::start("users");
    let envoy = start(
        &Gateway::new()
            .route("users", "/users", &users)
            .filter(rate_limiting(
                &json!({"second": 3, "minute": 100, "limit_by": "route"}),
            )),
    );
    let mut tries = 0;
    let refused = loop {
        // Sequential requests right after a second starts all fall in that second; should
        // one straddle the edge anyway (a slow machine), try the next second.
        next_second();
        let replies: Vec<Reply> = (0..4)
            .map(|_| client::get(&envoy.url("/users"), &[]))
            .collect();
        let codes: Vec<u16> = replies.iter().map(|r| r.status).collect();
        tries += 1;
        if codes == [200, 200, 200, 429] || tries == 3 {
            assert_eq!(codes, [200, 200, 200, 429]);
            break replies.into_iter().last();
        }
    };
    let refused = refused.unwrap_or_else(|| panic!("no reply"));
    assert_eq!(number(&refused, "x-ratelimit-limit-second"), 3);
    assert_eq!(number(&refused, "x-ratelimit-remaining-second"), 0);
    assert_eq!(number(&refused, "retry-after"), 1);
    assert_eq!(number(&refused, "ratelimit-reset"), 1);
    std::thread::sleep(Duration::from_secs(1));
    let again = client::get(&envoy.url("/users"), &[]);
    assert_eq!(again.status, 200, "{}", again.text());
    assert!(envoy.wait_for_log("limited route:users by global second: 3 of 3 used"));
}

#[test]
fn a_broken_configuration_keeps_envoy_from_starting() {
    let users = Upstream::start("users");
    let gateway = Gateway::new()
        .route("users", "/users", &users)
        .filter(rate_limiting(
            &json!({"minute": 10, "hour": 5, "limit_by": "ip"}),
        ));
    let log = Envoy::builder(gateway.render())
        .start_expecting_refusal()
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert!(
        log.contains(&refused(
            "rate-limiting",
            "hour",
            "the limit for hour(5) cannot be lower than the limit for minute(10)"
        )),
        "{log}"
    );
}
