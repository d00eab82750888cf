//! [`Gateway`]: the one-listener config most tests need.

use super::cluster::replicated_cluster;
use super::grpc_cluster;
use super::listener::{
    bootstrap, direct_response, route, route_with_header, virtual_host, Listener, ADMIN,
};
use crate::upstream::Upstream;

/// The bootstrap most tests need: an admin endpoint and one listener (named
/// [`Gateway::LISTENER`], statistics under `http.gateway.`) on kernel-chosen loopback ports,
/// named routes matched by prefix in the order added, the given HTTP filters before the
/// router, and one cluster per upstream. Every request is also logged (method, path, route
/// name, status, details) to Envoy's log.
#[derive(Clone, Debug, Default)]
pub struct Gateway {
    routes: Vec<String>,
    clusters: Vec<(String, Vec<u16>)>,
    grpc_clusters: Vec<(String, u16)>,
    filters: Vec<String>,
    use_remote_address: bool,
    access_log: Option<String>,
    strip_early: Vec<String>,
}

impl Gateway {
    /// The name of the one listener; [`crate::Envoy::url`] addresses it.
    pub const LISTENER: &'static str = "main";

    pub fn new() -> Self {
        Self::default()
    }

    /// Routes paths starting with `prefix` to `upstream` through a route called `name` (what
    /// a filter reads as `xds.route_name`), via a cluster named after the upstream.
    pub fn route(self, name: &str, prefix: &str, upstream: &Upstream) -> Self {
        self.route_to(name, prefix, upstream.name(), upstream.port())
    }

    /// Like [`route`](Self::route), to any HTTP/1.1 server on `127.0.0.1:port`.
    pub fn route_to(mut self, name: &str, prefix: &str, cluster: &str, port: u16) -> Self {
        self.routes.push(route(name, prefix, cluster));
        self.route_cluster(cluster, port)
    }

    /// The cluster a route leads to, added once whatever the number of routes to it.
    fn route_cluster(mut self, cluster: &str, port: u16) -> Self {
        if !self.clusters.iter().any(|(c, _)| c == cluster) {
            self.clusters.push((cluster.to_owned(), vec![port]));
        }
        self
    }

    /// Like [`route`](Self::route), for requests that also carry `header` with exactly the
    /// value given.
    pub fn route_with_header(
        mut self,
        name: &str,
        prefix: &str,
        header: (&str, &str),
        upstream: &Upstream,
    ) -> Self {
        self.routes
            .push(route_with_header(name, prefix, header, upstream.name()));
        self.route_cluster(upstream.name(), upstream.port())
    }

    /// A cluster speaking HTTP/1.1 to `127.0.0.1:port` that no route leads to: for a service
    /// a filter calls with `dispatch_http_call` (portcullis-admin's data plane). Called
    /// again with the same name, it adds an endpoint (replicas, round robin).
    pub fn http_cluster(mut self, name: &str, port: u16) -> Self {
        match self.clusters.iter_mut().find(|(c, _)| c == name) {
            Some((_, ports)) => ports.push(port),
            None => self.clusters.push((name.to_owned(), vec![port])),
        }
        self
    }

    /// A cluster speaking HTTP/2 to `127.0.0.1:port`, for a gRPC service a filter calls (a
    /// rate limit service): no route leads to it.
    pub fn grpc_cluster(mut self, name: &str, port: u16) -> Self {
        self.grpc_clusters.push((name.to_owned(), port));
        self
    }

    /// Answers paths starting with `prefix` from Envoy itself: no upstream is involved.
    pub fn direct_response(mut self, name: &str, prefix: &str, status: u16, body: &str) -> Self {
        self.routes
            .push(direct_response(name, prefix, status, body));
        self
    }

    /// Sets the connection manager's `use_remote_address` (Envoy's default is false): the
    /// peer becomes `source.address` and is appended to `X-Forwarded-For` before any filter
    /// runs (for a loopback peer, as in these tests, Envoy appends its own address instead).
    pub fn use_remote_address(mut self, on: bool) -> Self {
        self.use_remote_address = on;
        self
    }

    /// Removes request headers `names` before Envoy picks the route ([`Listener::strip_early`]).
    pub fn strip_early(mut self, names: &[impl AsRef<str>]) -> Self {
        self.strip_early = names.iter().map(|n| n.as_ref().to_owned()).collect();
        self
    }

    /// Logs every request as `yaml` says (an `access_log:` block at column 0) instead of the
    /// text line to Envoy's log.
    pub fn access_log(mut self, yaml: impl Into<String>) -> Self {
        self.access_log = Some(yaml.into());
        self
    }

    /// Appends an `http_filters` entry (such as [`super::wasm_filter`] renders); filters run
    /// in the order added, all before the router.
    pub fn filter(mut self, http_filter: String) -> Self {
        self.filters.push(http_filter);
        self
    }

    /// The bootstrap YAML, ready for [`crate::Envoy::builder`].
    pub fn render(&self) -> String {
        let mut listener = Listener::new(Self::LISTENER)
            .stat_prefix("gateway")
            .use_remote_address(self.use_remote_address)
            .access_log();
        listener = listener.strip_early(&self.strip_early);
        if let Some(yaml) = &self.access_log {
            listener = listener.access_log_yaml(yaml.as_str());
        }
        listener = listener.virtual_host(virtual_host("gateway", &["*"], &self.routes));
        for filter in super::merge_stages(&self.filters) {
            listener = listener.filter(filter);
        }
        let clusters: Vec<String> = self
            .clusters
            .iter()
            .map(|(name, ports)| replicated_cluster(name, ports))
            .chain(
                self.grpc_clusters
                    .iter()
                    .map(|(name, port)| grpc_cluster(name, *port)),
            )
            .collect();
        format!("{ADMIN}{}", bootstrap(&[listener], &clusters))
    }
}
