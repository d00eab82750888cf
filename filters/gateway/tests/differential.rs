//! The one-VM gateway is the same gateway as the chain of separate filters: one corpus of
//! requests (tokens good and bad from every source, forged identity headers, groups,
//! methods, routes, limits reached, tokens issued and used) goes through the chain
//! token-issuer → jwt → acl → rate-limiting in one host and through the gateway, configured
//! with the same four policies, in another. For every request the client's status, headers
//! and body, what reached the upstream with which headers, and the decision records must be
//! the same; at the end, every counter. Any difference fails, named by request.

// Test helpers outside `#[test]` functions may fail loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use host_test::{Exchange, GrpcAnswer, Host, Plugin, Request, UpstreamResponse};
use portcullis_core::rate_limit::rls::{
    DescriptorStatus, ProtoDuration, RateLimitResponse, CODE_OK, CODE_OVER_LIMIT,
};
use portcullis_tests::{paths, tokens};
use prost::Message;
use serde_json::{json, Value};

/// The separate filters, in chain order, with their names in the gateway's configuration.
const FILTERS: [(&str, &str); 4] = [
    ("token-issuer", "token_issuer"),
    ("jwt", "jwt"),
    ("acl", "acl"),
    ("rate-limiting", "rate_limiting"),
];

const MOBILE_SECRET: &str = "demo-only-mobile-app-secret-0123456789abcdef";
const WEB_SECRET: &str = "demo-only-web-app-secret-0123456789abcdef";

/// The demo's policy of `filter` (envoy-config/policies), as `make run` loads it, without
/// the consumer source (no portcullis-admin here: the consumers are in the policy); with
/// `"decision_records": false` when `records` is false.
fn policy(filter: &str, redis: bool, records: bool) -> Value {
    let file = match filter {
        "rate-limiting" if redis => "rate-limiting-redis".to_owned(),
        other => other.to_owned(),
    };
    let path = paths::workspace_root().join(format!("envoy-config/policies/{file}.json"));
    let mut value: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    if let Some(object) = value.as_object_mut() {
        object.remove("consumer_source");
    }
    if filter == "jwt" {
        // Every token source Kong has: the header, `?jwt=` and a cookie.
        value["cookie_names"] = json!(["jwt"]);
    }
    if !records {
        value["decision_records"] = json!(false);
    }
    value
}

/// The two packagings of the same gateway, each in its own host (its own shared data,
/// counters and clock).
struct Pair {
    chain_host: Host,
    chain: Vec<Plugin>,
    gateway_host: Host,
    gateway: Plugin,
    /// Whether the filters publish decision records (`decision_records`).
    records: bool,
    /// Requests seen authenticated with records off (each packaging counted).
    identities: u32,
    /// The same pair with every filter's records off, sent every request too: what each
    /// request did must not depend on the records.
    twin: Option<Box<Pair>>,
    /// The tokens the last login issued, the chain's and the gateway's.
    issued: (String, String),
}

/// Which packaging of a pair a request is for.
#[derive(Clone, Copy)]
enum Side {
    Chain,
    Gateway,
}

impl Pair {
    fn new(redis: bool) -> Pair {
        Pair::with(redis, true, tokens::now())
    }

    /// Both packagings, their clocks at `now`, publishing decision records or not.
    fn with(redis: bool, records: bool, now: u64) -> Pair {
        let chain_host = Host::new();
        let gateway_host = Host::new();
        for host in [&chain_host, &gateway_host] {
            host.set_unix_time(now);
            if redis {
                host.grpc_service("ratelimit", rate_limit_service());
            }
        }
        let chain = FILTERS
            .iter()
            .map(|(filter, _)| {
                chain_host
                    .plugin(paths::wasm(filter))
                    .name(filter)
                    .config_json(&policy(filter, redis, records))
                    .start()
                    .unwrap_or_else(|e| panic!("{filter} starts: {e:?}"))
            })
            .collect();
        let config: serde_json::Map<String, Value> = FILTERS
            .iter()
            .map(|(filter, stage)| ((*stage).to_owned(), policy(filter, redis, records)))
            .collect();
        let gateway = gateway_host
            .plugin(paths::wasm("gateway"))
            .name("gateway")
            .config_json(&Value::Object(config))
            .start()
            .unwrap_or_else(|e| panic!("the gateway starts: {e:?}"));
        Pair {
            chain_host,
            chain,
            gateway_host,
            gateway,
            records,
            identities: 0,
            twin: None,
            issued: Default::default(),
        }
    }

    /// Sends `request` through both and fails on any difference; the chain's exchange.
    fn both(&mut self, label: &str, request: impl Fn() -> Request) -> Exchange {
        self.send(label, &|_, _| request())
    }

    /// Sends `request(self, side)` through each side and fails on any difference; then the
    /// same through the twin, failing if the request did anything else there (its records
    /// aside). Keeps the tokens a login issues. The chain's exchange.
    fn send(&mut self, label: &str, request: &dyn Fn(&Pair, Side) -> Request) -> Exchange {
        let (to_chain, to_gateway) = (request(self, Side::Chain), request(self, Side::Gateway));
        let mut chain: Vec<&mut Plugin> = self.chain.iter_mut().collect();
        let separate = host_test::send(&mut chain, to_chain);
        let bundled = self.gateway.send(to_gateway);
        self.compare(label, &separate, &bundled);
        let token = |ex: &Exchange| ex.body_json()["token"].as_str().map(str::to_owned);
        if let (Some(a), Some(b)) = (token(&separate), token(&bundled)) {
            self.issued = (a, b);
        }
        if let Some(twin) = self.twin.as_mut() {
            let other = twin.send(label, request);
            assert_eq!(
                unrecorded(&separate),
                unrecorded(&other),
                "{label}: records on (left) and off (right) differ"
            );
        }
        separate
    }

    /// The token the last login issued to `side`.
    fn issued(&self, side: Side) -> &str {
        match side {
            Side::Chain => &self.issued.0,
            Side::Gateway => &self.issued.1,
        }
    }

    /// Fails on any difference between the two packagings' exchanges, on a record published
    /// with records off, or then on an authenticated request without its identity.
    fn compare(&mut self, label: &str, separate: &Exchange, bundled: &Exchange) {
        same(label, separate, bundled, self.records);
        if !self.records {
            for ex in [separate, bundled] {
                let authenticated = ex.upstream.as_ref().is_some_and(|u| {
                    u.headers
                        .pairs
                        .iter()
                        .any(|(k, _)| k == "x-consumer-username")
                });
                if authenticated {
                    assert!(
                        ex.filter_state.contains_key("wasm.portcullis.identity"),
                        "{label}: records off, and the identity went with them"
                    );
                    self.identities += 1;
                }
            }
        }
    }

    /// Every counter of both hosts, by name: the same names, the same values.
    fn same_counters(&self) {
        let separate = counters(&self.chain_host);
        let bundled = counters(&self.gateway_host);
        assert!(!separate.is_empty());
        assert_eq!(
            separate, bundled,
            "counters: chain (left) vs gateway (right)"
        );
    }
}

/// What one request did, its decision records left out.
fn unrecorded(ex: &Exchange) -> Value {
    let mut value = observed(ex);
    if let Some(object) = value.as_object_mut() {
        object.remove("records");
    }
    value
}

/// Every Portcullis counter of `host`, by name.
fn counters(host: &Host) -> BTreeMap<String, i64> {
    host.metrics()
        .into_iter()
        .filter(|m| m.name.starts_with("portcullis_"))
        .map(|m| (m.name, m.value))
        .collect()
}

/// What one request did, in a form two packagings can be compared by: a signed token is
/// random (its `jti`, an ECDSA signature), so it is compared by its claims without `jti`.
fn observed(ex: &Exchange) -> Value {
    let mut response_headers: Vec<(String, String)> = ex
        .response
        .headers
        .pairs
        .iter()
        .map(|(k, v)| (k.clone(), String::from_utf8_lossy(v).into_owned()))
        .collect();
    response_headers.sort();
    let body = match serde_json::from_slice::<Value>(&ex.response.body) {
        Ok(Value::Object(mut object)) => {
            for (_, value) in object.iter_mut() {
                if let Some(claims) = value.as_str().and_then(token_claims) {
                    *value = claims;
                }
            }
            Value::Object(object)
        }
        _ => json!(ex.body_text()),
    };
    let upstream = ex.upstream.as_ref().map(|u| {
        let headers: Vec<(String, String)> = u
            .headers
            .pairs
            .iter()
            .map(|(k, v)| {
                let value = String::from_utf8_lossy(v).into_owned();
                // An issued token, used: the same claims, its own jti and signature.
                let issued = value
                    .strip_prefix("Bearer ")
                    .and_then(token_claims)
                    .filter(|t| t["claims"]["iss"] == "portcullis-demo");
                (k.clone(), issued.map_or(value, |t| t.to_string()))
            })
            .collect();
        json!({ "headers": headers, "body": String::from_utf8_lossy(&u.body) })
    });
    let records: BTreeMap<String, String> = ex
        .filter_state
        .iter()
        .filter(|(k, _)| k.contains("portcullis.decision."))
        .map(|(k, v)| (k.clone(), String::from_utf8_lossy(v).into_owned()))
        .collect();
    json!({
        "status": ex.status(),
        "headers": response_headers,
        "body": body,
        "upstream": upstream,
        "records": records,
        "reset": ex.was_reset(),
        "stalled": ex.stalled,
        "crash": ex.crash,
    })
}

/// A JWT's header and claims without `jti` (random per token); `None` for anything else.
fn token_claims(text: &str) -> Option<Value> {
    let mut parts = text.split('.');
    let (header, claims, _signature) = (parts.next()?, parts.next()?, parts.next()?);
    let decode = |part: &str| -> Option<Value> {
        use base64::Engine;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .ok()?;
        serde_json::from_slice(&bytes).ok()
    };
    let mut claims = decode(claims)?;
    claims.as_object_mut()?.remove("jti");
    Some(json!({ "header": decode(header)?, "claims": claims }))
}

fn same(label: &str, separate: &Exchange, bundled: &Exchange, records: bool) {
    let (a, b) = (observed(separate), observed(bundled));
    // jwt publishes a decision for every request it sees: the records are compared too.
    // With records off there must be none (the gateway's are then equal: none either).
    let published = a["records"].as_object().is_some_and(|r| !r.is_empty());
    assert!(
        published == records,
        "{label}: records {}, yet {}",
        if records { "on" } else { "off" },
        a["records"]
    );
    assert_eq!(
        a,
        b,
        "{label}: the chain of filters (left) and the gateway (right) differ\nchain:   {}\ngateway: {}",
        serde_json::to_string_pretty(&a).unwrap(),
        serde_json::to_string_pretty(&b).unwrap()
    );
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// A request of the scenario on `route` at `path`, with a fixed request id (host-test numbers
/// them across hosts).
fn on(method: &str, path: &str, route: &str) -> Request {
    Request::new(method, path)
        .route(route)
        .header("x-request-id", "differential")
}

/// The login upstream's answer: the user's profile, which the token issuer signs.
fn profile(user: &str, groups: &[&str]) -> UpstreamResponse {
    UpstreamResponse::new(200).json(&json!({
        "sub": user, "username": user, "groups": groups, "email": format!("{user}@example.com")
    }))
}

/// Logs in through both packagings (and the twin); the pair keeps each one's issued token.
fn login(pair: &mut Pair, label: &str, user: &str, groups: &[&str]) {
    let separate = pair.send(label, &|_, _| {
        on("POST", "/login", "login")
            .property(&["xds", "cluster_name"], b"login-service")
            .header("content-type", "application/json")
            .body(r#"{"username":"u","password":"p"}"#)
            .respond(profile(user, groups))
    });
    assert_eq!(separate.status(), 200, "{label}: {}", separate.body_text());
}

/// The whole corpus against one pair.
fn corpus(pair: &mut Pair) {
    let mobile = tokens::hs256("mobile-app", MOBILE_SECRET.as_bytes());
    let web = tokens::hs256("web-app", WEB_SECRET.as_bytes());
    let wrong_secret = tokens::hs256("mobile-app", b"not-the-secret-of-mobile-app-at-all");
    let unknown_key = tokens::hs256("nobody", MOBILE_SECRET.as_bytes());
    let expired = tokens::token(
        "HS256",
        "mobile-app",
        None,
        json!({ "exp": tokens::now() - 10 }),
        MOBILE_SECRET.as_bytes(),
    );
    let routes = [
        ("/users", "users"),
        ("/orders/7", "orders"),
        ("/payments", "payments"),
    ];

    // No token, on every route; and a request no route named.
    for (path, route) in routes {
        pair.both(&format!("GET {path} without a token"), || {
            on("GET", path, route)
        });
    }
    pair.both("GET /elsewhere, no route name", || {
        Request::get("/elsewhere").header("x-request-id", "differential")
    });

    // Good and bad tokens from every source.
    let cases: [(&str, &str); 6] = [
        ("mobile-app", &mobile),
        ("web-app", &web),
        ("a wrong secret", &wrong_secret),
        ("an unknown key", &unknown_key),
        ("an expired token", &expired),
        ("not a token", "not.a.token"),
    ];
    for (what, token) in cases {
        for (path, route) in routes {
            pair.both(&format!("GET {path}, {what} in the header"), || {
                on("GET", path, route).header("authorization", &bearer(token))
            });
        }
        pair.both(&format!("GET /users?jwt=, {what}"), || {
            on("GET", &format!("/users?jwt={token}&page=2"), "users")
        });
        pair.both(&format!("GET /orders, {what} in a cookie"), || {
            on("GET", "/orders", "orders").header("cookie", &format!("theme=dark; jwt={token}"))
        });
    }
    pair.both("two different tokens", || {
        on("GET", "/users", "users")
            .header("authorization", &bearer(&mobile))
            .header("cookie", &format!("jwt={web}"))
    });

    // Forged identity headers, with and without a token.
    let forged = |r: Request| {
        r.header("x-consumer-username", "mobile-app")
            .header("x-consumer-groups", "admins")
            .header("x-consumer-id", "forged")
            .header("x-anonymous-consumer", "false")
    };
    pair.both("forged identity, no token", || {
        forged(on("GET", "/payments", "payments"))
    });
    pair.both("forged groups, web-app's token", || {
        forged(on("POST", "/payments", "payments")).header("authorization", &bearer(&web))
    });
    pair.both("forged identity, mobile-app's token", || {
        forged(on("GET", "/users", "users")).header("authorization", &bearer(&mobile))
    });

    // Methods: each verb, a preflight, a method override.
    for method in ["POST", "PUT", "DELETE", "HEAD"] {
        pair.both(&format!("{method} /orders as web-app"), || {
            on(method, "/orders", "orders").header("authorization", &bearer(&web))
        });
    }
    pair.both("a CORS preflight", || {
        on("OPTIONS", "/payments", "payments")
            .header("origin", "https://app.example")
            .header("access-control-request-method", "POST")
    });
    pair.both("a method override", || {
        on("POST", "/orders", "orders")
            .header("authorization", &bearer(&web))
            .header("x-http-method-override", "GET")
    });

    // Token issuing: a login, its token used, refusals of the login itself.
    login(pair, "a login", "alice", &["admins"]);
    for (path, route) in routes {
        pair.send(&format!("GET {path} with an issued token"), &|p, side| {
            on("GET", path, route).header("authorization", &bearer(p.issued(side)))
        });
    }
    pair.both("a login the upstream refuses", || {
        on("POST", "/login", "login")
            .property(&["xds", "cluster_name"], b"login-service")
            .respond(UpstreamResponse::new(401).json(&json!({"message": "bad password"})))
    });
    pair.both("a login answered with text", || {
        on("POST", "/login", "login")
            .property(&["xds", "cluster_name"], b"login-service")
            .respond(
                UpstreamResponse::new(200)
                    .header("content-type", "text/plain")
                    .body("hi"),
            )
    });
    pair.both("a login spelt otherwise", || {
        on("POST", "/LOGIN", "login").property(&["xds", "cluster_name"], b"login-service")
    });
    pair.both("GET /login", || on("GET", "/login", "login"));

    // Limits reached: payments allow 20 a minute, per consumer; the 21st and 22nd are 429.
    for n in 1..=22 {
        pair.both(&format!("payment {n} of mobile-app"), || {
            on("POST", "/payments", "payments").header("authorization", &bearer(&mobile))
        });
    }
    let after = pair.both("payment 23 of mobile-app", || {
        on("POST", "/payments", "payments").header("authorization", &bearer(&mobile))
    });
    assert_eq!(after.status(), 429, "the corpus reaches the limit");
    pair.both("web-app still has its own count", || {
        on("GET", "/users", "users").header("authorization", &bearer(&web))
    });
    pair.same_counters();
}

#[test]
fn the_gateway_answers_every_request_as_the_chain_of_filters() {
    corpus(&mut Pair::new(false));
}

#[test]
fn with_a_rate_limit_service_too() {
    corpus(&mut Pair::new(true));
}

/// `"decision_records": false` in every filter and stage: no record anywhere, the same in
/// both packagings (the identity still handed on in filter state), and every request and
/// counter as with the records on.
#[test]
fn without_decision_records_too() {
    for redis in [false, true] {
        let now = tokens::now();
        let mut pair = Pair::with(redis, true, now);
        pair.twin = Some(Box::new(Pair::with(redis, false, now)));
        corpus(&mut pair);
        let twin = pair.twin.as_ref().unwrap();
        assert!(twin.identities > 0, "no request was authenticated");
        assert_eq!(counters(&pair.chain_host), counters(&twin.chain_host));
        assert_eq!(counters(&pair.gateway_host), counters(&twin.gateway_host));
    }
}

/// A stand-in for the rate limit service: counts each request's descriptors in memory and
/// answers OVER_LIMIT past the limit the request carries (20 for payments, else 100).
fn rate_limit_service() -> impl Fn(&host_test::GrpcRequest) -> GrpcAnswer + Send + Sync {
    let counts: Arc<std::sync::Mutex<BTreeMap<Vec<u8>, u32>>> = Arc::default();
    let calls = Arc::new(AtomicU32::new(0));
    move |request| {
        calls.fetch_add(1, Ordering::Relaxed);
        let mut counts = counts.lock().unwrap();
        let seen = counts.entry(request.message.clone()).or_insert(0);
        *seen += 1;
        let text = String::from_utf8_lossy(&request.message);
        let limit = if text.contains("payments") { 20 } else { 100 };
        let over = *seen > limit;
        GrpcAnswer::ok(
            RateLimitResponse {
                overall_code: if over { CODE_OVER_LIMIT } else { CODE_OK },
                statuses: vec![DescriptorStatus {
                    code: if over { CODE_OVER_LIMIT } else { CODE_OK },
                    current_limit: None,
                    limit_remaining: limit.saturating_sub(*seen),
                    duration_until_reset: Some(ProtoDuration {
                        seconds: 60,
                        nanos: 0,
                    }),
                }],
            }
            .encode_to_vec(),
        )
    }
}

#[test]
fn the_consumer_source_is_polled_as_the_jwt_filter_polls_it() {
    let host = Host::new();
    let polls = Arc::new(AtomicU32::new(0));
    let seen = Arc::clone(&polls);
    host.upstream("portcullis_admin", move |_| {
        seen.fetch_add(1, Ordering::Relaxed);
        host_test::HttpCallReply::new(503)
    });
    let mut jwt = serde_json::from_str::<Value>(
        &std::fs::read_to_string(paths::workspace_root().join("envoy-config/policies/jwt.json"))
            .unwrap(),
    )
    .unwrap();
    jwt["consumer_source"]["poll_interval_ms"] = json!(1000);
    let mut gateway = host
        .plugin(paths::wasm("gateway"))
        .name("gateway")
        .config_json(&json!({ "jwt": jwt }))
        .start()
        .unwrap();
    let mut filter = host
        .plugin(paths::wasm("jwt"))
        .name("jwt")
        .config_json(&jwt)
        .start()
        .unwrap();
    assert_eq!(gateway.tick_period_ms(), filter.tick_period_ms());
    assert!(gateway.tick_period_ms() > 0);
    gateway.advance(std::time::Duration::from_secs(3)).unwrap();
    let by_gateway = polls.swap(0, Ordering::Relaxed);
    filter.advance(std::time::Duration::from_secs(3)).unwrap();
    let by_filter = polls.load(Ordering::Relaxed);
    assert!(by_filter > 0);
    assert_eq!(by_gateway, by_filter);
}
