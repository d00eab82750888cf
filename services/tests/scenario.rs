//! Issue 7's scenario, end to end: the demo config rendered from `envoy-config/` as `make
//! run` renders it, a real Envoy with two workers, and the real services behind it. Each test
//! is one part of the story a user of the demo would try with curl. Needs `make build` first.
//!
//! Rate limits (`policies/rate-limiting.json`) are per Envoy: 100 a minute per consumer, 20
//! on payments, 10 logins a minute per IP. The tests on the shared gateway stay far inside
//! them, all of them together (5 logins, a few requests per consumer); the two that need a
//! limit reached, and exact counts, start their own Envoy, and `make run`'s script runs its
//! own.

// Test code: clippy.toml lets #[test] functions panic, and these helpers are test code too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::gateway::{self, consumer_secret, consumer_token, Gateway};
use common::make_run::MakeRun;
use portcullis_services::demo::{Chain, FILTERS};
use portcullis_tests::{client, paths, tokens, Envoy, Reply};
use serde_json::{json, Value};

const UNAUTHORIZED: &str = r#"{"message":"Unauthorized"}"#;
const FORBIDDEN: &str = r#"{"message":"You cannot consume this service"}"#;
const RATE_LIMITED: &str = r#"{"message":"API rate limit exceeded"}"#;
/// The `content-type` of every answer a filter makes itself.
const FILTER_JSON: &str = "application/json; charset=utf-8";

/// What the user service says `web-app` is when it calls with its HS256 consumer token.
fn web_app_consumer() -> Value {
    json!({
        "x-consumer-custom-id": "456",
        "x-consumer-groups": "customers",
        "x-consumer-id": "web-app",
        "x-consumer-username": "web-app",
        "x-credential-identifier": "web-app",
    })
}

/// What a service says about a caller with a login token: the provider's identity.
fn logged_in(username: &str, group: &str) -> Value {
    json!({
        "x-consumer-groups": group,
        "x-consumer-username": username,
        "x-credential-identifier": "portcullis-demo",
    })
}

fn auth(token: &str) -> [(&str, &str); 1] {
    [("authorization", token)]
}

/// Asserts `reply` is the jwt filter's refusal with `body`.
fn assert_refused(reply: &Reply, body: &str, www_authenticate: &str, what: &str) {
    assert_eq!((reply.status, reply.text().as_str()), (401, body), "{what}");
    assert_eq!(
        reply.header("www-authenticate"),
        Some(www_authenticate),
        "{what}"
    );
    assert_eq!(reply.header("content-type"), Some(FILTER_JSON), "{what}");
    assert_eq!(
        reply.header("x-service"),
        None,
        "{what}: a service answered"
    );
}

/// The lines of the user, order and payment services for requests whose path holds `marker`.
fn served(gateway: &Gateway, marker: &str) -> Vec<String> {
    gateway
        .services
        .lines_containing(marker)
        .into_iter()
        .filter(|line| !line.starts_with("[login-service]"))
        .collect()
}

/// Sends a good request marked `sentinel=<case>` after a test's refused ones and waits for
/// the order service's line: a refused request that had reached a service would have
/// printed its line before then.
fn after_sentinel(gateway: &Gateway, case: &str) {
    let marker = format!("sentinel={case}");
    let reply = gateway.get(
        &format!("/orders?{marker}"),
        &auth(&consumer_token("web-app")),
    );
    assert_eq!(reply.status, 200, "sentinel: {}", reply.text());
    gateway.services.wait_for_line_containing(&marker);
    // What a reached request looks like to `served`.
    assert_eq!(served(gateway, &marker).len(), 1, "{marker}");
}

/// Identity headers a client makes up, to pass as `mobile-app` in `admins`, and `token`.
fn forged(token: Option<&str>) -> Vec<(&str, &str)> {
    let mut headers = vec![
        ("x-consumer-username", "mobile-app"),
        ("x-consumer-groups", "admins"),
        ("x-consumer-id", "mobile-app"),
        ("x-consumer-custom-id", "123"),
        ("x-credential-identifier", "mobile-app"),
        ("x-anonymous-consumer", "false"),
    ];
    headers.extend(token.map(|t| ("authorization", t)));
    headers
}

/// A header's value as a number; panics naming the header when it is missing or not one.
fn number(reply: &Reply, name: &str) -> u64 {
    reply
        .header(name)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name}: {:?} in {:?}", reply.header(name), reply.headers))
}

#[test]
fn mobile_app_pays_20_times_a_minute_then_gets_429_while_users_still_answers() {
    // Its own Envoy: the 20 a minute are counted per Envoy, and counted exactly here.
    let gateway = Gateway::start();
    let mobile = consumer_token("mobile-app");
    // The 22 requests below take well under a second: 10 s of room is a generous bound.
    let minute = gateway::minute_with_room(Duration::from_secs(10));
    for n in 1..=20u64 {
        let reply = gateway.get(&format!("/payments?case=pay-{n}"), &auth(&mobile));
        assert_eq!(reply.status, 200, "payment {n}: {}", reply.text());
        assert_eq!(reply.header("x-service"), Some("payment-service"));
        assert_eq!(reply.json()["user"], "mobile-app");
        // The payments limit is the tighter one, so it speaks: Kong's and the IETF headers.
        let left = (20 - n).to_string();
        for (name, value) in [
            ("x-ratelimit-limit-minute", "20"),
            ("x-ratelimit-remaining-minute", left.as_str()),
            ("ratelimit-limit", "20"),
            ("ratelimit-remaining", left.as_str()),
        ] {
            assert_eq!(reply.header(name), Some(value), "payment {n}: {name}");
        }
        assert!((1..=60).contains(&number(&reply, "ratelimit-reset")));
        assert_eq!(reply.header("retry-after"), None, "payment {n}");
    }

    let refused = gateway.get("/payments?case=pay-21", &auth(&mobile));
    let seconds_left = 60
        - SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
            % 60;
    assert_eq!(
        (refused.status, refused.text().as_str()),
        (429, RATE_LIMITED),
        "the 21st payment in a minute"
    );
    assert_eq!(refused.header("content-type"), Some(FILTER_JSON));
    assert_eq!(refused.header("x-service"), None);
    for (name, value) in [
        ("x-ratelimit-limit-minute", "20"),
        ("x-ratelimit-remaining-minute", "0"),
        ("ratelimit-limit", "20"),
        ("ratelimit-remaining", "0"),
    ] {
        assert_eq!(refused.header(name), Some(value), "429: {name}");
    }
    // Come back when this minute ends: both say so, and they agree with the clock.
    let reset = number(&refused, "ratelimit-reset");
    let retry_after = number(&refused, "retry-after");
    assert_eq!(retry_after, reset, "Retry-After and RateLimit-Reset");
    assert!(
        reset.abs_diff(seconds_left) <= 2,
        "RateLimit-Reset {reset} s, but the minute ends in {seconds_left} s"
    );

    // Other routes count only against the 100 a minute: 20 payments used, this is the 21st.
    let users = gateway.get("/users?case=users-after-429", &auth(&mobile));
    assert_eq!(users.status, 200, "{}", users.text());
    assert_eq!(users.json()["user"], "mobile-app");
    for (name, value) in [
        ("x-ratelimit-limit-minute", "100"),
        ("x-ratelimit-remaining-minute", "79"),
        ("ratelimit-limit", "100"),
        ("ratelimit-remaining", "79"),
    ] {
        assert_eq!(users.header(name), Some(value), "/users: {name}");
    }
    assert_eq!(
        gateway::minute_now(),
        minute,
        "the requests straddled a minute edge: they took over 10 s"
    );

    gateway
        .services
        .wait_for_line_containing("case=users-after-429");
    let payments: Vec<String> = gateway
        .services
        .lines()
        .into_iter()
        .filter(|line| line.starts_with("[payment-service]"))
        .collect();
    assert_eq!(payments.len(), 20, "{payments:#?}");
    assert!(!payments.iter().any(|line| line.contains("case=pay-21")));
}

#[test]
fn prometheus_stats_count_what_each_filter_did() {
    // Its own Envoy, so every count is this test's.
    let gateway = Gateway::start();
    let series = [
        "portcullis_token_issuer_issued_total{}",
        "portcullis_jwt_accepted_total{}",
        "portcullis_jwt_rejected_total{}",
        "portcullis_acl_allowed_total{}",
        "portcullis_acl_denied_total{}",
        "portcullis_rate_limiting_allowed_total{}",
        "portcullis_rate_limiting_limited_total{}",
    ];
    for name in series {
        assert_eq!(gateway.metric(name), 0.0, "{name} before any request");
    }

    // A login (token-issuer issues; acl lets the public route through; rate-limiting counts
    // it by IP), and the token on /users.
    let token = gateway.login("/login", "mobile-app", "mobile-demo");
    assert_eq!(gateway.get("/users", &auth(&token)).status, 200);
    // jwt refuses two: no token, garbage.
    assert_eq!(gateway.get("/users", &[]).status, 401);
    assert_eq!(gateway.get("/users", &auth("Bearer garbage")).status, 401);
    // acl refuses the customer's payment.
    let web = consumer_token("web-app");
    assert_eq!(gateway.get("/payments", &auth(&web)).status, 403);
    // rate-limiting refuses a payment beyond 20 in a minute. Over a minute edge the count
    // starts again, so up to 41 payments may go before the refusal.
    let mobile = consumer_token("mobile-app");
    let mut paid = 0;
    loop {
        let reply = gateway.get("/payments", &auth(&mobile));
        match reply.status {
            200 => paid += 1,
            429 => break,
            other => panic!("payment {}: {other} {}", paid + 1, reply.text()),
        }
        assert!(paid <= 40, "no 429 after {paid} payments");
    }
    assert!(paid >= 20, "429 after only {paid} payments");

    let expected = [
        1.0,                   // issued: the login
        (2 + paid + 1) as f64, // jwt accepted: /users, web-app's payment, every payment
        2.0,                   // jwt rejected: no token, garbage
        (2 + paid + 1) as f64, // acl allowed: the login, /users, every payment
        1.0,                   // acl denied: web-app's payment
        (2 + paid) as f64,     // rate-limiting allowed: the login, /users, the paid ones
        1.0,                   // rate-limiting limited
    ];
    let want: Vec<(&str, f64)> = series.into_iter().zip(expected).collect();
    // Counters are summed over the workers; give the last increment a moment.
    let mut got: Vec<(&str, f64)> = Vec::new();
    for _ in 0..50 {
        got = series.iter().map(|s| (*s, gateway.metric(s))).collect();
        if got == want {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(got, want);
    // And why jwt refused, by reason.
    for (name, value) in [
        ("portcullis_jwt_rejected_missing_total{}", 1.0),
        ("portcullis_jwt_rejected_malformed_total{}", 1.0),
        ("portcullis_acl_route_payments_denied_total{}", 1.0),
    ] {
        assert_eq!(gateway.metric(name), value, "{name}");
    }
}

#[test]
fn a_policy_with_an_unknown_field_stops_envoy_and_the_log_names_the_field() {
    // A misspelt field in each filter's policy, as a user editing policies/<filter>.json
    // might write it: the filter refuses, and with `fail_open: false` Envoy does not serve.
    type Misspell = fn(&mut Value);
    let cases: [(&str, Misspell, &str); 4] = [
        (
            "token-issuer",
            |p| p["keys"][0]["alg"] = json!("ES256"),
            "keys[0].alg: unknown field `alg`",
        ),
        (
            "jwt",
            |p| p["consumers"][1]["group"] = json!(["admins"]),
            "consumers[1].group: unknown field `group`",
        ),
        (
            "acl",
            |p| p["routes"]["payments"]["hide_group_header"] = json!(true),
            "routes.payments.hide_group_header: unknown field `hide_group_header`",
        ),
        (
            "rate-limiting",
            |p| p["routes"]["payments"]["minutes"] = json!(20),
            "routes.payments.minutes: unknown field `minutes`",
        ),
    ];
    // Services are not needed: Envoy stops before it would call one.
    for (filter, break_it, field) in cases {
        let scratch = paths::ScratchDir::new("broken-policy").unwrap();
        for name in FILTERS {
            let from = gateway::demo_policies().join(format!("{name}.json"));
            let mut policy: Value =
                serde_json::from_str(&std::fs::read_to_string(&from).unwrap()).unwrap();
            if name == filter {
                break_it(&mut policy);
            }
            let to = scratch.path().join(format!("{name}.json"));
            std::fs::write(&to, serde_json::to_string_pretty(&policy).unwrap()).unwrap();
        }
        let config = gateway::demo(
            scratch.path(),
            gateway::loopback(0),
            gateway::loopback(0),
            gateway::loopback(1),
            |_| gateway::loopback(1),
        )
        .render()
        .unwrap_or_else(|e| panic!("{e}"));
        let log = Envoy::builder(config)
            .start_expecting_refusal()
            .unwrap_or_else(|e| panic!("{filter}: {e:#}"));
        // The gateway names the stage first, as the field path's head.
        let (refused, plugin) = match gateway::chain() {
            Chain::Filters => (
                format!("portcullis-{filter}: configuration refused: {field}"),
                filter.to_owned(),
            ),
            Chain::Gateway => (
                format!(
                    "portcullis-gateway: configuration refused: {}.{field}",
                    filter.replace('-', "_")
                ),
                "gateway".to_owned(),
            ),
        };
        assert!(log.contains(&refused), "{filter}: no {refused:?} in\n{log}");
        let stopped = format!("Unable to create Wasm plugin {plugin}");
        assert!(log.contains(&stopped), "{filter}: no {stopped:?} in\n{log}");
    }
}

#[test]
fn envoy_validate_accepts_the_demo_config_as_make_run_renders_it() {
    // HTTPS (the default) and plain HTTP (TLS=0); the gateway (the default) and the four
    // filters (CHAIN=filters).
    let certs = gateway::DemoCerts::new();
    let cases = [Some(certs.dir().to_path_buf()), None]
        .into_iter()
        .flat_map(|tls| [Chain::Gateway, Chain::Filters].map(|chain| (tls.clone(), chain)));
    for (tls, chain) in cases {
        let config = portcullis_services::demo::Demo {
            tls,
            chain,
            ..gateway::make_run_demo()
        }
        .render()
        .unwrap_or_else(|e| panic!("{e}"));
        if let Err(log) = Envoy::validate(&config) {
            panic!("envoy --mode validate refused the demo config:\n{log}\n{config}");
        }
    }
}

#[test]
fn make_run_prints_tokens_that_work_and_ctrl_c_stops_everything() {
    let mut run = MakeRun::start();
    // Up to 120 s, as for NODES=2: the time includes `make run`'s own cargo build of the
    // services, which a first run after `cargo test` makes afresh (other features unified).
    run.wait_for(
        "Ctrl-C stops Envoy, portcullis-admin and the services.",
        Duration::from_secs(120),
    );
    let printed = |name: &str| -> String {
        let prefix = format!("{name}=");
        run.lines()
            .iter()
            .find_map(|line| line.trim().strip_prefix(&prefix).map(str::to_owned))
            .unwrap_or_else(|| panic!("run.sh printed no {name}=…"))
    };
    let (mobile, web) = (printed("MOBILE"), printed("WEB"));
    // HTTPS by default, with a demo CA made at this start in `.run/tls/`.
    client::trust(&paths::workspace_root().join(".run/tls/ca.pem"));
    let gw = format!("https://127.0.0.1:{}", run.port("DEMO_PORT"));
    // The printed tokens, as the printed curl commands use them.
    for (token, path, status, user) in [
        (&mobile, "/users", 200, "mobile-app"),
        (&mobile, "/payments", 200, "mobile-app"),
        (&web, "/orders", 200, "web-app"),
    ] {
        let reply = client::get(&format!("{gw}{path}"), &auth(&format!("Bearer {token}")));
        assert_eq!(reply.status, status, "GET {path}: {}", reply.text());
        assert_eq!(reply.json()["user"], user, "GET {path}");
    }
    let reply = client::get(&format!("{gw}/payments"), &auth(&format!("Bearer {web}")));
    assert_eq!((reply.status, reply.text().as_str()), (403, FORBIDDEN));
    // portcullis-admin: Kong's Admin API where the printed commands call it, an empty
    // database, and its data plane a cluster of the gateway.
    let admin_api = format!("https://127.0.0.1:{}", run.port("DEMO_ADMIN_API_PORT"));
    let status = client::get(&format!("{admin_api}/status"), &[]);
    assert_eq!(status.status, 200, "{}", status.text());
    assert_eq!(status.json()["database"]["reachable"], true);
    let consumers = client::get(&format!("{admin_api}/consumers"), &[]).json();
    assert_eq!(consumers["data"], json!([]), "{consumers}");
    run.assert_admin_cluster("DEMO_ADMIN_PORT");

    // The printed curl commands, pasted as printed, from the checkout: each trusts the demo
    // CA with --cacert and gets what the printout promises.
    let curl = "curl --cacert .run/tls/ca.pem";
    let login = r#"-H 'content-type: application/json' -d '{"username":"mobile-app","password":"mobile-demo"}'"#;
    for (line, status) in [
        (format!("{curl} -i {gw}/users"), 401),
        (
            format!(r#"{curl} -i {gw}/users -H "authorization: Bearer $MOBILE""#),
            200,
        ),
        (
            format!(r#"{curl} -i {gw}/payments -H "authorization: Bearer $WEB""#),
            403,
        ),
        (format!("{curl} -i {gw}/login {login}"), 200),
        (
            format!("{curl} -i -X POST {admin_api}/consumers --data username=alice"),
            201,
        ),
    ] {
        assert_pasted_status(&run, &line, status);
    }
    let out = run.paste(&format!("{curl} -s {admin_api}/status"));
    let status: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(status["database"]["reachable"], true, "{out}");
    // Without the CA, curl refuses the gateway's certificate: nothing goes in clear.
    let refused = std::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", &format!("{gw}/users")])
        .status()
        .unwrap();
    assert_eq!(refused.code(), Some(60), "curl without --cacert: {refused}");

    let status = run.ctrl_c();
    assert!(
        run.stopped_cleanly(status),
        "make run after Ctrl-C: {status}\n{:#?}",
        run.lines()
    );
    assert!(
        run.lines()
            .iter()
            .any(|line| line == "make run: stopped Envoy, portcullis-admin and the services"),
        "{:#?}",
        run.lines()
    );
    for (variable, port) in &run.ports {
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", *port)).is_err(),
            "{variable}: port {port} still answers after Ctrl-C"
        );
    }

    // Then `make run TLS=0`, after the first has stopped (both use `.run/`): plain HTTP,
    // and commands printed to match.
    make_run_tls_0_serves_plain_http();
}

fn make_run_tls_0_serves_plain_http() {
    let mut run = MakeRun::start_with(1, &["TLS=0"]);
    run.wait_for(
        "Ctrl-C stops Envoy, portcullis-admin and the services.",
        Duration::from_secs(120),
    );
    let gw = format!("http://127.0.0.1:{}", run.port("DEMO_PORT"));
    let admin_api = format!("http://127.0.0.1:{}", run.port("DEMO_ADMIN_API_PORT"));
    for (line, status) in [
        (format!("curl -i {gw}/users"), 401),
        (
            format!(r#"curl -i {gw}/users -H "authorization: Bearer $MOBILE""#),
            200,
        ),
        (
            format!("curl -i -X POST {admin_api}/consumers --data username=alice"),
            201,
        ),
    ] {
        assert_pasted_status(&run, &line, status);
    }
    // The service saw a plain connection from Envoy.
    let mobile = format!("Bearer {}", run.printed("MOBILE"));
    let reply = client::get(&format!("{gw}/users"), &auth(&mobile));
    assert_eq!(reply.json()["tls"], false, "{}", reply.text());
    let status = run.ctrl_c();
    assert!(
        run.stopped_cleanly(status),
        "make run TLS=0 after Ctrl-C: {status}\n{:#?}",
        run.lines()
    );
}

/// The scenario's requests that stay far inside every limit, on one gateway while they
/// overlap ([`gateway::shared`]): one module keeps them next to each other in the harness's
/// (alphabetical) order, so with two or more test threads they mostly find it running.
/// Each tells its requests apart by a `case=` marker in the path.
mod shared {
    use super::*;

    #[test]
    fn without_a_token_every_service_answers_401_and_none_is_reached() {
        let gateway = gateway::shared();
        for path in [
            "/users?case=no-token",
            "/users/42?case=no-token",
            "/orders?case=no-token",
            "/payments?case=no-token",
        ] {
            let reply = gateway.get(path, &[]);
            // No token sent: no `error` in the challenge (RFC 6750 §3.1).
            assert_refused(&reply, UNAUTHORIZED, r#"Bearer realm="portcullis""#, path);
        }
        // An empty bearer and another scheme are no token either.
        for header in ["Bearer ", "Basic d2ViLWFwcDp3ZWItZGVtbw=="] {
            let reply = gateway.get("/users?case=no-token", &[("authorization", header)]);
            assert_eq!(reply.status, 401, "{header:?}: {}", reply.text());
            assert_eq!(reply.header("x-service"), None);
        }
        after_sentinel(&gateway, "no-token");
        assert_eq!(served(&gateway, "case=no-token"), Vec::<String>::new());
    }

    #[test]
    fn bad_tokens_are_refused_with_401_and_reach_no_service() {
        let gateway = gateway::shared();
        let now = tokens::now();
        let header = |alg: &str| json!({ "alg": alg, "typ": "JWT" });
        let claims = |iss: &str| json!({ "iss": iss, "sub": iss, "iat": now, "exp": now + 3600 });
        let web_secret = consumer_secret("web-app");
        let mobile_secret = consumer_secret("mobile-app");
        let web = tokens::sign_raw(&header("HS256"), &claims("web-app"), web_secret.as_bytes());
        // Keeps a token's header and signature and puts another payload between them.
        let swap_payload = |token: &str, claims: &Value| {
            let parts: Vec<&str> = token.split('.').collect();
            assert_eq!(parts.len(), 3, "{token}");
            format!(
                "{}.{}.{}",
                parts[0],
                tokens::b64(claims.to_string()),
                parts[2]
            )
        };
        // The customer's login token, claiming to be in `admins`.
        let login = gateway.login("/login?case=tamper-login", "web-app", "web-demo");
        let login = login.trim_start_matches("Bearer ");
        let promoted = json!({
            "iss": "portcullis-demo", "sub": "456", "username": "web-app", "groups": ["admins"],
            "email": "web-app@example.com", "iat": now, "exp": now + 3600, "jti": "x",
        });
        let expired = json!({ "iss": "mobile-app", "iat": now - 7200, "exp": now - 3600 });
        let bad = [
            (
                "garbage",
                "garbage".to_owned(),
                r#"{"message":"Bad token; invalid JSON"}"#,
            ),
            (
                "web-app's token relabelled as mobile-app",
                swap_payload(&web, &claims("mobile-app")),
                r#"{"message":"Invalid signature"}"#,
            ),
            (
                "web-app's login token promoted to admins",
                swap_payload(login, &promoted),
                r#"{"message":"Invalid signature"}"#,
            ),
            (
                "expired an hour ago",
                tokens::sign_raw(&header("HS256"), &expired, mobile_secret.as_bytes()),
                r#"{"exp":"token expired"}"#,
            ),
            (
                "alg none",
                tokens::sign_raw(&header("none"), &claims("mobile-app"), b""),
                r#"{"message":"Bad token; invalid alg"}"#,
            ),
            (
                "alg None, signed",
                tokens::sign_raw(&header("None"), &claims("mobile-app"), b"")
                    + &tokens::b64(b"sig"),
                r#"{"message":"Bad token; invalid alg"}"#,
            ),
            (
                "signed by a consumer nobody registered",
                tokens::hs256("root", mobile_secret.as_bytes()),
                r#"{"message":"No credentials found for given 'iss'"}"#,
            ),
        ];
        for (what, token, body) in &bad {
            for route in ["users", "orders", "payments"] {
                let reply = gateway.get(
                    &format!("/{route}?case=bad-token"),
                    &auth(&format!("Bearer {token}")),
                );
                assert_refused(
                    &reply,
                    body,
                    r#"Bearer realm="portcullis", error="invalid_token""#,
                    &format!("{what} on /{route}"),
                );
            }
        }
        after_sentinel(&gateway, "bad-token");
        assert_eq!(served(&gateway, "case=bad-token"), Vec::<String>::new());
    }

    #[test]
    fn web_app_reads_users_as_itself_and_may_not_pay() {
        let gateway = gateway::shared();
        let login = gateway.login("/login?case=web-app", "web-app", "web-demo");
        for (how, token, identity) in [
            (
                "HS256 consumer token",
                consumer_token("web-app"),
                web_app_consumer(),
            ),
            ("login token", login, logged_in("web-app", "customers")),
        ] {
            let reply = gateway.get("/users?case=web-app", &auth(&token));
            assert_eq!(reply.status, 200, "{how}: {}", reply.text());
            let body = reply.json();
            assert_eq!(body["service"], "user-service", "{how}");
            assert_eq!(body["user"], "web-app", "{how}");
            assert_eq!(
                body["identity"], identity,
                "{how}: what the user service saw"
            );

            let reply = gateway.get("/payments?case=web-app-pays", &auth(&token));
            assert_eq!(
                (reply.status, reply.text().as_str()),
                (403, FORBIDDEN),
                "{how}"
            );
            assert_eq!(reply.header("content-type"), Some(FILTER_JSON), "{how}");
            assert_eq!(reply.header("x-service"), None, "{how}");
        }
        after_sentinel(&gateway, "web-app");
        assert_eq!(
            served(&gateway, "case=web-app-pays"),
            Vec::<String>::new(),
            "the payment service was reached"
        );
    }

    #[test]
    fn login_answers_a_token_that_works_and_bad_credentials_get_the_login_services_own_401() {
        let gateway = gateway::shared();
        let good = r#"{"username":"mobile-app","password":"mobile-demo"}"#;
        let reply = gateway.post_json("/login?case=login-good", &[], good);
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(reply.header("cache-control"), Some("no-store"));
        let answer = reply.json();
        let mut keys: Vec<&str> = answer
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(keys, ["expires_in", "token", "token_type"], "{answer}");
        assert_eq!(
            (&answer["token_type"], &answer["expires_in"]),
            (&json!("Bearer"), &json!(3600))
        );
        let token = format!("Bearer {}", answer["token"].as_str().unwrap());
        let reply = gateway.get("/users?case=login-token", &auth(&token));
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(reply.json()["identity"], logged_in("mobile-app", "admins"));

        // A wrong password: the login service's answer, byte for byte, as it gives it directly.
        let bad = r#"{"username":"web-app","password":"mobile-demo"}"#;
        let through = gateway.post_json("/login?case=login-bad", &[], bad);
        let direct = client::send(
            "POST",
            &gateway.services.url("login-service", "/login"),
            &[("content-type", "application/json")],
            Some(bad.as_bytes()),
        );
        assert_eq!(direct.status, 401);
        assert_eq!(direct.json(), json!({"message": "Invalid credentials"}));
        assert_eq!(
            (through.status, through.text()),
            (direct.status, direct.text())
        );
        for name in ["content-type", "x-service"] {
            assert_eq!(through.header(name), direct.header(name), "{name}");
        }
        assert_eq!(through.header("www-authenticate"), None);
        let line = gateway.services.wait_for_line_containing("case=login-bad");
        assert!(
            line.ends_with(r#"-> 401 user="web-app" invalid credentials"#),
            "{line}"
        );
    }

    #[test]
    fn a_clients_own_identity_headers_never_reach_a_service() {
        let gateway = gateway::shared();

        // A customer's token: the service sees the customer, and payments stay closed.
        let web = consumer_token("web-app");
        let reply = gateway.get("/users?case=forged-customer", &forged(Some(&web)));
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(reply.json()["identity"], web_app_consumer());
        let reply = gateway.get("/payments?case=forged-customer-pays", &forged(Some(&web)));
        assert_eq!((reply.status, reply.text().as_str()), (403, FORBIDDEN));

        // No token: refused where a token is needed.
        for path in [
            "/users?case=forged-anonymous",
            "/payments?case=forged-anonymous",
        ] {
            let reply = gateway.get(path, &forged(None));
            assert_eq!((reply.status, reply.text().as_str()), (401, UNAUTHORIZED));
        }
        // No token on the public login route: the login service gets none of them, and the
        // token it leads to is the customer's own.
        let login = json!({ "username": "web-app", "password": "web-demo" }).to_string();
        let reply = gateway.post_json("/login?case=forged-login", &forged(None), &login);
        assert_eq!(reply.status, 200, "{}", reply.text());
        let token = format!("Bearer {}", reply.json()["token"].as_str().unwrap());
        let line = gateway
            .services
            .wait_for_line_containing("case=forged-login");
        assert!(
            line.ends_with(r#"-> 200 user="web-app" logged in"#),
            "{line}"
        );
        let reply = gateway.get("/payments?case=forged-customer-pays", &auth(&token));
        assert_eq!((reply.status, reply.text().as_str()), (403, FORBIDDEN));

        after_sentinel(&gateway, "forged");
        let reached = served(&gateway, "case=forged");
        assert_eq!(reached.len(), 1, "{reached:#?}");
        assert!(
            reached[0].contains(r#"x-consumer-username="web-app""#)
                && !reached[0].contains("admins")
                && !reached[0].contains("mobile-app"),
            "{}",
            reached[0]
        );
    }
}

/// Pastes a curl line `make run` printed, checking it was printed exactly so, and asserts the
/// status line of its answer (`curl -i`).
fn assert_pasted_status(run: &MakeRun, line: &str, status: u16) {
    run.assert_printed(line);
    let out = run.paste(line);
    let got = out
        .lines()
        .next()
        .and_then(|first| first.split_whitespace().nth(1));
    assert_eq!(got, Some(status.to_string().as_str()), "{line}:\n{out}");
}
