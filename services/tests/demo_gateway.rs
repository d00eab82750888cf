//! The demo gateway of `make run`, end to end: the demo config rendered from
//! `envoy-config/` as `make run` renders it (on free ports), a real Envoy running it, and the
//! real services and portcullis-admin behind it. Needs `make build` first (the filters'
//! `.wasm`, the admin binary).
//!
//! The policies are the demo's own (`envoy-config/policies/`): a request without a token is
//! Kong's 401, a consumer's HS256 token reaches each service through the chain, a login
//! comes back as a token the jwt filter accepts, and acl keeps payments for admins (403).
//! Over HTTPS with the demo certificates, as `make run` runs it, and in plain HTTP, as
//! `make run TLS=0` does.

// Test code: clippy.toml lets #[test] functions panic, and these helpers are test code too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::gateway::{
    self, demo_policies, https_url, render, start_admin, start_services, DemoCerts,
};
use portcullis_services::certs;
use portcullis_services::demo::Chain;
use portcullis_tests::{client, paths, tokens, Envoy};

/// The HTTP filters of the gateway listener as Envoy loaded them: each wasm filter by its
/// plugin name, any other by its filter name.
fn loaded_http_filters(envoy: &Envoy) -> Vec<String> {
    let dump = client::get(&envoy.admin_url("/config_dump"), &[]).json();
    let listeners = dump["configs"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| {
            c["@type"]
                .as_str()
                .is_some_and(|t| t.ends_with("ListenersConfigDump"))
        })
        .expect("a listeners config dump");
    let gateway = listeners["static_listeners"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|l| l["listener"]["name"] == "gateway")
        .expect("the gateway listener");
    let hcm = &gateway["listener"]["filter_chains"][0]["filters"][0]["typed_config"];
    hcm["http_filters"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| {
            f["typed_config"]["config"]["name"]
                .as_str()
                .or(f["name"].as_str())
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

#[test]
fn over_https_the_demo_gateway_routes_each_path_to_its_service_through_the_filter_chain() {
    walk_the_demo(Some(&DemoCerts::new()));
}

#[test]
fn in_plain_http_the_demo_gateway_routes_each_path_to_its_service_through_the_filter_chain() {
    walk_the_demo(None);
}

fn walk_the_demo(tls: Option<&DemoCerts>) {
    let services = start_services(tls.map(|c| (c, certs::SERVICES)));
    let admin = start_admin(tls);
    let config = render(&demo_policies(), &services, admin.data_plane_address(), tls);
    if let Err(log) = Envoy::validate(&config) {
        panic!("envoy --mode validate refused the demo config:\n{log}\n{config}");
    }
    let envoy = Envoy::builder(config)
        .main_listener("gateway")
        .start()
        .unwrap_or_else(|e| panic!("{e:#}"));
    let url = |path: &str| https_url(&envoy, tls.is_some(), path);

    // portcullis-admin's data plane is a cluster of the gateway, the one the jwt policy's
    // consumer_source follows.
    let clusters = client::get(&envoy.admin_url("/clusters"), &[]).text();
    let endpoint = format!("portcullis_admin::{}::", admin.data_plane_address());
    assert!(clusters.contains(&endpoint), "no {endpoint} in\n{clusters}");

    // The one-VM gateway (make run's default), or the four filters (CHAIN=filters).
    let expected: &[&str] = match gateway::chain() {
        Chain::Gateway => &["gateway", "envoy.filters.http.router"],
        Chain::Filters => &[
            "token-issuer",
            "jwt",
            "acl",
            "rate-limiting",
            "envoy.filters.http.router",
        ],
    };
    assert_eq!(loaded_http_filters(&envoy), expected);

    // The jwt policy's consumers: tokens signed with their demo secrets.
    let policy: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(paths::workspace_root().join("envoy-config/policies/jwt.json"))
            .unwrap(),
    )
    .unwrap();
    let secret = |consumer: usize| {
        policy["consumers"][consumer]["credentials"][0]["secret"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let mobile = format!(
        "Bearer {}",
        tokens::hs256("mobile-app", secret(0).as_bytes())
    );
    let reply = client::get(&url("/users"), &[]);
    assert_eq!(reply.status, 401, "no token: {}", reply.text());
    assert_eq!(reply.json()["message"], "Unauthorized");

    for (path, service) in [
        ("/users", "user-service"),
        ("/users/42?expand=orders", "user-service"),
        ("/orders", "order-service"),
        ("/payments", "payment-service"),
    ] {
        let reply = client::get(&url(path), &[("authorization", &mobile)]);
        assert_eq!(reply.status, 200, "GET {path}: {}", reply.text());
        assert_eq!(reply.header("x-service"), Some(service), "GET {path}");
        let body = reply.json();
        assert_eq!(
            (body["service"].as_str(), body["path"].as_str()),
            (Some(service), Some(path))
        );
        // The service's own account of its connection from Envoy.
        assert_eq!(body["tls"], tls.is_some(), "GET {path}");
    }
    // A path that only starts like a route's is no route's: still authenticated first (the
    // filters fail closed without a route), then Envoy's 404.
    let reply = client::get(&url("/usersettings"), &[]);
    assert_eq!(reply.status, 401);
    let reply = client::get(&url("/usersettings"), &[("authorization", &mobile)]);
    assert_eq!(reply.status, 404);
    assert_eq!(reply.header("x-service"), None);

    let login = |body: &str| {
        client::send(
            "POST",
            &url("/login"),
            &[("content-type", "application/json")],
            Some(body.as_bytes()),
        )
    };
    // A good login comes back as a token signed by the token-issuer; the jwt filter accepts
    // it, with the groups the login service gave (acl: payments for admins only).
    let token_of = |body: &str| -> String {
        let reply = login(body);
        assert_eq!(reply.status, 200, "{}", reply.text());
        let answer = reply.json();
        assert_eq!(answer["token_type"], "Bearer");
        format!("Bearer {}", answer["token"].as_str().unwrap())
    };
    let admin = token_of(r#"{"username":"mobile-app","password":"mobile-demo"}"#);
    let customer = token_of(r#"{"username":"web-app","password":"web-demo"}"#);
    let reply = client::get(&url("/payments"), &[("authorization", &admin)]);
    assert_eq!(reply.status, 200, "{}", reply.text());
    let reply = client::get(&url("/payments"), &[("authorization", &customer)]);
    assert_eq!(reply.status, 403, "{}", reply.text());
    assert_eq!(reply.json()["message"], "You cannot consume this service");
    let reply = client::get(&url("/users"), &[("authorization", &customer)]);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["identity"]["x-consumer-username"], "web-app");
    let reply = login(r#"{"username":"web-app","password":"mobile-demo"}"#);
    assert_eq!(reply.status, 401, "{}", reply.text());
    assert_eq!(reply.json()["message"], "Invalid credentials");
    let reply = login("username=web-app&password=web-demo");
    assert_eq!(reply.status, 400, "{}", reply.text());

    // What reached each service, in its own log.
    let users = services.wait_for_lines("[user-service]", 3);
    assert_eq!(users.len(), 3, "{users:?}");
    for line in &users[..2] {
        assert!(
            line.contains(r#"x-consumer-username="mobile-app""#),
            "{line}"
        );
    }
    assert!(
        users[2].contains(r#"x-consumer-username="web-app""#),
        "{}",
        users[2]
    );
    assert_eq!(services.wait_for_lines("[order-service]", 1).len(), 1);
    // The customer's /payments never reached the service.
    assert_eq!(services.wait_for_lines("[payment-service]", 2).len(), 2);
    let logins = services.wait_for_lines("[login-service]", 4);
    assert_eq!(logins.len(), 4, "{logins:?}");
    assert!(logins[0].ends_with(r#"-> 200 user="mobile-app" logged in"#));

    assert!(
        envoy.wait_for_log("[envoy] GET /payments -> 200 route=payments upstream=payment-service")
    );
    assert!(envoy.wait_for_log("[envoy] POST /login -> 401 route=login upstream=login-service"));
}
