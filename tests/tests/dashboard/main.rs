//! The Grafana dashboard (`envoy-config/grafana/portcullis.json`) and the Prometheus alerting
//! rules (`envoy-config/prometheus/portcullis-alerts.yaml`) cannot silently rot.
//!
//! - Every metric name their PromQL queries (and the dashboard's variables) is extracted
//!   ([`promql`]) and must be one a real target reported: a real Envoy with the four
//!   filters, driven through the scenario below, scraped at `/stats/prometheus`, and a real
//!   portcullis-admin and portcullis-ratelimit (on a real Redis) scraped at `/metrics`. A renamed counter fails here, naming the panel
//!   or the alert that lost it.
//! - The files' structure: the dashboard importable (its datasource an input, every panel
//!   with one and with targets, unique ids, variables used only where a multi-value
//!   variable works); the rules file what Prometheus loads (a severity, a summary and a
//!   description on every alert, a `for:`).
//! - promtool, Prometheus's own checker, parses every rule and every dashboard query and
//!   runs the alerts' unit tests (`portcullis-alerts.test.yaml`), which must cover each
//!   alert firing and staying quiet; the dashboard's per-reason and per-route panels (the
//!   reason or route is part of the counter's name) are evaluated on synthetic series.
//!
//! How Envoy shows a wasm filter's counters, as measured here (Envoy 1.40): a counter is in
//! `/stats/prometheus` from the moment the filter defines it, at 0, so every counter a
//! filter defines at configure time is there before any request. The per-reason ones
//! (`portcullis_jwt_rejected_<reason>_total`, `portcullis_token_issuer_rejected_<reason>_total`)
//! are defined at the first refusal for that reason: the scenario makes the refusals whose
//! reason the dashboard or the rules name (`source_unavailable`, `keys_unavailable`) and at
//! least one of each per-reason family.
//!
//! | module | holds |
//! |---|---|
//! | [`promql`] | the metric-name extractor and its unit tests |
//! | [`files`] | where the dashboard and the rules are, the queries they hold |
//! | [`structure`] | the files' structure |
//! | [`promtool`] | promtool's checks and the alerts' unit tests |
//! | here | the scenario, the scrapes and the names check |
//!
//! Needs `make build` (the filters, portcullis-admin, portcullis-ratelimit), redis-server and promtool (Debian's `prometheus`
//! package, or `$PORTCULLIS_PROMTOOL`).

// Test code: clippy.toml lets #[test] functions panic, and these helpers are test code too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod files;
mod promql;
mod promtool;
mod structure;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use portcullis_tests::admin_service::AdminService;
use portcullis_tests::config::portcullis_filter;
use portcullis_tests::paths::workspace_root;
use portcullis_tests::ratelimit_service::{ratelimit_binary, RateLimitService};
use portcullis_tests::redis::RedisServer;
use portcullis_tests::tokens::{self, hs256};
use portcullis_tests::{client, Envoy, Gateway, Reply, Response, Upstream};
use serde_json::{json, Value};

use promql::MetricRef;

// ---------------------------------------------------------------------------------------
// The metrics real targets report after the scenario (the rest: one module each)

/// Series Prometheus makes itself for each target it scrapes, which no target reports.
const PROMETHEUS_SERIES: &[&str] = &["up"];

/// The metric names of a Prometheus text exposition: the name of every sample line.
fn exposition_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| line.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn exposition_names_are_the_names_of_samples() {
    let text = "# HELP a_total A.\n# TYPE a_total counter\na_total{} 1\n\
                h_bucket{le=\"1\"} 0\nh_count 2\n# TYPE b_total counter\n";
    let names: Vec<String> = exposition_names(text).into_iter().collect();
    assert_eq!(
        names,
        ["a_total", "h_bucket", "h_count"],
        "a family without samples is no name"
    );
}

/// Each metric read that no scraped name answers: `metric (read by …)`.
fn unreported(read: &[(MetricRef, BTreeSet<String>)], reported: &BTreeSet<String>) -> Vec<String> {
    read.iter()
        .filter(|(metric, _)| match metric {
            MetricRef::Name(name) => {
                !reported.contains(name) && !PROMETHEUS_SERIES.contains(&name.as_str())
            }
            MetricRef::Pattern(p) => !reported.iter().any(|n| p.matches(n)),
        })
        .map(|(metric, places)| {
            let places: Vec<&str> = places.iter().map(String::as_str).collect();
            format!("{metric} (read by {})", places.join("; "))
        })
        .collect()
}

#[test]
fn a_metric_no_target_reported_is_named_with_who_reads_it() {
    let read = files::metrics_read(&[
        files::Query {
            place: "panel 1".to_owned(),
            expr: "rate(a_total[5m]) / rate(gone_total[5m]) + up".to_owned(),
            legend: None,
        },
        files::Query {
            place: "alert X".to_owned(),
            expr: r#"{__name__=~"r_.+_total"} or {__name__=~"s_.+_total"}"#.to_owned(),
            legend: None,
        },
    ]);
    let reported: BTreeSet<String> = ["a_total", "r_x_total", "s_total"]
        .map(str::to_owned)
        .into();
    assert_eq!(
        unreported(&read, &reported),
        [
            "gone_total (read by panel 1)",
            r#"{__name__=~"s_.+_total"} (read by alert X)"#
        ]
    );
}

const SECRET: &str = "dashboard-secret-of-at-least-32-bytes!";
const POLL_INTERVAL_MS: u64 = 250;

/// A policy of the demo (`envoy-config/policies/<file>`), which `make run` serves.
fn demo_policy(file: &str) -> Value {
    let path = workspace_root().join("envoy-config/policies").join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A demo consumer's HS256 token, signed with its secret from the demo's jwt policy.
fn demo_token(jwt: &Value, username: &str) -> String {
    let consumer = jwt["consumers"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["username"] == username))
        .unwrap_or_else(|| panic!("no consumer {username} in the demo's jwt policy"));
    let credential = &consumer["credentials"][0];
    hs256(
        credential["key"].as_str().unwrap(),
        credential["secret"].as_str().unwrap().as_bytes(),
    )
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// `GET path` with the token, if any.
fn get(envoy: &Envoy, path: &str, token: Option<&str>) -> Reply {
    let auth = token.map(bearer);
    let headers: Vec<(&str, &str)> = auth
        .as_deref()
        .map(|a| vec![("authorization", a)])
        .unwrap_or_default();
    client::get(&envoy.url(path), &headers)
}

fn expect(reply: &Reply, status: u16, what: &str) {
    assert_eq!(reply.status, status, "{what}: {}", reply.text());
}

/// Asks until the answer is `status` (a fetch or a lookup in flight may answer otherwise
/// for a moment); the last answer.
fn until_status(envoy: &Envoy, path: &str, token: Option<&str>, status: u16, what: &str) -> Reply {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let reply = get(envoy, path, token);
        if reply.status == status || Instant::now() >= deadline {
            expect(&reply, status, what);
            return reply;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What each target served at its metrics endpoint after the scenario.
struct Scrapes {
    envoy: String,
    admin: String,
    ratelimit: String,
}

/// The scenario the dashboard watches, through the demo's four filters and policies in one
/// Envoy (two workers) as `make run NODES=2` runs them: portcullis-admin behind
/// `consumer_source`, rate limits counted by portcullis-ratelimit in a real Redis, and two
/// remote JWKS providers (one healthy, one whose JWKS answers 500).
fn run_scenario() -> Scrapes {
    let users = Upstream::start("users");
    let payments = Upstream::start("payments");
    let login = Upstream::start("login-service");
    let keys = Upstream::start("jwks");
    let broken_keys = Upstream::start("jwks-broken");
    keys.set_response(Response::json(
        200,
        &json!({"keys": [tokens::jwk("ES256", "k1", b"")]}),
    ));
    broken_keys.set_response(Response::new(500).body("maintenance"));
    let profile = json!({"sub": "123", "username": "mobile-app", "groups": ["admins"],
                         "email": "mobile-app@example.com"});
    login.set_response(Response::json(200, &profile));

    let mut redis = RedisServer::start().unwrap_or_else(|e| panic!("{e:#}"));
    let redis_url = redis.url();
    let ratelimit = RateLimitService::start_with(
        &ratelimit_binary(),
        &["--redis-url", &redis_url, "--metrics-listen", "127.0.0.1:0"],
    )
    .unwrap_or_else(|e| panic!("{e:#}"));
    let rate_limiting = demo_policy("rate-limiting-redis.json");
    let ratelimit_cluster = rate_limiting["rate_limit_service"]["cluster"]
        .as_str()
        .unwrap()
        .to_owned();

    let admin = AdminService::sqlite().unwrap_or_else(|e| panic!("{e:#}"));
    admin.create_consumer("alice", None);
    admin.create_jwt("alice", "alice-key", SECRET);
    admin.add_group("alice", "customers");

    let mut jwt = demo_policy("jwt.json");
    jwt["consumer_source"]["poll_interval_ms"] = json!(POLL_INTERVAL_MS);
    jwt["consumer_source"]["timeout_ms"] = json!(500);
    let remote = |name: &str, cluster: &str| {
        json!({"name": name, "issuer": format!("https://{name}.example"),
               "remote_jwks": {"cluster": cluster,
                               "uri": format!("http://keys.{name}.example/jwks.json"),
                               "min_refresh_interval": 1, "timeout_ms": 1000}})
    };
    let providers = jwt["providers"].as_array_mut().unwrap();
    providers.push(remote("corp", keys.name()));
    providers.push(remote("broken", broken_keys.name()));
    let cluster = jwt["consumer_source"]["cluster"]
        .as_str()
        .unwrap()
        .to_owned();

    let gateway = Gateway::new()
        .route("users", "/users", &users)
        .route("payments", "/payments", &payments)
        .route("login", "/login", &login)
        .http_cluster(&cluster, admin.data_plane_address().port())
        .http_cluster(keys.name(), keys.port())
        .http_cluster(broken_keys.name(), broken_keys.port())
        .grpc_cluster(&ratelimit_cluster, ratelimit.port())
        .filter(portcullis_filter(
            "token-issuer",
            Some(&demo_policy("token-issuer.json").to_string()),
        ))
        .filter(portcullis_filter("jwt", Some(&jwt.to_string())))
        .filter(portcullis_filter(
            "acl",
            Some(&demo_policy("acl.json").to_string()),
        ))
        .filter(portcullis_filter(
            "rate-limiting",
            Some(&rate_limiting.to_string()),
        ));
    let envoy = Envoy::builder(gateway.render())
        .concurrency(2)
        .start()
        .unwrap_or_else(|e| panic!("{e:#}"));

    // Looked-up tokens wait for the admin's revocations to load (503 until then); a key the
    // admin does not know is then a plain 401.
    let stranger = hs256("nobody-key", SECRET.as_bytes());
    until_status(
        &envoy,
        "/users",
        Some(&stranger),
        401,
        "unknown key once loaded",
    );

    // jwt: accepted (twice per worker, so the token cache hits), and refused for reasons.
    let web = demo_token(&jwt, "web-app");
    for _ in 0..4 {
        expect(&get(&envoy, "/users", Some(&web)), 200, "web-app on /users");
    }
    expect(&get(&envoy, "/users", None), 401, "no token");
    let now = tokens::now();
    let expired = tokens::token(
        "HS256",
        "web-app",
        None,
        json!({"iat": now - 7200, "exp": now - 3600}),
        b"demo-only-web-app-secret-0123456789abcdef",
    );
    expect(&get(&envoy, "/users", Some(&expired)), 401, "expired token");
    let forged = hs256("web-app", b"not-the-web-app-secret-0123456789abcdef");
    expect(&get(&envoy, "/users", Some(&forged)), 401, "bad signature");

    // acl: payments are for admins.
    expect(
        &get(&envoy, "/payments", Some(&web)),
        403,
        "web-app on /payments",
    );

    // rate-limiting: 20 payments a minute for mobile-app (the 21st is 429, unless a minute
    // starts in between: then up to 20 more).
    let mobile = demo_token(&jwt, "mobile-app");
    let limited = (0..45).any(|_| get(&envoy, "/payments", Some(&mobile)).status == 429);
    assert!(limited, "mobile-app never got a 429 on /payments");

    // consumer_source: alice is looked up in portcullis-admin, then cached.
    let alice = hs256("alice-key", SECRET.as_bytes());
    until_status(&envoy, "/users", Some(&alice), 200, "alice, looked up");

    // token-issuer: a login becomes a token that opens /users; a login answer with an exp
    // that is not a number cannot be signed (502).
    let credentials = br#"{"username":"mobile-app","password":"mobile-demo"}"#;
    let post_login = || {
        client::try_send(
            "POST",
            &envoy.url("/login"),
            &[("content-type", "application/json")],
            Some(credentials),
        )
    };
    let logged_in = post_login().unwrap_or_else(|e| panic!("login: {e}"));
    expect(&logged_in, 200, "login");
    let issued = logged_in.json()["token"].as_str().unwrap().to_owned();
    expect(
        &get(&envoy, "/users", Some(&issued)),
        200,
        "the issued token",
    );
    // The demo's issuer passes the login answer's headers on before it has the body (no
    // allow_on_headers_stop_iteration), so this refusal reaches the client as a stream
    // reset after a 200 head: whatever the client saw, the log says the issuer refused.
    let mut bad_exp = profile.clone();
    bad_exp["exp"] = json!("soon");
    login.set_response(Response::json(200, &bad_exp));
    let _ = post_login();
    assert!(
        envoy.wait_for_log("no token: the login response's exp is not a number"),
        "the issuer did not refuse a login answer whose exp is not a number"
    );

    // Remote JWKS: corp's keys are fetched; broken's fetch fails and its tokens find no keys.
    let corp = tokens::token(
        "ES256",
        "https://corp.example",
        Some("k1"),
        json!({"sub": "svc"}),
        b"",
    );
    until_status(&envoy, "/users", Some(&corp), 200, "corp, keys fetched");
    let broken = tokens::token(
        "ES256",
        "https://broken.example",
        Some("k1"),
        json!({"sub": "svc"}),
        b"",
    );
    let reply = get(&envoy, "/users", Some(&broken));
    expect(&reply, 401, "broken, no keys");

    // portcullis-admin: a failure of its own, then its metrics, then it goes away.
    assert_eq!(admin.request("GET", "/consumers/nobody", &[]).status, 404);
    let admin_metrics = client::get(&admin.admin_url("/metrics"), &[]);
    expect(&admin_metrics, 200, "portcullis-admin /metrics");
    let mut admin = admin;
    let failed_polls = |envoy: &Envoy| {
        envoy
            .metric("portcullis_jwt_source_poll_failed_total{}")
            .unwrap_or(0.0)
    };
    let before = failed_polls(&envoy);
    admin.kill();
    let deadline = Instant::now() + Duration::from_secs(10);
    while failed_polls(&envoy) <= before {
        assert!(
            Instant::now() < deadline,
            "no poll failed after the admin was killed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Cached alice is served on, counted stale once the poll is overdue (poll interval plus
    // timeout after the last good one); a key never seen cannot be looked up (503).
    let stale = |envoy: &Envoy| {
        envoy
            .metric("portcullis_jwt_source_stale_served_total{}")
            .unwrap_or(0.0)
    };
    while stale(&envoy) == 0.0 {
        assert!(
            Instant::now() < deadline,
            "alice was never counted as served stale"
        );
        expect(
            &get(&envoy, "/users", Some(&alice)),
            200,
            "alice, served from the cache",
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let newcomer = hs256("newcomer-key", SECRET.as_bytes());
    expect(
        &get(&envoy, "/users", Some(&newcomer)),
        503,
        "a new key with the admin away",
    );

    // portcullis-ratelimit with Redis gone: it answers UNAVAILABLE and the filter counts
    // locally (fault_tolerant), so the request still passes.
    redis.stop();
    expect(
        &get(&envoy, "/users", Some(&web)),
        200,
        "web-app with Redis down",
    );
    let fallbacks = envoy
        .metric("portcullis_rate_limiting_service_fallbacks_total{}")
        .unwrap_or(0.0);
    assert!(fallbacks >= 1.0, "no fallback counted with Redis down");
    let ratelimit_metrics = client::get(&format!("{}/metrics", ratelimit.metrics_url()), &[]);
    expect(&ratelimit_metrics, 200, "portcullis-ratelimit /metrics");

    Scrapes {
        envoy: envoy.stats_prometheus(),
        admin: admin_metrics.text(),
        ratelimit: ratelimit_metrics.text(),
    }
}

#[test]
fn every_metric_the_dashboard_and_the_alerts_read_is_reported_after_the_scenario() {
    let scrapes = run_scenario();
    let envoy_names = exposition_names(&scrapes.envoy);
    let admin_names = exposition_names(&scrapes.admin);
    let ratelimit_names = exposition_names(&scrapes.ratelimit);
    let reported: BTreeSet<String> = envoy_names
        .iter()
        .chain(&admin_names)
        .chain(&ratelimit_names)
        .cloned()
        .collect();

    let queries = files::all_queries();
    let read = files::metrics_read(&queries);
    let missing = unreported(&read, &reported);
    assert!(
        missing.is_empty(),
        "{} of {} metrics the dashboard and the alerts read were reported by no target \
         (Envoy: {} names, portcullis-admin: {}, portcullis-ratelimit: {}):\n{}",
        missing.len(),
        read.len(),
        envoy_names.len(),
        admin_names.len(),
        ratelimit_names.len(),
        missing.join("\n")
    );

    // What each name-pattern panel shows, and the counters the scenario left at 0 (shown,
    // not required: some only move in an outage the scenario does not stage).
    let values = sample_values(&format!(
        "{}{}{}",
        scrapes.envoy, scrapes.admin, scrapes.ratelimit
    ));
    let mut zero = Vec::new();
    for (metric, _) in &read {
        match metric {
            MetricRef::Pattern(p) => {
                let found: Vec<String> = reported
                    .iter()
                    .filter_map(|n| p.middle(n).map(str::to_owned))
                    .collect();
                println!("{metric}: {}", found.join(", "));
            }
            MetricRef::Name(name) if values.get(name) == Some(&0.0) => zero.push(name.as_str()),
            MetricRef::Name(_) => {}
        }
    }
    println!(
        "{} metrics read, all reported (Envoy {} names, portcullis-admin {}, \
         portcullis-ratelimit {}); still 0 after the scenario: {}",
        read.len(),
        envoy_names.len(),
        admin_names.len(),
        ratelimit_names.len(),
        zero.join(", ")
    );
}

/// The value of each unlabelled sample (`name{} 3`), summed per name for labelled ones.
fn sample_values(text: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let name = series.split('{').next().unwrap_or(series);
        if let Ok(v) = value.parse::<f64>() {
            *out.entry(name.to_owned()).or_insert(0.0) += v;
        }
    }
    out
}
