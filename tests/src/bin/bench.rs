//! `make bench`: Portcullis next to Envoy's native filters, in one run on one machine, so the
//! ratios hold on a noisy host. Every row is its own Envoy with a `direct_response` route (no
//! upstream cost; the rate limiting rows answer from a fault filter, see [`FAULT_200`]); wrk
//! loads them in alternating rounds after a warm-up; the table gives the median req/s and
//! p50/p99 latency per row, and each Portcullis row's ratio to its native
//! counterpart and to the ceiling. Then, from host-test, the wasm instructions per request,
//! the module sizes, and each Envoy's resident memory.
//!
//! `BENCH_QUICK=1`: one short round at `--concurrency 1`, a smoke check that the tool works
//! (its figures mean nothing). `BENCH_ONLY=ratelimit,jwt`: only those groups of rows (`jwt`,
//! `acl`, `ratelimit`, `chain`, and `host`: what a wasm filter pays Envoy per host call), the
//! ceiling always. `BENCH_PROFILE=<part of a row name>`: see [`profile`].
//!
//! The `ratelimit` group includes the cluster-wide policy: Portcullis `policy: redis` and
//! Envoy's native `ratelimit` filter, both through the project's rate limit service
//! (`portcullis-ratelimit`, beside this binary) and a Redis the bench starts on free ports
//! with its files in a scratch directory, and stops at the end. Both fail closed (a failed
//! call is a 500, flagged in the table), and the counters in Redis are checked against the
//! requests wrk completed, so a row that skipped the service cannot pass for a fast one.

use std::collections::BTreeMap;
use std::process::Command;

use host_test::{GrpcAnswer, Host, Request};
use portcullis_core::envoy_foreign::VerifySignatureArguments;
use portcullis_tests::ratelimit_service::{ratelimit_binary, RateLimitService};
use portcullis_tests::redis::RedisServer;
use portcullis_tests::{config, paths, tokens, Envoy};
use prost::Message;
use serde_json::json;

const ISSUER: &str = "bench-issuer";
const SECRET: &[u8] = b"bench-only-hmac-secret-0123456789abcdef-0123456789abcdef-0123";
const ALGORITHMS: [&str; 4] = ["HS256", "RS256", "ES256", "EdDSA"];

/// One configuration under load.
struct Row {
    name: String,
    /// What `BENCH_ONLY` selects it by: `ceiling`, `jwt`, `acl`, `ratelimit`, `chain`.
    group: &'static str,
    /// The native row this one is compared with.
    native: Option<String>,
    /// Other rows this one is compared with, below the table.
    versus: Vec<String>,
    /// Answered by [`FAULT_200`] on a route with a cluster, not by a `direct_response`.
    routed: bool,
    /// The rate limit service domain it counts under, when it calls the service: its Envoy
    /// gets the `ratelimit` cluster, and its counters are checked in Redis.
    domain: Option<&'static str>,
    filters: String,
    token: Option<String>,
    /// The Portcullis filters and their configurations, in chain order, for host-test's
    /// instruction counts.
    portcullis: Vec<(String, String)>,
}

fn secret_for(alg: &str) -> &'static [u8] {
    if alg.starts_with("HS") {
        SECRET
    } else {
        b""
    }
}

fn token(alg: &str) -> String {
    // Valid for a day: longer than any bench. `groups` is for Envoy's rbac (Portcullis acl
    // takes the consumer's configured groups).
    let exp = tokens::now() + 86_400;
    tokens::token(
        alg,
        ISSUER,
        None,
        json!({ "exp": exp, "groups": ["admins"] }),
        secret_for(alg),
    )
}

const ACL: &str = r#"{"allow":["admins"]}"#;
const RATE_LIMIT: &str = r#"{"minute":1000000000,"limit_by":"consumer"}"#;
const RATE_LIMIT_IP: &str = r#"{"minute":1000000000,"limit_by":"ip"}"#;

/// Envoy's rbac with the acl policy: the jwt payload's `groups` must hold `admins`.
const NATIVE_RBAC: &str = r#"- name: envoy.filters.http.rbac
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC
    rules:
      action: ALLOW
      policies:
        admins:
          permissions: [{ any: true }]
          principals:
          - metadata:
              filter: envoy.filters.http.jwt_authn
              path: [{ key: jwt_payload }, { key: groups }]
              value: { list_match: { one_of: { string_match: { exact: admins } } } }"#;

/// Envoy's local_ratelimit with a bucket that never runs dry.
const NATIVE_RATE_LIMIT: &str = r#"- name: envoy.filters.http.local_ratelimit
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit
    stat_prefix: bench
    token_bucket: { max_tokens: 1000000000, tokens_per_fill: 1000000000, fill_interval: 1s }
    filter_enabled:
      runtime_key: bench_rl_enabled
      default_value: { numerator: 100, denominator: HUNDRED }
    filter_enforced:
      runtime_key: bench_rl_enforced
      default_value: { numerator: 100, denominator: HUNDRED }"#;

/// The cluster-wide limit: high enough never to refuse, within the protocol's `uint32`.
const SERVICE_LIMIT_PER_MINUTE: u32 = 100_000_000;
/// The rate limit service's cluster in every Envoy that calls it.
const SERVICE_CLUSTER: &str = "ratelimit";
/// Each service row counts under its own domain, so Redis tells their counts apart.
const PORTCULLIS_DOMAIN: &str = "bench-portcullis";
const NATIVE_DOMAIN: &str = "bench-native";

/// Portcullis `policy: redis` by IP; a failed call is a 500 (not a silent local fallback).
fn redis_rate_limit() -> String {
    json!({
        "minute": SERVICE_LIMIT_PER_MINUTE,
        "limit_by": "ip",
        "policy": "redis",
        "rate_limit_service": {
            "cluster": SERVICE_CLUSTER, "domain": PORTCULLIS_DOMAIN, "timeout": 1000
        },
        "fault_tolerant": false,
    })
    .to_string()
}

/// Envoy's native ratelimit filter against the same service, the way
/// `tests/tests/ratelimit_interop.rs` configures it: set_metadata carries the limit, the
/// descriptor is what Portcullis sends (`portcullis_policy=global`, then the client address),
/// and a failed call is a 500. The actions sit in the filter's own `rate_limits`: the bench
/// route is a `direct_response`, which has no route action to hold them.
fn native_service_rate_limit() -> String {
    format!(
        r#"- name: envoy.filters.http.set_metadata
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.filters.http.set_metadata.v3.Config
    metadata:
    - metadata_namespace: portcullis.ratelimit
      value:
        global: {{ requests_per_unit: {SERVICE_LIMIT_PER_MINUTE}, unit: MINUTE }}
- name: envoy.filters.http.ratelimit
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimit
    domain: {NATIVE_DOMAIN}
    failure_mode_deny: true
    timeout: 1s
    rate_limit_service:
      transport_api_version: V3
      grpc_service: {{ envoy_grpc: {{ cluster_name: {SERVICE_CLUSTER} }} }}
    rate_limits:
    - actions:
      - generic_key: {{ descriptor_key: portcullis_policy, descriptor_value: global }}
      - remote_address: {{}}
      limit:
        dynamic_metadata:
          metadata_key: {{ key: portcullis.ratelimit, path: [ {{ key: global }} ] }}"#
    )
}

fn portcullis_jwt_config(alg: &str, cache: bool, in_module: bool) -> String {
    let mut credential = json!({ "key": ISSUER, "algorithm": alg });
    if alg.starts_with("HS") {
        credential["secret"] = json!(String::from_utf8_lossy(SECRET));
    } else {
        credential["public_key"] = json!(tokens::public_pem(alg));
    }
    let mut config = json!({
        "consumers": [{ "username": "bench", "groups": ["admins"], "credentials": [credential] }],
    });
    if !cache {
        config["token_cache_size"] = json!(0);
    }
    if in_module {
        config["crypto"] = json!("in_module");
    }
    config.to_string()
}

/// The `host` group: what the cost fixture does per request in each row.
const HOST_COSTS: [(&str, &str); 8] = [
    ("20 header reads", r#"{"header_reads":20}"#),
    ("20 header map reads", r#"{"map_reads":20}"#),
    ("20 property reads", r#"{"property_reads":20}"#),
    ("20 header writes", r#"{"header_writes":20}"#),
    ("20 metric increments", r#"{"metric_incs":20}"#),
    (
        "20 shared data reads (key absent: no value)",
        r#"{"shared_reads":20}"#,
    ),
    ("20 property writes", r#"{"property_writes":20}"#),
    ("1000 allocations of 64 bytes", r#"{"allocs":1000}"#),
];

/// The argument of one `verify_signature` call Envoy answers `true` (the glue's probe
/// vectors: `rsa` or `ec`), in hex for the cost fixture.
fn verify_argument(family: &str) -> String {
    let vector = |name: &str| {
        std::fs::read(paths::workspace_root().join(format!("filters/glue/vectors/{name}")))
            .unwrap_or_else(|e| panic!("filters/glue/vectors/{name}: {e}"))
    };
    let message = VerifySignatureArguments {
        hash_function: "sha256".into(),
        public_key: vector(&format!("{family}.pub.der")),
        public_key_pem: String::new(),
        signature: vector(&format!("{family}.sig")),
        text: vector("text"),
    };
    message
        .encode_to_vec()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The host calls of a jwt check whose signature Envoy verifies (`rsa` or `ec`): a cache
/// hit's, and one `verify_signature`.
fn host_verify_calls(family: &str) -> String {
    let mut config: serde_json::Value =
        serde_json::from_str(JWT_HIT_HOST_CALLS).unwrap_or_default();
    config["foreign_calls"] = json!(1);
    config["foreign_function"] = json!("verify_signature");
    config["foreign_argument"] = json!(verify_argument(family));
    config.to_string()
}

/// The host calls a Portcullis jwt cache hit makes (host-test counts them): the header map,
/// the clock, Kong's four headers, the identity, two counters — and nothing else.
const JWT_HIT_HOST_CALLS: &str =
    r#"{"map_reads":1,"clock_reads":1,"header_writes":4,"property_writes":1,"metric_incs":2}"#;

fn cost_filter(config: &str) -> String {
    config::wasm_filter(
        "cost",
        "cost",
        "cost",
        &paths::fixture("cost"),
        Some(config),
    )
}

fn native_jwt(alg: &str, cache: bool) -> String {
    let jwks = json!({ "keys": [tokens::jwk(alg, "bench", secret_for(alg))] }).to_string();
    let cache = if cache {
        "\n        jwt_cache_config: { jwt_cache_size: 1000 }"
    } else {
        ""
    };
    format!(
        r#"- name: envoy.filters.http.jwt_authn
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication
    providers:
      bench:
        issuer: {ISSUER}
        forward: true
        payload_in_metadata: jwt_payload
        local_jwks: {{ inline_string: {jwks} }}{cache}
    rules:
    - match: {{ prefix: / }}
      requires: {{ provider_name: bench }}"#,
        jwks = config::quote(&jwks),
    )
}

impl Row {
    fn new(name: &str, group: &'static str, filters: String, token: Option<String>) -> Row {
        Row {
            name: name.into(),
            group,
            native: None,
            versus: Vec::new(),
            domain: None,
            routed: false,
            filters,
            token,
            portcullis: Vec::new(),
        }
    }

    fn native(mut self, native: &str) -> Row {
        self.native = Some(native.into());
        self
    }

    fn versus(mut self, other: &str) -> Row {
        self.versus.push(other.into());
        self
    }

    fn routed(mut self) -> Row {
        self.routed = true;
        self
    }

    fn domain(mut self, domain: &'static str) -> Row {
        self.domain = Some(domain);
        self
    }

    fn portcullis(mut self, filters: &[(&str, &str)]) -> Row {
        self.portcullis = filters
            .iter()
            .map(|(f, c)| (f.to_string(), c.to_string()))
            .collect();
        self
    }
}

fn rows() -> Vec<Row> {
    let mut rows = vec![Row::new(
        "no filter (ceiling)",
        "ceiling",
        String::new(),
        None,
    )];
    for alg in ALGORITHMS {
        let native = format!("native jwt_authn {alg}");
        rows.push(Row::new(
            &native,
            "jwt",
            native_jwt(alg, false),
            Some(token(alg)),
        ));
        rows.push(Row::new(
            &format!("{native} +cache"),
            "jwt",
            native_jwt(alg, true),
            Some(token(alg)),
        ));
        let variants: &[(&str, bool, bool)] = if alg == "HS256" || alg == "EdDSA" {
            &[("", false, false), (" +cache", true, false)]
        } else {
            &[
                (" host", false, false),
                (" in-module", false, true),
                (" host +cache", true, false),
            ]
        };
        for (suffix, cache, in_module) in variants {
            let config = portcullis_jwt_config(alg, *cache, *in_module);
            rows.push(
                Row::new(
                    &format!("portcullis jwt {alg}{suffix}"),
                    "jwt",
                    config::portcullis_filter("jwt", Some(&config)),
                    Some(token(alg)),
                )
                .native(&native)
                .portcullis(&[("jwt", &config)]),
            );
        }
    }
    // What Envoy charges a wasm filter: the cost fixture doing nothing, then one kind of
    // host call (or allocation) a number of times per request.
    let empty = "wasm: empty filter";
    // Each sends the token of the native row it is set against (Envoy's codec and the
    // header map read price the token's bytes: an RS256 token is ~530, an HS256 one ~200).
    let cost_row = |what: &str, config: &str, alg: &str| {
        Row::new(
            &format!("wasm: {what}"),
            "host",
            cost_filter(config),
            Some(token(alg)),
        )
    };
    rows.push(cost_row("empty filter", "{}", "HS256"));
    for (what, config) in HOST_COSTS {
        rows.push(cost_row(what, config, "HS256").versus(empty));
    }
    // Floors: the host calls any jwt filter that hands on Kong's headers and the identity
    // makes, with no logic, next to the native filter it is measured against.
    rows.push(
        cost_row(
            "the host calls of a jwt cache hit",
            JWT_HIT_HOST_CALLS,
            "HS256",
        )
        .versus(empty)
        .versus("native jwt_authn HS256")
        .versus("native jwt_authn HS256 +cache"),
    );
    for (family, alg) in [("rsa", "RS256"), ("ec", "ES256")] {
        rows.push(
            cost_row(
                &format!("the host calls of a jwt {alg} check on the host"),
                &host_verify_calls(family),
                alg,
            )
            .versus(empty)
            .versus(&format!("native jwt_authn {alg}")),
        );
    }
    // rate-limiting, acl, and the three chained, with HS256 tokens.
    let jwt_native = native_jwt("HS256", false);
    let jwt_portcullis = portcullis_jwt_config("HS256", true, false);
    let chain = |filters: &[String]| filters.join("\n");
    let hs256 = || Some(token("HS256"));
    let local_rl = "portcullis rate-limiting (by ip)";
    let native_rls = "native ratelimit + service";
    // The rate limiting rows are routed (see FAULT_200): Envoy's ratelimit filter needs it,
    // and all of them are, so their ratios compare like with like.
    rows.extend([
        Row::new(
            "no filter, routed (fault 200)",
            "ratelimit",
            String::new(),
            None,
        )
        .routed(),
        Row::new(
            "native local_ratelimit",
            "ratelimit",
            NATIVE_RATE_LIMIT.into(),
            hs256(),
        )
        .routed(),
        // A floor: a wasm filter that does nothing, where local_ratelimit is measured.
        Row::new(
            "wasm: empty filter, routed",
            "ratelimit",
            cost_filter("{}"),
            hs256(),
        )
        .routed()
        .versus("native local_ratelimit"),
        Row::new(
            local_rl,
            "ratelimit",
            config::portcullis_filter("rate-limiting", Some(RATE_LIMIT_IP)),
            hs256(),
        )
        .routed()
        .native("native local_ratelimit")
        .portcullis(&[("rate-limiting", RATE_LIMIT_IP)]),
        Row::new(
            native_rls,
            "ratelimit",
            native_service_rate_limit(),
            hs256(),
        )
        .routed()
        .domain(NATIVE_DOMAIN),
        Row::new(
            "portcullis rate-limiting (by ip, policy redis)",
            "ratelimit",
            config::portcullis_filter("rate-limiting", Some(&redis_rate_limit())),
            hs256(),
        )
        .routed()
        .native(native_rls)
        .versus(local_rl)
        .domain(PORTCULLIS_DOMAIN)
        .portcullis(&[("rate-limiting", &redis_rate_limit())]),
        Row::new(
            "native jwt_authn + rbac",
            "acl",
            chain(&[jwt_native.clone(), NATIVE_RBAC.into()]),
            hs256(),
        ),
        Row::new(
            "portcullis jwt + acl",
            "acl",
            chain(&[
                config::portcullis_filter("jwt", Some(&jwt_portcullis)),
                config::portcullis_filter("acl", Some(ACL)),
            ]),
            hs256(),
        )
        .native("native jwt_authn + rbac")
        .portcullis(&[("jwt", &jwt_portcullis), ("acl", ACL)]),
        Row::new(
            "native chain (jwt_authn + rbac + local_ratelimit)",
            "chain",
            chain(&[jwt_native, NATIVE_RBAC.into(), NATIVE_RATE_LIMIT.into()]),
            hs256(),
        ),
        Row::new(
            "portcullis chain (jwt + acl + rate-limiting)",
            "chain",
            chain(&[
                config::portcullis_filter("jwt", Some(&jwt_portcullis)),
                config::portcullis_filter("acl", Some(ACL)),
                config::portcullis_filter("rate-limiting", Some(RATE_LIMIT)),
            ]),
            hs256(),
        )
        .native("native chain (jwt_authn + rbac + local_ratelimit)")
        .portcullis(&[
            ("jwt", &jwt_portcullis),
            ("acl", ACL),
            ("rate-limiting", RATE_LIMIT),
        ]),
    ]);
    rows
}

/// Answers every request with 200 from Envoy, before the router: how a row whose filter
/// needs a routed request (Envoy's ratelimit filter does nothing on a `direct_response`
/// route: it wants a route entry and a cluster) still pays no upstream cost.
const FAULT_200: &str = r#"- name: envoy.filters.http.fault
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault
    abort:
      http_status: 200
      percentage: { numerator: 100, denominator: HUNDRED }"#;

/// The bench bootstrap: no access log, one route named `bench`. Its answer is a
/// `direct_response`, or for a `routed` row a route to the cluster `bench` (never
/// contacted: [`FAULT_200`] answers first; were it reached, the 503 would flag the row).
/// With the rate limit service's port, its HTTP/2 cluster too.
fn bootstrap(row: &Row, service: Option<u16>) -> String {
    let mut filters = row.filters.clone();
    if row.routed {
        if !filters.is_empty() {
            filters.push('\n');
        }
        filters.push_str(FAULT_200);
    }
    if !filters.is_empty() {
        filters.push('\n');
    }
    let filters = filters.replace('\n', "\n          ");
    let answer = if row.routed {
        "route: { cluster: bench }"
    } else {
        "direct_response: { status: 200, body: { inline_string: ok } }"
    };
    let mut blocks = Vec::new();
    if row.routed {
        // The discard port: nothing listens there, and nothing should get that far.
        blocks.push(config::cluster("bench", 9));
    }
    if let Some(port) = service {
        blocks.push(config::grpc_cluster(SERVICE_CLUSTER, port));
    }
    // Each block at the depth of `clusters:`'s items.
    let mut clusters: String = blocks
        .iter()
        .flat_map(|block| block.lines())
        .map(|line| format!("  {line}\n"))
        .collect();
    if !clusters.is_empty() {
        clusters.insert_str(0, "  clusters:\n");
    }
    format!(
        r#"admin:
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: 0 }} }}
static_resources:
  listeners:
  - name: main
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: 0 }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: bench
          route_config:
            virtual_hosts:
            - name: bench
              domains: ["*"]
              routes:
              - name: bench
                match: {{ prefix: / }}
                {answer}
          http_filters:
          {filters}- name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
{clusters}"#
    )
}

/// One wrk run's figures.
#[derive(Clone, Copy, Debug, Default)]
struct Run {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    non_2xx: bool,
    /// Requests wrk completed.
    requests: u64,
}

fn wrk(url: &str, token: Option<&str>, seconds: u64) -> Run {
    let mut cmd = Command::new("wrk");
    cmd.args(["-t1", "-c16", "--latency", &format!("-d{seconds}s")]);
    let header;
    if let Some(token) = token {
        header = format!("authorization: Bearer {token}");
        cmd.args(["-H", &header]);
    }
    let output = match cmd.arg(url).output() {
        Ok(o) => String::from_utf8_lossy(&o.stdout).into_owned(),
        Err(e) => panic!("running wrk (make setup installs it): {e}"),
    };
    let mut run = Run::default();
    for line in output.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["Requests/sec:", n] => run.rps = n.parse().unwrap_or(0.0),
            ["50%", t] => run.p50_ms = millis(t),
            ["99%", t] => run.p99_ms = millis(t),
            ["Non-2xx", ..] => run.non_2xx = true,
            [n, "requests", "in", ..] => run.requests = n.parse().unwrap_or(0),
            _ => {}
        }
    }
    run
}

fn millis(text: &str) -> f64 {
    let split = text
        .find(|c: char| c.is_ascii_alphabetic())
        .unwrap_or(text.len());
    let (value, unit) = text.split_at(split);
    let value: f64 = value.parse().unwrap_or(0.0);
    match unit {
        "us" => value / 1000.0,
        "s" => value * 1000.0,
        _ => value,
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

fn rss_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

fn envoy_version() -> String {
    Command::new(paths::envoy_binary())
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .ok()
        // `<path>  version: <sha>/<version>/Clean/RELEASE/…`
        .and_then(|v| {
            v.split("version: ")
                .nth(1)?
                .split('/')
                .nth(1)
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "unknown".into())
}

/// `BENCH_PROFILE=<part of a row name>`: each matching row (no service rows) alone under
/// wrk at `--concurrency 1`, sampled by `perf` for 5 s after a 2 s warm-up; prints where
/// Envoy's cycles went by object — `[JIT]`/anonymous memory is V8's compiled wasm (and its
/// stubs), `envoy` the host (host calls included), the kernel the network — and the top
/// symbols, so a change can be judged by what it moves, not by req/s alone.
/// `BENCH_PROFILE_KEEP=1` keeps each row's `perf` data and prints its path, for comparing
/// two rows function by function.
fn profile(pattern: &str) {
    for row in rows()
        .into_iter()
        .filter(|r| r.name.contains(pattern) && r.domain.is_none())
    {
        let envoy = Envoy::builder(bootstrap(&row, None))
            .concurrency(1)
            .log_level("warning")
            .component_log_level("wasm:warning")
            .start()
            .unwrap_or_else(|e| panic!("{}: {e:#}", row.name));
        let url = envoy.url("/");
        wrk(&url, row.token.as_deref(), 2);
        let data = std::env::temp_dir().join(format!("portcullis-perf-{}.data", envoy.pid()));
        let perf = Command::new("perf")
            .args([
                "record",
                "-q",
                "-F",
                "4999",
                "-p",
                &envoy.pid().to_string(),
                "-o",
            ])
            .arg(&data)
            .args(["--", "sleep", "5"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
        let run = wrk(&url, row.token.as_deref(), 5);
        let Ok(mut perf) = perf else {
            eprintln!("perf is not installed");
            return;
        };
        let _ = perf.wait();
        // Samples at 4999 Hz of CPU time: samples / 4999 / requests is CPU time per request.
        println!(
            "\n## {}: {:.0} req/s under perf; CPU µs per request = samples / {:.1}\n",
            row.name,
            run.rps,
            4999.0 * run.requests.max(1) as f64 / 1e6
        );
        for sort in ["dso", "dso,sym"] {
            let report = Command::new("perf")
                .args([
                    "report",
                    "--stdio",
                    "-q",
                    "-n",
                    "--percent-limit",
                    "1",
                    "--sort",
                    sort,
                    "-i",
                ])
                .arg(&data)
                .output();
            if let Ok(report) = report {
                println!("{}", String::from_utf8_lossy(&report.stdout).trim_end());
            }
        }
        if std::env::var_os("BENCH_PROFILE_KEEP").is_none() {
            let _ = std::fs::remove_file(&data);
        } else {
            println!("kept {}", data.display());
        }
    }
}

/// The groups `BENCH_ONLY` may name.
const GROUPS: [&str; 5] = ["jwt", "acl", "ratelimit", "chain", "host"];

/// The rows `BENCH_ONLY` (comma-separated groups) selects, the ceiling always; all rows when
/// it is unset or empty.
fn selected(rows: Vec<Row>, only: &str) -> Result<Vec<Row>, String> {
    let groups: Vec<&str> = only
        .split(',')
        .map(str::trim)
        .filter(|g| !g.is_empty())
        .collect();
    if let Some(unknown) = groups.iter().find(|g| !GROUPS.contains(g)) {
        return Err(format!(
            "BENCH_ONLY: unknown group {unknown:?}; the groups are {}",
            GROUPS.join(", ")
        ));
    }
    Ok(rows
        .into_iter()
        .filter(|row| groups.is_empty() || row.group == "ceiling" || groups.contains(&row.group))
        .collect())
}

/// Redis and the project's rate limit service, on free ports, files in scratch
/// directories; both stopped when this is dropped.
struct Service {
    redis: RedisServer,
    service: RateLimitService,
}

impl Service {
    fn start() -> anyhow::Result<Service> {
        let redis = RedisServer::start()?;
        let service = RateLimitService::start(&ratelimit_binary(), &redis.url())?;
        Ok(Service { redis, service })
    }

    /// Deletes every counter under `domain` (`{<domain>}:…` keys). The limit is never
    /// reached, so this changes no answer; it lets [`counted`](Self::counted) read one
    /// wrk run, shorter than the 5 s a counter outlives its window, with none expiring.
    fn reset(&self, domain: &str) {
        const DELETE: &str = "for _, k in ipairs(redis.call('KEYS', ARGV[1])) do \
                              redis.call('DEL', k) end return 0";
        let _ = self
            .redis
            .integer(&["EVAL", DELETE, "0", &format!("{{{domain}}}:*")]);
    }

    /// The sum of every counter under `domain`, -1 if Redis fails.
    fn counted(&self, domain: &str) -> i64 {
        const SUM: &str = "local n = 0 for _, k in ipairs(redis.call('KEYS', ARGV[1])) do \
                           n = n + tonumber(redis.call('GET', k)) end return n";
        self.redis
            .integer(&["EVAL", SUM, "0", &format!("{{{domain}}}:*")])
            .ok()
            .flatten()
            .unwrap_or(-1)
    }

    /// One wrk run against `row`, and how many requests the service counted for it
    /// meanwhile (0 for a row that does not call it).
    fn load(service: Option<&Service>, row: &Row, url: &str, seconds: u64) -> (Run, i64) {
        let service = row.domain.zip(service);
        if let Some((domain, service)) = service {
            service.reset(domain);
        }
        let run = wrk(url, row.token.as_deref(), seconds);
        let counted = service.map_or(0, |(domain, service)| service.counted(domain));
        (run, counted)
    }
}

/// The service's answer to a one-descriptor request that is under its limit, encoded by
/// hand (`RateLimitResponse{overall_code: OK, statuses: [{OK, limit_remaining, 60 s}]}`):
/// host-test's stand-in for the service when counting instructions.
/// Appends `n` as a protobuf varint.
fn varint(buf: &mut Vec<u8>, mut n: usize) {
    while n >= 0x80 {
        buf.push((n & 0x7f) as u8 | 0x80);
        n >>= 7;
    }
    buf.push(n as u8);
}

fn ok_answer(limit_remaining: u32) -> Vec<u8> {
    let mut status = vec![0x08, 0x01, 0x18];
    varint(&mut status, limit_remaining as usize);
    status.extend([0x22, 0x02, 0x08, 60]);
    let mut answer = vec![0x08, 0x01, 0x12, status.len() as u8];
    answer.extend(status);
    answer
}

fn main() {
    let quick = std::env::var("BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
    let (concurrencies, rounds, seconds, warmup): (&[u32], usize, u64, u64) = if quick {
        (&[1], 1, 1, 0)
    } else {
        (&[1, 2], 3, 4, 2)
    };
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    if let Ok(pattern) = std::env::var("BENCH_PROFILE") {
        profile(&pattern);
        return;
    }
    // `BENCH_ROWS=<part of a name>|<part of another>`: only the rows whose names hold one of
    // them (and the ceiling), for a quick look at a change; `BENCH_CONCURRENCY=1`: only that.
    let names = std::env::var("BENCH_ROWS").unwrap_or_default();
    let concurrencies: Vec<u32> = match std::env::var("BENCH_CONCURRENCY").ok() {
        Some(c) => c.split(',').filter_map(|c| c.trim().parse().ok()).collect(),
        None => concurrencies.to_vec(),
    };
    let rows = match selected(rows(), &only) {
        Ok(rows) if !names.is_empty() => rows
            .into_iter()
            .filter(|r| r.group == "ceiling" || names.split('|').any(|n| r.name.contains(n)))
            .collect(),
        Ok(rows) => rows,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let service = if rows.iter().any(|row| row.domain.is_some()) {
        match Service::start() {
            Ok(service) => Some(service),
            Err(e) => {
                eprintln!("starting Redis and the rate limit service: {e:#}");
                std::process::exit(1);
            }
        }
    } else {
        None
    };
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "# Portcullis benchmark{}: Envoy {}, {cores} cores, wrk -t1 -c16, direct_response route (rate limiting rows: routed, fault 200), {rounds} round(s) of {seconds}s after {warmup}s warm-up{}",
        if quick { " (BENCH_QUICK: smoke only, figures meaningless)" } else { "" },
        envoy_version(),
        if only.is_empty() { String::new() } else { format!(", BENCH_ONLY={only}") },
    );
    let mut memory: BTreeMap<String, f64> = BTreeMap::new();
    for &concurrency in &concurrencies {
        let envoys: Vec<Envoy> = rows
            .iter()
            .map(|row| {
                let port = row.domain.and(service.as_ref()).map(|s| s.service.port());
                Envoy::builder(bootstrap(row, port))
                    .concurrency(concurrency)
                    .log_level("warning")
                    .component_log_level("wasm:warning")
                    .start()
                    .unwrap_or_else(|e| panic!("{}: {e:#}", row.name))
            })
            .collect();
        let mut runs: Vec<Vec<Run>> = vec![Vec::new(); rows.len()];
        // Requests wrk completed, and what the service counted meanwhile, warm-up included.
        let mut served: Vec<(u64, i64)> = vec![(0, 0); rows.len()];
        for round in 0..=rounds {
            if round == 0 && warmup == 0 {
                continue;
            }
            let seconds = if round == 0 { warmup } else { seconds };
            for (i, (row, envoy)) in rows.iter().zip(&envoys).enumerate() {
                let (run, counted) = Service::load(service.as_ref(), row, &envoy.url("/"), seconds);
                served[i].0 += run.requests;
                served[i].1 += counted;
                if round > 0 {
                    runs[i].push(run);
                }
            }
        }
        for (row, envoy) in rows.iter().zip(&envoys) {
            memory.insert(
                format!("{} (c{concurrency})", row.name),
                rss_mb(envoy.pid()),
            );
        }
        let medians: Vec<Run> = runs
            .iter()
            .map(|r| Run {
                rps: median(r.iter().map(|x| x.rps).collect()),
                p50_ms: median(r.iter().map(|x| x.p50_ms).collect()),
                p99_ms: median(r.iter().map(|x| x.p99_ms).collect()),
                non_2xx: r.iter().any(|x| x.non_2xx),
                requests: r.iter().map(|x| x.requests).sum(),
            })
            .collect();
        let ceiling = medians.first().map_or(0.0, |m| m.rps);
        let by_name: BTreeMap<&str, &Run> = rows
            .iter()
            .zip(&medians)
            .map(|(row, m)| (row.name.as_str(), m))
            .collect();
        println!("\n## --concurrency {concurrency}\n");
        println!("| row | req/s | p50 ms | p99 ms | vs native | vs ceiling |");
        println!("|---|---:|---:|---:|---:|---:|");
        for (row, m) in rows.iter().zip(&medians) {
            let vs_native = row
                .native
                .as_deref()
                .and_then(|n| by_name.get(n))
                .filter(|n| n.rps > 0.0)
                .map_or("".into(), |n| format!("{:.2}x", m.rps / n.rps));
            let flag = if m.non_2xx { " (non-2xx answers!)" } else { "" };
            println!(
                "| {}{flag} | {:.0} | {:.2} | {:.2} | {vs_native} | {:.2}x |",
                row.name,
                m.rps,
                m.p50_ms,
                m.p99_ms,
                if ceiling > 0.0 { m.rps / ceiling } else { 0.0 },
            );
        }
        let mut notes = Vec::new();
        for (row, m) in rows.iter().zip(&medians) {
            for (other_name, o) in row
                .versus
                .iter()
                .filter_map(|n| by_name.get_key_value(n.as_str()))
            {
                if o.rps > 0.0 && m.rps > 0.0 {
                    // The host group prices a call: the time per request it adds, per worker.
                    let added = if row.group == "host" {
                        format!(
                            ", {:+.2} µs per request",
                            1e6 * f64::from(concurrency) * (1.0 / m.rps - 1.0 / o.rps)
                        )
                    } else {
                        String::new()
                    };
                    notes.push(format!(
                        "- {} vs {other_name}: {:.2}x req/s, p99 {:.2} ms vs {:.2} ms{added}",
                        row.name,
                        m.rps / o.rps,
                        m.p99_ms,
                        o.p99_ms
                    ));
                }
            }
        }
        for (i, row) in rows.iter().enumerate() {
            if row.domain.is_some() {
                let (completed, counted) = served[i];
                // A request in flight when wrk stops is counted and not completed: at most
                // one per connection.
                let missing = counted < completed as i64;
                notes.push(format!(
                    "- {}: the service counted {counted} requests in Redis, wrk completed \
                     {completed}{}",
                    row.name,
                    if missing { " (calls missing!)" } else { "" }
                ));
            }
        }
        if !notes.is_empty() {
            println!("\n{}", notes.join("\n"));
        }
    }
    drop(service);

    println!("\n## wasm instructions per request (host-test)\n");
    println!("| row | first request | repeated request | host calls (values returned), repeated |");
    println!("|---|---:|---:|---:|");
    for row in rows.iter().filter(|r| !r.portcullis.is_empty()) {
        let host = Host::new();
        host.set_unix_time(tokens::now());
        if row.domain.is_some() {
            host.grpc_service(SERVICE_CLUSTER, |_| {
                GrpcAnswer::ok(ok_answer(SERVICE_LIMIT_PER_MINUTE - 1))
            });
        }
        let plugins: Result<Vec<_>, _> = row
            .portcullis
            .iter()
            .map(|(filter, config)| {
                host.plugin(paths::wasm(filter))
                    .name(filter)
                    .config(config.clone())
                    .start()
            })
            .collect();
        let Ok(mut plugins) = plugins else {
            println!("| {} | (failed to start) | | |", row.name);
            continue;
        };
        let request = || {
            let mut r = Request::get("/").route("bench");
            if let Some(token) = &row.token {
                r = r.header("authorization", &format!("Bearer {token}"));
            }
            r
        };
        let mut chain: Vec<&mut host_test::Plugin> = plugins.iter_mut().collect();
        let first = host_test::send(&mut chain, request());
        let again = host_test::send(&mut chain, request());
        let ok = first.reached_upstream() && again.reached_upstream();
        println!(
            "| {}{} | {} | {} | {} ({}) |",
            row.name,
            if ok { "" } else { " (refused!)" },
            first.instructions(),
            again.instructions(),
            again.host_calls(),
            again.reentries()
        );
    }

    println!("\n## module sizes\n");
    for filter in ["jwt", "acl", "rate-limiting", "token-issuer"] {
        let size = std::fs::metadata(paths::wasm(filter)).map_or(0, |m| m.len());
        println!(
            "- portcullis-{filter}.wasm: {size} bytes ({:.0} KiB)",
            size as f64 / 1024.0
        );
    }

    println!("\n## Envoy resident memory (MiB, after the rounds)\n");
    for (name, mb) in &memory {
        println!("- {name}: {mb:.1}");
    }
}
