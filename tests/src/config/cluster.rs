//! Static clusters of one endpoint on `127.0.0.1`, as YAML blocks for [`super::bootstrap`].

use super::quote;

/// A static cluster of one HTTP/1.1 endpoint on `127.0.0.1:port`, as a YAML block at
/// column 0.
pub fn cluster(name: &str, port: u16) -> String {
    static_cluster(name, &[port], "2s", "")
}

/// Like [`cluster`], with one endpoint per port (round robin): replicas of one service.
pub fn replicated_cluster(name: &str, ports: &[u16]) -> String {
    static_cluster(name, ports, "2s", "")
}

/// Like [`cluster`], speaking HTTP/2: what a gRPC service (a rate limit service) needs.
pub fn grpc_cluster(name: &str, port: u16) -> String {
    static_cluster(
        name,
        &[port],
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
fn static_cluster(name: &str, ports: &[u16], connect_timeout: &str, options: &str) -> String {
    let options = options.replace('\n', "\n  ");
    let endpoints: String = ports
        .iter()
        .map(|port| {
            format!(
                "
      - endpoint:
          address:
            socket_address: {{ address: 127.0.0.1, port_value: {port} }}"
            )
        })
        .collect();
    format!(
        "- name: {name}
  type: STATIC
  connect_timeout: {connect_timeout}{options}
  load_assignment:
    cluster_name: {name}
    endpoints:
    - lb_endpoints:{endpoints}",
        name = quote(name)
    )
}
