//! `policy: redis` through host-test: the request waits for one `ShouldRateLimit` call to
//! the rate limit service's cluster, carrying every window of every policy with its limit;
//! the answer becomes Kong's 429 and headers; every way the call can fail (an error
//! status, no answer within `timeout`, an unknown cluster, an answer that does not fit the
//! question) counts in the local shared-data limiter when `fault_tolerant`, else 500; and
//! the service is used again as soon as it answers.
//!
//! The service here is scripted (host-test's `grpc_service`): a small counter that keeps
//! the protocol's promise (all descriptors checked, then all counted). The real one, with
//! Redis, is tested in `services/ratelimit` and end to end in `tests/`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use host_test::{GrpcAnswer, Host, Request};
use portcullis_core::rate_limit::rls::{
    DescriptorStatus, ProtoDuration, RateLimitRequest, RateLimitResponse, CODE_OK, CODE_OVER_LIMIT,
    METHOD, SERVICE,
};
use prost::Message;
use serde_json::{json, Value};

mod common;
use common::{from, metric, worker};

const CLUSTER: &str = "ratelimit";

fn redis(mut config: Value) -> Value {
    config["policy"] = json!("redis");
    config
        .as_object_mut()
        .unwrap()
        .entry("rate_limit_service")
        .or_insert(json!({"cluster": CLUSTER, "domain": "shop", "timeout": 50}));
    config
}

/// A rate limit service in miniature: fixed windows by the descriptor's entries and unit,
/// every descriptor checked before any is counted (what the protocol's users expect).
#[derive(Default)]
struct Counter {
    counts: HashMap<String, u32>,
}

impl Counter {
    fn answer(&mut self, request: &RateLimitRequest) -> RateLimitResponse {
        let keys: Vec<(String, u32)> = request
            .descriptors
            .iter()
            .map(|d| {
                let entries: Vec<String> = d
                    .entries
                    .iter()
                    .map(|e| format!("{}={}", e.key, e.value))
                    .collect();
                let limit = d.limit.as_ref().unwrap();
                (
                    format!("{}|{}|{}", request.domain, entries.join(","), limit.unit),
                    limit.requests_per_unit,
                )
            })
            .collect();
        let over: Vec<bool> = keys
            .iter()
            .map(|(k, limit)| self.counts.get(k).copied().unwrap_or(0) + 1 > *limit)
            .collect();
        let refused = over.iter().any(|o| *o);
        if !refused {
            for (k, _) in &keys {
                *self.counts.entry(k.clone()).or_default() += 1;
            }
        }
        RateLimitResponse {
            overall_code: if refused { CODE_OVER_LIMIT } else { CODE_OK },
            statuses: keys
                .iter()
                .zip(&over)
                .map(|((k, limit), over)| DescriptorStatus {
                    code: if *over { CODE_OVER_LIMIT } else { CODE_OK },
                    current_limit: None,
                    limit_remaining: limit.saturating_sub(self.counts.get(k).copied().unwrap_or(0)),
                    duration_until_reset: Some(ProtoDuration {
                        seconds: 42,
                        nanos: 0,
                    }),
                })
                .collect(),
        }
    }
}

/// Scripts the counting service on `host`; the returned switch makes it answer `Some`
/// status instead (14: unavailable), or hang past every timeout (`Some(u32::MAX)`).
fn counting_service(host: &Host) -> Arc<Mutex<Option<u32>>> {
    let counter = Arc::new(Mutex::new(Counter::default()));
    let failing: Arc<Mutex<Option<u32>>> = Arc::new(Mutex::new(None));
    let switch = failing.clone();
    host.grpc_service(CLUSTER, move |call| {
        assert_eq!(call.service, SERVICE);
        assert_eq!(call.method, METHOD);
        match *switch.lock().unwrap() {
            Some(u32::MAX) => GrpcAnswer::ok(Vec::new()).delay(Duration::from_secs(5)),
            Some(code) => GrpcAnswer::status(code, "redis is down"),
            None => {
                let request = RateLimitRequest::decode(call.message.as_slice()).unwrap();
                let answer = counter.lock().unwrap().answer(&request);
                GrpcAnswer::ok(answer.encode_to_vec()).delay(Duration::from_millis(2))
            }
        }
    });
    failing
}

#[test]
fn the_service_counts_and_its_answer_becomes_kongs_429_and_headers() {
    let host = Host::new();
    counting_service(&host);
    let mut filter = worker(
        &host,
        &redis(json!({"minute": 3, "hour": 10, "limit_by": "ip"})),
    );
    for remaining in [2, 1, 0] {
        let ok = filter.send(from("203.0.113.7"));
        assert_eq!(ok.status(), 200, "{}", ok.body_text());
        assert!(ok.reached_upstream());
        assert_eq!(ok.header("x-ratelimit-limit-minute").as_deref(), Some("3"));
        assert_eq!(
            ok.header("x-ratelimit-remaining-minute"),
            Some(remaining.to_string())
        );
        assert_eq!(ok.header("x-ratelimit-limit-hour").as_deref(), Some("10"));
        assert_eq!(ok.header("ratelimit-reset").as_deref(), Some("42"));
    }
    let limited = filter.send(from("203.0.113.7"));
    assert_eq!(limited.status(), 429);
    assert_eq!(
        limited.body_json(),
        json!({"message": "API rate limit exceeded"})
    );
    assert!(!limited.reached_upstream());
    assert_eq!(limited.header("retry-after").as_deref(), Some("42"));
    assert_eq!(
        limited.header("x-ratelimit-remaining-minute").as_deref(),
        Some("0")
    );
    assert!(host.logged(
        host_test::LogLevel::Info,
        "limited ip:203.0.113.7 by global minute: limit 3 reached"
    ));
    // Another client has its own counters.
    assert_eq!(filter.send(from("203.0.113.8")).status(), 200);

    // What went over the wire: one call per request, one descriptor per window.
    let calls = host.grpc_calls();
    assert_eq!(calls.len(), 5);
    assert_eq!(calls[0].cluster, CLUSTER);
    assert_eq!(calls[0].timeout, Duration::from_millis(50));
    let request = RateLimitRequest::decode(calls[0].message.as_slice()).unwrap();
    assert_eq!(request.domain, "shop");
    assert_eq!(request.descriptors.len(), 2);
    let minute = &request.descriptors[0];
    assert_eq!(
        minute
            .entries
            .iter()
            .map(|e| (e.key.as_str(), e.value.as_str()))
            .collect::<Vec<_>>(),
        [("portcullis_policy", "global"), ("ip", "203.0.113.7")]
    );
    assert_eq!(minute.limit.as_ref().unwrap().requests_per_unit, 3);
    assert_eq!(metric(&host, "allowed"), 4);
    assert_eq!(metric(&host, "limited"), 1);
    assert_eq!(metric(&host, "service_fallbacks"), 0);
}

#[test]
fn the_global_and_route_policies_go_in_one_call_and_workers_share_the_service() {
    let host = Host::new();
    counting_service(&host);
    let config = redis(json!({
        "minute": 100, "limit_by": "ip",
        "routes": {"payments": {"minute": 4}}
    }));
    let mut a = worker(&host, &config);
    let mut b = worker(&host, &config);
    let pay = |ip: &str| {
        Request::get("/payments")
            .route("payments")
            .source(&format!("{ip}:1"))
    };
    let mut admitted = 0;
    for i in 0..10 {
        let filter = if i % 2 == 0 { &mut a } else { &mut b };
        if filter.send(pay("10.0.0.9")).status() == 200 {
            admitted += 1;
        }
    }
    assert_eq!(admitted, 4, "exactly the route's limit across both workers");
    let request = RateLimitRequest::decode(host.grpc_calls()[0].message.as_slice()).unwrap();
    let policies: Vec<&str> = request
        .descriptors
        .iter()
        .map(|d| d.entries[0].value.as_str())
        .collect();
    assert_eq!(policies, ["global", "routes.payments"]);
    // Refused requests counted nowhere: the global minute saw only the admitted four.
    let users = a.send(from("10.0.0.9"));
    assert_eq!(
        users.header("x-ratelimit-remaining-minute").as_deref(),
        Some("95")
    );
}

#[test]
fn a_failing_service_falls_back_to_shared_data_then_recovers() {
    let host = Host::new();
    let failing = counting_service(&host);
    let mut filter = worker(&host, &redis(json!({"minute": 2, "limit_by": "ip"})));
    assert_eq!(
        filter.send(from("10.0.0.1")).status(),
        200,
        "service counts 1"
    );

    *failing.lock().unwrap() = Some(14);
    let statuses: Vec<u16> = (0..3)
        .map(|_| filter.send(from("10.0.0.1")).status())
        .collect();
    assert_eq!(statuses, [200, 200, 429], "the local limit holds meanwhile");
    assert_eq!(metric(&host, "service_fallbacks"), 3);
    assert!(host.logged(host_test::LogLevel::Warn, "rate limit service failed (the service answered gRPC status 14 (unavailable)); counted in shared data instead"));

    // No answer within the timeout: the request waits 50 ms, not 5 s.
    *failing.lock().unwrap() = Some(u32::MAX);
    let started = host.now_nanos();
    let slow = filter.send(from("10.0.0.2"));
    assert_eq!(slow.status(), 200);
    assert_eq!(host.now_nanos() - started, 50_000_000);
    assert_eq!(metric(&host, "service_fallbacks"), 4);

    *failing.lock().unwrap() = None;
    let back = filter.send(from("10.0.0.1"));
    assert_eq!(back.status(), 200, "the service's count: 2 of 2");
    assert_eq!(
        back.header("x-ratelimit-remaining-minute").as_deref(),
        Some("0")
    );
    assert_eq!(filter.send(from("10.0.0.1")).status(), 429);
    assert_eq!(
        metric(&host, "service_fallbacks"),
        4,
        "no fallback once it answers"
    );
}

#[test]
fn not_fault_tolerant_answers_500_when_the_service_fails() {
    let host = Host::new();
    let failing = counting_service(&host);
    *failing.lock().unwrap() = Some(14);
    let mut filter = worker(
        &host,
        &redis(json!({"minute": 2, "limit_by": "ip", "fault_tolerant": false})),
    );
    let refused = filter.send(from("10.0.0.1"));
    assert_eq!(refused.status(), 500);
    assert_eq!(
        refused.body_json(),
        json!({"message": "An unexpected error occurred"})
    );
    assert!(!refused.reached_upstream());
    assert_eq!(metric(&host, "faults"), 1);
    assert_eq!(metric(&host, "service_fallbacks"), 0);
}

#[test]
fn an_unknown_cluster_or_a_garbled_answer_never_admits_by_itself() {
    // No service scripted at all: Envoy refuses the call to an unknown cluster.
    let host = Host::new();
    let mut strict = worker(
        &host,
        &redis(json!({"minute": 2, "limit_by": "ip", "fault_tolerant": false})),
    );
    assert_eq!(strict.send(from("10.0.0.1")).status(), 500);
    let mut tolerant = worker(&host, &redis(json!({"minute": 1, "limit_by": "ip"})));
    assert_eq!(tolerant.send(from("10.0.0.1")).status(), 200);
    assert_eq!(
        tolerant.send(from("10.0.0.1")).status(),
        429,
        "counted locally"
    );

    // A service answering garbage, or too few statuses.
    let host = Host::new();
    let answers = Arc::new(Mutex::new(vec![
        vec![0xff, 0xff, 0xff],
        RateLimitResponse {
            overall_code: CODE_OK,
            statuses: Vec::new(),
        }
        .encode_to_vec(),
    ]));
    let queue = answers.clone();
    host.grpc_service(CLUSTER, move |_| {
        GrpcAnswer::ok(queue.lock().unwrap().pop().unwrap_or_default())
    });
    let mut strict = worker(
        &host,
        &redis(json!({"minute": 2, "limit_by": "ip", "fault_tolerant": false})),
    );
    for _ in 0..2 {
        let got = strict.send(from("10.0.0.1"));
        assert_eq!(got.status(), 500);
        assert!(got.crash.is_none());
    }
    assert!(host.logged(host_test::LogLevel::Error, "not a RateLimitResponse"));
}

#[test]
fn a_repeated_counted_header_is_refused_without_asking_the_service() {
    let host = Host::new();
    counting_service(&host);
    let mut filter = worker(
        &host,
        &redis(json!({"minute": 2, "limit_by": "header", "header_name": "x-api-key"})),
    );
    let refused = filter.send(
        from("203.0.113.7")
            .header("x-api-key", "random")
            .header("x-api-key", "k-real"),
    );
    assert_eq!(refused.status(), 400);
    assert_eq!(
        refused.body_json(),
        json!({"message": "The x-api-key header must be sent once"})
    );
    assert!(!refused.reached_upstream());
    assert!(
        host.grpc_calls().is_empty(),
        "nothing asked, nothing counted"
    );
    assert_eq!(metric(&host, "rejected"), 1);
    // An IPv6 client's descriptor carries its /64.
    let ok = filter.send(
        Request::get("/users")
            .route("users")
            .source("[2001:db8:1:2::7]:1"),
    );
    assert_eq!(ok.status(), 200);
    let request = RateLimitRequest::decode(host.grpc_calls()[0].message.as_slice()).unwrap();
    assert_eq!(
        request.descriptors[0].entries[1].value, "2001:db8:1:2::/64",
        "no x-api-key: the IP fallback"
    );
}
