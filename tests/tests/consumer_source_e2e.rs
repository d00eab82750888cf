//! `consumer_source` in real Envoys, following a real portcullis-admin on PostgreSQL: two
//! gateway nodes (`--concurrency 2` each) with jwt + acl, and the Admin API driven as
//! Kong's documentation writes it. Measured and printed: for a credential created (its key
//! tried before, so cached as unknown), a group added and removed, a jti revoked and a
//! credential deleted, the time from the Admin API's answer until every node and worker
//! agrees — the bound is `poll_interval_ms` + one round trip. Then the failures: the admin
//! killed and back, PostgreSQL restarted, a burst of random keys.

use std::time::{Duration, Instant};

use portcullis_tests::admin_service::AdminService;
use portcullis_tests::config::portcullis_filter;
use portcullis_tests::postgres::Postgres;
use portcullis_tests::tokens::{self, hs256};
use portcullis_tests::{client, Envoy, Gateway, Upstream};
use serde_json::json;

const POLL_INTERVAL_MS: u64 = 1000;
const CLUSTER: &str = "portcullis_admin";
const SECRET: &str = "e2e-secret-of-at-least-32-bytes!!";

struct Scene {
    _users: Upstream,
    _payments: Upstream,
    nodes: Vec<Envoy>,
}

fn jwt_config(extra: serde_json::Value) -> String {
    let mut source = json!({"cluster": CLUSTER, "authority": "localhost",
        "poll_interval_ms": POLL_INTERVAL_MS, "timeout_ms": 500});
    source
        .as_object_mut()
        .unwrap_or_else(|| unreachable!())
        .extend(extra.as_object().cloned().unwrap_or_default());
    json!({"consumer_source": source, "token_cache_size": 1024}).to_string()
}

/// `nodes` gateways whose cluster leads to the data plane of every one of `admins`.
fn scene(admins: &[&AdminService], nodes: usize, extra: serde_json::Value) -> Scene {
    let users = Upstream::start("users");
    let payments = Upstream::start("payments");
    let acl = r#"{"any_consumer": true, "routes": {"payments": {"allow": ["admins"]}}}"#;
    let mut gateway =
        Gateway::new()
            .route("users", "/users", &users)
            .route("payments", "/payments", &payments);
    for admin in admins {
        gateway = gateway.http_cluster(CLUSTER, admin.data_plane_address().port());
    }
    let gateway = gateway
        .filter(portcullis_filter("jwt", Some(&jwt_config(extra))))
        .filter(portcullis_filter("acl", Some(acl)));
    let nodes = (0..nodes)
        .map(|_| {
            Envoy::builder(gateway.render())
                .concurrency(2)
                .start()
                .unwrap_or_else(|e| panic!("{e:#}"))
        })
        .collect();
    let scene = Scene {
        _users: users,
        _payments: payments,
        nodes,
    };
    scene.until_loaded();
    scene
}

impl Scene {
    /// Every node answers `path` with `status`, on 8 fresh connections each (Envoy spreads
    /// connections over its workers, so both workers of each node answer).
    fn agree(&self, path: &str, token: &str, status: u16) -> bool {
        self.disagreement(path, token, status).is_none()
    }

    /// The first answer other than `status`, if any.
    fn disagreement(&self, path: &str, token: &str, status: u16) -> Option<String> {
        let auth = format!("Bearer {token}");
        for (n, node) in self.nodes.iter().enumerate() {
            for _ in 0..8 {
                let reply = client::get(&node.url(path), &[("authorization", &auth)]);
                if reply.status != status {
                    return Some(format!("node {n}: {} {}", reply.status, reply.text()));
                }
            }
        }
        None
    }

    /// Waits until every node agrees; the time it took from `since`.
    fn until_agreed(&self, since: Instant, path: &str, token: &str, status: u16) -> Duration {
        loop {
            let Some(other) = self.disagreement(path, token, status) else {
                return since.elapsed();
            };
            assert!(
                since.elapsed() < Duration::from_secs(15),
                "{path} never answered {status} everywhere; last: {other}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits until every worker of every node has loaded the admin's revocations: until
    /// then a looked-up token is answered 503 with `Retry-After: 1` (by design), after it an
    /// unknown key is answered 401. The probe's key is one no test creates.
    fn until_loaded(&self) {
        let probe = hs256("readiness-probe", SECRET.as_bytes());
        self.until_agreed(Instant::now(), "/users", &probe, 401);
    }

    fn metric(&self, name: &str) -> f64 {
        self.nodes
            .iter()
            .map(|n| n.metric(&format!("{name}{{}}")).unwrap_or(0.0))
            .sum()
    }
}

fn postgres_admin() -> (Postgres, AdminService) {
    let postgres = Postgres::start().unwrap_or_else(|e| panic!("{e:#}"));
    let url = postgres
        .database("source")
        .unwrap_or_else(|e| panic!("{e:#}"));
    let admin = AdminService::start(&url).unwrap_or_else(|e| panic!("{e:#}"));
    (postgres, admin)
}

/// Each change made through the Admin API, timed until two nodes × two workers agree.
#[test]
fn changes_reach_every_node_and_worker_within_the_poll_interval_plus_a_round_trip() {
    let (_postgres, admin) = postgres_admin();
    let scene = scene(&[&admin], 2, json!({}));
    let trials = 3;
    let mut rows: Vec<(&str, Vec<Duration>)> = Vec::new();
    let mut record =
        |what: &'static str, took: Duration| match rows.iter_mut().find(|(w, _)| *w == what) {
            Some((_, v)) => v.push(took),
            None => rows.push((what, vec![took])),
        };
    for trial in 0..trials {
        let user = format!("app-{trial}");
        let key = format!("key-{trial}");
        admin.create_consumer(&user, None);
        let token = tokens::token(
            "HS256",
            &key,
            None,
            json!({"jti": format!("jti-{trial}")}),
            SECRET.as_bytes(),
        );
        // Tried first: every node caches the key as unknown.
        assert!(scene.agree("/users", &token, 401));

        let since = Instant::now();
        admin.create_jwt(&user, &key, SECRET);
        record(
            "credential created",
            scene.until_agreed(since, "/users", &token, 200),
        );
        assert!(scene.agree("/payments", &token, 403));

        let since = Instant::now();
        admin.add_group(&user, "admins");
        record(
            "group added",
            scene.until_agreed(since, "/payments", &token, 200),
        );

        let since = Instant::now();
        admin.remove_group(&user, "admins");
        record(
            "group removed",
            scene.until_agreed(since, "/payments", &token, 403),
        );

        let since = Instant::now();
        admin.revoke_jti(&format!("jti-{trial}"), tokens::now() + 3600);
        record(
            "jti revoked",
            scene.until_agreed(since, "/users", &token, 401),
        );

        let fresh = tokens::token(
            "HS256",
            &key,
            None,
            json!({"jti": format!("other-{trial}")}),
            SECRET.as_bytes(),
        );
        assert!(scene.agree("/users", &fresh, 200));
        let since = Instant::now();
        admin.delete_jwt(&user, &key);
        record(
            "credential deleted",
            scene.until_agreed(since, "/users", &fresh, 401),
        );
    }
    let bound = Duration::from_millis(POLL_INTERVAL_MS + 1000);
    println!("propagation to 2 nodes x 2 workers, poll_interval_ms {POLL_INTERVAL_MS}, {trials} trials each:");
    println!("{:<20} {:>8} {:>8}", "change", "max ms", "min ms");
    for (what, times) in &rows {
        let max = times.iter().max().copied().unwrap_or_default();
        let min = times.iter().min().copied().unwrap_or_default();
        println!("{what:<20} {:>8} {:>8}", max.as_millis(), min.as_millis());
        assert!(max <= bound, "{what}: {max:?} is past the bound {bound:?}");
    }
    assert!(scene.metric("portcullis_jwt_rejected_revoked_total") >= trials as f64);
}

#[test]
fn with_the_admin_or_its_database_down_cached_keys_serve_unknown_ones_get_503_then_all_recovers() {
    let (postgres, mut admin) = postgres_admin();
    let scene = scene(&[&admin], 1, json!({"stale_ttl": 60}));
    admin.create_consumer("cached", None);
    admin.create_jwt("cached", "cached-key", SECRET);
    let cached = hs256("cached-key", SECRET.as_bytes());
    assert!(scene.agree("/users", &cached, 200));

    admin.kill();
    std::thread::sleep(Duration::from_millis(2 * POLL_INTERVAL_MS));
    assert_eq!(
        scene.disagreement("/users", &cached, 200),
        None,
        "cached keys serve on"
    );
    let stranger = hs256("stranger-key", SECRET.as_bytes());
    let reply = client::get(
        &scene.nodes[0].url("/users"),
        &[("authorization", &format!("Bearer {stranger}"))],
    );
    assert_eq!(reply.status, 503, "{}", reply.text());
    assert_eq!(
        reply.json(),
        json!({"message": "Credential lookup unavailable"})
    );

    admin.start_again().unwrap_or_else(|e| panic!("{e:#}"));
    admin.create_consumer("late", None);
    admin.create_jwt("late", "stranger-key", SECRET);
    let since = Instant::now();
    let took = scene.until_agreed(since, "/users", &stranger, 200);
    println!(
        "admin back: a credential created answers 200 after {} ms",
        took.as_millis()
    );

    // PostgreSQL restarted under the admin: the same.
    postgres.stop().unwrap_or_else(|e| panic!("{e:#}"));
    std::thread::sleep(Duration::from_millis(2 * POLL_INTERVAL_MS));
    assert_eq!(
        scene.disagreement("/users", &cached, 200),
        None,
        "cached keys serve on"
    );
    postgres.start_again().unwrap_or_else(|e| panic!("{e:#}"));
    admin.delete_jwt("cached", "cached-key");
    let took = scene.until_agreed(Instant::now(), "/users", &cached, 401);
    println!(
        "database back: a credential deleted answers 401 after {} ms",
        took.as_millis()
    );
    assert!(scene.metric("portcullis_jwt_source_poll_failed_total") >= 1.0);
    assert!(scene.metric("portcullis_jwt_source_stale_served_total") >= 1.0);
}

#[test]
fn a_burst_of_random_keys_is_bounded_and_known_consumers_do_not_notice() {
    let admin = AdminService::sqlite().unwrap_or_else(|e| panic!("{e:#}"));
    let cap = 50;
    let scene = scene(
        &[&admin],
        1,
        json!({"max_lookups_per_second": cap, "cache_size": 1000}),
    );
    admin.create_consumer("known", None);
    admin.create_jwt("known", "known-key", SECRET);
    let known = format!("Bearer {}", hs256("known-key", SECRET.as_bytes()));
    let node = &scene.nodes[0];
    assert_eq!(
        client::get(&node.url("/users"), &[("authorization", &known)]).status,
        200
    );

    let rss_before = rss_kib(node.pid());
    let started = Instant::now();
    let (mut throttled, mut unknown, mut known_ok) = (0, 0, 0);
    for i in 0..10_000 {
        let random = format!(
            "Bearer {}",
            hs256(&format!("random-{i}-{}", tokens::now()), SECRET.as_bytes())
        );
        match client::get(&node.url("/users"), &[("authorization", &random)]).status {
            503 => throttled += 1,
            401 => unknown += 1,
            other => panic!("random key answered {other}"),
        }
        if i % 20 == 0 {
            assert_eq!(
                client::get(&node.url("/users"), &[("authorization", &known)]).status,
                200
            );
            known_ok += 1;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let lookups = scene.metric("portcullis_jwt_source_lookups_total");
    let grown_kib = rss_kib(node.pid()).saturating_sub(rss_before);
    println!("Envoy's resident memory grew by {grown_kib} KiB over the burst");
    // cache_size 1000 slots and entries per worker, each well under 1 KiB here.
    assert!(grown_kib < 64 * 1024, "{grown_kib} KiB");
    println!(
        "10000 random keys in {seconds:.1} s: {lookups} lookups (cap {cap}/s), {unknown} answered 401, {throttled} 503; known consumer 200 x {known_ok}"
    );
    assert!(
        lookups <= (seconds.ceil() + 1.0) * cap as f64,
        "{lookups} lookups"
    );
    assert_eq!(unknown + throttled, 10_000);
}

#[test]
fn two_admin_replicas_behind_one_cluster_serve_as_one() {
    let (postgres, first) = postgres_admin();
    let url = postgres.url("source");
    let second = AdminService::start(&url).unwrap_or_else(|e| panic!("{e:#}"));
    let scene = scene(&[&first, &second], 2, json!({}));
    for round in 0..2 {
        // Written through one replica, looked up and followed through both (round robin).
        let (writer, other) = if round == 0 {
            (&first, &second)
        } else {
            (&second, &first)
        };
        let user = format!("replicated-{round}");
        let key = format!("replicated-key-{round}");
        writer.create_consumer(&user, None);
        let token = hs256(&key, SECRET.as_bytes());
        assert!(scene.agree("/users", &token, 401));
        let since = Instant::now();
        writer.create_jwt(&user, &key, SECRET);
        let created = scene.until_agreed(since, "/users", &token, 200);
        let since = Instant::now();
        other.add_group(&user, "admins");
        let grouped = scene.until_agreed(since, "/payments", &token, 200);
        println!(
            "replicas, round {round}: created {} ms, group added through the other {} ms",
            created.as_millis(),
            grouped.as_millis()
        );
        let bound = Duration::from_millis(POLL_INTERVAL_MS + 1000);
        assert!(created <= bound && grouped <= bound);
    }
    assert_eq!(
        scene.metric("portcullis_jwt_source_resets_total"),
        0.0,
        "one feed, one epoch"
    );
}

/// A process's resident memory, from /proc.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
