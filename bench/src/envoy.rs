//! The Envoy each row runs in: its config (one listener, one route named `bench`, no access
//! log), how it is started, and what is read from it afterwards.

use std::process::Command;

use portcullis_tests::{config, paths, Envoy};

use crate::filters::SERVICE_CLUSTER;
use crate::rows::Row;

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
pub fn config(row: &Row, service: Option<u16>) -> String {
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

/// Starts `row`'s Envoy with `concurrency` workers (and the rate limit service's cluster at
/// `service`), logging only warnings; a row that does not start ends the bench.
pub fn start(row: &Row, service: Option<u16>, concurrency: u32) -> Envoy {
    Envoy::builder(config(row, service))
        .concurrency(concurrency)
        .log_level("warning")
        .component_log_level("wasm:warning")
        .start()
        .unwrap_or_else(|e| panic!("{}: {e:#}", row.name))
}

/// Envoy's resident memory in MiB, 0 if unknown.
pub fn rss_mb(pid: u32) -> f64 {
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

/// The version of the Envoy the bench runs (`1.40.0`), `unknown` if it does not say.
pub fn version() -> String {
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
