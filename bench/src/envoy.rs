//! The Envoy each row runs in: its config (one listener, one route named `bench`, no access
//! log), how it is started, and what is read from it afterwards.

use std::process::Command;

use portcullis_tests::config::{
    bootstrap, cluster, direct_response, grpc_cluster, route, virtual_host, Listener,
};
use portcullis_tests::{paths, Envoy};

use crate::filters::SERVICE_CLUSTER;
use crate::rows::Row;
use crate::source;

/// Answers every request with 200 from Envoy, before the router: how a row whose filter
/// needs a routed request (Envoy's ratelimit filter does nothing on a `direct_response`
/// route: it wants a route entry and a cluster) still pays no upstream cost.
const FAULT_200: &str = r#"- name: envoy.filters.http.fault
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault
    abort:
      http_status: 200
      percentage: { numerator: 100, denominator: HUNDRED }"#;

/// The services a row's Envoy has clusters for, by port: the rate limit service (HTTP/2,
/// for the rows with a `domain`) and portcullis-admin's data plane (HTTP/1.1, for the
/// `source` rows).
#[derive(Clone, Copy, Debug, Default)]
pub struct Backends {
    pub ratelimit: Option<u16>,
    pub admin: Option<u16>,
}

/// The bench bootstrap: no access log, one route named `bench`. Its answer is a
/// `direct_response`, or for a `routed` row a route to the cluster `bench` (never
/// contacted: [`FAULT_200`] answers first; were it reached, the 503 would flag the row).
/// With a back end's port, its cluster too.
pub fn config(row: &Row, backends: Backends) -> String {
    let answer = if row.routed {
        route("bench", "/", "bench")
    } else {
        direct_response("bench", "/", 200, "ok")
    };
    let mut listener = Listener::new("main")
        .stat_prefix("bench")
        .virtual_host(virtual_host("bench", &["*"], &[answer]));
    if !row.filters.is_empty() {
        listener = listener.filter(row.filters.as_str());
    }
    let mut clusters = Vec::new();
    if row.routed {
        listener = listener.filter(FAULT_200);
        // The discard port: nothing listens there, and nothing should get that far.
        clusters.push(cluster("bench", 9));
    }
    if let Some(port) = backends.ratelimit {
        clusters.push(grpc_cluster(SERVICE_CLUSTER, port));
    }
    if let Some(port) = backends.admin {
        clusters.push(cluster(source::CLUSTER, port));
    }
    bootstrap(&[listener], &clusters)
}

/// Starts `row`'s Envoy with `concurrency` workers (and the clusters of `backends`),
/// logging only warnings; a row that does not start ends the bench.
pub fn start(row: &Row, backends: Backends, concurrency: u32) -> Envoy {
    Envoy::builder(config(row, backends))
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
