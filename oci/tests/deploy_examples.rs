//! The Istio `WasmPlugin`s in `envoy-config/istio/` and the Envoy Gateway
//! `EnvoyExtensionPolicy`s in `envoy-config/envoy-gateway/` name the images `make push` pushes,
//! with the root ids the images declare, in the demo's chain order, with configurations that
//! start each filter. The one-VM gateway's variants (`gateway.yaml` in each) configure each
//! stage exactly as the separate filters' files there do, and start the gateway. On each
//! platform, a token token-issuer issues at the login passes jwt, as separate filters and as
//! the gateway's stages.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::Path;

use portcullis_oci::image::runtime_config;
use portcullis_oci::registry::Registry;
use portcullis_oci::{image_name, wasm_path, Plugin, Variant};
use serde_json::Value;

fn yaml(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The example's configuration must start the filter (host-test runs its `on_configure`),
/// so a user copying it gets a working filter, not a refusal.
fn starts_with(filter: &str, config: Option<&Value>, example: &str) {
    let config = config.unwrap_or_else(|| panic!("{example}: no configuration"));
    let json = serde_json::to_string(config).unwrap_or_default();
    if let Err(e) = host_test::Host::new().filter(filter).config(json).start() {
        panic!("{example}: the example's configuration does not start {filter}: {e}");
    }
}

/// The root ids the filter's image declares in its runtime config.
fn root_ids(filter: &str) -> Vec<String> {
    let wasm = std::fs::read(wasm_path(&support::dist(), filter)).unwrap();
    let plugin = Plugin {
        name: filter,
        wasm: &wasm,
        description: "",
    };
    runtime_config(&plugin).unwrap().config.root_ids
}

/// The `oci://` URL `make push REGISTRY=<prefix>` gives the filter's default (compat) image.
fn pushed_url(prefix: &str, filter: &str) -> String {
    let version = support::provenance().version;
    let reference = Registry::new(prefix, false)
        .unwrap()
        .tagged(&image_name(filter), &Variant::Compat.tag(&version))
        .unwrap();
    format!("oci://{}", reference.whole())
}

/// The registry prefix (`host/repo`) an example URL uses for `filter`.
fn prefix_of(url: &str, filter: &str) -> String {
    let rest = url
        .strip_prefix("oci://")
        .unwrap_or_else(|| panic!("{url}: not oci://"));
    let (prefix, image) = rest
        .rsplit_once('/')
        .unwrap_or_else(|| panic!("{url}: no repository"));
    assert!(
        image.starts_with(&format!("{}:", image_name(filter))),
        "{url}: not the {filter} image"
    );
    prefix.to_owned()
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no string at {pointer} in {v}"))
}

/// Where Istio runs a `WasmPlugin`, as a sort key: by phase, then by priority, highest first.
fn istio_order(plugin: &Value, name: &str) -> (u8, i64) {
    let phase = match str_at(plugin, "/spec/phase") {
        "AUTHN" => 1,
        "AUTHZ" => 2,
        "STATS" => 3,
        other => panic!("{name}: phase {other}: pick AUTHN, AUTHZ or STATS"),
    };
    let priority = plugin
        .pointer("/spec/priority")
        .and_then(Value::as_i64)
        .unwrap_or_else(|| panic!("{name}: set a priority, or Istio orders by name"));
    (phase, -priority)
}

#[test]
fn istio_wasm_plugins_reference_the_pushed_images_in_chain_order() {
    let filters = support::filters();
    let dir = support::root().join("envoy-config/istio");
    let mut found: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    found.sort();
    let mut expected: Vec<String> = support::modules()
        .iter()
        .map(|f| format!("{f}.yaml"))
        .collect();
    expected.sort();
    assert_eq!(
        found,
        expected,
        "one WasmPlugin per module (each filter, and the gateway) in {}",
        dir.display()
    );

    let mut prefixes = Vec::new();
    let mut order = Vec::new();
    for filter in &filters {
        let plugin = yaml(&dir.join(format!("{filter}.yaml")));
        let name = format!("{filter}.yaml");
        assert_eq!(
            str_at(&plugin, "/apiVersion"),
            "extensions.istio.io/v1alpha1",
            "{name}"
        );
        assert_eq!(str_at(&plugin, "/kind"), "WasmPlugin", "{name}");
        assert_eq!(
            str_at(&plugin, "/metadata/name"),
            image_name(filter),
            "{name}"
        );

        let url = str_at(&plugin, "/spec/url");
        let prefix = prefix_of(url, filter);
        assert_eq!(url, pushed_url(&prefix, filter), "{name}");
        prefixes.push(prefix);

        assert_eq!(
            root_ids(filter),
            [str_at(&plugin, "/spec/pluginName")],
            "{name}"
        );
        assert_eq!(
            str_at(&plugin, "/spec/failStrategy"),
            "FAIL_CLOSE",
            "{name}"
        );
        assert_eq!(str_at(&plugin, "/spec/type"), "HTTP", "{name}");
        starts_with(filter, plugin.pointer("/spec/pluginConfig"), &name);

        let (phase, priority) = istio_order(&plugin, &name);
        order.push((phase, priority, filter.clone()));
    }
    prefixes.dedup();
    assert_eq!(
        prefixes.len(),
        1,
        "every WasmPlugin names the same registry: {prefixes:?}"
    );

    order.sort();
    for pair in order.windows(2) {
        assert_ne!(
            (pair[0].0, pair[0].1),
            (pair[1].0, pair[1].1),
            "{} and {} tie on phase and priority",
            pair[0].2,
            pair[1].2
        );
    }
    let chain: Vec<String> = order.into_iter().map(|(_, _, f)| f).collect();
    assert_eq!(chain, support::demo_chain(), "the demo's filter order");
}

/// The gateway's stage name for a filter: `token-issuer` → `token_issuer`.
fn stage(filter: &str) -> String {
    filter.replace('-', "_")
}

/// The gateway's configuration is one key per stage, in no other shape: each the `config` the
/// separate filter's file gives (`separate(filter)`), so that switching between the two is
/// moving configuration, never rewriting it. And it starts the gateway.
fn gateway_config_is_the_filters(
    config: Option<&Value>,
    separate: impl Fn(&str) -> Value,
    example: &str,
) {
    let config = config.unwrap_or_else(|| panic!("{example}: no configuration"));
    let stages = config
        .as_object()
        .unwrap_or_else(|| panic!("{example}: the configuration is not an object"));
    let mut keys: Vec<&String> = stages.keys().collect();
    keys.sort();
    let mut expected: Vec<String> = support::filters().iter().map(|f| stage(f)).collect();
    expected.sort();
    assert_eq!(
        keys,
        expected.iter().collect::<Vec<_>>(),
        "{example}: every stage"
    );
    for filter in support::filters() {
        assert_eq!(
            stages[&stage(&filter)],
            separate(&filter),
            "{example}: stage {} differs from the {filter} filter's configuration",
            stage(&filter)
        );
    }
    starts_with(support::GATEWAY, Some(config), example);
}

#[test]
fn istio_gateway_plugin_runs_the_chain_as_the_four_plugins_configure_it() {
    let dir = support::root().join("envoy-config/istio");
    let gateway = support::GATEWAY;
    let name = format!("{gateway}.yaml");
    let plugin = yaml(&dir.join(&name));
    assert_eq!(
        str_at(&plugin, "/apiVersion"),
        "extensions.istio.io/v1alpha1"
    );
    assert_eq!(str_at(&plugin, "/kind"), "WasmPlugin");
    assert_eq!(str_at(&plugin, "/metadata/name"), image_name(gateway));

    let url = str_at(&plugin, "/spec/url");
    let prefix = prefix_of(url, gateway);
    assert_eq!(url, pushed_url(&prefix, gateway), "{name}");
    assert_eq!(root_ids(gateway), [str_at(&plugin, "/spec/pluginName")]);
    assert_eq!(str_at(&plugin, "/spec/failStrategy"), "FAIL_CLOSE");
    assert_eq!(str_at(&plugin, "/spec/type"), "HTTP");

    let separate = |filter: &str| yaml(&dir.join(format!("{filter}.yaml")));
    // The plugin Istio runs first of the four (token-issuer, the gateway's first stage).
    let first_filter = support::filters()
        .into_iter()
        .min_by_key(|f| istio_order(&separate(f), f))
        .unwrap();
    let first = separate(&first_filter);
    // The same registry, workload and namespace as the four plugins it replaces.
    assert_eq!(
        prefix,
        prefix_of(str_at(&first, "/spec/url"), &first_filter)
    );
    for pointer in ["/metadata/namespace", "/spec/selector"] {
        assert_eq!(plugin.pointer(pointer), first.pointer(pointer), "{pointer}");
    }
    // Where the chain's first filter sits, so every stage runs where the first one did.
    for pointer in ["/spec/phase", "/spec/priority"] {
        assert_eq!(plugin.pointer(pointer), first.pointer(pointer), "{pointer}");
    }

    gateway_config_is_the_filters(
        plugin.pointer("/spec/pluginConfig"),
        |filter| {
            separate(filter)
                .pointer("/spec/pluginConfig")
                .cloned()
                .unwrap_or_else(|| panic!("{filter}.yaml: no pluginConfig"))
        },
        &name,
    );
}

#[test]
fn envoy_gateway_gateway_policy_runs_the_chain_as_the_four_extensions_configure_it() {
    let dir = support::root().join("envoy-config/envoy-gateway");
    let mut found: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    found.sort();
    assert_eq!(
        found,
        ["gateway.yaml", "portcullis.yaml"],
        "{}",
        dir.display()
    );

    let gateway = support::GATEWAY;
    let policy = yaml(&dir.join("gateway.yaml"));
    let four = yaml(&dir.join("portcullis.yaml"));
    assert_eq!(
        str_at(&policy, "/apiVersion"),
        "gateway.envoyproxy.io/v1alpha1"
    );
    assert_eq!(str_at(&policy, "/kind"), "EnvoyExtensionPolicy");
    assert_eq!(str_at(&policy, "/metadata/name"), image_name(gateway));
    // The same Gateway as portcullis.yaml: one or the other is applied to it.
    for pointer in ["/metadata/namespace", "/spec/targetRefs"] {
        assert_eq!(policy.pointer(pointer), four.pointer(pointer), "{pointer}");
    }

    let wasm = policy
        .pointer("/spec/wasm")
        .and_then(Value::as_array)
        .expect("spec.wasm");
    let [w] = wasm.as_slice() else {
        panic!("gateway.yaml: one extension, the gateway: {wasm:?}")
    };
    assert_eq!(str_at(w, "/name"), image_name(gateway));
    assert_eq!(root_ids(gateway), [str_at(w, "/rootID")]);
    assert_eq!(str_at(w, "/code/type"), "Image");
    let url = str_at(w, "/code/image/url");
    let prefix = prefix_of(url, gateway);
    assert_eq!(url, pushed_url(&prefix, gateway));
    assert_eq!(w.pointer("/failOpen"), Some(&Value::Bool(false)));

    let extensions = four
        .pointer("/spec/wasm")
        .and_then(Value::as_array)
        .expect("portcullis.yaml: spec.wasm");
    let first_url = str_at(&extensions[0], "/code/image/url");
    let first_filter = str_at(&extensions[0], "/rootID");
    assert_eq!(prefix, prefix_of(first_url, first_filter));
    gateway_config_is_the_filters(
        w.pointer("/config"),
        |filter| {
            extensions
                .iter()
                .find(|e| e["rootID"] == filter)
                .and_then(|e| e.pointer("/config"))
                .cloned()
                .unwrap_or_else(|| panic!("portcullis.yaml: no {filter} config"))
        },
        "envoy-gateway/gateway.yaml",
    );
}

#[test]
fn envoy_gateway_policy_references_the_pushed_images_in_chain_order() {
    let path = support::root().join("envoy-config/envoy-gateway/portcullis.yaml");
    let policy = yaml(&path);
    assert_eq!(
        str_at(&policy, "/apiVersion"),
        "gateway.envoyproxy.io/v1alpha1"
    );
    assert_eq!(str_at(&policy, "/kind"), "EnvoyExtensionPolicy");

    let wasm = policy
        .pointer("/spec/wasm")
        .and_then(Value::as_array)
        .expect("spec.wasm");
    // Envoy Gateway runs a policy's extensions in list order.
    let chain: Vec<String> = wasm
        .iter()
        .map(|w| str_at(w, "/rootID").to_owned())
        .collect();
    assert_eq!(chain, support::demo_chain(), "the demo's filter order");
    let mut listed = chain.clone();
    listed.sort();
    let mut filters = support::filters();
    filters.sort();
    assert_eq!(listed, filters, "every filter once");

    let mut prefixes = Vec::new();
    for (w, filter) in wasm.iter().zip(&chain) {
        assert_eq!(str_at(w, "/name"), image_name(filter));
        assert_eq!(root_ids(filter), [str_at(w, "/rootID")]);
        assert_eq!(str_at(w, "/code/type"), "Image", "{filter}");
        let url = str_at(w, "/code/image/url");
        let prefix = prefix_of(url, filter);
        assert_eq!(url, pushed_url(&prefix, filter), "{filter}");
        prefixes.push(prefix);
        assert_eq!(
            w.pointer("/failOpen"),
            Some(&Value::Bool(false)),
            "{filter}"
        );
        starts_with(filter, w.pointer("/config"), filter);
    }
    prefixes.dedup();
    assert_eq!(
        prefixes.len(),
        1,
        "one registry for every extension: {prefixes:?}"
    );
}

#[test]
fn examples_use_the_same_registry_as_each_other() {
    let istio = yaml(&support::root().join("envoy-config/istio/jwt.yaml"));
    let eg = yaml(&support::root().join("envoy-config/envoy-gateway/portcullis.yaml"));
    let eg_jwt = eg
        .pointer("/spec/wasm")
        .and_then(Value::as_array)
        .and_then(|w| w.iter().find(|w| w["rootID"] == "jwt"))
        .expect("jwt in the Envoy Gateway policy");
    assert_eq!(
        str_at(&istio, "/spec/url"),
        str_at(eg_jwt, "/code/image/url")
    );
}

/// What the demo's login service answers for mobile-app: the profile token-issuer signs.
fn profile() -> Value {
    serde_json::json!({
        "sub": "123",
        "username": "mobile-app",
        "groups": ["admins"],
        "email": "mobile-app@example.com",
    })
}

/// A user logs in at token-issuer's first auth path and presents the token it issues: the
/// example's chain (`plugins`, token-issuer first, or the gateway) must let it through to a
/// protected route as the user, and refuse that route without a token. Starting each filter
/// is not enough: an issuer whose tokens the jwt beside it does not trust starts fine and
/// answers 401 to every login's token.
fn login_reaches_a_protected_route(
    plugins: &mut [&mut host_test::Plugin],
    issuer: &Value,
    example: &str,
) {
    let path = str_at(issuer, "/auth_paths/0/path");
    let method = str_at(issuer, "/auth_paths/0/methods/0");
    let login = host_test::Request::new(method, path)
        .header("content-type", "application/json")
        .body(r#"{"username":"mobile-app","password":"mobile-demo"}"#)
        .route("login")
        .respond(host_test::UpstreamResponse::new(200).json(&profile()));
    let answer = host_test::send(plugins, login);
    assert_eq!(
        answer.status(),
        200,
        "{example}: login at {method} {path}: {}",
        answer.body_text()
    );
    let token = answer.body_json()["token"]
        .as_str()
        .unwrap_or_else(|| panic!("{example}: no token in {}", answer.body_text()))
        .to_owned();

    // payments: a route every example protects (acl, where it runs, allows mobile-app's admins).
    let payments = || host_test::Request::get("/payments").route("payments");
    let with_token = host_test::send(
        plugins,
        payments().header("authorization", &format!("Bearer {token}")),
    );
    assert!(
        with_token.reached_upstream(),
        "{example}: the token issued at {path} is refused: {} {}",
        with_token.status(),
        with_token.body_text()
    );
    assert_eq!(
        with_token.upstream_header("x-consumer-username").as_deref(),
        Some("mobile-app"),
        "{example}: the upstream does not see the user who logged in"
    );
    let without = host_test::send(plugins, payments());
    assert_eq!(without.status(), 401, "{example}: no token");
}

/// `config` of `filter`, started on `host` (a refusal fails the test, naming the example).
fn start_on(
    host: &host_test::Host,
    filter: &str,
    config: &Value,
    example: &str,
) -> host_test::Plugin {
    host.filter(filter)
        .config_json(config)
        .start()
        .unwrap_or_else(|e| panic!("{example}: {filter} does not start: {e}"))
}

/// A platform's login, both ways it can be deployed: its token-issuer and jwt as two
/// plugins in one host, and its gateway module alone.
fn login_passes_as_filters_and_as_gateway(
    platform: &str,
    issuer: &Value,
    jwt: &Value,
    gateway: &Value,
) {
    let host = host_test::Host::new();
    let mut issuer_plugin = start_on(&host, "token-issuer", issuer, platform);
    let mut jwt_plugin = start_on(&host, "jwt", jwt, platform);
    login_reaches_a_protected_route(
        &mut [&mut issuer_plugin, &mut jwt_plugin],
        issuer,
        &format!("{platform}: token-issuer and jwt"),
    );

    let example = format!("{platform}: gateway.yaml");
    let mut plugin = start_on(&host_test::Host::new(), support::GATEWAY, gateway, &example);
    login_reaches_a_protected_route(&mut [&mut plugin], &gateway["token_issuer"], &example);
}

#[test]
fn istio_login_tokens_pass_jwt() {
    let dir = support::root().join("envoy-config/istio");
    let config = |filter: &str| {
        yaml(&dir.join(format!("{filter}.yaml")))
            .pointer("/spec/pluginConfig")
            .cloned()
            .unwrap_or_else(|| panic!("{filter}.yaml: no pluginConfig"))
    };
    login_passes_as_filters_and_as_gateway(
        "istio",
        &config("token-issuer"),
        &config("jwt"),
        &config(support::GATEWAY),
    );
}

#[test]
fn envoy_gateway_login_tokens_pass_jwt() {
    let dir = support::root().join("envoy-config/envoy-gateway");
    let config = |file: &str, root_id: &str| {
        yaml(&dir.join(file))
            .pointer("/spec/wasm")
            .and_then(Value::as_array)
            .and_then(|w| w.iter().find(|w| w["rootID"] == root_id))
            .and_then(|w| w.pointer("/config"))
            .cloned()
            .unwrap_or_else(|| panic!("{file}: no {root_id} config"))
    };
    login_passes_as_filters_and_as_gateway(
        "envoy-gateway",
        &config("portcullis.yaml", "token-issuer"),
        &config("portcullis.yaml", "jwt"),
        &config("gateway.yaml", support::GATEWAY),
    );
}
