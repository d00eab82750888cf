//! Envoy configuration for the tests: the wasm filter entry every test uses, and [`Gateway`],
//! the one-listener bootstrap most tests need. `{{NAME}}` templates are filled by [`fill`],
//! shared with the demo's config (`portcullis-template`).

use std::collections::BTreeMap;
use std::path::Path;

pub use portcullis_template::{fill, quote};

use crate::upstream::Upstream;

/// One `http_filters` entry running a wasm filter in V8, failing closed. `plugin_config_json`
/// becomes the `StringValue` handed to `on_configure`; `None` leaves the configuration out,
/// so the filter sees none at all.
pub fn wasm_filter(
    name: &str,
    vm_id: &str,
    root_id: &str,
    wasm_path: &Path,
    plugin_config_json: Option<&str>,
) -> String {
    let configuration = match plugin_config_json {
        Some(json) => format!(
            "\n      configuration:\
             \n        \"@type\": type.googleapis.com/google.protobuf.StringValue\
             \n        value: {}",
            quote(json)
        ),
        None => String::new(),
    };
    format!(
        "- name: envoy.filters.http.wasm
  typed_config:
    \"@type\": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
    config:
      name: {name}
      root_id: {root_id}
      vm_config:
        vm_id: {vm_id}
        runtime: envoy.wasm.runtime.v8
        code:
          local:
            filename: {path}{configuration}
      fail_open: false",
        name = quote(name),
        root_id = quote(root_id),
        vm_id = quote(vm_id),
        path = quote(&wasm_path.to_string_lossy()),
    )
}

/// A Portcullis filter from `dist/` as [`wasm_filter`] renders it, named after the filter
/// (`jwt`, `rate-limiting`, …) for plugin, VM and root id alike.
pub fn portcullis_filter(filter: &str, plugin_config_json: Option<&str>) -> String {
    let path = crate::paths::wasm(filter);
    wasm_filter(filter, filter, filter, &path, plugin_config_json)
}

/// The bootstrap most tests need: an admin endpoint and one listener (named
/// [`Gateway::LISTENER`]) on kernel-chosen loopback ports, named routes matched by prefix in
/// the order added, the given HTTP filters before the router, and one cluster per upstream.
/// Every request is also logged (method, path, route name, status, details) to Envoy's log.
#[derive(Clone, Debug, Default)]
pub struct Gateway {
    routes: Vec<String>,
    clusters: Vec<(String, u16)>,
    grpc_clusters: Vec<(String, u16)>,
    filters: Vec<String>,
    use_remote_address: bool,
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
        self.routes.push(format!(
            "- name: {}\n  match: {{ prefix: {} }}\n  route: {{ cluster: {} }}",
            quote(name),
            quote(prefix),
            quote(cluster)
        ));
        if !self.clusters.iter().any(|(c, _)| c == cluster) {
            self.clusters.push((cluster.to_owned(), port));
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
        self.routes.push(format!(
            "- name: {}\n  match: {{ prefix: {} }}\n  direct_response:\
             \n    status: {status}\n    body: {{ inline_string: {} }}",
            quote(name),
            quote(prefix),
            quote(body)
        ));
        self
    }

    /// Sets the connection manager's `use_remote_address` (Envoy's default is false): the
    /// peer becomes `source.address` and is appended to `X-Forwarded-For` before any filter
    /// runs (for a loopback peer, as in these tests, Envoy appends its own address instead).
    pub fn use_remote_address(mut self, on: bool) -> Self {
        self.use_remote_address = on;
        self
    }

    /// Appends an `http_filters` entry (such as [`wasm_filter`] renders); filters run in
    /// the order added, all before the router.
    pub fn filter(mut self, http_filter: String) -> Self {
        self.filters.push(http_filter);
        self
    }

    /// The bootstrap YAML, ready for [`crate::Envoy::builder`].
    pub fn render(&self) -> String {
        let clusters: Vec<String> = self
            .clusters
            .iter()
            .map(|(name, port)| cluster(name, *port))
            .chain(
                self.grpc_clusters
                    .iter()
                    .map(|(name, port)| grpc_cluster(name, *port)),
            )
            .collect();
        let vars = BTreeMap::from([
            ("ROUTES".to_owned(), block(&self.routes)),
            ("FILTERS".to_owned(), self.filters.join("\n")),
            ("CLUSTERS".to_owned(), block(&clusters)),
            (
                "USE_REMOTE_ADDRESS".to_owned(),
                self.use_remote_address.to_string(),
            ),
        ]);
        // The template's only placeholders are the four above.
        fill(GATEWAY, &vars).unwrap_or_else(|e| unreachable!("gateway template: {e}"))
    }
}

/// A YAML sequence of blocks, or `[]` when there is none (an empty key would be null).
fn block(items: &[String]) -> String {
    if items.is_empty() {
        "[]".to_owned()
    } else {
        items.join("\n")
    }
}

/// A static cluster of one HTTP/1.1 endpoint on `127.0.0.1:port`, as a YAML block for
/// [`fill`] (its first line at the placeholder, the rest at column 0).
pub fn cluster(name: &str, port: u16) -> String {
    static_cluster(name, port, "2s", "")
}

/// Like [`cluster`], speaking HTTP/2: what a gRPC service (a rate limit service) needs.
pub fn grpc_cluster(name: &str, port: u16) -> String {
    static_cluster(
        name,
        port,
        "1s",
        "
typed_extension_protocol_options:
  envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
    \"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
    explicit_http_config: { http2_protocol_options: {} }",
    )
}

/// `options`: YAML lines after `connect_timeout`, each starting with a newline, at the
/// cluster's own depth.
fn static_cluster(name: &str, port: u16, connect_timeout: &str, options: &str) -> String {
    let options = options.replace('\n', "\n  ");
    format!(
        "- name: {name}
  type: STATIC
  connect_timeout: {connect_timeout}{options}
  load_assignment:
    cluster_name: {name}
    endpoints:
    - lb_endpoints:
      - endpoint:
          address:
            socket_address: {{ address: 127.0.0.1, port_value: {port} }}",
        name = quote(name)
    )
}

const GATEWAY: &str = r#"admin:
  address:
    socket_address: { address: 127.0.0.1, port_value: 0 }
static_resources:
  listeners:
  - name: main
    address:
      socket_address: { address: 127.0.0.1, port_value: 0 }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: gateway
          use_remote_address: {{USE_REMOTE_ADDRESS}}
          access_log:
          - name: envoy.access_loggers.stdout
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog
              log_format:
                text_format_source:
                  inline_string: "[access] %REQ(:METHOD)% %REQ(:PATH)% route=%ROUTE_NAME% status=%RESPONSE_CODE% details=%RESPONSE_CODE_DETAILS% upstream=%UPSTREAM_CLUSTER%\n"
          route_config:
            name: gateway
            virtual_hosts:
            - name: gateway
              domains: ["*"]
              routes:
              {{ROUTES}}
          http_filters:
          {{FILTERS}}
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  {{CLUSTERS}}
"#;
