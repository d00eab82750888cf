//! The harness against a real Envoy: the four Portcullis filters chained in front of two
//! recording upstreams, a broken filter config refused at start-up, and config validation.

use portcullis_tests::config::{
    bootstrap, direct_response, portcullis_filter, virtual_host, wasm_filter, Listener,
};
use portcullis_tests::{client, paths, Envoy, Gateway, Upstream};

const FILTERS: [&str; 4] = ["jwt", "acl", "rate-limiting", "token-issuer"];

/// The configuration under which a filter lets every request through: jwt admits callers
/// without a token as the anonymous consumer `guest`, whom acl does not deny.
fn pass_through(filter: &str) -> &'static str {
    match filter {
        "jwt" => r#"{"consumers":[{"username":"guest","credentials":[]}],"anonymous":"guest"}"#,
        "acl" => r#"{"deny":["blocked"]}"#,
        "rate-limiting" => r#"{"minute": 100000, "limit_by": "ip"}"#,
        "token-issuer" => {
            r#"{"auth_paths":[{"path":"/login"}],"iss":"portcullis-smoke","keys":[{"kid":"smoke","algorithm":"HS256","secret":"FVYGMY8NaopOclJ2MtJ8wat3RqUwqi83"}]}"#
        }
        _ => "{}",
    }
}

/// `/users` and `/orders` to their upstreams, `/health` answered by Envoy, behind the four
/// filters, each given `config` (`None`: no configuration at all; `Some(None)`: each
/// filter's pass-through configuration).
fn gateway(users: &Upstream, orders: &Upstream, config: Option<Option<&str>>) -> Gateway {
    FILTERS.iter().fold(
        Gateway::new()
            .route("users", "/users", users)
            .route("orders", "/orders", orders)
            .direct_response("health", "/health", 200, "ok"),
        |gateway, filter| {
            let config = config.map(|c| c.unwrap_or_else(|| pass_through(filter)));
            gateway.filter(portcullis_filter(filter, config))
        },
    )
}

fn start(gateway: &Gateway) -> Envoy {
    Envoy::builder(gateway.render())
        .concurrency(2)
        .start()
        .unwrap_or_else(|e| panic!("{e:#}"))
}

/// Connections each Envoy worker accepted on the gateway listener.
fn worker_connections(stats: &str, worker: u32) -> u64 {
    let series = format!("envoy_listener_worker_downstream_cx_total{{envoy_worker_id=\"{worker}\"");
    stats
        .lines()
        .filter(|line| line.starts_with(&series))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[test]
fn four_chained_filters_pass_each_request_to_its_routes_upstream() {
    let users = Upstream::start("users");
    let orders = Upstream::start("orders");
    let envoy = start(&gateway(&users, &orders, Some(None)));

    // Each request on its own connection: twenty connections reach both workers.
    const ROUNDS: usize = 10;
    for i in 0..ROUNDS {
        let tag = format!("users-{i}");
        let reply = client::get(
            &envoy.url(&format!("/users/{i}?q=a%20b")),
            &[("x-request-tag", &tag), ("x-multi", "1"), ("x-multi", "2")],
        );
        assert_eq!(reply.status, 200, "GET /users/{i}: {}", reply.text());
        assert_eq!(reply.json()["upstream"], "users");

        let body = format!(r#"{{"order":{i}}}"#);
        let reply = client::send(
            "POST",
            &envoy.url("/orders"),
            &[
                ("content-type", "application/json"),
                ("x-request-tag", &format!("orders-{i}")),
            ],
            Some(body.as_bytes()),
        );
        assert_eq!(reply.status, 200, "POST /orders: {}", reply.text());
        assert_eq!(reply.header("x-upstream"), Some("orders"));
    }
    let health = client::get(&envoy.url("/health"), &[]);
    assert_eq!((health.status, health.text().as_str()), (200, "ok"));

    let host = format!("127.0.0.1:{}", envoy.listener_port(Gateway::LISTENER));
    let seen = users.requests();
    assert_eq!(seen.len(), ROUNDS, "users saw {seen:#?}");
    for (i, request) in seen.iter().enumerate() {
        assert_eq!(request.method, "GET");
        assert_eq!(request.path, format!("/users/{i}?q=a%20b"));
        assert_eq!(
            request.header("X-Request-Tag"),
            Some(format!("users-{i}").as_str())
        );
        assert_eq!(request.header_all("x-multi"), ["1", "2"]);
        assert_eq!(request.header("host"), Some(host.as_str()));
        assert_eq!(request.header("x-forwarded-proto"), Some("http"));
        assert!(request.body.is_empty());
    }
    let seen = orders.requests();
    assert_eq!(seen.len(), ROUNDS, "orders saw {seen:#?}");
    for (i, request) in seen.iter().enumerate() {
        assert_eq!(
            (request.method.as_str(), request.path.as_str()),
            ("POST", "/orders")
        );
        assert_eq!(
            request.header("x-request-tag"),
            Some(format!("orders-{i}").as_str())
        );
        assert_eq!(request.header("content-type"), Some("application/json"));
        assert_eq!(request.body_text(), format!(r#"{{"order":{i}}}"#));
    }

    let stats = envoy.stats_prometheus();
    for worker in [0, 1] {
        assert!(
            worker_connections(&stats, worker) > 0,
            "worker {worker} served no connection:\n{stats}"
        );
    }
    let completed = |cluster: &str| {
        envoy.metric(&format!(
            "envoy_cluster_upstream_rq_completed{{envoy_cluster_name=\"{cluster}\"}}"
        ))
    };
    assert_eq!(completed("users"), Some(ROUNDS as f64));
    assert_eq!(completed("orders"), Some(ROUNDS as f64));
    assert!(envoy.wait_for_log("[access] GET /health route=health status=200"));
}

/// A filter given a configuration it cannot parse must keep Envoy from serving at all. The
/// same gateway with a good configuration first shows the request would otherwise get
/// through, so the refusal is the configuration's doing.
fn broken_config_keeps_envoy_from_serving(filter: &str) {
    let users = Upstream::start("users");
    // Filters after jwt need the identity it hands on: jwt goes first.
    let base = || {
        let gateway = Gateway::new().route("users", "/users", &users);
        if filter == "jwt" {
            gateway
        } else {
            gateway.filter(portcullis_filter("jwt", Some(pass_through("jwt"))))
        }
    };
    let good = base().filter(portcullis_filter(filter, Some(pass_through(filter))));
    let envoy = start(&good);
    assert_eq!(client::get(&envoy.url("/users"), &[]).status, 200);
    assert_eq!(users.count(), 1);
    drop(envoy);

    let broken = base().filter(portcullis_filter(filter, Some("not json")));
    let log = Envoy::builder(broken.render())
        .start_expecting_refusal()
        .unwrap_or_else(|e| panic!("{e:#}"));

    // The filter says what is wrong, at error level, and Envoy names the plugin it refused.
    let filter_line = log.lines().find(|line| {
        line.contains("[error][wasm]") && line.contains(&format!("portcullis-{filter}:"))
    });
    assert!(filter_line.is_some(), "no error from the filter in:\n{log}");
    assert!(
        log.contains(&format!("Unable to create Wasm plugin {filter}")),
        "Envoy did not name the refused plugin in:\n{log}"
    );
    assert_eq!(
        users.count(),
        1,
        "a request reached the upstream through the broken Envoy"
    );
}

#[test]
fn broken_jwt_config_keeps_envoy_from_serving() {
    broken_config_keeps_envoy_from_serving("jwt");
}

#[test]
fn broken_acl_config_keeps_envoy_from_serving() {
    broken_config_keeps_envoy_from_serving("acl");
}

#[test]
fn broken_rate_limiting_config_keeps_envoy_from_serving() {
    broken_config_keeps_envoy_from_serving("rate-limiting");
}

#[test]
fn broken_token_issuer_config_keeps_envoy_from_serving() {
    broken_config_keeps_envoy_from_serving("token-issuer");
}

#[test]
fn validate_accepts_the_gateway_and_names_what_is_wrong_with_a_broken_one() {
    let users = Upstream::start("users");
    let orders = Upstream::start("orders");
    let config = gateway(&users, &orders, Some(None)).render();
    assert_eq!(Envoy::validate(&config), Ok(()));

    // Validation runs each filter's on_configure, so a bad plugin config is caught too.
    let broken = gateway(&users, &orders, Some(Some("not json"))).render();
    let error = Envoy::validate(&broken).expect_err("a plugin config that is not JSON");
    assert!(
        error.contains("Unable to create Wasm plugin jwt"),
        "{error}"
    );

    let misspelt = config.replacen("fail_open:", "fail_opn:", 1);
    let error = Envoy::validate(&misspelt).expect_err("a misspelt field");
    // Protobuf pads its error text with a random number of spaces ("no such   field"), so
    // that no one matches it exactly: compare with the whitespace collapsed.
    let error = error.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(error.contains("no such field"), "{error}");
    assert!(error.contains("fail_opn"), "{error}");

    // Nothing was started, so nothing was forwarded.
    assert_eq!(users.count() + orders.count(), 0);
}

#[test]
fn start_fails_with_envoys_reason_when_the_config_is_rejected() {
    let users = Upstream::start("users");
    let probe = paths::fixture("probe");
    let config = Gateway::new()
        .route("users", "/users", &users)
        .filter(wasm_filter("probe", "probe", "probe", &probe, None))
        .render()
        .replacen("cluster: \"users\"", "cluster: \"nowhere\"", 1);
    let error = match Envoy::builder(config).start() {
        Ok(_) => panic!("Envoy started with a route to an unknown cluster"),
        Err(e) => format!("{e:#}"),
    };
    assert!(error.contains("Envoy exited during start-up"), "{error}");
    assert!(error.contains("nowhere"), "{error}");
}

#[test]
fn template_placeholders_are_filled_and_a_missing_one_is_named() {
    let users = Upstream::start("users");
    let template = Gateway::new()
        .route("users", "/users", &users)
        .filter("{{FILTER}}".to_owned())
        .render();
    let error = match Envoy::builder(template.as_str()).start() {
        Ok(_) => panic!("Envoy started from a template with an unfilled placeholder"),
        Err(e) => format!("{e:#}"),
    };
    assert!(error.contains("no value for FILTER"), "{error}");

    let envoy = Envoy::builder(template)
        .var(
            "FILTER",
            wasm_filter("probe", "probe", "probe", &paths::fixture("probe"), None),
        )
        .start()
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert!(envoy.config().contains("fixtures/probe.wasm"));
    assert_eq!(client::get(&envoy.url("/users/7"), &[]).status, 200);
    assert_eq!(
        users.wait_for(1, std::time::Duration::from_secs(5))[0].path,
        "/users/7"
    );
}

#[test]
fn a_template_without_admin_gets_one_and_each_listener_is_found_by_name() {
    // Two listeners, neither called `main`, each answering `/` with its own body.
    let listener = |name: &str, body: &str| {
        Listener::new(name).virtual_host(virtual_host(
            "all",
            &["*"],
            &[direct_response(name, "/", 200, body)],
        ))
    };
    let template = bootstrap(
        &[
            listener("public", "{{PUBLIC_BODY}}"),
            listener("internal", "internal"),
        ],
        &[],
    );
    let envoy = Envoy::builder(template)
        .var("PUBLIC_BODY", "public")
        .concurrency(1)
        .start()
        .unwrap_or_else(|e| panic!("{e:#}"));

    assert!(envoy.config().starts_with("admin:"));
    let public = envoy.listener_port("public");
    let internal = envoy.listener_port("internal");
    assert_ne!(public, internal);
    // No listener is called `main`: url() addresses the first one in the config.
    assert_eq!(envoy.url("/x"), format!("http://127.0.0.1:{public}/x"));
    assert_eq!(client::get(&envoy.url("/"), &[]).text(), "public");
    let internal_url = format!("http://127.0.0.1:{internal}/");
    assert_eq!(client::get(&internal_url, &[]).text(), "internal");
    assert_eq!(
        client::get(&envoy.admin_url("/ready"), &[]).text().trim(),
        "LIVE"
    );
    assert_eq!(envoy.stat("http.public.downstream_rq_2xx"), Some(1));
}

#[test]
fn a_failing_test_keeps_envoys_log_for_reading() {
    let users = Upstream::start("users");
    let envoy = start(&Gateway::new().route("users", "/users", &users));
    let dir = envoy.dir().to_path_buf();
    assert_eq!(client::get(&envoy.url("/users"), &[]).status, 200);
    assert!(envoy.wait_for_log("[access] GET /users route=users status=200"));

    // Dropped while panicking, as when an assertion fails: Envoy stops, its files stay.
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        let _envoy = envoy;
        panic!("a failing assertion");
    }));
    assert!(outcome.is_err());
    let log = std::fs::read_to_string(dir.join("envoy.log")).unwrap_or_default();
    std::fs::remove_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    assert!(log.contains("route=users status=200"), "{log}");
    assert!(
        log.contains("caught ENVOY_SIGTERM"),
        "Envoy was not stopped:\n{log}"
    );
}
