//! The acl filter in a real Envoy. With jwt in front, the consumer's groups decide: an admin
//! token reaches /payments, a customer's does not, and no header a client sends changes
//! that. Alone, without jwt, acl refuses every judged request (nobody is authenticated,
//! whatever headers the client sends). A broken configuration keeps Envoy from starting,
//! and the log names the field.

use portcullis_tests::config::{plugin_name, portcullis_filter, refused};
use portcullis_tests::tokens::hs256;
use portcullis_tests::{client, Envoy, Gateway, Reply, Upstream};
use serde_json::json;

/// The demo's policy: payments for admins; orders for admins, and for customers reading;
/// users for any consumer; login public; every other route denied to `banned`.
const SCENARIO: &str = r#"{
    "deny": ["banned"],
    "routes": {
        "payments": {"allow": ["admins"]},
        "orders": {"allow": ["admins", {"group": "customers", "methods": ["GET", "HEAD"]}]},
        "users": {"any_consumer": true},
        "login": {"public": true}
    }
}"#;

fn start(gateway: &Gateway) -> Envoy {
    Envoy::builder(gateway.render())
        .concurrency(2)
        .start()
        .unwrap_or_else(|e| panic!("{e:#}"))
}

/// A counter the acl filter defined, summed over Envoy's workers; Prometheus lists wasm
/// metrics under their own name, without Envoy's `envoy_` prefix.
fn acl_metric(envoy: &Envoy, name: &str) -> f64 {
    envoy
        .metric(&format!("{name}{{}}"))
        .unwrap_or_else(|| panic!("no {name} in:\n{}", envoy.stats_prometheus()))
}

#[test]
fn acl_alone_refuses_everything_without_an_identity() {
    let payments = Upstream::start("payments");
    let orders = Upstream::start("orders");
    let users = Upstream::start("users");
    let login = Upstream::start("login");
    let envoy = start(
        &Gateway::new()
            .route("payments", "/payments", &payments)
            .route("orders", "/orders", &orders)
            .route("users", "/users", &users)
            .route("login", "/login", &login)
            .filter(portcullis_filter("acl", Some(SCENARIO))),
    );

    let forged: &[(&str, &str)] = &[
        ("x-consumer-groups", "admins"),
        ("x-consumer-username", "mobile-app"),
    ];
    let mut refused = 0;
    for (method, path) in [
        ("GET", "/payments"),
        ("POST", "/payments"),
        ("GET", "/orders/1"),
        ("DELETE", "/orders/1"),
        ("GET", "/users"),
    ] {
        for headers in [&[][..], forged] {
            let reply = client::send(method, &envoy.url(path), headers, None);
            assert_eq!(
                reply.status,
                401,
                "{method} {path} {headers:?}: {}",
                reply.text()
            );
            assert_eq!(reply.json(), serde_json::json!({"message": "Unauthorized"}));
            assert_eq!(
                reply.header("content-type"),
                Some("application/json; charset=utf-8")
            );
            refused += 1;
        }
    }
    for upstream in [&payments, &orders, &users] {
        assert_eq!(upstream.count(), 0, "{} was reached", upstream.name());
    }

    // The public route passes, and the client's own groups header is not forwarded.
    let reply = client::send("POST", &envoy.url("/login"), forged, Some(b"{}"));
    assert_eq!(reply.status, 200, "{}", reply.text());
    let seen = login.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].header("x-consumer-groups"), None);

    assert!(envoy.wait_for_log(
        r#"portcullis-acl: 401 consumer="-" route="payments" method="GET" reason=unauthenticated"#
    ));
    assert_eq!(
        acl_metric(&envoy, "portcullis_acl_denied_total"),
        refused as f64
    );
    assert_eq!(
        acl_metric(&envoy, "portcullis_acl_denied_unauthenticated_total"),
        refused as f64
    );
    assert_eq!(
        acl_metric(&envoy, "portcullis_acl_route_payments_denied_total"),
        4.0
    );
    assert_eq!(
        acl_metric(&envoy, "portcullis_acl_route_login_allowed_total"),
        1.0
    );
}

#[test]
fn a_broken_acl_config_keeps_envoy_from_starting_and_the_log_names_the_field() {
    let payments = Upstream::start("payments");
    let rows = [
        (r#"{"allow": []}"#, "allow", "must not be empty"),
        (
            r#"{"deny": ["banned"], "routes": {"payments": {"allow": ["admins"], "deny": ["x"]}}}"#,
            "routes.payments",
            "set exactly one of `allow`, `deny`",
        ),
        (
            r#"{"allow": ["admins"], "hide_group_header": true}"#,
            "hide_group_header",
            "unknown field `hide_group_header`",
        ),
        (
            "{}",
            "",
            "set exactly one of `allow`, `deny`, `any_consumer: true` and `public: true` (the \
             default policy, for routes not under `routes`): none is set",
        ),
    ];
    for (config, path, message) in rows {
        let gateway = Gateway::new()
            .route("payments", "/payments", &payments)
            .filter(portcullis_filter("acl", Some(config)));
        let log = Envoy::builder(gateway.render())
            .start_expecting_refusal()
            .unwrap_or_else(|e| panic!("{config}: {e:#}"));
        let line = refused("acl", path, message);
        assert!(
            log.lines()
                .any(|l| l.contains("[error][wasm]") && l.contains(&line)),
            "{config}: no error line with {line:?} in:\n{log}"
        );
        let plugin = format!("Unable to create Wasm plugin {}", plugin_name("acl"));
        assert!(
            log.contains(&plugin),
            "{config}: Envoy did not name the refused plugin in:\n{log}"
        );
    }
    assert_eq!(payments.count(), 0);
}

const ADMIN_SECRET: &[u8] = b"e2e-only-mobile-app-secret-0123456789abcdef";
const CUSTOMER_SECRET: &[u8] = b"e2e-only-web-app-secret-0123456789abcdef";

/// The jwt filter in front: the scenario's two consumers with HS256 credentials (the token's
/// `iss` names the credential), and /login public.
fn jwt_config() -> String {
    let consumer = |name: &str, group: &str, secret: &[u8]| {
        json!({
            "username": name,
            "groups": [group],
            "credentials": [{
                "key": name,
                "algorithm": "HS256",
                "secret": String::from_utf8_lossy(secret),
            }],
        })
    };
    json!({
        "consumers": [
            consumer("mobile-app", "admins", ADMIN_SECRET),
            consumer("web-app", "customers", CUSTOMER_SECRET),
        ],
        "routes": {"login": {"public": true}},
    })
    .to_string()
}

/// Upstreams for the four routes of the scenario.
struct Services {
    payments: Upstream,
    orders: Upstream,
    users: Upstream,
    login: Upstream,
}

/// Envoy with jwt then acl in front of the scenario's services.
fn chained() -> (Envoy, Services) {
    let services = Services {
        payments: Upstream::start("payments"),
        orders: Upstream::start("orders"),
        users: Upstream::start("users"),
        login: Upstream::start("login"),
    };
    let envoy = start(
        &Gateway::new()
            .route("payments", "/payments", &services.payments)
            .route("orders", "/orders", &services.orders)
            .route("users", "/users", &services.users)
            .route("login", "/login", &services.login)
            .filter(portcullis_filter("jwt", Some(&jwt_config())))
            .filter(portcullis_filter("acl", Some(SCENARIO))),
    );
    (envoy, services)
}

fn admin_token() -> String {
    hs256("mobile-app", ADMIN_SECRET)
}

fn customer_token() -> String {
    hs256("web-app", CUSTOMER_SECRET)
}

fn call(
    envoy: &Envoy,
    method: &str,
    path: &str,
    token: Option<&str>,
    extra: &[(&str, &str)],
) -> Reply {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let mut headers: Vec<(&str, &str)> = extra.to_vec();
    if let Some(bearer) = &bearer {
        headers.push(("authorization", bearer));
    }
    client::send(method, &envoy.url(path), &headers, None)
}

fn assert_forbidden(reply: &Reply, what: &str) {
    assert_eq!(reply.status, 403, "{what}: {}", reply.text());
    assert_eq!(
        reply.json(),
        json!({"message": "You cannot consume this service"}),
        "{what}"
    );
}

#[test]
fn an_admin_token_reaches_payments_with_its_groups() {
    let (envoy, services) = chained();
    let reply = call(&envoy, "POST", "/payments", Some(&admin_token()), &[]);
    assert_eq!(reply.status, 200, "{}", reply.text());
    let seen = services.payments.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].header_all("x-consumer-groups"), ["admins"]);
    assert_eq!(seen[0].header("x-consumer-username"), Some("mobile-app"));
    assert_eq!(
        envoy.metric("portcullis_acl_route_payments_allowed_total{}"),
        Some(1.0)
    );
}

#[test]
fn a_customer_token_is_refused_payments_and_the_upstream_never_sees_it() {
    let (envoy, services) = chained();
    let token = customer_token();
    assert_forbidden(
        &call(&envoy, "GET", "/payments", Some(&token), &[]),
        "GET /payments",
    );
    assert_forbidden(
        &call(&envoy, "POST", "/payments", Some(&token), &[]),
        "POST /payments",
    );
    assert_eq!(services.payments.count(), 0, "payments was reached");

    // Orders: customers read, but do not delete; admins do both.
    let reply = call(&envoy, "GET", "/orders/7", Some(&token), &[]);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_forbidden(
        &call(&envoy, "DELETE", "/orders/7", Some(&token), &[]),
        "customer DELETE",
    );
    let reply = call(&envoy, "DELETE", "/orders/7", Some(&admin_token()), &[]);
    assert_eq!(reply.status, 200, "{}", reply.text());
    let seen = services.orders.requests();
    let methods: Vec<&str> = seen.iter().map(|r| r.method.as_str()).collect();
    assert_eq!(methods, ["GET", "DELETE"]);
    assert_eq!(seen[0].header_all("x-consumer-groups"), ["customers"]);
    assert_eq!(seen[1].header_all("x-consumer-groups"), ["admins"]);

    assert!(envoy.wait_for_log(
        r#"portcullis-acl: 403 consumer="web-app" route="payments" method="GET" reason=not_in_allow"#
    ));
    assert_eq!(
        envoy.metric("portcullis_acl_route_payments_denied_total{}"),
        Some(2.0)
    );
    assert_eq!(
        envoy.metric("portcullis_acl_denied_not_in_allow_total{}"),
        Some(3.0)
    );
    assert_eq!(envoy.metric("portcullis_acl_allowed_total{}"), Some(2.0));
}

#[test]
fn a_clients_own_groups_header_gets_nowhere() {
    let (envoy, services) = chained();
    let forged: &[(&str, &str)] = &[("x-consumer-groups", "admins")];

    let reply = call(&envoy, "GET", "/payments", Some(&customer_token()), forged);
    assert_forbidden(&reply, "customer token claiming admins");
    let reply = call(&envoy, "GET", "/payments", None, forged);
    assert_eq!(
        reply.status,
        401,
        "no token claiming admins: {}",
        reply.text()
    );
    let reply = call(
        &envoy,
        "DELETE",
        "/orders/7",
        Some(&customer_token()),
        forged,
    );
    assert_forbidden(&reply, "customer deleting an order, claiming admins");
    assert_eq!(services.payments.count(), 0, "payments was reached");

    // Where the customer may pass, the upstream hears the token's groups, not the client's.
    let reply = call(&envoy, "GET", "/orders/7", Some(&customer_token()), forged);
    assert_eq!(reply.status, 200, "{}", reply.text());
    // On the public route nobody is authenticated, so no groups reach the upstream at all.
    let reply = call(&envoy, "GET", "/login", None, forged);
    assert_eq!(reply.status, 200, "{}", reply.text());
    let orders = services.orders.requests();
    assert_eq!(orders.len(), 1);
    assert_eq!(orders[0].header_all("x-consumer-groups"), ["customers"]);
    let login = services.login.requests();
    assert_eq!(login.len(), 1);
    assert!(login[0].header_all("x-consumer-groups").is_empty());
    assert_eq!(services.users.count(), 0);
}

/// Envoy picks a request's route again once a wasm filter has changed a request header, but
/// the route name the filters judge stays the first pick. A route matching on an identity
/// header (`payments-admins`: `x-consumer-groups: admins`, no acl entry of its own) could then
/// be chosen by a client's forged copy, judged, and left for `payments` once jwt has put the
/// real groups in. The configurations Portcullis ships remove the client's copies before
/// Envoy picks the route, as this gateway does: the customer is judged on `payments` and
/// refused, and an admin, judged on `payments` too, is sent down `payments-admins` by its
/// own groups.
#[test]
fn a_client_cannot_pick_the_route_with_a_forged_identity_header() {
    let admins_only = Upstream::start("payments-admins");
    let payments = Upstream::start("payments");
    let login = Upstream::start("login");
    let envoy = start(
        &Gateway::new()
            .strip_early(&portcullis_core::identity::headers::ALL)
            .route_with_header(
                "payments-admins",
                "/payments",
                ("x-consumer-groups", "admins"),
                &admins_only,
            )
            .route("payments", "/payments", &payments)
            .route("login", "/login", &login)
            .filter(portcullis_filter("jwt", Some(&jwt_config())))
            .filter(portcullis_filter("acl", Some(SCENARIO))),
    );
    let forged: &[(&str, &str)] = &[("x-consumer-groups", "admins")];

    let reply = call(&envoy, "GET", "/payments", Some(&customer_token()), forged);
    assert_forbidden(&reply, "customer token claiming admins");
    assert_eq!(payments.count() + admins_only.count(), 0);
    assert!(envoy.wait_for_log(
        r#"portcullis-acl: 403 consumer="web-app" route="payments" method="GET" reason=not_in_allow"#
    ));

    let reply = call(&envoy, "GET", "/payments", Some(&admin_token()), forged);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!((admins_only.count(), payments.count()), (1, 0));
    assert_eq!(
        admins_only.requests()[0].header_all("x-consumer-groups"),
        ["admins"]
    );
}

/// `method` sent to `path` over HTTP/2 without TLS (prior knowledge), as curl writes it
/// (HTTP/2 hands the method on exactly as written); the status Envoy answers.
fn h2_status(envoy: &Envoy, method: &str, path: &str, token: &str) -> u16 {
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--http2-prior-knowledge",
        ])
        .args([
            "-X",
            method,
            "-H",
            &format!("authorization: Bearer {token}"),
        ])
        .arg(envoy.url(path))
        .output()
        .unwrap_or_else(|e| panic!("curl (make setup installs it): {e}"));
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// `method` sent to `path` over HTTP/1.1, written as given; Envoy's status.
fn h1_status(envoy: &Envoy, method: &str, path: &str, token: &str) -> u16 {
    let request = format!(
        "{method} {path} HTTP/1.1\r\nhost: gateway\r\nauthorization: Bearer {token}\r\n\
         content-length: 0\r\nconnection: close\r\n\r\n"
    );
    client::send_raw(envoy.port(), request.as_bytes()).status
}

#[test]
fn a_deny_on_a_method_cannot_be_sidestepped_by_its_spelling_or_an_override_header() {
    let audit = Upstream::start("audit");
    let policy = json!({
        "any_consumer": true,
        "routes": {"audit": {"deny": [{"group": "customers", "methods": ["DELETE"]}]}}
    })
    .to_string();
    let envoy = start(
        &Gateway::new()
            .route("audit", "/audit", &audit)
            .filter(portcullis_filter("jwt", Some(&jwt_config())))
            .filter(portcullis_filter("acl", Some(&policy))),
    );
    let customer = customer_token();
    // HTTP/2 passes `delete` through as written.
    for method in ["DELETE", "delete", "Delete"] {
        assert_eq!(
            h2_status(&envoy, method, "/audit/1", &customer),
            403,
            "h2 {method}"
        );
    }
    // HTTP/1: Envoy's codec itself refuses a method that is not in upper case.
    for (method, status) in [("DELETE", 403), ("delete", 400)] {
        assert_eq!(
            h1_status(&envoy, method, "/audit/1", &customer),
            status,
            "h1 {method}"
        );
    }
    // A POST asking the upstream to run DELETE meets the DELETE rule.
    for header in [
        "x-http-method-override",
        "x-http-method",
        "x-method-override",
    ] {
        let reply = call(
            &envoy,
            "POST",
            "/audit/1",
            Some(&customer),
            &[(header, "DELETE")],
        );
        assert_forbidden(&reply, header);
    }
    assert_eq!(audit.count(), 0, "{:?}", audit.requests());
    // What the rule does not name still passes, in any spelling.
    assert_eq!(h2_status(&envoy, "get", "/audit/1", &customer), 200);
    let reply = call(&envoy, "POST", "/audit/1", Some(&customer), &[]);
    assert_eq!(reply.status, 200, "{}", reply.text());
    let methods: Vec<String> = audit.requests().iter().map(|r| r.method.clone()).collect();
    assert_eq!(methods, ["get", "POST"]);
    assert_eq!(
        envoy.metric("portcullis_acl_denied_in_deny_total{}"),
        Some(7.0)
    );
}
