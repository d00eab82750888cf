//! The acl filter as Envoy runs it, through host-test: each rule, the identity arriving in
//! filter state as the jwt filter leaves it, client-sent groups that get nowhere, refused
//! configurations, and the metrics and log lines an operator reads.

// Test helpers outside `#[test]` functions may fail loudly: clippy.toml's test allowances
// only cover the test functions themselves.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use host_test::{Exchange, Host, LogLevel, Request};
use portcullis_core::identity::Identity;
use serde_json::{json, Value};

/// The demo's policy: payments for admins; orders for admins, and for customers reading;
/// users for any consumer; login public; every other route denied to `banned`.
fn scenario() -> Value {
    json!({
        "deny": ["banned"],
        "routes": {
            "payments": {"allow": ["admins"]},
            "orders": {"allow": ["admins", {"group": "customers", "methods": ["GET", "HEAD"]}]},
            "users": {"any_consumer": true},
            "login": {"public": true},
        }
    })
}

fn consumer(name: &str, groups: &[&str]) -> Identity {
    Identity {
        consumer_id: Some(name.into()),
        username: Some(name.into()),
        credential: Some(format!("{name}-key")),
        groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        ..Identity::default()
    }
}

fn admin() -> Identity {
    consumer("mobile-app", &["admins"])
}

fn customer() -> Identity {
    consumer("web-app", &["customers"])
}

/// A request on `route`, carrying `identity` in filter state as the jwt filter leaves it.
fn request(method: &str, path: &str, route: &str, identity: Option<&Identity>) -> Request {
    let request = Request::new(method, path).route(route);
    match identity {
        Some(identity) => request.property(&["portcullis.identity"], &identity.encode()),
        None => request,
    }
}

/// (rule, method, path, route, identity, status, `X-Consumer-Groups` upstream)
type Case<'a> = (
    &'a str,
    &'a str,
    &'a str,
    &'a str,
    Option<&'a Identity>,
    u16,
    Option<&'a str>,
);

const FORBIDDEN: &str = "You cannot consume this service";

fn assert_refused(exchange: &Exchange, status: u16, message: &str, what: &str) {
    assert_eq!(
        exchange.status(),
        status,
        "{what}: {}",
        exchange.body_text()
    );
    assert_eq!(
        exchange.body_json(),
        json!({ "message": message }),
        "{what}"
    );
    assert_eq!(
        exchange.header("content-type").as_deref(),
        Some("application/json; charset=utf-8"),
        "{what}"
    );
    assert!(!exchange.reached_upstream(), "{what}: reached the upstream");
    assert!(exchange.crash.is_none(), "{what}: {:?}", exchange.crash);
}

#[test]
fn each_rule_lets_through_or_refuses_as_configured() {
    let host = Host::new();
    let mut acl = host.start("acl", &scenario());
    let banned = consumer("mallory", &["customers", "banned"]);
    let groupless = consumer("loner", &[]);
    let cases: [Case; 15] = [
        (
            "admin_reaches_payments",
            "POST",
            "/payments",
            "payments",
            Some(&admin()),
            200,
            Some("admins"),
        ),
        (
            "customer_is_refused_payments",
            "GET",
            "/payments",
            "payments",
            Some(&customer()),
            403,
            None,
        ),
        (
            "groupless_is_refused_payments",
            "GET",
            "/payments",
            "payments",
            Some(&groupless),
            403,
            None,
        ),
        (
            "customer_may_read_orders",
            "GET",
            "/orders/7",
            "orders",
            Some(&customer()),
            200,
            Some("customers"),
        ),
        (
            "customer_may_head_orders",
            "HEAD",
            "/orders/7",
            "orders",
            Some(&customer()),
            200,
            Some("customers"),
        ),
        (
            "customer_may_not_delete_orders",
            "DELETE",
            "/orders/7",
            "orders",
            Some(&customer()),
            403,
            None,
        ),
        (
            "admin_may_delete_orders",
            "DELETE",
            "/orders/7",
            "orders",
            Some(&admin()),
            200,
            Some("admins"),
        ),
        (
            "any_consumer_reaches_users",
            "GET",
            "/users",
            "users",
            Some(&groupless),
            200,
            None,
        ),
        (
            "banned_reaches_users_too",
            "GET",
            "/users",
            "users",
            Some(&banned),
            200,
            Some("customers, banned"),
        ),
        (
            "default_denies_banned",
            "GET",
            "/reports",
            "reports",
            Some(&banned),
            403,
            None,
        ),
        (
            "default_admits_others",
            "GET",
            "/reports",
            "reports",
            Some(&customer()),
            200,
            Some("customers"),
        ),
        (
            "no_identity_is_401_on_payments",
            "GET",
            "/payments",
            "payments",
            None,
            401,
            None,
        ),
        (
            "no_identity_is_401_on_users",
            "GET",
            "/users",
            "users",
            None,
            401,
            None,
        ),
        (
            "no_identity_is_401_on_the_default",
            "GET",
            "/reports",
            "reports",
            None,
            401,
            None,
        ),
        (
            "login_is_public",
            "POST",
            "/login",
            "login",
            None,
            200,
            None,
        ),
    ];
    for (rule, method, path, route, identity, status, groups) in cases {
        let exchange = acl.send(request(method, path, route, identity));
        match status {
            200 => {
                assert_eq!(exchange.status(), 200, "{rule}: {}", exchange.body_text());
                assert!(exchange.reached_upstream(), "{rule}");
                assert_eq!(
                    exchange.upstream_header("x-consumer-groups").as_deref(),
                    groups,
                    "{rule}"
                );
            }
            401 => assert_refused(&exchange, 401, "Unauthorized", rule),
            _ => assert_refused(&exchange, status, FORBIDDEN, rule),
        }
    }
}

#[test]
fn a_clients_own_groups_header_gets_nowhere() {
    let host = Host::new();
    let mut acl = host.start("acl", &scenario());
    let forged = |method: &str, path: &str, route: &str, identity: Option<&Identity>| {
        request(method, path, route, identity).header("X-Consumer-Groups", "admins")
    };

    let exchange = acl.send(forged("GET", "/payments", "payments", Some(&customer())));
    assert_refused(&exchange, 403, FORBIDDEN, "customer claiming admins");
    let exchange = acl.send(forged("GET", "/payments", "payments", None));
    assert_refused(&exchange, 401, "Unauthorized", "nobody claiming admins");
    let exchange = acl.send(forged("DELETE", "/orders/1", "orders", Some(&customer())));
    assert_refused(
        &exchange,
        403,
        FORBIDDEN,
        "customer deleting, claiming admins",
    );

    // Where the request may pass, the upstream hears the identity's groups, not the client's.
    let exchange = acl.send(forged("GET", "/orders/1", "orders", Some(&customer())));
    assert_eq!(exchange.status(), 200);
    let upstream = exchange
        .upstream
        .as_ref()
        .map(|u| u.headers.get_all("x-consumer-groups"));
    assert_eq!(upstream, Some(vec!["customers".to_owned()]));
    for (what, identity, route) in [
        ("public route, no identity", None, "login"),
        (
            "identity without groups",
            Some(consumer("loner", &[])),
            "users",
        ),
    ] {
        let exchange = acl.send(forged("GET", "/x", route, identity.as_ref()));
        assert_eq!(exchange.status(), 200, "{what}");
        assert_eq!(
            exchange.upstream_header("x-consumer-groups"),
            None,
            "{what}"
        );
    }

    // Several copies, and bytes that are not UTF-8, are all removed, without a panic.
    let exchange = acl.send(
        request("GET", "/x", "login", None)
            .header("x-consumer-groups", "admins")
            .header("x-consumer-groups", "ops")
            .header_bytes("x-consumer-groups", b"\xffadmins"),
    );
    assert!(exchange.crash.is_none(), "{:?}", exchange.crash);
    assert_eq!(exchange.upstream_header("x-consumer-groups"), None);
}

#[test]
fn hide_groups_header_keeps_the_groups_from_the_upstream() {
    let host = Host::new();
    let mut acl = host.start(
        "acl",
        &json!({"allow": ["admins"], "hide_groups_header": true}),
    );
    let exchange = acl.send(
        request("GET", "/payments", "payments", Some(&admin()))
            .header("x-consumer-groups", "admins"),
    );
    assert_eq!(exchange.status(), 200);
    assert_eq!(exchange.upstream_header("x-consumer-groups"), None);
}

#[test]
fn groups_come_from_a_claim_of_the_identity() {
    let host = Host::new();
    let mut acl = host.start(
        "acl",
        &json!({"allow": ["admins"], "groups_claim": "role", "consumer_groups": false}),
    );
    let mut token_admin = consumer("provider-user", &["customers"]);
    token_admin
        .claims
        .insert("role".into(), "ops, admins".into());
    let exchange = acl.send(request("GET", "/payments", "payments", Some(&token_admin)));
    assert_eq!(exchange.status(), 200, "{}", exchange.body_text());
    assert_eq!(
        exchange.upstream_header("x-consumer-groups").as_deref(),
        Some("ops, admins")
    );
    // The consumer's configured `admins` does not count when consumer_groups is false.
    let exchange = acl.send(request("GET", "/payments", "payments", Some(&admin())));
    assert_refused(&exchange, 403, FORBIDDEN, "configured groups ignored");
}

#[test]
fn an_identity_that_does_not_decode_fails_closed_with_401() {
    let host = Host::new();
    let mut acl = host.start("acl", &scenario());
    for (what, bytes) in [
        ("not JSON", &b"admins"[..]),
        ("unknown version", br#"{"v":2,"groups":["admins"]}"#),
        ("groups of the wrong type", br#"{"v":1,"groups":"admins"}"#),
    ] {
        host.clear_logs();
        let exchange = acl.send(
            Request::get("/users")
                .route("users")
                .property(&["portcullis.identity"], bytes),
        );
        assert_refused(&exchange, 401, "Unauthorized", what);
        assert!(
            host.logged(
                LogLevel::Warn,
                "portcullis-acl: identity in filter state does not decode"
            ),
            "{what}: {:?}",
            host.log_messages(LogLevel::Trace)
        );
    }
}

#[test]
fn a_refusal_is_logged_with_consumer_route_and_reason() {
    let host = Host::new();
    let mut acl = host.start("acl", &scenario());
    acl.send(request("DELETE", "/orders/1", "orders", Some(&customer())));
    acl.send(request(
        "GET",
        "/reports",
        "reports",
        Some(&consumer("mallory", &["banned"])),
    ));
    acl.send(request("GET", "/payments", "payments", None));
    let lines = host.log_messages(LogLevel::Info);
    for expected in [
        r#"portcullis-acl: 403 consumer="web-app" route="orders" method="DELETE" reason=not_in_allow: no allow rule for this method matches groups [customers]"#,
        r#"portcullis-acl: 403 consumer="mallory" route="reports" (default policy) method="GET" reason=in_deny: group "banned" is denied"#,
        r#"portcullis-acl: 401 consumer="-" route="payments" method="GET" reason=unauthenticated: no authenticated identity"#,
    ] {
        assert!(
            lines.iter().any(|l| l == expected),
            "{expected}\nnot in {lines:#?}"
        );
    }
}

#[test]
fn metrics_count_each_outcome_overall_per_route_and_by_reason() {
    let host = Host::new();
    let mut acl = host.start("acl", &scenario());
    acl.send(request("POST", "/payments", "payments", Some(&admin())));
    acl.send(request("POST", "/payments", "payments", Some(&admin())));
    acl.send(request("GET", "/payments", "payments", Some(&customer())));
    acl.send(request("GET", "/payments", "payments", None));
    acl.send(request(
        "GET",
        "/reports",
        "reports",
        Some(&consumer("m", &["banned"])),
    ));
    acl.send(request("GET", "/reports", "reports", Some(&customer())));
    for (metric, value) in [
        ("portcullis_acl_allowed_total", 3),
        ("portcullis_acl_denied_total", 3),
        ("portcullis_acl_denied_unauthenticated_total", 1),
        ("portcullis_acl_denied_not_in_allow_total", 1),
        ("portcullis_acl_denied_in_deny_total", 1),
        ("portcullis_acl_route_payments_allowed_total", 2),
        ("portcullis_acl_route_payments_denied_total", 2),
        ("portcullis_acl_default_allowed_total", 1),
        ("portcullis_acl_default_denied_total", 1),
        ("portcullis_acl_route_orders_allowed_total", 0),
    ] {
        assert_eq!(host.metric_value(metric), value, "{metric}");
    }
    assert!(host
        .metric("portcullis_acl_route_orders_denied_total")
        .is_some());
}

#[test]
fn broken_configurations_keep_the_filter_from_starting_and_name_the_field() {
    let rows: [(&str, &str, &str); 11] = [
        ("no configuration", "", "configuration refused: none given"),
        (
            "not JSON",
            "allow: admins",
            "configuration refused: not JSON",
        ),
        (
            "empty object",
            "{}",
            "configuration refused: set exactly one of `allow`, `deny`",
        ),
        (
            "allow and deny",
            r#"{"allow":["a"],"deny":["b"]}"#,
            "configuration refused: set exactly one of `allow`, `deny`, `any_consumer: true` and \
             `public: true` (the default policy, for routes not under `routes`): several are set",
        ),
        (
            "empty allow",
            r#"{"allow":[]}"#,
            "configuration refused: allow: must not be empty",
        ),
        (
            "empty route allow",
            r#"{"public":true,"routes":{"payments":{"allow":[]}}}"#,
            "configuration refused: routes.payments.allow: must not be empty",
        ),
        (
            "unknown field",
            r#"{"allow":["a"],"whitelist":["a"]}"#,
            "configuration refused: whitelist: unknown field `whitelist`",
        ),
        (
            "lower-case method",
            r#"{"allow":[{"group":"c","methods":["get"]}]}"#,
            "configuration refused: allow[0].methods[0]: \"get\" is not a method token in upper case",
        ),
        (
            "group with a comma",
            r#"{"deny":["a,b"]}"#,
            "configuration refused: deny[0]: \"a,b\": a group name cannot contain ','",
        ),
        (
            "repeated member",
            r#"{"allow":["a"],"allow":["b"]}"#,
            "configuration refused: a member name repeats",
        ),
        (
            "no source of groups",
            r#"{"allow":["a"],"consumer_groups":false}"#,
            "configuration refused: consumer_groups: false leaves no source of groups",
        ),
    ];
    for (what, config, expected) in rows {
        let host = Host::new();
        let refused = host.filter("acl").config(config).start();
        let error = match refused {
            Ok(_) => panic!("{what}: {config} was accepted"),
            Err(error) => error,
        };
        let line = format!("portcullis-acl: {expected}");
        assert!(
            host.log_messages(LogLevel::Error)
                .iter()
                .any(|l| l.starts_with(&line)),
            "{what}: no error line starting {line:?} in {:?}",
            error.logs
        );
    }
}

#[test]
fn a_decision_stays_within_its_instruction_budget() {
    let host = Host::new();
    let mut acl = host.start("acl", &scenario());
    let allowed = acl.send(request("GET", "/orders/1", "orders", Some(&customer())));
    let refused = acl.send(request("DELETE", "/orders/1", "orders", Some(&customer())));
    // Measured at about 19k instructions allowed and 24k refused (with its log line),
    // mostly decoding the identity's JSON; the budget catches an accidental allocation storm.
    for (what, exchange) in [("allowed", &allowed), ("refused", &refused)] {
        let spent = exchange.instructions_of(acl.name());
        assert!(spent < 60_000, "{what}: {spent} instructions");
    }
}

#[test]
fn behind_the_real_jwt_filter_an_anonymous_consumer_is_judged_by_its_own_groups() {
    let host = Host::new();
    let mut jwt = host.start(
        "jwt",
        &json!({
            "consumers": [{"username": "guest", "groups": ["guests"], "credentials": []}],
            "anonymous": "guest",
        }),
    );
    let mut acl = host.start("acl", &scenario());
    let forged = |path: &str, route: &str| {
        Request::get(path)
            .route(route)
            .header("x-consumer-groups", "admins")
    };

    let exchange = host_test::send(&mut [&mut jwt, &mut acl], forged("/payments", "payments"));
    assert_refused(&exchange, 403, FORBIDDEN, "guest on payments");
    assert_eq!(
        exchange.local_response.as_ref().map(|(by, _)| by.as_str()),
        Some(acl.name())
    );

    let exchange = host_test::send(&mut [&mut jwt, &mut acl], forged("/users", "users"));
    assert_eq!(exchange.status(), 200, "{}", exchange.body_text());
    let groups = exchange
        .upstream
        .as_ref()
        .map(|u| u.headers.get_all("x-consumer-groups"));
    assert_eq!(groups, Some(vec!["guests".to_owned()]));
    assert_eq!(
        exchange.upstream_header("x-anonymous-consumer").as_deref(),
        Some("true")
    );
}

#[test]
fn a_method_rule_cannot_be_sidestepped_by_the_letter_case_of_the_method() {
    let host = Host::new();
    let mut acl = host.start(
        "acl",
        &json!({
            "any_consumer": true,
            "routes": {
                "orders": {"allow": ["admins", {"group": "customers", "methods": ["GET", "HEAD"]}]},
                "audit": {"deny": [{"group": "customers", "methods": ["DELETE"]}]},
            }
        }),
    );
    // HTTP/2 hands a method on as the client wrote it; many upstreams upper-case it.
    for method in ["delete", "Delete", "DELETE"] {
        let exchange = acl.send(request(method, "/audit/1", "audit", Some(&customer())));
        assert_refused(&exchange, 403, FORBIDDEN, method);
        let exchange = acl.send(request(method, "/orders/1", "orders", Some(&customer())));
        assert_refused(&exchange, 403, FORBIDDEN, method);
    }
    for method in ["get", "Get", "GET"] {
        let exchange = acl.send(request(method, "/orders/1", "orders", Some(&customer())));
        assert_eq!(exchange.status(), 200, "{method}");
    }
}

#[test]
fn a_method_override_header_is_judged_as_the_method_it_names_or_refused() {
    let host = Host::new();
    let judged = json!({
        "any_consumer": true,
        "routes": {
            "orders": {"allow": ["admins", {"group": "customers", "methods": ["GET", "HEAD"]}]},
            "audit": {"deny": [{"group": "customers", "methods": ["DELETE"]}]},
            "users": {"allow": ["customers"]},
        }
    });
    let mut filter = host.start("acl", &judged);
    let overriding = |path: &str, route: &str, header: &str, value: &str| {
        request("POST", path, route, Some(&customer())).header(header, value)
    };
    for header in [
        "X-HTTP-Method-Override",
        "x-http-method",
        "X-Method-Override",
    ] {
        // A deny on DELETE: a POST that asks the upstream to run DELETE is refused.
        let exchange = filter.send(overriding("/audit/1", "audit", header, "DELETE"));
        assert_refused(&exchange, 403, FORBIDDEN, header);
        // An allow for GET only: a GET that asks for DELETE is refused, one that asks for
        // HEAD passes.
        let exchange = filter.send(
            request("GET", "/orders/1", "orders", Some(&customer())).header(header, "delete"),
        );
        assert_refused(&exchange, 403, FORBIDDEN, header);
        let exchange = filter
            .send(request("GET", "/orders/1", "orders", Some(&customer())).header(header, "HEAD"));
        assert_eq!(exchange.status(), 200, "{header}: HEAD");
        // A route without method rules does not look at methods.
        let exchange = filter.send(overriding("/users/1", "users", header, "DELETE"));
        assert_eq!(exchange.status(), 200, "{header}: users");
    }
    // Every copy counts: a harmless first copy cannot hide a DELETE.
    let exchange = filter.send(
        overriding("/audit/1", "audit", "x-http-method-override", "PATCH")
            .header("x-http-method-override", "DELETE"),
    );
    assert_refused(&exchange, 403, FORBIDDEN, "two copies");

    // refuse_method_override: any such header on a route with method rules is refused.
    let host = Host::new();
    let mut judged = judged;
    judged["refuse_method_override"] = json!(true);
    let mut filter = host.start("acl", &judged);
    let exchange = filter
        .send(request("GET", "/orders/1", "orders", Some(&admin())).header("x-http-method", "GET"));
    assert_refused(&exchange, 403, FORBIDDEN, "refused override");
    assert_eq!(
        host.metric_value("portcullis_acl_denied_method_override_total"),
        1
    );
    assert!(host.logged(
        LogLevel::Info,
        r#"portcullis-acl: 403 consumer="mobile-app" route="orders" method="GET" reason=method_override: a method-override header on a route with method rules"#
    ));
    let exchange = filter.send(request("GET", "/orders/1", "orders", Some(&admin())));
    assert_eq!(exchange.status(), 200, "without the header");
    let exchange = filter.send(
        request("GET", "/users/1", "users", Some(&customer())).header("x-http-method", "DELETE"),
    );
    assert_eq!(exchange.status(), 200, "a route without method rules");
}

#[test]
fn a_consumer_name_from_a_token_reaches_the_log_escaped_and_cut_short() {
    let host = Host::new();
    let mut filter = host.start("acl", &scenario());
    // A provider's consumer is named by the token's `sub`: the client's choice.
    let forged = consumer(&format!("eve\r\n[critical] forged{}", "x".repeat(500)), &[]);
    let exchange = filter.send(request("POST", "/payments", "payments", Some(&forged)));
    assert_refused(&exchange, 403, FORBIDDEN, "forged name");
    let lines = host.log_messages(LogLevel::Info);
    let line = lines
        .iter()
        .find(|l| l.starts_with("portcullis-acl: 403"))
        .unwrap_or_else(|| panic!("{lines:?}"));
    assert!(!line.contains(['\r', '\n']), "{line}");
    assert!(
        line.starts_with(r#"portcullis-acl: 403 consumer="eve\r\n[critical] forged"#),
        "{line}"
    );
    assert!(line.contains(r#"xxx"… route="payments""#), "{line}");
}
