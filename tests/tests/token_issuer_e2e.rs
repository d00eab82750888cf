//! The token-issuer in a real Envoy, in front of the jwt filter: a login answer becomes a
//! signed token, the token opens a protected route, a tampered or expired one does not, and a
//! refused login reaches the client as the login service said it. The jwt filter takes the
//! issuer's keys from the issuer's own JWKS endpoint, fetched through a cluster that points
//! back at Envoy's listener.
//!
//! Two ways of replacing the body are proven here, as Envoy 1.40 runs them:
//! - by default the response headers continue with `content-length` removed, so Envoy frames
//!   the new body itself (chunked, on HTTP/1.1);
//! - with Envoy's `allow_on_headers_stop_iteration` (and the issuer's own flag of that name)
//!   the headers are held until the token is signed: exact `content-length`, `Set-Cookie`,
//!   and a clean 502 for an oversize chunked body.

// Test code: clippy.toml lets #[test] functions panic, and these helpers are test code too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use portcullis_tests::config::{bootstrap, cluster, portcullis_filter, refused, Listener};
use portcullis_tests::{client, release, tokens, Envoy, Reply, Response, Upstream};
use serde_json::{json, Value};

const ISS: &str = "https://login.portcullis.test";
const AUD: &str = "orders-api";
const JWKS_PATH: &str = "/.well-known/jwks.json";
const HS256_SECRET: &str = "FVYGMY8NaopOclJ2MtJ8wat3RqUwqi83";
const CREDENTIALS: &[u8] = br#"{"username":"mobile-app","password":"mobile-demo"}"#;

fn profile() -> Value {
    json!({"sub": "123", "username": "mobile-app", "groups": ["admins"],
           "email": "mobile-app@example.com"})
}

/// The login service's answers, as `portcullis-services --login` gives them.
fn logged_in(body: &Value) -> Response {
    Response::json(200, body)
}

fn invalid_credentials() -> Response {
    Response::json(401, &json!({"message": "Invalid credentials"}))
}

/// A free loopback port for Envoy's listener, known before Envoy starts so that a cluster can
/// point back at it.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
}

/// An upstream that answers every request with a chunked JSON body (no `content-length`),
/// which `Upstream` cannot do.
struct ChunkedUpstream {
    port: u16,
    stop: Arc<AtomicBool>,
}

impl ChunkedUpstream {
    fn start(chunks: Vec<Vec<u8>>) -> ChunkedUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
        listener
            .set_nonblocking(true)
            .unwrap_or_else(|e| panic!("{e}"));
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let chunks = chunks.clone();
                        std::thread::spawn(move || answer_chunked(stream, &chunks));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        ChunkedUpstream { port, stop }
    }
}

impl Drop for ChunkedUpstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn answer_chunked(stream: TcpStream, chunks: &[Vec<u8>]) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut reader = BufReader::new(match stream.try_clone() {
        Ok(s) => s,
        Err(_) => return,
    });
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0u8; length];
    let _ = reader.read_exact(&mut body);
    let mut out: Vec<u8> = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
        transfer-encoding: chunked\r\nconnection: close\r\n\r\n"
        .to_vec();
    let mut writer = stream;
    let _ = writer.write_all(&out);
    for chunk in chunks {
        out = format!("{:x}\r\n", chunk.len()).into_bytes();
        out.extend_from_slice(chunk);
        out.extend_from_slice(b"\r\n");
        let _ = writer.write_all(&out);
        let _ = writer.flush();
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = writer.write_all(b"0\r\n\r\n");
}

/// Routes `/login` and `/big-login` (the login services), `/orders`, and the issuer's JWKS
/// path; and another virtual host whose `/login` goes to another upstream (orders here): an
/// attacker's `Host` picks it.
const VIRTUAL_HOSTS: &str = r#"- name: gateway
  domains: ["*"]
  routes:
  - name: login
    match: { prefix: "/login", case_sensitive: false }
    route: { cluster: login }
  - name: login
    match: { path: "/big-login" }
    route: { cluster: big-login }
  - name: orders
    match: { prefix: "/orders" }
    route: { cluster: orders }
  - name: jwks
    match: { prefix: "/.well-known/" }
    direct_response: { status: 404 }
- name: other
  domains: ["other.example"]
  routes:
  - name: other-login
    match: { path: "/login" }
    route: { cluster: orders }"#;

/// One listener on `port` with [`VIRTUAL_HOSTS`], `filters` before the router, and
/// `clusters`; the jwt filter's remote JWKS comes through a cluster `self` pointing back at
/// the listener.
fn config(port: u16, filters: &[String], clusters: &[String]) -> String {
    let listener = Listener::new("main")
        .port(port)
        .stat_prefix("gateway")
        .access_log()
        .virtual_host(VIRTUAL_HOSTS)
        .filter(filters.join("\n"));
    bootstrap(&[listener], clusters)
}

/// The issuer's wasm filter entry; `held` adds Envoy's `allow_on_headers_stop_iteration`.
fn issuer_filter(config: &Value, held: bool) -> String {
    let filter = portcullis_filter("token-issuer", Some(&config.to_string()));
    if held {
        format!("{filter}\n      allow_on_headers_stop_iteration: true")
    } else {
        filter
    }
}

struct Scene {
    envoy: Envoy,
    login: Upstream,
    orders: Upstream,
    _big: ChunkedUpstream,
}

/// Envoy with the issuer (`issuer`, held or not) and the jwt filter (`jwt`) in front of a
/// login service, a chunked login service answering `big_chunks`, and an orders service.
fn scene(issuer: &Value, held: bool, jwt: &Value, port: u16, big_chunks: Vec<Vec<u8>>) -> Scene {
    let login = Upstream::start("login");
    let orders = Upstream::start("orders");
    let big = ChunkedUpstream::start(big_chunks);
    let filters = [
        issuer_filter(issuer, held),
        portcullis_filter("jwt", Some(&jwt.to_string())),
    ];
    let clusters = [
        cluster("login", login.port()),
        cluster("big-login", big.port),
        cluster("orders", orders.port()),
        cluster("self", port),
    ];
    let envoy = Envoy::builder(config(port, &filters, &clusters))
        .concurrency(2)
        .start()
        .unwrap_or_else(|e| panic!("{e:#}"));
    Scene {
        envoy,
        login,
        orders,
        _big: big,
    }
}

impl Scene {
    fn login(&self, path: &str, answer: Response) -> Reply {
        self.login.set_response(answer);
        client::send(
            "POST",
            &self.envoy.url(path),
            &[("content-type", "application/json")],
            Some(CREDENTIALS),
        )
    }

    fn orders(&self, token: &str) -> Reply {
        client::get(
            &self.envoy.url("/orders"),
            &[("authorization", &format!("Bearer {token}"))],
        )
    }

    /// The counter the issuer defined, summed over Envoy's workers.
    fn metric(&self, name: &str) -> f64 {
        self.envoy.metric(&format!("{name}{{}}")).unwrap_or(0.0)
    }
}

fn token_of(reply: &Reply) -> String {
    assert_eq!(reply.status, 200, "{}", reply.text());
    let answer = reply.json();
    assert_eq!(answer["token_type"], "Bearer", "{answer}");
    answer["token"].as_str().unwrap_or_default().to_owned()
}

fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap_or_default();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap_or_default())
        .unwrap_or(Value::Null)
}

/// The same token with its claims changed and its signature kept.
fn tampered(token: &str) -> String {
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let mut claims = claims_of(token);
    claims["groups"] = json!(["admins", "root"]);
    parts[1] = tokens::b64(claims.to_string());
    parts.join(".")
}

/// Waits (bounded) until the jwt filter has the issuer's keys: a good token passes.
fn wait_until_accepted(scene: &Scene, token: &str) -> Reply {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let reply = scene.orders(token);
        if reply.status == 200 || Instant::now() >= deadline {
            return reply;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn login_token_then_protected_route_with_keys_from_the_issuers_own_jwks() {
    let port = free_port();
    let issuer = json!({
        "auth_paths": [{"path": "/login", "methods": ["POST"]}, {"path": "/big-login"}],
        "iss": ISS, "aud": AUD, "ttl": 600, "max_body_bytes": 512,
        "claims": ["username", "groups"],
        "jwks_path": JWKS_PATH,
        "keys": [{"kid": "es256-1", "algorithm": "ES256", "private_key": tokens::fixture("p256.key.pem")}],
    });
    let jwt = json!({
        "providers": [{"name": "portcullis-login", "issuer": ISS, "audiences": [AUD],
                       "groups_claim": "groups",
                       "remote_jwks": {"cluster": "self",
                                       "uri": format!("http://127.0.0.1:{port}{JWKS_PATH}"),
                                       "min_refresh_interval": 1, "timeout_ms": 2000}}],
        "routes": {"login": {"public": true}},
        "leeway": 0,
    });
    let big = with_secret_padding(2000).into_bytes();
    let chunks: Vec<Vec<u8>> = big.chunks(300).map(<[u8]>::to_vec).collect();
    let scene = scene(&issuer, false, &jwt, port, chunks);
    let envoy = &scene.envoy;
    // Envoy 1.36 has no `sign` (NotFound): the probe at start falls back to the module.
    let (chosen, why) = if release::current().has_sign() {
        (
            "on the host (Envoy's sign)",
            "the host's sign was not chosen",
        )
    } else {
        (
            "in the module (host sign unavailable: host sign failed: NotFound)",
            "Envoy has no sign, yet the module was not chosen",
        )
    };
    assert!(
        envoy.wait_for_log(&format!("signing ES256 (kid es256-1) {chosen}")),
        "{why} (Envoy {}):\n{}",
        release::current(),
        envoy.log()
    );

    // The JWKS, straight from the filter.
    let jwks = client::get(&envoy.url(JWKS_PATH), &[]);
    assert_eq!(jwks.status, 200, "{}", jwks.text());
    assert_eq!(jwks.json()["keys"][0]["kid"], "es256-1");
    assert_eq!(jwks.json()["keys"][0]["crv"], "P-256");

    // Log in: the login request reaches the service as sent; the profile comes back a token.
    let reply = scene.login(
        "/login",
        logged_in(&with_extra(json!({"password_hash": "x"}))),
    );
    let token = token_of(&reply);
    let seen = scene.login.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].body, CREDENTIALS);
    assert_eq!(seen[0].method, "POST");
    assert_eq!(reply.json()["expires_in"], 600);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    // The headers left before the body: Envoy framed the new body itself.
    assert_eq!(reply.header("content-length"), None);
    assert_eq!(reply.header("transfer-encoding"), Some("chunked"));
    assert!(!reply.text().contains("mobile-app@example.com"));
    let claims = claims_of(&token);
    assert_eq!(claims["sub"], "123");
    assert_eq!(claims["groups"], json!(["admins"]));
    assert!(claims.get("email").is_none() && claims.get("password_hash").is_none());

    // The token opens the protected route; the jwt filter fetched the keys from the issuer.
    let reply = wait_until_accepted(&scene, &token);
    assert_eq!(reply.status, 200, "{}\n{}", reply.text(), envoy.log());
    let seen = scene.orders.requests();
    let last = seen.last().unwrap_or_else(|| panic!("orders not reached"));
    assert_eq!(last.header("x-consumer-username"), Some("123"));
    assert_eq!(last.header("x-consumer-groups"), Some("admins"));

    // Tampered, or no token at all: refused, never reaching orders.
    let before = scene.orders.count();
    assert_eq!(scene.orders(&tampered(&token)).status, 401);
    assert_eq!(client::get(&envoy.url("/orders"), &[]).status, 401);
    assert_eq!(scene.orders.count(), before);

    // Expired: the login service asked for 2 seconds; the jwt filter allows no leeway here.
    let now = tokens::now();
    let reply = scene.login("/login", logged_in(&with_extra(json!({"exp": now + 2}))));
    let short = token_of(&reply);
    assert!(reply.json()["expires_in"].as_u64().is_some_and(|s| s <= 2));
    std::thread::sleep(Duration::from_secs(3));
    let reply = scene.orders(&short);
    assert_eq!(reply.status, 401, "{}", reply.text());
    assert_eq!(scene.orders.count(), before);

    // Wrong password: the login service's own 401 reaches the client unchanged.
    let reply = scene.login("/login", invalid_credentials());
    assert_eq!(reply.status, 401);
    assert_eq!(reply.json(), json!({"message": "Invalid credentials"}));
    assert_eq!(reply.header("content-length"), Some("33"));
    assert_eq!(reply.header("cache-control"), None);

    // A declared length over the limit is refused before any of it is sent.
    let reply = scene.login(
        "/login",
        logged_in(&with_extra(json!({"pad": "s3cr3t".repeat(200)}))),
    );
    assert_eq!(reply.status, 502, "{}", reply.text());
    assert_eq!(
        reply.json(),
        json!({"message": "Bad gateway: the login response is too large to sign"})
    );

    // A chunked body over the limit: the 200 and its headers are already gone, so Envoy turns
    // the 502 into a reset stream. The client sees a broken body, none of the upstream's.
    let broken = client::try_send("POST", &envoy.url("/big-login"), &[], Some(CREDENTIALS));
    let error = broken.expect_err("the stream is reset");
    assert!(
        error.starts_with("status 200, then reading the body failed"),
        "{error}"
    );
    assert!(envoy.wait_for_log("portcullis-token-issuer: no token: login response of"));

    assert_eq!(scene.metric("portcullis_token_issuer_issued_total"), 2.0);
    assert_eq!(
        scene.metric("portcullis_token_issuer_upstream_refusals_total"),
        1.0
    );
    assert_eq!(
        scene.metric("portcullis_token_issuer_rejected_too_large_total"),
        2.0
    );
    assert!(scene.metric("portcullis_token_issuer_jwks_served_total") >= 2.0);
}

#[test]
fn held_headers_give_an_exact_length_a_cookie_and_a_clean_502() {
    let port = free_port();
    let issuer = json!({
        "auth_paths": [{"path": "/login"}, {"path": "/big-login"}],
        "iss": ISS, "ttl": 300, "max_body_bytes": 512,
        "keys": [{"kid": "hs-1", "algorithm": "HS256", "secret": HS256_SECRET}],
        "cookie": {"name": "access_token", "secure": false, "same_site": "Strict"},
        "allow_on_headers_stop_iteration": true,
    });
    let jwt = json!({
        "consumers": [{"username": "login-service", "groups": ["customers"],
                       "credentials": [{"key": ISS, "algorithm": "HS256", "secret": HS256_SECRET}]}],
        "routes": {"login": {"public": true}},
        "cookie_names": ["access_token"],
    });
    let big = with_secret_padding(2000).into_bytes();
    let chunks: Vec<Vec<u8>> = big.chunks(300).map(<[u8]>::to_vec).collect();
    let scene = scene(&issuer, true, &jwt, port, chunks);
    let envoy = &scene.envoy;
    assert!(envoy.wait_for_log("signing HS256 (kid hs-1) in the module"));

    let reply = scene.login("/login", logged_in(&profile()));
    let token = token_of(&reply);
    let length = reply.body.len().to_string();
    assert_eq!(reply.header("content-length"), Some(length.as_str()));
    assert_eq!(reply.header("transfer-encoding"), None);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    let cookie = reply.header("set-cookie").unwrap_or_default();
    assert_eq!(
        cookie,
        format!("access_token={token}; Path=/; Max-Age=300; HttpOnly; SameSite=Strict")
    );

    // The cookie alone opens the protected route.
    let reply = client::get(
        &envoy.url("/orders"),
        &[("cookie", &format!("access_token={token}"))],
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        scene.orders.requests()[0].header("x-consumer-username"),
        Some("login-service")
    );
    assert_eq!(scene.orders(&tampered(&token)).status, 401);

    // An answer that is not an object passes with its own length, untouched.
    let reply = scene.login(
        "/login",
        Response::json(200, &json!(["not", "an", "object"])),
    );
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json(), json!(["not", "an", "object"]));
    assert_eq!(reply.header("content-length"), Some("21"));
    assert_eq!(reply.header("set-cookie"), None);

    // A chunked body over the limit: the headers were held, so the client gets a clean 502.
    let reply = client::send("POST", &envoy.url("/big-login"), &[], Some(CREDENTIALS));
    assert_eq!(reply.status, 502, "{}", reply.text());
    assert_eq!(
        reply.json(),
        json!({"message": "Bad gateway: the login response is too large to sign"})
    );
    assert!(!reply.text().contains("s3cr3t"));

    let reply = scene.login("/login", invalid_credentials());
    assert_eq!(reply.status, 401);
    assert_eq!(reply.json(), json!({"message": "Invalid credentials"}));
}

#[test]
fn a_weak_secret_keeps_envoy_from_starting_and_the_log_names_the_field() {
    let issuer = json!({
        "auth_paths": [{"path": "/login"}], "iss": ISS,
        "keys": [{"kid": "k", "algorithm": "HS256", "secret": "super-secret-key"}],
    });
    let login = Upstream::start("login");
    let clusters = [
        cluster("login", login.port()),
        cluster("big-login", 1),
        cluster("orders", 1),
    ];
    let log = Envoy::builder(config(0, &[issuer_filter(&issuer, false)], &clusters))
        .start_expecting_refusal()
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert!(
        log.contains(&refused(
            "token-issuer",
            "keys[0].secret",
            "16 bytes, HS256 needs at least 32"
        )),
        "{log}"
    );
}

fn with_extra(extra: Value) -> Value {
    let mut body = profile();
    if let (Some(map), Value::Object(more)) = (body.as_object_mut(), extra) {
        map.extend(more);
    }
    body
}

/// A profile padded past any small limit with a marker that must never reach the client.
fn with_secret_padding(bytes: usize) -> String {
    with_extra(json!({"pad": "s3cr3t".repeat(bytes / 6)})).to_string()
}

/// `POST /login` with `Host: host` over a raw connection (a client chooses its Host header
/// freely).
fn login_at_host(envoy: &Envoy, host: &str) -> Reply {
    let mut request = format!(
        "POST /login HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n",
        CREDENTIALS.len()
    )
    .into_bytes();
    request.extend_from_slice(CREDENTIALS);
    client::send_raw(envoy.port(), &request)
}

#[test]
fn only_the_login_route_and_cluster_are_signed_and_no_other_spelling_passes() {
    let port = free_port();
    let issuer = json!({
        "auth_paths": [{"path": "/login", "methods": ["POST"],
                        "routes": ["login"], "clusters": ["login"]}],
        "iss": ISS, "ttl": 600, "sub_field": "sub",
        "keys": [{"kid": "hs-1", "algorithm": "HS256", "secret": HS256_SECRET}],
    });
    let jwt = json!({
        "consumers": [{"username": "mobile-app", "credentials": [
            {"key": ISS, "algorithm": "HS256", "secret": HS256_SECRET}]}],
        "routes": {"login": {"public": true}, "other-login": {"public": true}},
    });
    let scene = scene(&issuer, false, &jwt, port, Vec::new());
    // The login route and cluster: a token.
    let reply = scene.login("/login", logged_in(&profile()));
    token_of(&reply);
    // The same path on another virtual host, whose upstream answers what the attacker
    // chooses: passed on as it came, never signed.
    let chosen = json!({"sub": "admin", "groups": ["admins"]});
    scene.orders.set_response(Response::json(200, &chosen));
    let reply = login_at_host(&scene.envoy, "other.example");
    assert_eq!((reply.status, reply.json()), (200, chosen));
    // Other spellings the login route takes (its match ignores case): refused before the
    // login service, which would answer them unsigned.
    let before = scene.login.count();
    for path in ["/LOGIN", "/login/", "/Login;jsessionid=1"] {
        let reply = scene.login(path, logged_in(&profile()));
        assert_eq!(reply.status, 400, "{path}: {}", reply.text());
        assert_eq!(reply.json(), json!({"message": "Bad request"}), "{path}");
    }
    assert_eq!(
        scene.login.count(),
        before,
        "a misspelt login reached the service"
    );
    assert_eq!(
        scene.metric("portcullis_token_issuer_misspelt_auth_path_total"),
        3.0
    );
    // A 200 that names no subject is no login: unchanged.
    let failed = json!({"success": false, "message": "wrong password"});
    let reply = scene.login("/login", logged_in(&failed));
    assert_eq!((reply.status, reply.json()), (200, failed));
    assert_eq!(scene.metric("portcullis_token_issuer_issued_total"), 1.0);
}
