//! The rate-limiting filter as Envoy runs it, through host-test: Kong's headers and 429,
//! every window, the global and route policies stacking, `limit_by` with the identity the
//! jwt filter leaves, several workers (VM instances of one VM id) interleaving their CAS
//! updates on one shared store and racing on real threads, the memory bound under many
//! distinct clients, faults, and refused configurations.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use host_test::{Exchange, Host, LogLevel, Plugin, Request};
use portcullis_core::identity::Identity;
use portcullis_core::rate_limit::headers::all_names;
use portcullis_core::rate_limit::slot::Slot;
use portcullis_core::rate_limit::table::Table;
use serde_json::json;

mod common;
use common::{from, metric, worker, NAME};

fn get(route: &str, path: &str) -> Request {
    Request::get(path).route(route)
}

fn header(exchange: &Exchange, name: &str) -> Option<String> {
    exchange.header(name)
}

fn assert_limited(exchange: &Exchange, what: &str) {
    assert_eq!(exchange.status(), 429, "{what}: {}", exchange.body_text());
    assert_eq!(
        exchange.body_json(),
        json!({"message": "API rate limit exceeded"}),
        "{what}"
    );
    assert_eq!(
        header(exchange, "content-type").as_deref(),
        Some("application/json; charset=utf-8"),
        "{what}"
    );
    assert!(!exchange.reached_upstream(), "{what}: reached the upstream");
    assert!(exchange.crash.is_none(), "{what}: {:?}", exchange.crash);
}

#[test]
fn admits_the_limit_with_kongs_and_ietf_headers_then_answers_429() {
    let host = Host::new();
    let mut filter = worker(&host, &json!({"minute": 3, "limit_by": "ip", "slots": 64}));
    host.advance(Duration::from_secs(15));
    for remaining in [2, 1, 0] {
        let ok = filter.send(get("users", "/users"));
        assert_eq!(ok.status(), 200);
        assert!(ok.reached_upstream());
        assert_eq!(
            header(&ok, "x-ratelimit-limit-minute").as_deref(),
            Some("3")
        );
        assert_eq!(
            header(&ok, "x-ratelimit-remaining-minute"),
            Some(remaining.to_string())
        );
        assert_eq!(header(&ok, "ratelimit-limit").as_deref(), Some("3"));
        assert_eq!(
            header(&ok, "ratelimit-remaining"),
            Some(remaining.to_string())
        );
        assert_eq!(header(&ok, "ratelimit-reset").as_deref(), Some("45"));
        assert_eq!(header(&ok, "retry-after"), None);
        // Response headers only: the upstream never sees them.
        assert_eq!(ok.upstream_header("x-ratelimit-limit-minute"), None);
    }
    let limited = filter.send(get("users", "/users"));
    assert_limited(&limited, "the fourth request");
    assert_eq!(
        header(&limited, "x-ratelimit-limit-minute").as_deref(),
        Some("3")
    );
    assert_eq!(
        header(&limited, "x-ratelimit-remaining-minute").as_deref(),
        Some("0")
    );
    assert_eq!(
        header(&limited, "ratelimit-remaining").as_deref(),
        Some("0")
    );
    assert_eq!(header(&limited, "ratelimit-reset").as_deref(), Some("45"));
    assert_eq!(header(&limited, "retry-after").as_deref(), Some("45"));
    // Every header once, even though the 429 passed back through the filter.
    assert_eq!(limited.response.headers.get_all("retry-after").len(), 1);
    assert!(host.logged(
        LogLevel::Info,
        "limited ip:127.0.0.1 by global minute: 3 of 3 used, retry in 45 s"
    ));
    assert_eq!((metric(&host, "allowed"), metric(&host, "limited")), (3, 1));
    // The next minute starts over.
    host.advance(Duration::from_secs(45));
    let next = filter.send(get("users", "/users"));
    assert_eq!(next.status(), 200);
    assert_eq!(
        header(&next, "x-ratelimit-remaining-minute").as_deref(),
        Some("2")
    );
}

#[test]
fn every_window_gets_its_kong_headers() {
    let host = Host::new();
    let config = json!({
        "second": 5, "minute": 10, "hour": 100, "day": 1000, "month": 10000, "year": 100000,
        "limit_by": "ip", "slots": 64
    });
    let mut filter = worker(&host, &config);
    let ok = filter.send(get("users", "/users"));
    for (window, limit) in [
        ("second", 5),
        ("minute", 10),
        ("hour", 100),
        ("day", 1000),
        ("month", 10000),
        ("year", 100000),
    ] {
        assert_eq!(
            header(&ok, &format!("x-ratelimit-limit-{window}")),
            Some(limit.to_string()),
            "{window}"
        );
        assert_eq!(
            header(&ok, &format!("x-ratelimit-remaining-{window}")),
            Some((limit - 1).to_string()),
            "{window}"
        );
    }
    // The second has the fewest left: it speaks for the IETF headers.
    assert_eq!(header(&ok, "ratelimit-limit").as_deref(), Some("5"));
    assert_eq!(header(&ok, "ratelimit-reset").as_deref(), Some("1"));
    for _ in 0..4 {
        filter.send(get("users", "/users"));
    }
    let limited = filter.send(get("users", "/users"));
    assert_limited(&limited, "the sixth request in one second");
    assert_eq!(header(&limited, "retry-after").as_deref(), Some("1"));
    assert_eq!(
        header(&limited, "x-ratelimit-remaining-minute").as_deref(),
        Some("5")
    );
    host.advance(Duration::from_secs(1));
    assert_eq!(filter.send(get("users", "/users")).status(), 200);
}

#[test]
fn hide_client_headers_removes_every_header() {
    let host = Host::new();
    let mut filter = worker(
        &host,
        &json!({"second": 1, "limit_by": "ip", "hide_client_headers": true, "slots": 64}),
    );
    let ok = filter.send(get("users", "/users"));
    let limited = filter.send(get("users", "/users"));
    assert_eq!(ok.status(), 200);
    assert_limited(&limited, "the second request");
    for name in all_names() {
        assert_eq!(header(&ok, name), None, "{name} on the 200");
        assert_eq!(header(&limited, name), None, "{name} on the 429");
    }
}

#[test]
fn error_code_and_message_are_configurable() {
    let host = Host::new();
    let mut filter = worker(
        &host,
        &json!({"second": 1, "limit_by": "ip", "error_code": 503,
                "error_message": "Slow down, \"friend\"", "slots": 64}),
    );
    filter.send(get("users", "/users"));
    let refused = filter.send(get("users", "/users"));
    assert_eq!(refused.status(), 503);
    assert_eq!(
        refused.body_json(),
        json!({"message": "Slow down, \"friend\""})
    );
}

#[test]
fn the_global_and_the_payments_policies_both_apply_on_payments() {
    let host = Host::new();
    let mut filter = worker(
        &host,
        &json!({"minute": 100, "limit_by": "ip", "routes": {"payments": {"minute": 20}}, "slots": 256}),
    );
    let statuses: Vec<u16> = (0..30)
        .map(|_| filter.send(get("payments", "/payments")).status())
        .collect();
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 20);
    let last = filter.send(get("payments", "/payments"));
    assert_limited(&last, "payments past 20");
    assert_eq!(
        header(&last, "x-ratelimit-limit-minute").as_deref(),
        Some("20")
    );
    assert!(host.logged(LogLevel::Info, "by routes.payments minute: 20 of 20"));
    // Refusals did not count globally: 80 more elsewhere, then the global limit everywhere.
    let users: Vec<u16> = (0..81)
        .map(|_| filter.send(get("users", "/users")).status())
        .collect();
    assert_eq!(users.iter().filter(|s| **s == 200).count(), 80);
    assert_eq!(users.last(), Some(&429));
    let global = filter.send(get("orders", "/orders"));
    assert_limited(&global, "orders past the global 100");
    assert_eq!(
        header(&global, "x-ratelimit-limit-minute").as_deref(),
        Some("100")
    );
    assert!(host.logged(LogLevel::Info, "by global minute: 100 of 100"));
}

/// Kong's plugin precedence: with a rate-limiting plugin on the payment service and a global
/// one, only the service's runs on /payments (the importer writes `override_global`).
#[test]
fn a_route_policy_that_overrides_the_global_one_counts_alone() {
    let host = Host::new();
    let mut filter = worker(
        &host,
        &json!({"minute": 3, "limit_by": "ip", "slots": 256,
                "routes": {"payments": {"minute": 5, "override_global": true}}}),
    );
    let payments: Vec<u16> = (0..6)
        .map(|_| filter.send(get("payments", "/payments")).status())
        .collect();
    assert_eq!(payments, [200, 200, 200, 200, 200, 429]);
    let refused = filter.send(get("payments", "/payments"));
    assert_eq!(
        header(&refused, "x-ratelimit-limit-minute").as_deref(),
        Some("5")
    );
    // None of the payments counted globally: the global 3 are all still there.
    let users: Vec<u16> = (0..4)
        .map(|_| filter.send(get("users", "/users")).status())
        .collect();
    assert_eq!(users, [200, 200, 200, 429]);
}

fn with_identity(request: Request, identity: &Identity) -> Request {
    request.property(&["portcullis.identity"], &identity.encode())
}

fn consumer(id: &str) -> Identity {
    Identity {
        consumer_id: Some(id.into()),
        username: Some(id.into()),
        credential: Some(format!("{id}-key")),
        ..Identity::default()
    }
}

#[test]
fn limit_by_consumer_counts_each_consumer_and_falls_back_to_the_ip() {
    let host = Host::new();
    let mut filter = worker(&host, &json!({"minute": 2, "slots": 64}));
    let send = |filter: &mut Plugin, who: Option<&Identity>| {
        let request = get("orders", "/orders");
        let request = match who {
            Some(identity) => with_identity(request, identity),
            None => request,
        };
        filter.send(request).status()
    };
    let (mobile, web) = (consumer("mobile-app"), consumer("web-app"));
    let mobile_statuses: Vec<u16> = (0..3).map(|_| send(&mut filter, Some(&mobile))).collect();
    assert_eq!(mobile_statuses, [200, 200, 429]);
    assert!(host.logged(LogLevel::Info, "limited consumer:mobile-app by global"));
    assert_eq!(
        send(&mut filter, Some(&web)),
        200,
        "another consumer, same IP"
    );
    // No identity: counted by IP, apart from the consumers.
    assert_eq!(
        [
            send(&mut filter, None),
            send(&mut filter, None),
            send(&mut filter, None)
        ],
        [200, 200, 429]
    );
    assert!(host.logged(LogLevel::Info, "limited ip:127.0.0.1 by global"));
}

#[test]
fn limit_by_header() {
    let host = Host::new();
    let mut by_key = worker(
        &host,
        &json!({"second": 1, "limit_by": "header", "header_name": "x-api-key", "slots": 64}),
    );
    let with_key = |k: &str| get("users", "/users").header("x-api-key", k);
    assert_eq!(by_key.send(with_key("a")).status(), 200);
    assert_eq!(by_key.send(with_key("b")).status(), 200);
    assert_eq!(by_key.send(with_key("a")).status(), 429);
    assert!(
        !host
            .log_messages(LogLevel::Info)
            .iter()
            .any(|m| m.contains("x-api-key:a")),
        "the header's value stays out of the log"
    );
}

#[test]
fn a_counted_header_sent_twice_is_refused_never_counted_under_the_clients_copy() {
    let host = Host::new();
    let mut by_key = worker(
        &host,
        &json!({"minute": 2, "limit_by": "header", "header_name": "x-api-key", "slots": 64}),
    );
    // The attack: a throw-away copy next to the real key, which an upstream may read.
    for i in 0..4 {
        let random = format!("random-{i}");
        let (first, second) = if i % 2 == 0 {
            (random.as_str(), "k-real")
        } else {
            ("k-real", random.as_str())
        };
        let refused = by_key.send(
            get("users", "/users")
                .header("x-api-key", first)
                .header("x-api-key", second),
        );
        assert_eq!(refused.status(), 400, "{first}, {second}");
        assert_eq!(
            refused.body_json(),
            json!({"message": "The x-api-key header must be sent once"})
        );
        assert_eq!(
            header(&refused, "content-type").as_deref(),
            Some("application/json; charset=utf-8")
        );
        assert!(!refused.reached_upstream());
    }
    assert_eq!(metric(&host, "rejected"), 4);
    assert!(host.logged(
        LogLevel::Info,
        "refused header by global: x-api-key sent 2 times with different values"
    ));
    // Nothing was counted: the real key still has its whole limit.
    let real = || get("users", "/users").header("x-api-key", "k-real");
    assert_eq!(by_key.send(real()).status(), 200);
    // A copy repeated verbatim is one value: it counts under the real key.
    let repeated = by_key.send(real().header("x-api-key", "k-real"));
    assert_eq!(repeated.status(), 200);
    assert_limited(&by_key.send(real()), "k-real a third time");
    assert_eq!((metric(&host, "allowed"), metric(&host, "limited")), (2, 1));
}

#[test]
fn a_header_envoy_joins_is_counted_under_the_joined_value() {
    // Envoy joins repeated inline headers (user-agent, authorization, …) with `,` before any
    // filter: the filter sees one value and counts under it, as the upstream will see it.
    let host = Host::new();
    let mut by_agent = worker(
        &host,
        &json!({"minute": 2, "limit_by": "header", "header_name": "user-agent", "slots": 64}),
    );
    let agent = |values: &[&str]| {
        values
            .iter()
            .fold(get("users", "/users"), |r, v| r.header("user-agent", v))
    };
    let twice = by_agent.send(agent(&["a", "b"]));
    assert_eq!(twice.status(), 200);
    assert_eq!(twice.upstream_header("user-agent").as_deref(), Some("a,b"));
    assert_eq!(by_agent.send(agent(&["a,b"])).status(), 200);
    assert_limited(&by_agent.send(agent(&["a", "b"])), "a,b a third time");
    assert_eq!(
        by_agent.send(agent(&["a"])).status(),
        200,
        "a alone is another value"
    );
}

#[test]
fn unreadable_request_headers_are_a_fault_that_fault_tolerant_decides() {
    for tolerant in [false, true] {
        let host = Host::new();
        let mut by_key = worker(
            &host,
            &json!({"minute": 1, "limit_by": "header", "header_name": "x-api-key",
                    "fault_tolerant": tolerant, "slots": 64}),
        );
        host.fail_header_maps(Some(host_test::Status::InternalFailure));
        let ex = by_key.send(get("users", "/users").header("x-api-key", "k"));
        if tolerant {
            assert_eq!(ex.status(), 200);
            assert!(ex.reached_upstream());
        } else {
            assert_eq!(ex.status(), 500);
            assert_eq!(
                ex.body_json(),
                json!({"message": "An unexpected error occurred"})
            );
            assert!(!ex.reached_upstream());
        }
        assert_eq!(metric(&host, "faults"), 1);
        assert!(ex.crash.is_none());
        // The host recovers: counting resumes.
        host.fail_header_maps(None);
        let ex = by_key.send(get("users", "/users").header("x-api-key", "k"));
        assert_eq!(ex.status(), 200);
        assert_limited(
            &by_key.send(get("users", "/users").header("x-api-key", "k")),
            "k a second time",
        );
    }
}

#[test]
fn limit_by_path_counts_every_spelling_of_the_path_together() {
    let host = Host::new();
    let mut filter = worker(
        &host,
        &json!({"minute": 3, "limit_by": "path", "path": "/payments", "slots": 64}),
    );
    let at = |path: &str, ip: &str| get("payments", path).source(&format!("{ip}:40000"));
    // Three clients, three spellings an upstream serves as /payments: one counter.
    assert_eq!(filter.send(at("/payments", "203.0.113.1")).status(), 200);
    assert_eq!(filter.send(at("//payments", "203.0.113.2")).status(), 200);
    let encoded = filter.send(at("/%70ayments/", "203.0.113.3"));
    assert_eq!(encoded.status(), 200);
    assert_eq!(
        encoded.upstream_header(":path").as_deref(),
        Some("/%70ayments/"),
        "compared normalised, forwarded as sent"
    );
    for spelled in [
        "/payments;jsessionid=1",
        "/x/../payments",
        "/payments?page=2",
        "/public/..;/payments",
    ] {
        assert_limited(&filter.send(at(spelled, "203.0.113.4")), spelled);
    }
    assert!(host.logged(
        LogLevel::Info,
        "limited path:/payments by global minute: 3 of 3 used"
    ));
    // Any other path is counted per client, as in Kong.
    assert_eq!(filter.send(at("/payments/1", "203.0.113.4")).status(), 200);
    assert_eq!(filter.send(at("/paymentsx", "203.0.113.4")).status(), 200);
}

/// Clients behind one trusted proxy (10.0.0.1), as Envoy shows them with
/// `use_remote_address: true`: the proxy's entry, then the peer Envoy appended.
fn via_proxy(forwarded_for: &str) -> Request {
    from("10.0.0.1")
        .use_remote_address(true)
        .header("x-forwarded-for", forwarded_for)
}

#[test]
fn clients_behind_a_trusted_proxy_each_get_their_own_limit() {
    let host = Host::new();
    let mut by_ip = worker(
        &host,
        &json!({"minute": 2, "limit_by": "ip", "xff_num_trusted_hops": 1, "slots": 64}),
    );
    for client in 1..=5 {
        let xff = format!("198.51.100.{client}");
        for _ in 0..2 {
            let ok = by_ip.send(via_proxy(&xff));
            assert_eq!(ok.status(), 200, "client {client}");
            // What the upstream gets: Envoy's append, untouched by the filter.
            assert_eq!(
                ok.upstream_header("x-forwarded-for"),
                Some(format!("{xff},10.0.0.1"))
            );
        }
        assert_limited(&by_ip.send(via_proxy(&xff)), &xff);
    }
    assert!(host.logged(LogLevel::Info, "limited ip:198.51.100.5 by global minute"));
    // The proxy itself (a request it makes, with no X-Forwarded-For) is a client of its own.
    assert_eq!(
        by_ip
            .send(from("10.0.0.1").use_remote_address(true))
            .status(),
        200
    );
}

#[test]
fn a_client_forging_forwarded_for_behind_a_trusted_proxy_gets_no_fresh_counter() {
    let host = Host::new();
    let mut by_ip = worker(
        &host,
        &json!({"minute": 3, "limit_by": "ip", "xff_num_trusted_hops": 1, "slots": 64}),
    );
    // The client writes its own entries; the proxy appends the address it saw.
    let forged = [
        "1.1.1.1",
        "2.2.2.2, 3.3.3.3",
        "garbage",
        "2001:db8::1",
        "4.4.4.4",
    ];
    let statuses: Vec<u16> = forged
        .iter()
        .map(|f| {
            by_ip
                .send(via_proxy(&format!("{f}, 198.51.100.7")))
                .status()
        })
        .collect();
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
    assert!(host.logged(LogLevel::Info, "limited ip:198.51.100.7 by global minute"));
    // Straight to Envoy, bypassing the proxy, a client can only count as its own peer.
    let direct = |xff: &str| {
        from("203.0.113.9")
            .use_remote_address(true)
            .header("x-forwarded-for", xff)
    };
    assert_eq!(
        by_ip
            .send(from("203.0.113.9").use_remote_address(true))
            .status(),
        200
    );
    assert_eq!(by_ip.send(direct("")).status(), 200);
    assert_eq!(by_ip.send(direct(",")).status(), 200);
    assert_limited(
        &by_ip.send(direct("x")),
        "a fourth request from 203.0.113.9",
    );
}

#[test]
fn ipv6_clients_count_by_their_64_and_mapped_ipv4_is_the_ipv4_client() {
    let host = Host::new();
    let mut filter = worker(&host, &json!({"minute": 2, "limit_by": "ip", "slots": 64}));
    let v6 = |address: &str| get("users", "/users").source(&format!("[{address}]:40000"));
    assert_eq!(filter.send(v6("2001:db8:1:2::1")).status(), 200);
    assert_eq!(
        filter.send(v6("2001:db8:1:2:ffff:ffff:ffff:fffe")).status(),
        200
    );
    assert_limited(
        &filter.send(v6("2001:db8:1:2:abcd:1234:5678:9abc")),
        "a third address of the same /64",
    );
    assert!(host.logged(
        LogLevel::Info,
        "limited ip:2001:db8:1:2::/64 by global minute: 2 of 2 used"
    ));
    // The next /64 is another client.
    assert_eq!(filter.send(v6("2001:db8:1:3::1")).status(), 200);
    // A zone id names an interface, never a new client.
    assert_eq!(filter.send(v6("fe80::1%4")).status(), 200);
    assert_eq!(filter.send(v6("fe80::2%eth0")).status(), 200);
    assert_limited(&filter.send(v6("fe80::3")), "fe80::/64 a third time");

    // IPv4 and its mapped form, as Envoy's `source.address` gives each: one counter.
    assert_eq!(filter.send(from("203.0.113.7")).status(), 200);
    let mapped = get("users", "/users").source("[::ffff:203.0.113.7]:0");
    assert_eq!(filter.send(mapped.clone()).status(), 200);
    assert_limited(
        &filter.send(from("203.0.113.7")),
        "203.0.113.7 a third time",
    );
    assert_limited(&filter.send(mapped), "::ffff:203.0.113.7 a fourth time");

    // The /64 is a setting: at 128 every address is its own client.
    let host = Host::new();
    let mut per_address = worker(
        &host,
        &json!({"minute": 1, "limit_by": "ip", "ipv6_prefix_length": 128, "slots": 64}),
    );
    for address in ["2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2::3"] {
        assert_eq!(per_address.send(v6(address)).status(), 200, "{address}");
    }
}

#[test]
fn the_ip_fallback_of_limit_by_consumer_counts_ipv6_by_its_64() {
    let host = Host::new();
    let mut filter = worker(&host, &json!({"minute": 1, "slots": 64}));
    let v6 = |address: &str| get("users", "/users").source(&format!("[{address}]:1"));
    assert_eq!(filter.send(v6("2001:db8:9:9::1")).status(), 200);
    assert_limited(&filter.send(v6("2001:db8:9:9::2")), "no identity, same /64");
    assert!(host.logged(LogLevel::Info, "limited ip:2001:db8:9:9::/64"));
}

/// A hook that plays another worker: after a read of a claimed slot, it counts one more
/// request in every window of it, as that worker's successful CAS would, `times` times.
fn foreign_admissions(host: &Host, times: u32) -> Arc<AtomicU32> {
    let done = Arc::new(AtomicU32::new(0));
    let seen = done.clone();
    host.on_shared_get(move |key, writer| {
        if !key.starts_with("prl:") || seen.load(Ordering::SeqCst) >= times {
            return;
        }
        let Some(mut slot) = writer.get(key).and_then(Slot::decode) else {
            return;
        };
        if slot.owner == 0 || slot.windows.is_empty() {
            return;
        }
        for window in &mut slot.windows {
            window.count += 1;
        }
        seen.fetch_add(1, Ordering::SeqCst);
        writer.set(key, &slot.encode());
    });
    done
}

#[test]
fn workers_interleaving_cas_updates_admit_exactly_the_limit() {
    let host = Host::new();
    let config = json!({"minute": 10, "limit_by": "ip", "slots": 64});
    let mut workers: Vec<Plugin> = (0..3).map(|_| worker(&host, &config)).collect();
    // Workers take turns; a fourth worker, outside, counts four requests between reads
    // and CAS writes of theirs, so each of those writes fails and is retried.
    let outside = foreign_admissions(&host, 4);
    let mut admitted = 0;
    for i in 0..30 {
        let w = &mut workers[i % 3];
        let exchange = w.send(get("users", "/users"));
        match exchange.status() {
            200 => admitted += 1,
            429 => {}
            other => panic!("request {i}: {other} {:?}", exchange.crash),
        }
    }
    host.clear_shared_get_hook();
    assert_eq!(outside.load(Ordering::SeqCst), 4);
    assert_eq!(admitted, 6, "10 in all: 4 outside, 6 through these workers");
    assert_eq!(metric(&host, "allowed"), 6);
    assert_eq!(metric(&host, "faults"), 0);
}

#[test]
fn a_route_policy_refusing_after_the_global_counted_takes_it_back() {
    let host = Host::new();
    let config =
        json!({"minute": 5, "limit_by": "ip", "routes": {"payments": {"minute": 1}}, "slots": 64});
    let mut a = worker(&host, &config);
    let mut b = worker(&host, &config);
    assert_eq!(a.send(get("payments", "/payments")).status(), 200);
    assert_eq!(b.send(get("payments", "/payments")).status(), 429);
    // Four more fit globally, whichever worker serves them.
    let rest: Vec<u16> = (0..5)
        .map(|i| {
            let w = if i % 2 == 0 { &mut a } else { &mut b };
            w.send(get("users", "/users")).status()
        })
        .collect();
    assert_eq!(rest, [200, 200, 200, 200, 429]);
}

#[test]
fn threads_hammering_one_client_admit_exactly_the_limit() {
    let host = Host::new();
    let config = json!({"minute": 60, "hour": 100, "limit_by": "ip", "slots": 64});
    let workers: Vec<Plugin> = (0..4).map(|_| worker(&host, &config)).collect();
    let started = Instant::now();
    let handles: Vec<_> = workers
        .into_iter()
        .map(|mut w| {
            std::thread::spawn(move || {
                (0..50)
                    .filter(|_| {
                        let exchange = w.send(get("users", "/users"));
                        assert!(exchange.crash.is_none(), "{:?}", exchange.crash);
                        exchange.status() == 200
                    })
                    .count()
            })
        })
        .collect();
    let admitted: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(
        admitted,
        60,
        "200 requests on 4 threads in {:?}",
        started.elapsed()
    );
    assert_eq!(metric(&host, "allowed"), 60);
    assert_eq!(metric(&host, "limited"), 140);
}

#[test]
fn contention_past_the_retry_budget_is_a_fault_that_fault_tolerant_decides() {
    for (tolerant, status) in [(true, 200), (false, 500)] {
        let host = Host::new();
        let mut filter = worker(
            &host,
            &json!({"minute": 5, "limit_by": "ip", "fault_tolerant": tolerant, "slots": 64}),
        );
        // Every read is followed by another worker's write: no CAS can succeed.
        host.on_shared_get(|key, writer| {
            if let Some(value) = writer.get(key).map(<[u8]>::to_vec) {
                writer.set(key, &value);
            }
        });
        let exchange = filter.send(get("users", "/users"));
        host.clear_shared_get_hook();
        assert_eq!(exchange.status(), status, "fault_tolerant {tolerant}");
        assert_eq!(exchange.reached_upstream(), tolerant);
        assert_eq!(header(&exchange, "ratelimit-limit"), None);
        if !tolerant {
            assert_eq!(
                exchange.body_json(),
                json!({"message": "An unexpected error occurred"})
            );
        }
        assert_eq!(metric(&host, "faults"), 1);
        assert!(host.logged(LogLevel::Error, "counting failed"));
        assert!(host.logged(LogLevel::Error, "32 CAS attempts"));
    }
}

#[test]
fn many_distinct_clients_keep_shared_data_within_the_documented_bound() {
    let host = Host::new();
    let slots = 512;
    let mut filter = worker(
        &host,
        &json!({"minute": 5, "limit_by": "ip", "slots": slots}),
    );
    let bound = Table::new(NAME, slots, 1).bound(1);
    // host-test stores each key as `<vm id>\0<key>`.
    let stored_bound = bound.bytes + bound.keys * (NAME.len() + 1);
    assert_eq!(
        host.shared_data_len(),
        bound.keys,
        "the whole table exists from the start"
    );
    let started = Instant::now();
    let clients = 20_000u32;
    for n in 0..clients {
        let ip = format!("10.{}.{}.{}", n >> 16, (n >> 8) & 255, n & 255);
        let exchange = filter.send(from(&ip));
        assert!(
            matches!(exchange.status(), 200 | 429),
            "{ip}: {}",
            exchange.status()
        );
        // Four minutes in all: windows expire and slots are reclaimed.
        host.advance(Duration::from_millis(12));
    }
    assert_eq!(host.shared_data_len(), bound.keys, "no key was ever added");
    assert!(
        host.shared_data_bytes() <= stored_bound,
        "{} bytes > {stored_bound}",
        host.shared_data_bytes()
    );
    assert!(
        metric(&host, "overflowed") > 0,
        "5000 clients a minute in 512 slots"
    );
    eprintln!(
        "{clients} distinct clients in {:?}: {} keys, {} bytes (bound {stored_bound})",
        started.elapsed(),
        host.shared_data_len(),
        host.shared_data_bytes()
    );
}

#[test]
fn broken_configs_are_refused_naming_the_field() {
    let cases = [
        (json!({}), "set at least one limit"),
        (
            json!({"minute": 100, "hour": 50}),
            "hour: the limit for hour(50) cannot be lower than the limit for minute(100)",
        ),
        (json!({"minute": 0}), "minute: must be at least 1"),
        (
            json!({"minute": 1, "limit_by": "header"}),
            "header_name: required when limit_by is \"header\"",
        ),
        (
            json!({"minute": 1, "policy": "redis"}),
            "rate_limit_service: required when policy is \"redis\"",
        ),
        (
            json!({"minute": 1, "redis_host": "localhost"}),
            "redis_host: unknown field",
        ),
        (
            json!({"routes": {"payments": {"minute": 5, "hour": 1}}}),
            "routes.payments.hour: the limit for hour(1)",
        ),
        (
            json!({"minute": 1, "slots": 1}),
            "slots: 1 is outside 64..=1048576",
        ),
        (
            json!({"minute": 1, "ipv6_prefix_length": 16}),
            "ipv6_prefix_length: 16 is outside 32..=128",
        ),
    ];
    for (config, message) in cases {
        let host = Host::new();
        let refused = host.filter(NAME).config_json(&config).start();
        let Err(e) = refused else {
            panic!("{config} was accepted")
        };
        assert!(
            e.logs
                .iter()
                .any(|l| l.contains("configuration refused") && l.contains(message)),
            "{config}: {:?}",
            e.logs
        );
    }
    let host = Host::new();
    let none = host.filter(NAME).start();
    assert!(none.is_err(), "no configuration at all is refused");
}

#[test]
fn instructions_per_request_stay_small() {
    let host = Host::new();
    let mut filter = worker(&host, &json!({"minute": 1000, "limit_by": "ip"}));
    filter.send(get("users", "/users"));
    let steady = filter.send(get("users", "/users"));
    let stacked_host = Host::new();
    let mut stacked = worker(
        &stacked_host,
        &json!({"minute": 1000, "limit_by": "ip", "routes": {"payments": {"minute": 500}}}),
    );
    stacked.send(get("payments", "/payments"));
    let two = stacked.send(get("payments", "/payments"));
    eprintln!(
        "instructions per request: one policy {}, global + route {}",
        steady.instructions(),
        two.instructions()
    );
    assert!(steady.instructions() < 40_000, "{}", steady.instructions());
    assert!(two.instructions() < 60_000, "{}", two.instructions());
}
