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
///
/// With `PORTCULLIS_PACKAGING=gateway` ([`gateway_packaging`]) it is the one-VM gateway
/// module instead, configured with this filter's stage alone (`{"jwt": …}`; no configuration
/// is `{}`), and marked so that [`Gateway::render`] merges consecutive Portcullis filters
/// into one gateway: every real-Envoy suite then runs against the other packaging unchanged.
pub fn portcullis_filter(filter: &str, plugin_config_json: Option<&str>) -> String {
    if !gateway_packaging() {
        let path = crate::paths::wasm(filter);
        return wasm_filter(filter, filter, filter, &path, plugin_config_json);
    }
    as_stage(filter, plugin_config_json)
}

/// [`portcullis_filter`] in the gateway packaging: the gateway module with `filter`'s stage
/// alone, marked for [`merge_stages`].
fn as_stage(filter: &str, plugin_config_json: Option<&str>) -> String {
    let stage = filter.replace('-', "_");
    let config = plugin_config_json.unwrap_or("{}");
    let hex: String = config.bytes().map(|b| format!("{b:02x}")).collect();
    let name = format!("gateway-{filter}");
    format!(
        "{STAGE_MARK}{stage} {hex}\n{}",
        gateway_filter(&name, &[(stage.as_str(), config)])
    )
}

/// The log line of `filter` refusing its configuration at `path` (empty: the whole
/// object) with `message`, in the packaging the tests run: the gateway names the stage
/// first (`portcullis-gateway: configuration refused: acl.allow: …`).
pub fn refused(filter: &str, path: &str, message: &str) -> String {
    if !gateway_packaging() {
        return match path {
            "" => format!("portcullis-{filter}: configuration refused: {message}"),
            path => format!("portcullis-{filter}: configuration refused: {path}: {message}"),
        };
    }
    let stage = filter.replace('-', "_");
    let path = match path {
        "" => stage,
        path if path.starts_with('[') => format!("{stage}{path}"),
        path => format!("{stage}.{path}"),
    };
    format!("portcullis-gateway: configuration refused: {path}: {message}")
}

/// The plugin name Envoy gives `filter` in the packaging the tests run (what its log lines
/// such as `Unable to create Wasm plugin <name>` say).
pub fn plugin_name(filter: &str) -> String {
    if gateway_packaging() {
        format!("gateway-{filter}")
    } else {
        filter.to_owned()
    }
}

/// Whether the real-Envoy tests run the filters in the one-VM gateway module
/// (`PORTCULLIS_PACKAGING=gateway`) rather than as separate filters (the default).
pub fn gateway_packaging() -> bool {
    std::env::var("PORTCULLIS_PACKAGING").is_ok_and(|p| p == "gateway")
}

/// The comment line that starts a Portcullis filter rendered as a one-stage gateway: the
/// stage and its configuration (hex), for [`Gateway::render`] to merge.
const STAGE_MARK: &str = "# portcullis-stage ";

/// The one-VM gateway module running `stages` (name, configuration JSON), in the order
/// given, named `name` for plugin, VM and root id.
pub fn gateway_filter(name: &str, stages: &[(&str, &str)]) -> String {
    let members: Vec<String> = stages
        .iter()
        .map(|(stage, config)| format!("\"{stage}\": {config}"))
        .collect();
    let config = format!("{{{}}}", members.join(", "));
    let path = crate::paths::wasm("gateway");
    wasm_filter(name, name, name, &path, Some(&config))
}

/// Merges each run of consecutive Portcullis filters rendered as one-stage gateways, stages
/// in the gateway's order, into one gateway filter (named `gateway`): what a team running
/// the gateway configures. Any other filter is kept as it is.
pub(crate) fn merge_stages(filters: &[String]) -> Vec<String> {
    const ORDER: [&str; 4] = ["token_issuer", "jwt", "acl", "rate_limiting"];
    let stage_of = |filter: &str| -> Option<(usize, String, String)> {
        let line = filter.lines().next()?.strip_prefix(STAGE_MARK)?;
        let (stage, hex) = line.split_once(' ')?;
        let bytes: Option<Vec<u8>> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
            .collect();
        let config = String::from_utf8(bytes?).ok()?;
        let at = ORDER.iter().position(|s| *s == stage)?;
        Some((at, stage.to_owned(), config))
    };
    let mut merged: Vec<String> = Vec::new();
    let mut run: Vec<(usize, String, String, String)> = Vec::new();
    let flush = |run: &mut Vec<(usize, String, String, String)>, merged: &mut Vec<String>| match run
        .len()
    {
        0 => {}
        1 => merged.extend(run.drain(..).map(|(_, _, _, filter)| filter)),
        _ => {
            let stages: Vec<(&str, &str)> = run
                .iter()
                .map(|(_, stage, config, _)| (stage.as_str(), config.as_str()))
                .collect();
            merged.push(gateway_filter("gateway", &stages));
            run.clear();
        }
    };
    for filter in filters {
        match stage_of(filter) {
            Some((at, stage, config)) => {
                if run.last().is_some_and(|(last, ..)| *last >= at) {
                    flush(&mut run, &mut merged);
                }
                run.push((at, stage, config, filter.clone()));
            }
            None => {
                flush(&mut run, &mut merged);
                merged.push(filter.clone());
            }
        }
    }
    flush(&mut run, &mut merged);
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_stages_in_the_gateways_order_become_one_gateway() {
        let jwt = as_stage("jwt", Some(r#"{"a": "x y"}"#));
        let acl = as_stage("acl", Some(r#"{"allow": ["admins"]}"#));
        let limit = as_stage("rate-limiting", None);
        let other = "- name: envoy.filters.http.cors".to_owned();
        let merged = merge_stages(&[jwt.clone(), acl.clone(), limit.clone(), other.clone()]);
        assert_eq!(merged.len(), 2, "{merged:#?}");
        assert!(merged[0].contains("name: \"gateway\""), "{}", merged[0]);
        assert!(
            merged[0].contains(&quote(
                r#"{"jwt": {"a": "x y"}, "acl": {"allow": ["admins"]}, "rate_limiting": {}}"#
            )),
            "{}",
            merged[0]
        );
        assert_eq!(merged[1], other);
        // Out of the gateway's order, or cut by another filter: kept apart.
        let apart = merge_stages(&[acl.clone(), jwt.clone(), other.clone(), limit.clone()]);
        assert_eq!(apart, vec![acl, jwt, other, limit]);
    }
}
