//! Interoperability: Envoy's own native `envoy.filters.http.ratelimit` filter — a client
//! nobody here wrote — against the project's rate limit service and a real Redis.
//!
//! Envoy carries the limit the way Portcullis does, in each descriptor's `limit` override:
//! `envoy.filters.http.set_metadata` puts `{requests_per_unit, unit}` in the request's dynamic
//! metadata, and the route's `rate_limits[].limit.dynamic_metadata` reads it from there.
//! Proven: exactly the limit reaches the upstream, sequentially, concurrently, and through two
//! Envoys on two service replicas sharing one Redis; the rest get
//! Envoy's 429 with `x-envoy-ratelimited`; Envoy's draft-03 `x-ratelimit-*` headers carry the
//! service's `current_limit`, `limit_remaining` and `duration_until_reset`; a descriptor
//! without a limit passes uncounted; Redis down is the service's `UNAVAILABLE`, which Envoy's
//! `failure_mode_deny` turns into a 500, and counting resumes when Redis is back.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use portcullis_tests::client;
use portcullis_tests::config::{bootstrap, cluster, grpc_cluster, virtual_host, Listener};
use portcullis_tests::ratelimit_service::{ratelimit_binary, RateLimitService};
use portcullis_tests::redis::RedisServer;
use portcullis_tests::{Envoy, Upstream};

/// `/free` sends a descriptor without a limit, `/users` one whose limit set_metadata puts
/// in the request's dynamic metadata; both go to the cluster `users`.
const ROUTES: &str = r#"- name: free
  match: { prefix: /free }
  route:
    cluster: users
    rate_limits:
    - actions:
      - generic_key: { descriptor_value: free }
- name: users
  match: { prefix: /users }
  route:
    cluster: users
    rate_limits:
    - actions:
      - generic_key: { descriptor_value: users }
      limit:
        dynamic_metadata:
          metadata_key:
            key: portcullis.ratelimit
            path: [ { key: users } ]"#;

/// set_metadata holding `limit` requests an hour for `/users`, then Envoy's ratelimit
/// filter calling the service in the domain `interop`, failing closed; `secret`, when
/// given, rides in the call's `initial_metadata` as the service's bearer secret.
fn filters(limit: u32, secret: Option<&str>) -> String {
    let initial_metadata = secret.map_or(String::new(), |secret| {
        format!(
            "\n        initial_metadata:\
             \n        - {{ key: authorization, value: \"Bearer {secret}\" }}"
        )
    });
    format!(
        r#"- name: envoy.filters.http.set_metadata
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.filters.http.set_metadata.v3.Config
    metadata:
    - metadata_namespace: portcullis.ratelimit
      value:
        users: {{ requests_per_unit: {limit}, unit: HOUR }}
- name: envoy.filters.http.ratelimit
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimit
    domain: interop
    failure_mode_deny: true
    timeout: 2s
    enable_x_ratelimit_headers: DRAFT_VERSION_03
    rate_limit_service:
      transport_api_version: V3
      grpc_service:
        envoy_grpc: {{ cluster_name: ratelimit }}{initial_metadata}"#
    )
}

/// One listener with [`ROUTES`] and [`filters`], in front of `users` and `service`.
fn config(
    limit: u32,
    users: &Upstream,
    service: &RateLimitService,
    secret: Option<&str>,
) -> String {
    let listener = Listener::new("main")
        .stat_prefix("gateway")
        .virtual_host(virtual_host("gateway", &["*"], &[ROUTES.to_owned()]))
        .filter(filters(limit, secret));
    let clusters = [
        cluster("users", users.port()),
        grpc_cluster("ratelimit", service.port()),
    ];
    bootstrap(&[listener], &clusters)
}

struct Setup {
    users: Upstream,
    envoy: Envoy,
    redis: RedisServer,
    _service: RateLimitService,
}

fn setup(limit: u32) -> Setup {
    let redis = RedisServer::start().unwrap();
    let service = RateLimitService::start(&ratelimit_binary(), &redis.url()).unwrap();
    let users = Upstream::start("users");
    let envoy = Envoy::builder(config(limit, &users, &service, None))
        .component_log_level("main:warning")
        .start()
        .unwrap_or_else(|e| panic!("{e:#}"));
    Setup {
        users,
        envoy,
        redis,
        _service: service,
    }
}

#[test]
fn envoys_ratelimit_filter_admits_the_limit_then_answers_429() {
    let Setup {
        users,
        envoy,
        redis,
        _service,
    } = setup(3);
    for left in [2, 1, 0] {
        let reply = client::get(&envoy.url("/users"), &[]);
        assert_eq!(reply.status, 200, "{}", envoy.log());
        // Envoy's draft-03 headers, computed from the service's current_limit,
        // limit_remaining and duration_until_reset.
        assert_eq!(reply.header("x-ratelimit-limit"), Some("3, 3;w=3600"));
        assert_eq!(
            reply.header("x-ratelimit-remaining"),
            Some(left.to_string().as_str())
        );
        let reset: u64 = reply.header("x-ratelimit-reset").unwrap().parse().unwrap();
        assert!((1..=3600).contains(&reset), "reset {reset}");
    }
    for _ in 0..3 {
        let reply = client::get(&envoy.url("/users"), &[]);
        assert_eq!(reply.status, 429, "{}", envoy.log());
        assert_eq!(reply.header("x-envoy-ratelimited"), Some("true"));
        assert_eq!(reply.header("x-ratelimit-remaining"), Some("0"));
    }
    assert_eq!(users.count(), 3);
    // Refused requests counted nowhere: the one counter holds exactly the limit.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let counter = format!("{{interop}}:generic_key=users:hour:{}", now - now % 3600);
    assert_eq!(redis.integer(&["GET", &counter]).unwrap(), Some(3));
    assert_eq!(redis.integer(&["DBSIZE"]).unwrap(), Some(1));
}

#[test]
fn envoys_ratelimit_filter_admits_exactly_the_limit_of_concurrent_requests() {
    let Setup {
        users,
        envoy,
        redis: _redis,
        _service,
    } = setup(25);
    let url = envoy.url("/users");
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..6)
            .map(|_| {
                scope.spawn(|| {
                    (0..10)
                        .map(|_| client::get(&url, &[]))
                        .map(|reply| {
                            if reply.status == 429 {
                                assert_eq!(reply.header("x-envoy-ratelimited"), Some("true"));
                            }
                            reply.status
                        })
                        .collect::<Vec<u16>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| worker.join().unwrap())
            .collect()
    });
    let admitted = statuses.iter().filter(|status| **status == 200).count();
    let refused = statuses.iter().filter(|status| **status == 429).count();
    assert_eq!((admitted, refused), (25, 35), "{statuses:?}");
    assert_eq!(users.wait_for(25, Duration::from_secs(2)).len(), 25);
}

#[test]
fn a_descriptor_without_a_limit_is_let_through_and_counted_nowhere() {
    let Setup {
        users,
        envoy,
        redis,
        _service,
    } = setup(1);
    for _ in 0..3 {
        let reply = client::get(&envoy.url("/free"), &[]);
        assert_eq!(reply.status, 200, "{}", envoy.log());
        assert_eq!(reply.header("x-envoy-ratelimited"), None);
    }
    assert_eq!(users.count(), 3);
    assert_eq!(redis.integer(&["DBSIZE"]).unwrap(), Some(0));
}

#[test]
fn redis_down_answers_unavailable_and_envoy_applies_failure_mode_deny() {
    let Setup {
        users,
        envoy,
        mut redis,
        _service,
    } = setup(2);
    assert_eq!(client::get(&envoy.url("/users"), &[]).status, 200);
    redis.stop();
    // failure_mode_deny: true — the service's UNAVAILABLE becomes Envoy's 500, not a pass.
    let reply = client::get(&envoy.url("/users"), &[]);
    assert_eq!(reply.status, 500, "{}", envoy.log());
    assert_eq!(reply.header("x-envoy-ratelimited"), None);
    redis.start_again().unwrap();
    // Back, empty: the service reconnects by itself (within its 100 ms back-off).
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut reply = client::get(&envoy.url("/users"), &[]);
    while reply.status == 500 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        reply = client::get(&envoy.url("/users"), &[]);
    }
    assert_eq!(reply.status, 200);
    assert_eq!(client::get(&envoy.url("/users"), &[]).status, 200);
    assert_eq!(client::get(&envoy.url("/users"), &[]).status, 429);
    assert_eq!(users.count(), 3);
}

#[test]
fn two_envoys_and_two_service_replicas_share_one_limit_exactly() {
    let redis = RedisServer::start().unwrap();
    let users = Upstream::start("users");
    let replicas: Vec<RateLimitService> = (0..2)
        .map(|_| RateLimitService::start(&ratelimit_binary(), &redis.url()).unwrap())
        .collect();
    // Two gateway nodes, two workers each, each with its own service replica.
    let envoys: Vec<Envoy> = replicas
        .iter()
        .map(|service| {
            Envoy::builder(config(30, &users, service, None))
                .concurrency(2)
                .component_log_level("main:warning")
                .start()
                .unwrap_or_else(|e| panic!("{e:#}"))
        })
        .collect();
    let urls: Vec<String> = envoys.iter().map(|envoy| envoy.url("/users")).collect();
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..8)
            .map(|n| {
                let url = &urls[n % 2];
                scope.spawn(move || {
                    (0..10)
                        .map(|_| client::get(url, &[]).status)
                        .collect::<Vec<u16>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| worker.join().unwrap())
            .collect()
    });
    let admitted = statuses.iter().filter(|status| **status == 200).count();
    let refused = statuses.iter().filter(|status| **status == 429).count();
    assert_eq!((admitted, refused), (30, 50), "{statuses:?}");
    assert_eq!(users.wait_for(30, Duration::from_secs(2)).len(), 30);
}

/// Envoy's `initial_metadata` carries the service's shared secret: the right one is
/// counted, a wrong one is the service's `UNAUTHENTICATED`, a 500 under `failure_mode_deny`.
#[test]
fn envoys_initial_metadata_carries_the_shared_secret() {
    const SECRET: &str = "interop-0123456789abcdef";
    let redis = RedisServer::start().unwrap();
    let dir = portcullis_tests::paths::ScratchDir::new("ratelimit-secret").unwrap();
    let file = dir.path().join("secret");
    std::fs::write(&file, SECRET).unwrap();
    let file = file.to_string_lossy().into_owned();
    let service = RateLimitService::start_with(
        &ratelimit_binary(),
        &["--redis-url", &redis.url(), "--secret-file", &file],
    )
    .unwrap();
    let users = Upstream::start("users");
    let with = |secret: &str| {
        Envoy::builder(config(2, &users, &service, Some(secret)))
            .component_log_level("main:warning")
            .start()
            .unwrap_or_else(|e| panic!("{e:#}"))
    };
    let wrong = with("not-the-secret-at-all");
    assert_eq!(
        client::get(&wrong.url("/users"), &[]).status,
        500,
        "{}",
        wrong.log()
    );
    assert_eq!(redis.integer(&["DBSIZE"]).unwrap(), Some(0));
    let right = with(SECRET);
    let statuses: Vec<u16> = (0..3)
        .map(|_| client::get(&right.url("/users"), &[]).status)
        .collect();
    assert_eq!(statuses, vec![200, 200, 429], "{}", right.log());
    assert_eq!(users.count(), 2);
}
