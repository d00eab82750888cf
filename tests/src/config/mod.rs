//! Envoy configuration for the tests and the bench, built from one skeleton:
//!
//! | module | holds |
//! |---|---|
//! | [`listener`] | the listener with the HTTP connection manager, virtual hosts, routes, the bootstrap |
//! | [`cluster`] | static loopback clusters, HTTP/1.1 and gRPC |
//! | [`gateway`] | [`Gateway`], the one-listener bootstrap most tests need |
//! | here | the wasm filter entry every test uses |
//!
//! Templates are filled by [`fill`] (shared with the demo's config, see `portcullis-template`).

use std::path::Path;

pub mod cluster;
pub mod gateway;
pub mod listener;

pub use cluster::{cluster, grpc_cluster};
pub use gateway::Gateway;
pub use listener::{bootstrap, direct_response, route, virtual_host, Listener, ADMIN};
pub use portcullis_template::{fill, quote};

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
