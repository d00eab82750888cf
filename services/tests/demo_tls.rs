//! The demo over HTTPS, as `make run` runs it by default: the client speaks HTTPS to Envoy,
//! Envoy speaks TLS to each service and to portcullis-admin's data plane, every certificate
//! from the demo CA that `portcullis-services certs` makes. The scenario's answers (401,
//! 403, 429, a login's token) come back over TLS, the services see the identity headers on
//! a TLS connection, and a peer whose certificate does not hold up gets nothing. Needs
//! `make build` first.

// Test code: clippy.toml lets #[test] functions panic, and these helpers are test code too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::gateway::{
    consumer_token, demo_policies, https_url, render, start_admin, start_services, DemoCerts,
    Gateway,
};
use portcullis_services::certs;
use portcullis_tests::{client, Envoy};
use serde_json::json;

const UNAUTHORIZED: &str = r#"{"message":"Unauthorized"}"#;
const FORBIDDEN: &str = r#"{"message":"You cannot consume this service"}"#;
const RATE_LIMITED: &str = r#"{"message":"API rate limit exceeded"}"#;

/// Envoy's counter `name`, 0 when it lists none.
fn stat(envoy: &Envoy, name: &str) -> u64 {
    envoy.stat(name).unwrap_or(0)
}

#[test]
fn the_scenario_runs_over_https_from_the_client_to_every_service() {
    let gateway = Gateway::start();
    let url = gateway.url("/users");
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");

    // 401 without a token, Kong's body, over TLS.
    let reply = gateway.get("/users?case=tls-no-token", &[]);
    assert_eq!((reply.status, reply.text().as_str()), (401, UNAUTHORIZED));

    // A login through the gateway: the login service answers over TLS, the token-issuer
    // signs, and the token works.
    let token = gateway.login("/login", "mobile-app", "mobile-demo");
    let reply = gateway.get(
        "/users?case=tls-login",
        &[("authorization", token.as_str())],
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    let body = reply.json();
    assert_eq!(body["service"], "user-service");
    assert_eq!(body["tls"], true, "the service saw no TLS: {body}");
    assert_eq!(body["identity"]["x-consumer-username"], "mobile-app");
    assert_eq!(body["identity"]["x-consumer-groups"], "admins");

    // A consumer token: the identity headers reach the service on its TLS connection, and
    // the token itself, checked by the gateway, is still what the service was sent.
    let web = consumer_token("web-app");
    let reply = gateway.get("/orders?case=tls-web", &[("authorization", web.as_str())]);
    assert_eq!(reply.status, 200, "{}", reply.text());
    let body = reply.json();
    assert_eq!(body["tls"], true, "{body}");
    assert_eq!(
        body["identity"],
        json!({
            "x-consumer-custom-id": "456",
            "x-consumer-groups": "customers",
            "x-consumer-id": "web-app",
            "x-consumer-username": "web-app",
            "x-credential-identifier": "web-app",
        })
    );
    let line = gateway.services.wait_for_line_containing("case=tls-web");
    assert!(
        line.starts_with("[order-service] GET /orders?case=tls-web -> 200")
            && line.contains(r#"x-consumer-username="web-app""#),
        "{line}"
    );

    // 403: payments are for admins.
    let reply = gateway.get("/payments?case=tls-web", &[("authorization", web.as_str())]);
    assert_eq!((reply.status, reply.text().as_str()), (403, FORBIDDEN));

    // 429 past 20 payments a minute (over a minute edge the count starts again, so up to
    // 41 may go before the refusal).
    let mobile = consumer_token("mobile-app");
    let mut paid = 0;
    let refused = loop {
        let reply = gateway.get(
            "/payments?case=tls-pay",
            &[("authorization", mobile.as_str())],
        );
        match reply.status {
            200 => {
                assert_eq!(reply.json()["tls"], true);
                paid += 1;
            }
            429 => break reply,
            other => panic!("payment {}: {other} {}", paid + 1, reply.text()),
        }
        assert!(paid <= 40, "no 429 after {paid} payments");
    };
    assert!(paid >= 20, "429 after only {paid} payments");
    assert_eq!(refused.text(), RATE_LIMITED);
    assert_eq!(refused.header("x-ratelimit-remaining-minute"), Some("0"));

    // Envoy's side: the listener's handshakes, and every upstream's, none refused.
    let stats = client::get(&gateway.envoy.admin_url("/stats?filter=ssl.handshake"), &[]).text();
    // Named after the configured address (`listener.127.0.0.1_0.`: the harness binds port 0).
    let downstream: u64 = stats
        .lines()
        .filter(|line| line.starts_with("listener.127.0.0.1_"))
        .filter_map(|line| line.split_once(": ")?.1.trim().parse::<u64>().ok())
        .sum();
    assert!(downstream > 0, "no TLS handshake on the listener:\n{stats}");
    for cluster in [
        "user-service",
        "order-service",
        "payment-service",
        "login-service",
        // The jwt filter's consumer_source polls portcullis-admin's data plane.
        "portcullis_admin",
    ] {
        // portcullis_admin's first handshake is the consumer source's first poll, on the
        // jwt stage's tick a second or so after start: waited for, not raced.
        let name = format!("cluster.{cluster}.ssl.handshake");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while stat(&gateway.envoy, &name) == 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let handshakes = stat(&gateway.envoy, &name);
        assert!(handshakes > 0, "no TLS handshake with {cluster}");
        for failure in ["connection_error", "fail_verify_error", "fail_verify_san"] {
            let name = format!("cluster.{cluster}.ssl.{failure}");
            assert_eq!(stat(&gateway.envoy, &name), 0, "{name}");
        }
    }

    // Plain HTTP to the HTTPS listener gets no HTTP answer at all, and no service is reached.
    let plain = gateway
        .url("/users?case=tls-plain")
        .replacen("https", "http", 1);
    let reply = client::try_send("GET", &plain, &[("authorization", mobile.as_str())], None);
    assert!(reply.is_err(), "plain HTTP answered: {reply:?}");
    assert_eq!(
        gateway.services.lines_containing("case=tls-plain"),
        Vec::<String>::new()
    );
}

/// Envoy checks each upstream's certificate: services serving `leaf` of `services_certs`
/// while Envoy trusts `certs`' CA and wants their names get a 503 and no request at all;
/// Envoy counts the refusal as `cluster.user-service.ssl.<counter>`.
fn refused_upstream(
    certs: &DemoCerts,
    services_certs: &DemoCerts,
    leaf: certs::Leaf,
    counter: &str,
) {
    let services = start_services(Some((services_certs, leaf)));
    let admin = start_admin(Some(certs));
    let config = render(
        &demo_policies(),
        &services,
        admin.data_plane_address(),
        Some(certs),
    );
    let envoy = Envoy::builder(config)
        .main_listener("gateway")
        .start()
        .unwrap_or_else(|e| panic!("{e:#}"));
    let mobile = consumer_token("mobile-app");
    let reply = client::get(
        &https_url(&envoy, true, "/users?case=refused"),
        &[("authorization", mobile.as_str())],
    );
    assert_eq!(reply.status, 503, "{}", reply.text());
    assert!(
        stat(&envoy, &format!("cluster.user-service.ssl.{counter}")) > 0,
        "no ssl.{counter}"
    );
    assert_eq!(
        services.lines_containing("case=refused"),
        Vec::<String>::new()
    );
}

#[test]
fn a_service_whose_certificate_lacks_its_name_gets_no_request() {
    // The gateway's own certificate: from the demo CA, but for localhost, not user-service.
    let certs = DemoCerts::new();
    refused_upstream(&certs, &certs, certs::GATEWAY, "fail_verify_san");
}

#[test]
fn a_service_whose_certificate_another_ca_signed_gets_no_request() {
    let (certs, other) = (DemoCerts::new(), DemoCerts::new());
    refused_upstream(&certs, &other, certs::SERVICES, "fail_verify_error");
}
