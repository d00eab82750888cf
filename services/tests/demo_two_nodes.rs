//! `make run NODES=2` as the README writes it (default run directory and environment, only
//! the ports moved to free ones): two gateway nodes following one portcullis-admin, Redis
//! and the rate limit service, over HTTPS (the default): clients to both nodes, the nodes to
//! the services, to portcullis-admin and to the rate limit service.
//! Payments alternating between the nodes meet one limit of 20 a minute between them; a
//! consumer made through the Admin API walks docs/demo.md's flow on both nodes, each change
//! seen within the bound; and Ctrl-C leaves no process behind.

// Test code: clippy.toml lets #[test] functions panic, and these helpers are test code too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::gateway::minute_with_room;
use common::make_run::{live_process, MakeRun};
use portcullis_tests::{client, paths, tokens, Reply};
use serde_json::{json, Value};

const RATE_LIMITED: &str = r#"{"message":"API rate limit exceeded"}"#;
const FORBIDDEN: &str = r#"{"message":"You cannot consume this service"}"#;
const REVOKED: &str = r#"{"message":"Token revoked"}"#;
const UNKNOWN: &str = r#"{"message":"No credentials found for given 'iss'"}"#;
/// The jwt policy's `poll_interval_ms` (the default): a change through the Admin API holds
/// on every node within this plus one round trip.
const POLL_INTERVAL: Duration = Duration::from_millis(1000);
/// What the round trip and a loaded test machine may add before a test calls it late.
const SLACK: Duration = Duration::from_millis(1500);

fn number(reply: &Reply, name: &str) -> u64 {
    reply
        .header(name)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name}: {:?}", reply.header(name)))
}

/// A node's `portcullis_rate_limiting_service_fallbacks_total` (0 when Envoy lists none yet).
fn fallbacks(admin_port: u16) -> f64 {
    let stats = client::get(
        &format!("http://127.0.0.1:{admin_port}/stats/prometheus"),
        &[],
    );
    assert_eq!(stats.status, 200);
    stats
        .text()
        .lines()
        .find_map(|line| line.strip_prefix("portcullis_rate_limiting_service_fallbacks_total{} "))
        .map(|value| value.trim().parse().unwrap())
        .unwrap_or(0.0)
}

/// A node's counter `name` from Envoy's admin `/stats` (0 when Envoy lists none).
fn stat(admin_port: u16, name: &str) -> u64 {
    let url = format!("http://127.0.0.1:{admin_port}/stats?filter=^{name}$");
    let stats = client::get(&url, &[]).text();
    stats
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{name}: ")))
        .map(|value| value.trim().parse().unwrap())
        .unwrap_or(0)
}

/// `curl -X <method> <admin API><path> --data …`: the answer's JSON (null for a 204).
fn admin_api(port: u16, method: &str, path: &str, form: &str, status: u16) -> Value {
    let url = format!("https://127.0.0.1:{port}{path}");
    let headers = [("content-type", "application/x-www-form-urlencoded")];
    let body = (!form.is_empty()).then_some(form.as_bytes());
    let reply = client::send(
        method,
        &url,
        if form.is_empty() { &[] } else { &headers },
        body,
    );
    assert_eq!(
        reply.status,
        status,
        "{method} {path} {form}: {}",
        reply.text()
    );
    if reply.body.is_empty() {
        Value::Null
    } else {
        reply.json()
    }
}

/// Asks every node for `path` every 20 ms until each has answered `status` (`body`, when
/// given) once, and returns how long the slowest took; panics past `POLL_INTERVAL + SLACK`.
fn until_every_node(
    nodes: &[String],
    path: &str,
    token: &str,
    status: u16,
    body: Option<&str>,
) -> Duration {
    let since = Instant::now();
    let mut pending: Vec<&String> = nodes.iter().collect();
    let mut last = Vec::new();
    while !pending.is_empty() {
        last.clear();
        pending.retain(|node| {
            let reply = client::get(&format!("{node}{path}"), &[("authorization", token)]);
            let done = reply.status == status && body.is_none_or(|b| reply.text() == b);
            last.push(format!("{node}: {} {}", reply.status, reply.text()));
            !done
        });
        assert!(
            since.elapsed() <= POLL_INTERVAL + SLACK,
            "{path}: not {status} on every node after {:?}: {last:?}",
            since.elapsed()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    since.elapsed()
}

#[test]
fn make_run_nodes_2_admits_20_payments_across_both_nodes_and_ctrl_c_stops_everything() {
    let mut run = MakeRun::start_nodes(2);
    run.wait_for(
        "Ctrl-C stops both Envoys, portcullis-admin, the rate limit service, Redis and the services.",
        Duration::from_secs(120),
    );
    let mobile = format!("Bearer {}", run.printed("MOBILE"));
    // The demo CA this start made: both nodes and the Admin API serve HTTPS with its
    // certificates.
    client::trust(&paths::workspace_root().join(".run/tls/ca.pem"));
    let nodes = [
        format!("https://127.0.0.1:{}", run.port("DEMO_PORT")),
        format!("https://127.0.0.1:{}", run.port("DEMO_NODE2_PORT")),
    ];
    // What the demo runs, all in the terminal's process group (a Ctrl-C reaches them all).
    let started = run.processes();
    let mut names: Vec<&str> = started.iter().map(|(_, name)| name.as_str()).collect();
    names.sort_unstable();
    names.dedup_by(|a, b| a == b && *a != "envoy");
    for expected in [
        "envoy",
        "portcullis-admi", // portcullis-admin: comm keeps 15 bytes
        "portcullis-rate", // portcullis-ratelimit
        "portcullis-serv",
        "redis-server",
    ] {
        assert!(names.contains(&expected), "no {expected} in {started:?}");
    }
    assert_eq!(
        names.iter().filter(|name| **name == "envoy").count(),
        2,
        "{started:?}"
    );
    // One portcullis-admin, followed by both nodes.
    for variable in ["DEMO_ADMIN_PORT", "DEMO_NODE2_ADMIN_PORT"] {
        run.assert_admin_cluster(variable);
    }

    // 24 payments as the printed loop makes them, node 1, node 2, node 1, …, all in one
    // calendar minute: the limit is 20 a minute for both nodes together.
    minute_with_room(Duration::from_secs(30));
    let replies: Vec<Reply> = (0..24)
        .map(|i| {
            client::get(
                &format!("{}/payments", nodes[i % 2]),
                &[("authorization", &mobile)],
            )
        })
        .collect();
    let statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
    let expected: Vec<u16> = [[200; 20].as_slice(), [429; 4].as_slice()].concat();
    assert_eq!(statuses, expected, "alternating between {nodes:?}");
    // Each node counts down what the other one took: one counter between them.
    for (n, reply) in replies[..20].iter().enumerate() {
        let left = (19 - n).to_string();
        assert_eq!(reply.json()["service"], "payment-service", "payment {n}");
        assert_eq!(
            reply.header("x-ratelimit-remaining-minute"),
            Some(left.as_str()),
            "payment {n} through {}",
            nodes[n % 2]
        );
    }
    // Kong's refusal, from either node.
    for (n, refused) in replies.iter().enumerate().skip(20) {
        assert_eq!(refused.text(), RATE_LIMITED, "payment {n}");
        for (name, value) in [
            ("x-ratelimit-limit-minute", "20"),
            ("x-ratelimit-remaining-minute", "0"),
            ("ratelimit-limit", "20"),
            ("ratelimit-remaining", "0"),
        ] {
            assert_eq!(refused.header(name), Some(value), "payment {n}: {name}");
        }
        let reset = number(refused, "ratelimit-reset");
        assert!((1..=60).contains(&reset), "payment {n}: reset {reset}");
        assert_eq!(number(refused, "retry-after"), reset, "payment {n}");
    }
    // The rate limit service's own account of the same 24, at the address the demo prints.
    let metrics = format!(
        "http://127.0.0.1:{}",
        run.port("DEMO_RATELIMIT_METRICS_PORT")
    );
    assert_eq!(client::get(&format!("{metrics}/readyz"), &[]).status, 200);
    let scrape = client::get(&format!("{metrics}/metrics"), &[]).text();
    let over =
        r#"portcullis_ratelimit_requests_total{domain="portcullis-demo",answer="over_limit"} 4"#;
    assert!(
        scrape.lines().any(|l| l == over),
        "no `{over}` in\n{scrape}"
    );
    // Counted by the service every time: neither node fell back to counting alone.
    for variable in ["DEMO_ADMIN_PORT", "DEMO_NODE2_ADMIN_PORT"] {
        assert_eq!(fallbacks(run.port(variable)), 0.0, "{variable}");
    }
    // Over TLS: each node's handshakes with the rate limit service, the payment service and
    // portcullis-admin's data plane succeeded, and none failed.
    for variable in ["DEMO_ADMIN_PORT", "DEMO_NODE2_ADMIN_PORT"] {
        let admin = run.port(variable);
        for cluster in ["ratelimit", "payment-service", "portcullis_admin"] {
            let handshakes = stat(admin, &format!("cluster.{cluster}.ssl.handshake"));
            assert!(
                handshakes > 0,
                "{variable}: no TLS handshake with {cluster}"
            );
            let failed = stat(admin, &format!("cluster.{cluster}.ssl.connection_error"));
            assert_eq!(failed, 0, "{variable}: {cluster}");
        }
    }

    // docs/demo.md's flow: a consumer, an HS256 credential (key and secret generated) and a
    // group through the Admin API, a token signed with them, then a change, a revocation
    // and a delete, each seen by both nodes within the bound.
    let api = run.port("DEMO_ADMIN_API_PORT");
    admin_api(
        api,
        "POST",
        "/consumers",
        "username=alice&custom_id=alice-42",
        201,
    );
    let credential = admin_api(api, "POST", "/consumers/alice/jwt", "", 201);
    admin_api(api, "POST", "/consumers/alice/acls", "group=customers", 201);
    let (key, secret) = (
        credential["key"].as_str().unwrap(),
        credential["secret"].as_str().unwrap(),
    );
    let exp = tokens::now() + 3600;
    let claims = json!({"iss": key, "jti": "alice-1", "iat": tokens::now(), "exp": exp});
    let header = json!({"alg": "HS256", "typ": "JWT"});
    let alice = format!(
        "Bearer {}",
        tokens::sign_raw(&header, &claims, secret.as_bytes())
    );
    for node in &nodes {
        // At once: the first request looks the key up.
        let reply = client::get(&format!("{node}/users"), &[("authorization", &alice)]);
        assert_eq!(reply.status, 200, "{node}: {}", reply.text());
        let identity = &reply.json()["identity"];
        assert_eq!(identity["x-consumer-username"], "alice", "{node}");
        assert_eq!(identity["x-consumer-custom-id"], "alice-42", "{node}");
        assert_eq!(identity["x-credential-identifier"], key, "{node}");
        assert_eq!(identity["x-consumer-groups"], "customers", "{node}");
        let reply = client::get(&format!("{node}/payments"), &[("authorization", &alice)]);
        assert_eq!(
            (reply.status, reply.text().as_str()),
            (403, FORBIDDEN),
            "{node}"
        );
    }
    admin_api(api, "POST", "/consumers/alice/acls", "group=admins", 201);
    let joined = until_every_node(&nodes, "/payments", &alice, 200, None);
    let form = format!("jti=alice-1&expires_at={exp}");
    admin_api(api, "POST", "/revocations", &form, 201);
    let revoked = until_every_node(&nodes, "/users", &alice, 401, Some(REVOKED));
    admin_api(
        api,
        "DELETE",
        &format!("/consumers/alice/jwt/{key}"),
        "",
        204,
    );
    let deleted = until_every_node(&nodes, "/users", &alice, 401, Some(UNKNOWN));
    println!(
        "seen by both nodes after: group {joined:?}, revocation {revoked:?}, delete {deleted:?}"
    );

    let status = run.ctrl_c();
    assert!(
        run.stopped_cleanly(status),
        "make run after Ctrl-C: {status}\n{:#?}",
        run.lines()
    );
    assert!(
        run.lines().iter().any(|line| line
            == "make run: stopped both Envoys, portcullis-admin, the rate limit service, Redis and the services"),
        "{:#?}",
        run.lines()
    );
    // Nothing left: no process of the group (each node's log filter ends with its Envoy),
    // and no port answers.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !run.processes().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(run.processes(), Vec::new(), "still running after Ctrl-C");
    for (pid, name) in &started {
        assert!(
            live_process(*pid).is_none_or(|(now, _)| now != *name),
            "{name} (pid {pid}) still running after Ctrl-C"
        );
    }
    for (variable, port) in &run.ports {
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", *port)).is_err(),
            "{variable}: port {port} still answers after Ctrl-C"
        );
    }
}
