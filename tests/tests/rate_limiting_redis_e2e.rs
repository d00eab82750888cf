//! `policy: redis` end to end: real Envoys (two gateway nodes, two workers each) running the
//! rate-limiting filter, the project's rate limit service (`portcullis-ratelimit`, gRPC), a
//! real Redis, recording upstreams. One limit holds across both nodes hammered at once;
//! Redis stopped mid-run and the service stopped mid-run both end in the documented
//! fallback (counting in each node's shared data) without a hang, and exact shared counting
//! comes back when they do; not fault tolerant, a failure is a 500. Over mutual TLS, Envoy's
//! client certificate is what lets the filter's calls count.

use std::time::{Duration, Instant};

use portcullis_tests::certs::{Authority, Pair};
use portcullis_tests::config::portcullis_filter;
use portcullis_tests::load::{burst, room_in_this_minute, statuses};
use portcullis_tests::ratelimit_service::{ratelimit_binary, RateLimitService};
use portcullis_tests::redis::RedisServer;
use portcullis_tests::{client, Envoy, Gateway, Reply, Upstream};
use serde_json::{json, Value};

/// The rate limit service's cluster in every gateway.
const CLUSTER: &str = "ratelimit";

/// A gateway node: `/users` to `users`, the rate-limiting filter with `config` (made a
/// `policy: redis` one asking the service on `service_port`).
fn node(users: &Upstream, service_port: u16, config: &Value) -> Envoy {
    node_over(users, service_port, config, None)
}

/// Like [`node`]; with `tls`, the service's cluster speaks TLS: `(CA to trust, client
/// certificate to present, if any)`.
fn node_over(
    users: &Upstream,
    service_port: u16,
    config: &Value,
    tls: Option<(&Authority, Option<&Pair>)>,
) -> Envoy {
    let mut config = config.clone();
    config["policy"] = json!("redis");
    if config.get("rate_limit_service").is_none() {
        config["rate_limit_service"] = json!({"cluster": CLUSTER, "timeout": 500});
    }
    let gateway = Gateway::new()
        .route("users", "/users", users)
        .grpc_cluster(CLUSTER, service_port)
        .filter(portcullis_filter(
            "rate-limiting",
            Some(&config.to_string()),
        ));
    let mut yaml = gateway.render();
    if let Some((ca, client)) = tls {
        // The gRPC cluster is the only one with a 1 s connect timeout: its transport socket
        // goes after that line, at its indentation.
        let line = yaml
            .lines()
            .find(|line| line.trim() == "connect_timeout: 1s")
            .unwrap_or_else(|| panic!("no gRPC cluster in {yaml}"))
            .to_owned();
        let indent = &line[..line.len() - line.trim_start().len()];
        let socket: String = upstream_tls(ca, client)
            .lines()
            .map(|tls| format!("\n{indent}{tls}"))
            .collect();
        yaml = yaml.replacen(&line, &format!("{line}{socket}"), 1);
    }
    Envoy::builder(yaml)
        .concurrency(2)
        .start()
        .unwrap_or_else(|e| panic!("{e:#}"))
}

/// The name in the service's certificate, which Envoy sends as SNI and checks.
const SERVICE_NAME: &str = "ratelimit.test";

/// A cluster's `transport_socket`: TLS to the service, trusting `ca`, presenting `client`;
/// indented as at the top level of a cluster.
fn upstream_tls(ca: &Authority, client: Option<&Pair>) -> String {
    let certificate = client.map_or_else(String::new, |pair| {
        format!(
            "\n      tls_certificates:\n      - certificate_chain: {{ filename: {} }}\n        private_key: {{ filename: {} }}",
            pair.cert.display(),
            pair.key.display()
        )
    });
    format!(
        "transport_socket:
  name: envoy.transport_sockets.tls
  typed_config:
    \"@type\": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
    sni: {SERVICE_NAME}
    common_tls_context:
      alpn_protocols: [h2]{certificate}
      validation_context:
        trusted_ca: {{ filename: {} }}
        match_typed_subject_alt_names:
        - san_type: DNS
          matcher: {{ exact: {SERVICE_NAME} }}",
        ca.cert().display()
    )
}

fn services() -> (RedisServer, RateLimitService) {
    let redis = RedisServer::start().unwrap_or_else(|e| panic!("{e:#}"));
    let service = RateLimitService::start(&ratelimit_binary(), &redis.url())
        .unwrap_or_else(|e| panic!("{e:#}"));
    (redis, service)
}

fn fallbacks(envoy: &Envoy) -> f64 {
    envoy
        .metric("portcullis_rate_limiting_service_fallbacks_total{}")
        .unwrap_or(0.0)
}

fn get(envoy: &Envoy) -> Reply {
    client::get(&envoy.url("/users"), &[])
}

/// Sends `n` requests one by one and returns their statuses; each must be answered well
/// within a second (the filter's timeout is 500 ms): a failing service never hangs a
/// request.
fn one_by_one(envoy: &Envoy, n: usize) -> Vec<u16> {
    (0..n)
        .map(|_| {
            let started = Instant::now();
            let reply = get(envoy);
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "a request took {:?}",
                started.elapsed()
            );
            reply.status
        })
        .collect()
}

#[test]
fn two_gateway_nodes_hammered_at_once_admit_exactly_one_limit() {
    const LIMIT: usize = 40;
    let (_redis, service) = services();
    let users = Upstream::start("users");
    let config = json!({"minute": LIMIT, "hour": 1000, "limit_by": "ip"});
    let a = node(&users, service.port(), &config);
    let b = node(&users, service.port(), &config);
    room_in_this_minute(25);
    let urls = [a.url("/users"), b.url("/users")];
    let replies = burst(&urls, 32, 160, |_| Vec::new());
    let counts = statuses(&replies);
    assert_eq!(
        counts.get(&200).copied().unwrap_or(0),
        LIMIT,
        "admitted across both nodes: {counts:?}"
    );
    assert_eq!(
        counts.get(&429).copied().unwrap_or(0),
        160 - LIMIT,
        "{counts:?}"
    );
    assert_eq!(users.count(), LIMIT, "the upstream saw exactly the limit");
    for refused in replies.iter().filter(|r| r.status == 429) {
        assert_eq!(
            refused.json(),
            json!({"message": "API rate limit exceeded"})
        );
        assert_eq!(refused.header("x-ratelimit-limit-minute"), Some("40"));
        assert_eq!(refused.header("x-ratelimit-remaining-minute"), Some("0"));
        assert_eq!(refused.header("ratelimit-remaining"), Some("0"));
        let retry: u64 = refused.header("retry-after").unwrap().parse().unwrap();
        assert!((1..=60).contains(&retry), "retry-after {retry}");
    }
    for admitted in replies.iter().filter(|r| r.status == 200) {
        assert_eq!(admitted.header("x-ratelimit-limit-hour"), Some("1000"));
    }
    assert_eq!(
        fallbacks(&a) + fallbacks(&b),
        0.0,
        "the service answered every call"
    );
}

#[test]
fn redis_stopped_mid_run_falls_back_then_counts_in_redis_again() {
    let (mut redis, service) = services();
    let users = Upstream::start("users");
    let envoy = node(
        &users,
        service.port(),
        &json!({"minute": 3, "limit_by": "ip"}),
    );
    room_in_this_minute(30);
    assert_eq!(one_by_one(&envoy, 2), [200, 200], "counted in Redis");

    redis.stop();
    // The service answers UNAVAILABLE; the node counts in its own shared data meanwhile
    // (a fresh count: the local limit of 3 holds).
    assert_eq!(one_by_one(&envoy, 4), [200, 200, 200, 429]);
    assert_eq!(fallbacks(&envoy), 4.0);
    assert!(envoy.wait_for_log("counted in shared data instead"));

    redis.start_again().unwrap_or_else(|e| panic!("{e:#}"));
    // Redis restarted empty (nothing is saved): the service counts from 0 again, exactly.
    let mut back = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while back.iter().filter(|s| **s == 200).count() < 3 && Instant::now() < deadline {
        let before = fallbacks(&envoy);
        let status = one_by_one(&envoy, 1)[0];
        if fallbacks(&envoy) == before {
            back.push(status);
        } else {
            // Still reconnecting: the request was counted locally (where the window is
            // full, so it was refused).
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    assert_eq!(back, [200, 200, 200], "exact counting in Redis again");
    let settled = fallbacks(&envoy);
    assert_eq!(one_by_one(&envoy, 2), [429, 429]);
    assert_eq!(
        fallbacks(&envoy),
        settled,
        "no fallback once the service answers"
    );
}

#[test]
fn the_service_stopped_mid_run_falls_back_without_a_hang_and_is_used_again_on_restart() {
    let (redis, mut service) = services();
    let port = service.port();
    let users = Upstream::start("users");
    let envoy = node(&users, port, &json!({"minute": 2, "limit_by": "ip"}));
    room_in_this_minute(30);
    assert_eq!(one_by_one(&envoy, 1), [200]);

    service.stop();
    assert_eq!(
        one_by_one(&envoy, 3),
        [200, 200, 429],
        "the local limit holds"
    );
    assert_eq!(fallbacks(&envoy), 3.0);

    let _restarted = RateLimitService::start_with(
        &ratelimit_binary(),
        &[
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--redis-url",
            &redis.url(),
        ],
    )
    .unwrap_or_else(|e| panic!("{e:#}"));
    // Redis kept the first count: one more fits in the shared window, then 429.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut statuses = Vec::new();
    while Instant::now() < deadline {
        let before = fallbacks(&envoy);
        let status = one_by_one(&envoy, 1)[0];
        if fallbacks(&envoy) == before {
            statuses.push(status);
            if statuses.len() == 2 {
                break;
            }
        } else {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    assert_eq!(
        statuses,
        [200, 429],
        "the service counts again, from what Redis kept"
    );
}

#[test]
fn not_fault_tolerant_a_failing_service_is_a_500_and_the_upstream_is_spared() {
    let (mut redis, service) = services();
    let users = Upstream::start("users");
    let envoy = node(
        &users,
        service.port(),
        &json!({"minute": 5, "limit_by": "ip", "fault_tolerant": false}),
    );
    redis.stop();
    let reply = get(&envoy);
    assert_eq!(reply.status, 500);
    assert_eq!(
        reply.json(),
        json!({"message": "An unexpected error occurred"})
    );
    assert_eq!(users.count(), 0);
    assert_eq!(fallbacks(&envoy), 0.0);
}

/// The service asks for client certificates: the Envoy presenting one its CA signed counts
/// in Redis, exactly; an Envoy without one never reaches a counter (not fault tolerant: 500).
#[test]
fn over_mutual_tls_only_the_envoy_with_a_client_certificate_counts() {
    let redis = RedisServer::start().unwrap_or_else(|e| panic!("{e:#}"));
    let ca = Authority::new("ratelimit-mtls").unwrap();
    let server = ca.server(SERVICE_NAME).unwrap();
    let envoy_certificate = ca.client("envoy").unwrap();
    let path = |p: &std::path::Path| p.to_string_lossy().into_owned();
    let (cert, key, client_ca) = (path(&server.cert), path(&server.key), path(ca.cert()));
    let service = RateLimitService::start_with(
        &ratelimit_binary(),
        &[
            "--redis-url",
            &redis.url(),
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
            "--tls-client-ca",
            &client_ca,
        ],
    )
    .unwrap_or_else(|e| panic!("{e:#}"));
    let users = Upstream::start("users");
    let config = json!({"minute": 2, "limit_by": "ip", "fault_tolerant": false});
    let anonymous = node_over(&users, service.port(), &config, Some((&ca, None)));
    assert_eq!(
        one_by_one(&anonymous, 2),
        vec![500, 500],
        "{}",
        anonymous.log()
    );
    assert_eq!(users.count(), 0);
    assert_eq!(redis.integer(&["DBSIZE"]).unwrap(), Some(0));
    room_in_this_minute(10);
    let trusted = node_over(
        &users,
        service.port(),
        &config,
        Some((&ca, Some(&envoy_certificate))),
    );
    assert_eq!(
        one_by_one(&trusted, 3),
        vec![200, 200, 429],
        "{}",
        trusted.log()
    );
    assert_eq!(users.count(), 2);
    assert_eq!(redis.integer(&["DBSIZE"]).unwrap(), Some(1));
    assert_eq!(fallbacks(&trusted), 0.0);
}
