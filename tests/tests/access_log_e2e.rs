//! The access log in a real Envoy: the JSON format `envoy-config/access-log/envoy.yaml`
//! ships, written to a file, shows each filter's decision (docs/access-log.md) for every
//! class of decision: accepted, each jwt rejection, acl denied, rate limited, token issued,
//! a login the upstream refused, the JWKS unreachable, and the rate limit service failing
//! with and without `fault_tolerant`; a filter with its records off leaves its field empty.
//! A hostile token (quotes, backslashes, line breaks, control characters, a very long claim)
//! leaves every line valid JSON, its value escaped and cut; and no token or secret appears
//! anywhere in the log or in Envoy's own output.

use std::path::Path;
use std::time::{Duration, Instant};

use portcullis_tests::config::portcullis_filter;
use portcullis_tests::paths::{self, ScratchDir};
use portcullis_tests::tokens::{self, hs256, jwk, sign_raw, token};
use portcullis_tests::{client, Envoy, Gateway, Response, Upstream};
use serde_json::{json, Value};

const MOBILE_SECRET: &str = "access-log-mobile-secret-0123456789";
const WEB_SECRET: &str = "access-log-web-secret-0123456789abcd";
const PARTNER_SECRET: &str = "access-log-partner-secret-0123456789";
const ISSUER_SECRET: &str = "access-log-issuer-secret-0123456789ab";
const PARTNER: &str = "https://partner.example";
const CORP: &str = "https://corp.example";

/// Where the shipped snippet writes; the tests point it at their own file.
const SHIPPED_PATH: &str = "/var/log/envoy/portcullis-access.log";

/// The Portcullis fields of the format, in the order the snippet lists them.
const DECISION_FIELDS: [(&str, &str); 4] = [
    ("token_issuer", "token-issuer"),
    ("jwt", "jwt"),
    ("acl", "acl"),
    ("rate_limiting", "rate-limiting"),
];

/// `envoy-config/access-log/envoy.yaml` as shipped, its file sink at `path`.
fn shipped_access_log(path: &Path) -> String {
    let file = paths::workspace_root().join("envoy-config/access-log/envoy.yaml");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains(SHIPPED_PATH), "{text}");
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
        .replace(SHIPPED_PATH, &path.to_string_lossy())
}

/// The `name: "%…%"` lines of a format, trimmed, in order.
fn format_fields(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|line| line.ends_with("%\"") && line.contains(": \"%"))
        .map(str::to_owned)
        .collect()
}

/// The log's complete lines so far, each parsed (a line that is not JSON fails the test).
/// A last line without its newline is one Envoy is still writing: it is read on a later
/// poll, not parsed half-written.
fn lines(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let complete = text.rfind('\n').map_or("", |end| &text[..end]);
    complete
        .lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"))
        })
        .collect()
}

/// The line of the request sent with `x-request-id: id`, waiting for Envoy to flush it.
fn line_of(path: &Path, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(line) = lines(path).into_iter().find(|l| l["request_id"] == id) {
            return line;
        }
        assert!(
            Instant::now() < deadline,
            "no line for {id} in:\n{}",
            std::fs::read_to_string(path).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A filter's decision in a line: the record parsed, or `None` when the filter published
/// none (the field is null).
fn decision(line: &Value, field: &str) -> Option<Value> {
    match &line[field] {
        Value::Null => None,
        Value::String(record) => {
            let parsed: Value = serde_json::from_str(record)
                .unwrap_or_else(|e| panic!("{field} is not a JSON record ({e}): {record:?}"));
            assert_eq!(parsed["v"], 1, "{record}");
            assert!(
                record.bytes().all(|b| (0x20..0x7f).contains(&b)),
                "{field}: not printable ASCII: {record:?}"
            );
            Some(parsed)
        }
        other => panic!("{field}: {other}"),
    }
}

struct Scene {
    envoy: Envoy,
    log: std::path::PathBuf,
    login: Upstream,
    _users: Upstream,
    _dir: ScratchDir,
    next: std::cell::Cell<u32>,
}

impl Scene {
    /// Sends a request with a fresh `x-request-id`; its status and its log line.
    fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> (u16, Value, String) {
        let n = self.next.get();
        self.next.set(n + 1);
        let id = format!("req-{n}");
        let mut all = vec![("x-request-id", id.as_str())];
        all.extend_from_slice(headers);
        let reply = client::send(method, &self.envoy.url(path), &all, body);
        let line = line_of(&self.log, &id);
        (reply.status, line, reply.text())
    }

    fn get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        let bearer = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = bearer
            .iter()
            .map(|b| ("authorization", b.as_str()))
            .collect();
        let (status, line, _) = self.send("GET", path, &headers, None);
        (status, line)
    }
}

/// Logs in with the login service answering `profile`: asserts the 200, keeps the issued
/// token in `sent` (it must appear nowhere in the logs), and returns the access log line.
fn log_in(scene: &Scene, profile: Value, sent: &mut Vec<String>) -> Value {
    scene.login.set_response(Response::json(200, &profile));
    let (status, line, body) = scene.send(
        "POST",
        "/login",
        &[("content-type", "application/json")],
        Some(b"{}"),
    );
    assert_eq!(status, 200, "{body}");
    let issued: Value = serde_json::from_str(&body).unwrap();
    sent.push(issued["token"].as_str().unwrap().to_owned());
    line
}

/// The scene's two consumers, with HS256 credentials.
fn consumers() -> Value {
    json!([
        {"username": "mobile-app", "groups": ["admins"],
         "credentials": [{"key": "mobile-app", "algorithm": "HS256", "secret": MOBILE_SECRET}]},
        {"username": "web-app", "groups": ["customers"],
         "credentials": [{"key": "web-app", "algorithm": "HS256", "secret": WEB_SECRET}]},
    ])
}

/// `gateway` followed by jwt, acl and rate-limiting with these configurations.
fn with_chain(gateway: Gateway, jwt: &Value, acl: &Value, rate_limiting: &Value) -> Gateway {
    gateway
        .filter(portcullis_filter("jwt", Some(&jwt.to_string())))
        .filter(portcullis_filter("acl", Some(&acl.to_string())))
        .filter(portcullis_filter(
            "rate-limiting",
            Some(&rate_limiting.to_string()),
        ))
}

/// Envoy with the demo's chain (token-issuer → jwt → acl → rate-limiting), the shipped
/// access log to a file, and a provider whose JWKS cluster leads nowhere.
fn scene() -> Scene {
    let login = Upstream::start("login");
    let users = Upstream::start("users");
    let dead = paths::free_port().unwrap();
    let dir = ScratchDir::new("access-log").unwrap();
    let log = dir.path().join("access.log");
    let issuer = json!({
        "auth_paths": [{"path": "/login", "methods": ["POST"]}],
        "iss": "portcullis", "ttl": 600, "claims": ["username"],
        "keys": [{"kid": "k1", "algorithm": "HS256", "secret": ISSUER_SECRET}],
    });
    let jwt = json!({
        "consumers": consumers(),
        "providers": [
            {"name": "partner", "issuer": PARTNER,
             "jwks": {"keys": [jwk("HS256", "p1", PARTNER_SECRET.as_bytes())]}},
            {"name": "corp", "issuer": CORP,
             "remote_jwks": {"cluster": "dead", "uri": "http://keys.corp.example/jwks.json",
                             "timeout_ms": 1000, "min_refresh_interval": 1}},
        ],
        "routes": {"login": {"public": true}, "open": {"public": true}},
    });
    let acl = json!({
        "deny": ["banned"],
        "routes": {
            "payments": {"allow": ["admins"]},
            "users": {"any_consumer": true},
            "burst": {"any_consumer": true},
            "open": {"any_consumer": true},
            "login": {"public": true},
        },
    });
    let rate_limiting = json!({
        "minute": 100, "limit_by": "consumer",
        "routes": {"burst": {"minute": 2}},
    });
    let gateway = Gateway::new()
        .route("login", "/login", &login)
        .route("users", "/users", &users)
        .route("payments", "/payments", &users)
        .route("burst", "/burst", &users)
        .route("open", "/open", &users)
        .http_cluster("dead", dead)
        .access_log(shipped_access_log(&log))
        .filter(portcullis_filter("token-issuer", Some(&issuer.to_string())));
    let gateway = with_chain(gateway, &jwt, &acl, &rate_limiting);
    let envoy = Envoy::builder(gateway.render())
        .concurrency(2)
        .start()
        .unwrap_or_else(|e| panic!("{e:#}"));
    Scene {
        envoy,
        log,
        login,
        _users: users,
        _dir: dir,
        next: std::cell::Cell::new(0),
    }
}

fn mobile() -> String {
    hs256("mobile-app", MOBILE_SECRET.as_bytes())
}

/// Asserts that no secret, and no token or part of one, is anywhere in the access log or
/// in Envoy's own output.
fn assert_nothing_secret(scene: &Scene, tokens: &[String]) {
    let log = std::fs::read_to_string(&scene.log).unwrap();
    let output = scene.envoy.log();
    for secret in [MOBILE_SECRET, WEB_SECRET, PARTNER_SECRET, ISSUER_SECRET] {
        assert!(!log.contains(secret), "secret {secret} in the access log");
        assert!(!output.contains(secret), "secret {secret} in Envoy's log");
    }
    for token in tokens {
        // The signature, and the token whole; a header alone ("eyJhbGciOi…") is not secret.
        let signature = token.rsplit('.').next().unwrap_or_default();
        for needle in [token.as_str(), signature] {
            if needle.len() < 16 {
                continue;
            }
            assert!(!log.contains(needle), "{needle} in the access log:\n{log}");
            assert!(!output.contains(needle), "{needle} in Envoy's log");
        }
    }
}

#[test]
fn the_shipped_format_is_the_same_everywhere_it_is_used() {
    let root = paths::workspace_root();
    let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap();
    let envoy = read("envoy-config/access-log/envoy.yaml");
    let expected = format_fields(&envoy);
    assert_eq!(expected.len(), 13, "{expected:?}");
    for (field, filter) in DECISION_FIELDS {
        let line = format!("{field}: \"%FILTER_STATE(wasm.portcullis.decision.{filter}:PLAIN)%\"");
        assert!(expected.contains(&line), "{line}");
    }
    let mut users = vec![
        "envoy-config/access-log/istio.yaml".to_owned(),
        "envoy-config/access-log/envoy-gateway.yaml".to_owned(),
        "envoy-config/demo.yaml.tmpl".to_owned(),
    ];
    for entry in std::fs::read_dir(root.join("envoy-config/examples")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        users.push(format!("envoy-config/examples/{name}"));
    }
    for file in users {
        let fields = format_fields(&read(&file));
        assert_eq!(fields, expected, "{file}");
    }
}

#[test]
fn every_decision_class_is_one_json_line_with_each_filters_record() {
    let scene = scene();
    let mut sent = Vec::new();

    // Accepted by every filter: who, by which credential, on which route, and the window.
    let token = mobile();
    sent.push(token.clone());
    let (status, line) = scene.get("/users", Some(&token));
    assert_eq!(status, 200, "{line}");
    assert_eq!(line["status"], 200);
    assert_eq!(line["method"], "GET");
    assert_eq!(line["path"], "/users");
    assert_eq!(line["route"], "users");
    assert_eq!(line["client"], "127.0.0.1");
    assert!(
        line["time"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{line}"
    );
    assert!(line["duration_ms"].is_u64(), "{line}");
    assert_eq!(
        decision(&line, "jwt"),
        Some(json!({"v": 1, "filter": "jwt", "outcome": "accepted",
                    "consumer": "mobile-app", "credential": "mobile-app", "route": "users"}))
    );
    assert_eq!(
        decision(&line, "acl"),
        Some(json!({"v": 1, "filter": "acl", "outcome": "accepted",
                    "consumer": "mobile-app", "credential": "mobile-app", "route": "users"}))
    );
    assert_eq!(
        decision(&line, "rate_limiting"),
        Some(
            json!({"v": 1, "filter": "rate-limiting", "outcome": "accepted",
                    "consumer": "mobile-app", "credential": "mobile-app", "route": "users",
                    "window": "minute", "limit": 100, "remaining": 99})
        )
    );
    // Not a login: token-issuer publishes nothing.
    assert_eq!(decision(&line, "token_issuer"), None);

    // Each jwt rejection: its reason (the metric's label) and status; nothing after it ran.
    let now = tokens::now();
    let mobile_with = |claims: Value| token_of("mobile-app", MOBILE_SECRET, claims);
    let rejections: Vec<(&str, Option<String>)> = vec![
        ("missing", None),
        ("malformed", Some("not.a.jwt".to_owned())),
        (
            "too_large",
            Some(mobile_with(json!({"pad": "x".repeat(9000)}))),
        ),
        (
            "alg_none",
            Some(format!(
                "{}.{}.",
                tokens::b64(r#"{"alg":"none"}"#),
                tokens::b64(r#"{"iss":"mobile-app"}"#)
            )),
        ),
        (
            "bad_signature",
            Some(token_of("mobile-app", WEB_SECRET, json!({}))),
        ),
        ("expired", Some(mobile_with(json!({"exp": now - 600})))),
        (
            "not_yet_valid",
            Some(mobile_with(json!({"nbf": now + 600}))),
        ),
        (
            "unknown_credential",
            Some(token_of("nobody", MOBILE_SECRET, json!({}))),
        ),
        (
            "missing_key_claim",
            Some(sign_raw(
                &json!({"alg": "HS256"}),
                &json!({"sub": "x", "exp": now + 600}),
                MOBILE_SECRET.as_bytes(),
            )),
        ),
    ];
    for (reason, token) in rejections {
        if let Some(token) = &token {
            sent.push(token.clone());
        }
        let (status, line) = scene.get("/users", token.as_deref());
        assert_eq!(status, 401, "{reason}: {line}");
        assert_eq!(
            decision(&line, "jwt"),
            Some(
                json!({"v": 1, "filter": "jwt", "outcome": "rejected", "reason": reason,
                        "status": 401, "route": "users"})
            ),
            "{reason}"
        );
        assert_eq!(decision(&line, "acl"), None, "{reason}");
        assert_eq!(decision(&line, "rate_limiting"), None, "{reason}");
    }

    // Two different tokens.
    let (a, b) = (mobile(), hs256("web-app", WEB_SECRET.as_bytes()));
    sent.extend([a.clone(), b.clone()]);
    let bearer = format!("Bearer {a}");
    let (status, line, _) = scene.send(
        "GET",
        &format!("/users?jwt={b}"),
        &[("authorization", &bearer)],
        None,
    );
    assert_eq!(status, 401);
    assert_eq!(decision(&line, "jwt").unwrap()["reason"], "multiple");
    // The query string, where a token may travel, is not logged.
    assert_eq!(line["path"], "/users");

    // acl: 403 for the groups, 401 with nobody authenticated (jwt skips the route).
    let web = hs256("web-app", WEB_SECRET.as_bytes());
    sent.push(web.clone());
    let (status, line) = scene.get("/payments", Some(&web));
    assert_eq!(status, 403);
    assert_eq!(decision(&line, "jwt").unwrap()["outcome"], "accepted");
    assert_eq!(
        decision(&line, "acl"),
        Some(
            json!({"v": 1, "filter": "acl", "outcome": "denied", "reason": "not_in_allow",
                    "status": 403, "consumer": "web-app", "credential": "web-app",
                    "route": "payments"})
        )
    );
    assert_eq!(decision(&line, "rate_limiting"), None);
    let (status, line) = scene.get("/open", None);
    assert_eq!(status, 401);
    assert_eq!(
        decision(&line, "jwt"),
        Some(
            json!({"v": 1, "filter": "jwt", "outcome": "skipped", "reason": "no_policy",
                    "route": "open"})
        )
    );
    assert_eq!(
        decision(&line, "acl"),
        Some(
            json!({"v": 1, "filter": "acl", "outcome": "denied", "reason": "unauthenticated",
                    "status": 401, "route": "open"})
        )
    );

    // Rate limited: 2 a minute on /burst, the third refused; the window that spoke.
    let burst = mobile();
    sent.push(burst.clone());
    let mut last = Value::Null;
    for expected in [200, 200, 429] {
        let (status, line) = scene.get("/burst", Some(&burst));
        assert_eq!(status, expected, "{line}");
        last = line;
    }
    assert_eq!(
        decision(&last, "rate_limiting"),
        Some(
            json!({"v": 1, "filter": "rate-limiting", "outcome": "limited",
                    "reason": "limited", "status": 429, "consumer": "mobile-app",
                    "credential": "mobile-app", "route": "burst",
                    "window": "minute", "limit": 2, "remaining": 0})
        )
    );

    // The JWKS unreachable: jwt could not decide.
    let corp = token_with_iss(CORP, "c1", PARTNER_SECRET);
    sent.push(corp.clone());
    let (status, line) = scene.get("/users", Some(&corp));
    assert_eq!(status, 401, "{line}");
    assert_eq!(
        decision(&line, "jwt"),
        Some(
            json!({"v": 1, "filter": "jwt", "outcome": "failed", "reason": "keys_unavailable",
                    "status": 401, "route": "users"})
        )
    );

    // A token issued at login: who logged in, never the token; jwt skips the public route.
    let line = log_in(
        &scene,
        json!({"sub": "mobile-app", "username": "mobile-app"}),
        &mut sent,
    );
    assert_eq!(
        decision(&line, "token_issuer"),
        Some(
            json!({"v": 1, "filter": "token-issuer", "outcome": "issued",
                    "consumer": "mobile-app"})
        )
    );
    assert_eq!(decision(&line, "jwt").unwrap()["outcome"], "skipped");
    assert_eq!(decision(&line, "acl").unwrap()["outcome"], "accepted");

    // A login the upstream refused: its own answer goes back, logged as such.
    scene
        .login
        .set_response(Response::json(401, &json!({"message": "bad password"})));
    let (status, line, _) = scene.send(
        "POST",
        "/login",
        &[("content-type", "application/json")],
        Some(b"{}"),
    );
    assert_eq!(status, 401);
    assert_eq!(
        decision(&line, "token_issuer"),
        Some(
            json!({"v": 1, "filter": "token-issuer", "outcome": "rejected",
                    "reason": "upstream_refusal"})
        )
    );

    assert_nothing_secret(&scene, &sent);
}

#[test]
fn hostile_token_values_are_escaped_and_cut_and_the_log_stays_json() {
    let scene = scene();
    let mut sent = Vec::new();
    let hostile = [
        "quote\" backslash\\ {\"outcome\":\"accepted\"}".to_owned(),
        "line\r\nbreak\ttab\u{0}nul\u{1b}[31mesc\u{7f}del".to_owned(),
        "é ✓ 😀 \u{2028}\u{2029} \u{fffd}".to_owned(),
        "%FILTER_STATE(x)% %REQ(:path)%".to_owned(),
        "y".repeat(3000),
    ];
    // Cut after 128 characters, with `…`.
    let logged = |value: &str| {
        if value.chars().count() > 128 {
            format!("{}…", value.chars().take(128).collect::<String>())
        } else {
            value.to_owned()
        }
    };
    for sub in &hostile {
        let token = token_with_claims(PARTNER, "p1", PARTNER_SECRET, json!({"sub": sub}));
        sent.push(token.clone());
        let (status, line) = scene.get("/users", Some(&token));
        assert_eq!(status, 200, "{line}");
        // A claim that is no safe header value (CR, LF, NUL, other controls) never becomes
        // the username: jwt leaves it out, and so does the record.
        let safe = !sub.chars().any(|c| c.is_control() && c != '\t');
        for field in ["jwt", "acl", "rate_limiting"] {
            let record = decision(&line, field).unwrap();
            assert_eq!(record["outcome"], "accepted", "{field}");
            assert_eq!(record["credential"], "partner", "{field}");
            if safe {
                assert_eq!(record["consumer"], logged(sub).as_str(), "{field}");
            } else {
                assert!(record.get("consumer").is_none(), "{field}: {record}");
            }
        }
    }
    // A login answer's subject is logged as it came, escaped and cut: controls included.
    for sub in &hostile {
        let line = log_in(&scene, json!({"sub": sub, "username": "x"}), &mut sent);
        assert_eq!(
            decision(&line, "token_issuer"),
            Some(
                json!({"v": 1, "filter": "token-issuer", "outcome": "issued",
                        "consumer": logged(sub)})
            )
        );
    }
    // Every line of the file is JSON (lines() fails otherwise), one per request.
    assert_eq!(lines(&scene.log).len(), hostile.len() * 2);
    assert_nothing_secret(&scene, &sent);
}

#[test]
fn rate_limit_service_failures_say_whether_the_request_went_on() {
    let users = Upstream::start("users");
    let dead = paths::free_port().unwrap();
    let dir = ScratchDir::new("access-log-rls").unwrap();
    let log = dir.path().join("access.log");
    let config = json!({
        "minute": 10, "limit_by": "ip", "policy": "redis",
        "rate_limit_service": {"cluster": "ratelimit", "timeout": 200},
        "routes": {"strict": {"minute": 10, "fault_tolerant": false}},
    });
    let gateway = Gateway::new()
        .route("tolerant", "/tolerant", &users)
        .route("strict", "/strict", &users)
        .grpc_cluster("ratelimit", dead)
        .access_log(shipped_access_log(&log))
        .filter(portcullis_filter(
            "rate-limiting",
            Some(&config.to_string()),
        ));
    let envoy = Envoy::builder(gateway.render())
        .start()
        .unwrap_or_else(|e| panic!("{e:#}"));

    let reply = client::get(&envoy.url("/tolerant"), &[("x-request-id", "tolerant")]);
    assert_eq!(reply.status, 200, "{}", reply.text());
    let line = line_of(&log, "tolerant");
    assert_eq!(
        decision(&line, "rate_limiting"),
        Some(
            json!({"v": 1, "filter": "rate-limiting", "outcome": "failed",
                    "reason": "service_fallback", "passed": true, "route": "tolerant",
                    "window": "minute", "limit": 10, "remaining": 9})
        )
    );
    let reply = client::get(&envoy.url("/strict"), &[("x-request-id", "strict")]);
    assert_eq!(reply.status, 500, "{}", reply.text());
    let line = line_of(&log, "strict");
    assert_eq!(
        decision(&line, "rate_limiting"),
        Some(
            json!({"v": 1, "filter": "rate-limiting", "outcome": "failed",
                    "reason": "service_failed", "status": 500, "passed": false,
                    "route": "strict"})
        )
    );
    // Nothing of the other filters: they are not in this chain.
    for field in ["token_issuer", "jwt", "acl"] {
        assert_eq!(decision(&line, field), None);
    }
}

/// `"decision_records": false` in acl and rate-limiting: their fields stay empty while jwt's
/// record is still there, and nothing else changes: acl still judges by the identity jwt
/// handed on (allowed, then refused), rate-limiting still counts and answers its headers.
#[test]
fn filters_with_their_records_off_leave_their_fields_empty_and_decide_as_before() {
    let users = Upstream::start("users");
    let dir = ScratchDir::new("access-log-off").unwrap();
    let log = dir.path().join("access.log");
    let jwt = json!({"consumers": consumers()});
    let acl = json!({"allow": ["admins"], "decision_records": false});
    let rate_limiting = json!({"minute": 100, "limit_by": "consumer", "decision_records": false});
    let gateway = Gateway::new()
        .route("payments", "/payments", &users)
        .access_log(shipped_access_log(&log));
    let gateway = with_chain(gateway, &jwt, &acl, &rate_limiting);
    let envoy = Envoy::builder(gateway.render())
        .start()
        .unwrap_or_else(|e| panic!("{e:#}"));
    let get = |id: &str, token: &str| {
        let bearer = format!("Bearer {token}");
        let reply = client::get(
            &envoy.url("/payments"),
            &[("x-request-id", id), ("authorization", &bearer)],
        );
        (reply, line_of(&log, id))
    };

    let (reply, line) = get("admin", &mobile());
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("x-ratelimit-remaining-minute"), Some("99"));
    let reached = users.requests();
    assert_eq!(reached.len(), 1);
    assert_eq!(reached[0].header("x-consumer-groups"), Some("admins"));
    assert_eq!(
        decision(&line, "jwt").map(|r| r["outcome"].clone()),
        Some(json!("accepted"))
    );
    assert_eq!(decision(&line, "acl"), None);
    assert_eq!(decision(&line, "rate_limiting"), None);

    let (reply, line) = get("customer", &hs256("web-app", WEB_SECRET.as_bytes()));
    assert_eq!(reply.status, 403, "{}", reply.text());
    assert_eq!(
        reply.text(),
        r#"{"message":"You cannot consume this service"}"#
    );
    assert_eq!(users.requests().len(), 1);
    assert_eq!(
        decision(&line, "jwt").map(|r| r["outcome"].clone()),
        Some(json!("accepted"))
    );
    assert_eq!(decision(&line, "acl"), None);
}

/// An HS256 token of the consumer credential `key`, signed with `secret`, plus `claims`.
fn token_of(key: &str, secret: &str, claims: Value) -> String {
    token("HS256", key, None, claims, secret.as_bytes())
}

/// An HS256 token of a provider: `iss`, `kid`, signed with `secret`.
fn token_with_iss(iss: &str, kid: &str, secret: &str) -> String {
    token_with_claims(iss, kid, secret, json!({"sub": "someone"}))
}

fn token_with_claims(iss: &str, kid: &str, secret: &str, claims: Value) -> String {
    token("HS256", iss, Some(kid), claims, secret.as_bytes())
}
