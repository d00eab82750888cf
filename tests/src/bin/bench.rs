//! `make bench`: Portcullis next to Envoy's native filters, in one run on one machine, so the
//! ratios hold on a noisy host. Every row is its own Envoy with a `direct_response` route (no
//! upstream cost); wrk loads them in alternating rounds after a warm-up; the table gives the
//! median req/s and p50/p99 latency per row, and each Portcullis row's ratio to its native
//! counterpart and to the ceiling. Then, from host-test, the wasm instructions per request,
//! the module sizes, and each Envoy's resident memory.
//!
//! `BENCH_QUICK=1`: one short round at `--concurrency 1`, a smoke check that the tool works
//! (its figures mean nothing).

use std::collections::BTreeMap;
use std::process::Command;

use host_test::{Host, Request};
use portcullis_tests::{config, paths, tokens, Envoy};
use serde_json::json;

const ISSUER: &str = "bench-issuer";
const SECRET: &[u8] = b"bench-only-hmac-secret-0123456789abcdef-0123456789abcdef-0123";
const ALGORITHMS: [&str; 4] = ["HS256", "RS256", "ES256", "EdDSA"];

/// One configuration under load.
struct Row {
    name: String,
    /// The native row this one is compared with.
    native: Option<String>,
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

fn rows() -> Vec<Row> {
    let mut rows = vec![Row {
        name: "no filter (ceiling)".into(),
        native: None,
        filters: String::new(),
        token: None,
        portcullis: Vec::new(),
    }];
    for alg in ALGORITHMS {
        let native = format!("native jwt_authn {alg}");
        rows.push(Row {
            name: native.clone(),
            native: None,
            filters: native_jwt(alg, false),
            token: Some(token(alg)),
            portcullis: Vec::new(),
        });
        rows.push(Row {
            name: format!("native jwt_authn {alg} +cache"),
            native: None,
            filters: native_jwt(alg, true),
            token: Some(token(alg)),
            portcullis: Vec::new(),
        });
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
            rows.push(Row {
                name: format!("portcullis jwt {alg}{suffix}"),
                native: Some(native.clone()),
                filters: config::portcullis_filter("jwt", Some(&config)),
                token: Some(token(alg)),
                portcullis: vec![("jwt".into(), config)],
            });
        }
    }
    // acl and rate-limiting, and the three chained, with HS256 tokens.
    let jwt_native = native_jwt("HS256", false);
    let jwt_portcullis = portcullis_jwt_config("HS256", true, false);
    let chain = |filters: &[String]| filters.join("\n");
    let mut add =
        |name: &str, native: Option<&str>, filters: String, portcullis: &[(&str, &str)]| {
            rows.push(Row {
                name: name.into(),
                native: native.map(str::to_owned),
                filters,
                token: Some(token("HS256")),
                portcullis: portcullis
                    .iter()
                    .map(|(f, c)| (f.to_string(), c.to_string()))
                    .collect(),
            });
        };
    add(
        "native local_ratelimit",
        None,
        NATIVE_RATE_LIMIT.into(),
        &[],
    );
    add(
        "portcullis rate-limiting (by ip)",
        Some("native local_ratelimit"),
        config::portcullis_filter("rate-limiting", Some(RATE_LIMIT_IP)),
        &[("rate-limiting", RATE_LIMIT_IP)],
    );
    add(
        "native jwt_authn + rbac",
        None,
        chain(&[jwt_native.clone(), NATIVE_RBAC.into()]),
        &[],
    );
    add(
        "portcullis jwt + acl",
        Some("native jwt_authn + rbac"),
        chain(&[
            config::portcullis_filter("jwt", Some(&jwt_portcullis)),
            config::portcullis_filter("acl", Some(ACL)),
        ]),
        &[("jwt", &jwt_portcullis), ("acl", ACL)],
    );
    add(
        "native chain (jwt_authn + rbac + local_ratelimit)",
        None,
        chain(&[jwt_native, NATIVE_RBAC.into(), NATIVE_RATE_LIMIT.into()]),
        &[],
    );
    add(
        "portcullis chain (jwt + acl + rate-limiting)",
        Some("native chain (jwt_authn + rbac + local_ratelimit)"),
        chain(&[
            config::portcullis_filter("jwt", Some(&jwt_portcullis)),
            config::portcullis_filter("acl", Some(ACL)),
            config::portcullis_filter("rate-limiting", Some(RATE_LIMIT)),
        ]),
        &[
            ("jwt", &jwt_portcullis),
            ("acl", ACL),
            ("rate-limiting", RATE_LIMIT),
        ],
    );
    rows
}

/// The bench bootstrap: no access log, one `direct_response` route named `bench`.
fn bootstrap(filters: &str) -> String {
    let filters = if filters.is_empty() {
        String::new()
    } else {
        format!("{filters}\n")
    };
    let filters = filters.replace('\n', "\n          ");
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
                direct_response: {{ status: 200, body: {{ inline_string: ok }} }}
          http_filters:
          {filters}- name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
"#
    )
}

/// One wrk run's figures.
#[derive(Clone, Copy, Debug, Default)]
struct Run {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    non_2xx: bool,
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
        .and_then(|v| v.split('/').nth(1).map(str::to_owned))
        .unwrap_or_else(|| "unknown".into())
}

fn main() {
    let quick = std::env::var("BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
    let (concurrencies, rounds, seconds, warmup): (&[u32], usize, u64, u64) = if quick {
        (&[1], 1, 1, 0)
    } else {
        (&[1, 2], 3, 4, 2)
    };
    let rows = rows();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "# Portcullis benchmark{}: Envoy {}, {cores} cores, wrk -t1 -c16, direct_response route, {rounds} round(s) of {seconds}s after {warmup}s warm-up",
        if quick { " (BENCH_QUICK: smoke only, figures meaningless)" } else { "" },
        envoy_version(),
    );
    let mut memory: BTreeMap<String, f64> = BTreeMap::new();
    for &concurrency in concurrencies {
        let envoys: Vec<Envoy> = rows
            .iter()
            .map(|row| {
                Envoy::builder(bootstrap(&row.filters))
                    .concurrency(concurrency)
                    .log_level("warning")
                    .component_log_level("wasm:warning")
                    .start()
                    .unwrap_or_else(|e| panic!("{}: {e:#}", row.name))
            })
            .collect();
        let mut runs: Vec<Vec<Run>> = vec![Vec::new(); rows.len()];
        if warmup > 0 {
            for (row, envoy) in rows.iter().zip(&envoys) {
                wrk(&envoy.url("/"), row.token.as_deref(), warmup);
            }
        }
        for _ in 0..rounds {
            for (i, (row, envoy)) in rows.iter().zip(&envoys).enumerate() {
                runs[i].push(wrk(&envoy.url("/"), row.token.as_deref(), seconds));
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
            })
            .collect();
        let ceiling = medians.first().map_or(0.0, |m| m.rps);
        let by_name: BTreeMap<&str, f64> = rows
            .iter()
            .zip(&medians)
            .map(|(row, m)| (row.name.as_str(), m.rps))
            .collect();
        println!("\n## --concurrency {concurrency}\n");
        println!("| row | req/s | p50 ms | p99 ms | vs native | vs ceiling |");
        println!("|---|---:|---:|---:|---:|---:|");
        for (row, m) in rows.iter().zip(&medians) {
            let vs_native = row
                .native
                .as_deref()
                .and_then(|n| by_name.get(n))
                .filter(|n| **n > 0.0)
                .map_or("".into(), |n| format!("{:.2}x", m.rps / n));
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
    }

    println!("\n## wasm instructions per request (host-test)\n");
    println!("| row | first request | repeated request |");
    println!("|---|---:|---:|");
    for row in rows.iter().filter(|r| !r.portcullis.is_empty()) {
        let host = Host::new();
        host.set_unix_time(tokens::now());
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
            println!("| {} | (failed to start) | |", row.name);
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
            "| {}{} | {} | {} |",
            row.name,
            if ok { "" } else { " (refused!)" },
            first.instructions(),
            again.instructions()
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
