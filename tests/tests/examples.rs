//! The minimal per-filter examples in `envoy-config/examples/` are real Envoy configuration:
//! `envoy --mode validate` accepts each one, which also loads the filter and runs its
//! `on_configure` on the example's policy. `jwt-tls.yaml` reads its certificates from files,
//! which validation loads too: the test makes a CA and a certificate for it. `gateway.yaml`
//! is the one-VM gateway with every stage, each configured with the demo's policy.

use std::collections::BTreeMap;

use serde_json::Value;

use portcullis_tests::certs::Authority;
use portcullis_tests::config::fill;
use portcullis_tests::{paths, Envoy};

#[test]
fn every_filter_example_validates_in_envoy() {
    let dir = paths::workspace_root().join("envoy-config/examples");
    let dist = paths::workspace_root().join("dist");
    let ca = Authority::new("examples-tls").unwrap();
    let gateway = ca.server("gateway").unwrap();
    let tls = ca.cert().parent().unwrap();
    assert_eq!(gateway.cert, tls.join("gateway.pem"));
    let vars = BTreeMap::from([
        ("DIST".to_owned(), dist.to_string_lossy().into_owned()),
        ("TLS".to_owned(), tls.to_string_lossy().into_owned()),
    ]);
    let mut seen = Vec::new();
    for (filter, example) in [
        ("jwt", "jwt"),
        ("jwt", "jwt-tls"),
        ("acl", "acl"),
        ("rate-limiting", "rate-limiting"),
        ("rate-limiting", "rate-limiting-redis"),
        ("token-issuer", "token-issuer"),
        ("gateway", "gateway"),
    ] {
        paths::wasm(filter); // a clear message when `make build` has not run
        let path = dir.join(format!("{example}.yaml"));
        let template =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let config = fill(&template, &vars).unwrap_or_else(|e| panic!("{filter}: {e}"));
        if let Err(log) = Envoy::validate(&config) {
            panic!("envoy --mode validate refused {}:\n{log}", path.display());
        }
        seen.push(example);
    }
    // Every example in the folder, none forgotten.
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|entry| {
            let name = entry.ok()?.file_name().to_string_lossy().into_owned();
            name.strip_suffix(".yaml").map(str::to_owned)
        })
        .collect();
    files.sort();
    seen.sort();
    assert_eq!(files, seen);
}

#[test]
fn a_broken_policy_in_an_example_is_refused_by_validate() {
    let path = paths::workspace_root().join("envoy-config/examples/acl.yaml");
    let dist = paths::workspace_root().join("dist");
    let vars = BTreeMap::from([("DIST".to_owned(), dist.to_string_lossy().into_owned())]);
    let config = fill(&std::fs::read_to_string(path).unwrap(), &vars).unwrap();
    let broken = config.replace("any_consumer", "any_consumr");
    assert_ne!(broken, config);
    let log = Envoy::validate(&broken).expect_err("a misspelt field must be refused");
    assert!(log.contains("any_consumr"), "{log}");
}

/// The gateway example's configuration: the JSON in its wasm filter's `StringValue`.
fn gateway_example_configuration() -> (String, Value) {
    let path = paths::workspace_root().join("envoy-config/examples/gateway.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let yaml: Value = serde_yaml_ng::from_str(&text).unwrap();
    let filters = yaml
        .pointer(
            "/static_resources/listeners/0/filter_chains/0/filters/0/typed_config/http_filters",
        )
        .and_then(Value::as_array)
        .expect("http_filters");
    let wasm: Vec<&Value> = filters
        .iter()
        .filter(|f| {
            f.pointer("/typed_config/@type").and_then(Value::as_str)
                == Some("type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm")
        })
        .collect();
    let [gateway] = wasm.as_slice() else {
        panic!("one wasm filter, the gateway: {wasm:?}")
    };
    assert_eq!(gateway["typed_config"]["config"]["root_id"], "gateway");
    let value = gateway
        .pointer("/typed_config/config/configuration/value")
        .and_then(Value::as_str)
        .expect("a StringValue configuration");
    (text, serde_json::from_str(value).unwrap())
}

/// Each stage of the gateway example is the demo's policy of that filter
/// (`envoy-config/policies/<filter>.json`, jwt's without the consumer source, which needs
/// portcullis-admin): the example is the demo in one filter, and stays so when a policy
/// changes.
#[test]
fn the_gateway_example_runs_each_stage_with_the_demos_policy() {
    let (_, config) = gateway_example_configuration();
    let stages = config.as_object().expect("an object of stages");
    assert_eq!(stages.len(), 4, "the four stages, no other key: {config}");
    for (stage, policy) in [
        ("token_issuer", "token-issuer"),
        ("jwt", "jwt"),
        ("acl", "acl"),
        ("rate_limiting", "rate-limiting"),
    ] {
        let path = paths::workspace_root().join(format!("envoy-config/policies/{policy}.json"));
        let mut expected: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        if let Some(object) = expected.as_object_mut() {
            object.remove("consumer_source");
        }
        assert_eq!(
            stages.get(stage),
            Some(&expected),
            "stage {stage} is not {}",
            path.display()
        );
    }
}

#[test]
fn a_broken_stage_in_the_gateway_example_is_refused_with_its_name() {
    let (text, _) = gateway_example_configuration();
    let dist = paths::workspace_root().join("dist");
    let vars = BTreeMap::from([("DIST".to_owned(), dist.to_string_lossy().into_owned())]);
    let config = fill(&text, &vars).unwrap();
    let broken = config.replace(r#""allow": ["admins"]"#, r#""allow": []"#);
    assert_ne!(broken, config);
    let log = Envoy::validate(&broken).expect_err("an empty allow list must be refused");
    assert!(log.contains("acl.routes.payments.allow"), "{log}");
}

/// Every configuration Portcullis ships for Envoy (the examples, the demo's) removes each
/// identity header a client sent before Envoy picks the route, so a client cannot pick the
/// route the filters judge (docs/architecture.md, routes and the identity headers): the
/// connection manager's early header mutation, read from the parsed examples; the demo's
/// template holds the same block (`cli/tests/kong_import.rs` checks the importer's output).
#[test]
fn every_shipped_config_strips_the_identity_headers_before_routing() {
    let root = paths::workspace_root();
    let identity: Vec<&str> = portcullis_core::identity::headers::ALL.to_vec();
    let vars = BTreeMap::from([
        ("DIST".to_owned(), "/dist".to_owned()),
        ("TLS".to_owned(), "/tls".to_owned()),
    ]);
    let examples = root.join("envoy-config/examples");
    let mut checked = 0;
    let mut block = None;
    for entry in std::fs::read_dir(&examples).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let text = fill(&std::fs::read_to_string(&path).unwrap(), &vars).unwrap();
        let yaml: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
        let hcm = &yaml["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0];
        assert_eq!(
            hcm["name"].as_str(),
            Some("envoy.filters.network.http_connection_manager"),
            "{}",
            path.display()
        );
        let early = &hcm["typed_config"]["early_header_mutation_extensions"][0];
        let removed: Vec<&str> = early["typed_config"]["mutations"]
            .as_sequence()
            .unwrap_or_else(|| panic!("{}: no early header mutation", path.display()))
            .iter()
            .filter_map(|m| m["remove"].as_str())
            .collect();
        assert_eq!(removed, identity, "{}", path.display());
        // The block as written, to find it in the demo's template below.
        let start = text.find("early_header_mutation_extensions:").unwrap();
        let end = text[start..]
            .find("- remove: x-anonymous-consumer")
            .unwrap();
        block.get_or_insert_with(|| text[start..start + end].trim().to_owned());
        checked += 1;
    }
    assert!(checked > 1);
    let demo = std::fs::read_to_string(root.join("envoy-config/demo.yaml.tmpl")).unwrap();
    let block = block.unwrap();
    assert!(demo.contains(&block), "the demo's template lacks:\n{block}");
    assert!(demo.contains("- remove: x-anonymous-consumer\n"));
}
