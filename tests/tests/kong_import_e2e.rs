//! `portcullis kong import` proven the way a Kong user would check it: Kong files written for
//! the tests (`tests/kong/`, their upstreams templated as `{{NAME_PORT}}`), converted by the
//! built `portcullis` binary, run in a real Envoy (`--concurrency 2`) in front of recording
//! upstreams, and asked request by request what Kong's documentation says Kong would answer.
//! Each assertion names the page it follows (Kong Gateway docs, developer.konghq.com):
//!
//! - "Routes" (`/gateway/entities/route/`): `strip_path`, `preserve_host`, `path_handling` v0;
//! - "Traditional router" (`/gateway/routing/traditional/`): paths, methods, hosts, headers,
//!   regex paths and `regex_priority`, route priority;
//! - "Plugins" (`/gateway/entities/plugin/`), "Plugin precedence": one instance per plugin
//!   runs per request, the most specific one;
//! - the JWT (`/plugins/jwt/`), ACL (`/plugins/acl/`) and Rate Limiting
//!   (`/plugins/rate-limiting/`) plugin pages: bodies, upstream headers, client headers.
//!
//! One Envoy per scenario, and the minute windows exercised in a handful of seconds (the
//! test waits for a minute with room left first), to keep CI's budget.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use portcullis_tests::admin_service::{admin_binary, AdminService};
use portcullis_tests::config::fill;
use portcullis_tests::load::room_in_this_minute;
use portcullis_tests::paths::{built_binary, workspace_root, ScratchDir};
use portcullis_tests::tokens::hs256;
use portcullis_tests::{client, Envoy, Recorded, Reply, Upstream};
use serde_json::Value;

// ---------------------------------------------------------------------------------------
// The seed's consumers, as tests/kong/seed.yaml declares them.

const MOBILE_ID: &str = "7d5c0f5e-2d0c-4a8f-9b1e-5c1a3f0b6a11";
const MOBILE_KEY: &str = "mobile-app-key";
const MOBILE_SECRET: &str = "mobile-app-secret-of-32-bytes-or-more";
const WEB_ID: &str = "0b9e6f43-8a51-4c7d-b2f0-93e1d4c5a722";
const WEB_KEY: &str = "web-app-key";
const WEB_SECRET: &str = "web-app-secret-of-at-least-32-bytes";

/// Kong's JWT plugin, "Using the plugin": the token goes in `Authorization: Bearer …`.
fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

// ---------------------------------------------------------------------------------------
// Running the converter

/// The `portcullis` binary cargo built (`make build`, or `cargo build -p portcullis-cli`);
/// `$PORTCULLIS_CLI` overrides it.
fn cli() -> PathBuf {
    built_binary("portcullis", "PORTCULLIS_CLI")
}

/// `tests/kong/<name>` with its `{{NAME}}` placeholders filled.
fn kong_file(name: &str, vars: &[(&str, String)]) -> String {
    let path = workspace_root().join("tests/kong").join(name);
    let template =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let vars: BTreeMap<String, String> = vars
        .iter()
        .map(|(n, v)| (n.to_string(), v.clone()))
        .collect();
    fill(&template, &vars).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// What one run of `portcullis kong import` left: its output directory and what it printed.
struct Imported {
    dir: ScratchDir,
    output: Output,
}

impl Imported {
    fn out(&self) -> PathBuf {
        self.dir.path().join("out")
    }

    fn read(&self, file: &str) -> String {
        let path = self.out().join(file);
        std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; the import printed:\n{}",
                path.display(),
                self.printed()
            )
        })
    }

    fn policy(&self, filter: &str) -> Value {
        let text = self.read(&format!("policies/{filter}.json"));
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("policies/{filter}.json is not JSON ({e}): {text}"))
    }

    fn printed(&self) -> String {
        format!(
            "status {}\nstdout:\n{}\nstderr:\n{}",
            self.output.status,
            String::from_utf8_lossy(&self.output.stdout),
            String::from_utf8_lossy(&self.output.stderr)
        )
    }

    /// The converted gateway in a real Envoy.
    fn start_envoy(&self) -> Envoy {
        Envoy::builder(self.read("envoy.yaml"))
            .concurrency(2)
            .start()
            .unwrap_or_else(|e| panic!("{e:#}"))
    }
}

/// Runs `portcullis kong import <file> --out <scratch>/out` on `kong` (written to a file, or
/// given on stdin as `-`), with a listener and an Envoy admin on kernel-chosen ports (the
/// harness reads them back) and this worktree's filters, plus `extra` arguments; panics
/// unless it exits 0.
fn import(kong: &str, from_stdin: bool, extra: &[&str]) -> Imported {
    let dir = ScratchDir::new("kong-import").unwrap_or_else(|e| panic!("scratch: {e}"));
    let input = dir.path().join("kong.yml");
    std::fs::write(&input, kong).unwrap_or_else(|e| panic!("{}: {e}", input.display()));
    let out = dir.path().join("out");
    let wasm_dir = workspace_root().join("dist");
    let file_arg: &Path = if from_stdin { Path::new("-") } else { &input };
    let mut command = Command::new(cli());
    command
        .args(["kong", "import"])
        .arg(file_arg)
        .arg("--out")
        .arg(&out)
        .args(["--listen", "127.0.0.1:0", "--envoy-admin", "127.0.0.1:0"])
        .arg("--wasm-dir")
        .arg(&wasm_dir)
        .args(extra)
        .stdin(if from_stdin {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("running {}: {e}", cli().display()));
    if from_stdin {
        let mut stdin = child.stdin.take().unwrap_or_else(|| panic!("no stdin"));
        stdin
            .write_all(kong.as_bytes())
            .unwrap_or_else(|e| panic!("writing the Kong file to stdin: {e}"));
    }
    let output = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("waiting for {}: {e}", cli().display()));
    let imported = Imported { dir, output };
    assert_eq!(
        imported.output.status.code(),
        Some(0),
        "kong import failed:\n{}",
        imported.printed()
    );
    imported
}

// ---------------------------------------------------------------------------------------
// Reading Envoy

/// The names of every route and every cluster Envoy runs, from its admin API.
fn route_and_cluster_names(envoy: &Envoy) -> (Vec<String>, Vec<String>) {
    let dump = client::get(&envoy.admin_url("/config_dump"), &[]).json();
    let mut routes = Vec::new();
    collect_route_names(&dump, &mut routes);
    let clusters = client::get(&envoy.admin_url("/clusters?format=json"), &[]).json();
    let clusters = clusters["cluster_statuses"]
        .as_array()
        .map(|all| {
            all.iter()
                .filter_map(|c| c["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    (routes, clusters)
}

/// Every `virtual_hosts[].routes[].name` anywhere in a config dump.
fn collect_route_names(value: &Value, names: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::Array(hosts)) = map.get("virtual_hosts") {
                for route in hosts
                    .iter()
                    .filter_map(|h| h["routes"].as_array())
                    .flatten()
                {
                    names.extend(route["name"].as_str().map(str::to_owned));
                }
            }
            map.values().for_each(|v| collect_route_names(v, names));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_route_names(v, names)),
        _ => {}
    }
}

fn number(reply: &Reply, header: &str) -> u64 {
    reply
        .header(header)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no number in {header}: {reply:?}"))
}

/// The one request `upstream` received since it was last cleared.
fn only(upstream: &Upstream) -> Recorded {
    let seen = upstream.requests();
    assert_eq!(seen.len(), 1, "{} received {seen:#?}", upstream.name());
    upstream.clear();
    seen.into_iter().next().unwrap_or_else(|| unreachable!())
}

// ---------------------------------------------------------------------------------------
// The seed article's gateway

/// The seed article's setup, converted and run: tokens, groups, limits and Kong's plugin
/// precedence, request by request.
#[test]
fn the_seed_articles_gateway_answers_as_kong_would() {
    let users = Upstream::start("user-service");
    let orders = Upstream::start("order-service");
    let payments = Upstream::start("payment-service");
    let kong = kong_file(
        "seed.yaml",
        &[
            ("USERS_PORT", users.port().to_string()),
            ("ORDERS_PORT", orders.port().to_string()),
            ("PAYMENTS_PORT", payments.port().to_string()),
        ],
    );
    // `--strict` fails on a non-empty report: nothing in the seed is left behind.
    let imported = import(&kong, false, &["--strict"]);
    assert_eq!(imported.read("report.txt").trim(), "", "the seed's report");
    for filter in ["jwt", "acl", "rate-limiting"] {
        imported.policy(filter);
    }
    let config = imported.read("envoy.yaml");
    if let Err(log) = Envoy::validate(&config) {
        panic!("envoy --mode validate refused envoy.yaml:\n{log}\n{config}");
    }
    let envoy = imported.start_envoy();

    // Envoy routes are named after the Kong routes (so per-route policies find them), its
    // clusters after the Kong services.
    let (routes, clusters) = route_and_cluster_names(&envoy);
    for route in ["user-route", "order-route", "payment-route"] {
        assert!(
            routes.iter().any(|r| r == route),
            "no route {route} in {routes:?}"
        );
    }
    for service in ["user-service", "order-service", "payment-service"] {
        assert!(
            clusters.iter().any(|c| c == service),
            "no cluster {service} in {clusters:?}"
        );
    }

    // The minute window counted below must not roll over halfway (Rate Limiting plugin:
    // fixed calendar windows).
    room_in_this_minute(20);
    let mobile = bearer(&hs256(MOBILE_KEY, MOBILE_SECRET.as_bytes()));
    let web = bearer(&hs256(WEB_KEY, WEB_SECRET.as_bytes()));

    // JWT plugin: without a token, 401 {"message":"Unauthorized"}, and the upstream never
    // sees the request.
    let reply = client::get(&envoy.url("/users"), &[]);
    assert_eq!(reply.status, 401, "{}", reply.text());
    assert_eq!(reply.json(), serde_json::json!({"message": "Unauthorized"}));
    // JWT plugin: a token whose `iss` names no credential.
    let stranger = bearer(&hs256("nobody-key", MOBILE_SECRET.as_bytes()));
    let reply = client::get(&envoy.url("/users"), &[("authorization", &stranger)]);
    assert_eq!(reply.status, 401, "{}", reply.text());
    assert_eq!(
        reply.json(),
        serde_json::json!({"message": "No credentials found for given 'iss'"})
    );
    // JWT plugin: "Kong only proxies requests that include a valid signature": mobile-app's
    // key signed with another secret.
    let forged = bearer(&hs256(MOBILE_KEY, WEB_SECRET.as_bytes()));
    let reply = client::get(&envoy.url("/users"), &[("authorization", &forged)]);
    assert_eq!(reply.status, 401, "{}", reply.text());
    assert_eq!(
        reply.json(),
        serde_json::json!({"message": "Invalid signature"})
    );
    assert_eq!(users.count(), 0, "a refused request reached user-service");

    // A good token: 200, and the JWT plugin's upstream headers ("Upstream headers":
    // X-Consumer-ID, X-Consumer-Custom-ID, X-Consumer-Username, X-Credential-Identifier).
    // No X-Consumer-Groups: the ACL plugin adds it, and it does not run on user-route.
    // The route's strip_path is Kong's default, true ("Routes" > strip_path), and the
    // service has no path: /users/7?q=1 reaches user-service as /7?q=1.
    let reply = client::get(&envoy.url("/users/7?q=1"), &[("authorization", &mobile)]);
    assert_eq!(reply.status, 200, "{}", reply.text());
    let seen = only(&users);
    assert_eq!(seen.path, "/7?q=1");
    assert_eq!(seen.header("x-consumer-username"), Some("mobile-app"));
    assert_eq!(seen.header("x-consumer-id"), Some(MOBILE_ID));
    assert_eq!(seen.header("x-consumer-custom-id"), Some("app-001"));
    assert_eq!(seen.header("x-credential-identifier"), Some(MOBILE_KEY));
    assert_eq!(seen.header("x-anonymous-consumer"), None);
    assert_eq!(
        seen.header("x-consumer-groups"),
        None,
        "Kong sends X-Consumer-Groups only where the ACL plugin runs"
    );
    // Rate Limiting plugin, "Headers sent to the client": the global instance, 100 a minute
    // per consumer (limit_by's default), one used.
    assert_eq!(number(&reply, "x-ratelimit-limit-minute"), 100);
    assert_eq!(number(&reply, "x-ratelimit-remaining-minute"), 99);

    // JWT plugin: the token may come in the `jwt` query parameter too (uri_param_names'
    // default). The global rate-limiting instance counts the consumer across routes: Kong
    // keys its counters by the plugin's own scope (a global instance: no route, no
    // service), not by the route the request took, so /orders draws on the same 100.
    let query_token = hs256(MOBILE_KEY, MOBILE_SECRET.as_bytes());
    let reply = client::get(&envoy.url(&format!("/orders?jwt={query_token}")), &[]);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(only(&orders).path, format!("/?jwt={query_token}"));
    assert_eq!(number(&reply, "x-ratelimit-remaining-minute"), 98);
    // Each consumer has its own counter (limit_by: consumer).
    let reply = client::get(&envoy.url("/users"), &[("authorization", &web)]);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(only(&users).header("x-consumer-id"), Some(WEB_ID));
    assert_eq!(number(&reply, "x-ratelimit-remaining-minute"), 99);

    // ACL plugin on payment-route, allow: [admins]: web-app (customers) is refused with
    // 403 {"message":"You cannot consume this service"}; payment-service never sees it.
    let reply = client::get(&envoy.url("/payments"), &[("authorization", &web)]);
    assert_eq!(reply.status, 403, "{}", reply.text());
    assert_eq!(
        reply.json(),
        serde_json::json!({"message": "You cannot consume this service"})
    );
    assert_eq!(
        payments.count(),
        0,
        "a refused request reached payment-service"
    );

    // mobile-app (admins) is let through, with X-Consumer-Groups ("Upstream Consumer Groups
    // header", comma-separated). payment-route's own rate-limiting instance, 20 a minute,
    // speaks, not the global one: plugin precedence, Route over global.
    for i in 1..=20u64 {
        let reply = client::get(&envoy.url("/payments"), &[("authorization", &mobile)]);
        assert_eq!(reply.status, 200, "request {i}: {}", reply.text());
        assert_eq!(
            number(&reply, "x-ratelimit-limit-minute"),
            20,
            "request {i}"
        );
        assert_eq!(
            number(&reply, "x-ratelimit-remaining-minute"),
            20 - i,
            "request {i}"
        );
        let seen = only(&payments);
        assert_eq!(seen.path, "/");
        assert_eq!(seen.header("x-consumer-groups"), Some("admins"));
        assert_eq!(seen.header("x-consumer-username"), Some("mobile-app"));
    }
    // The 21st within the minute: 429 {"message":"API rate limit exceeded"}, with the
    // limit's headers and Retry-After; payment-service does not see it.
    let reply = client::get(&envoy.url("/payments"), &[("authorization", &mobile)]);
    assert_eq!(reply.status, 429, "{}", reply.text());
    assert_eq!(
        reply.json(),
        serde_json::json!({"message": "API rate limit exceeded"})
    );
    assert_eq!(number(&reply, "x-ratelimit-limit-minute"), 20);
    assert_eq!(number(&reply, "x-ratelimit-remaining-minute"), 0);
    assert_eq!(number(&reply, "ratelimit-limit"), 20);
    assert_eq!(number(&reply, "ratelimit-remaining"), 0);
    assert!((1..=60).contains(&number(&reply, "ratelimit-reset")));
    assert!((1..=60).contains(&number(&reply, "retry-after")));
    assert_eq!(
        payments.count(),
        0,
        "a limited request reached payment-service"
    );

    // Plugin precedence: "a single plugin instance always runs once per request", the most
    // specific: the 21 requests on /payments ran payment-route's instance only, so the
    // global 100 still has 97 left for mobile-app (2 used above, this is the 3rd).
    let reply = client::get(&envoy.url("/users"), &[("authorization", &mobile)]);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(number(&reply, "x-ratelimit-limit-minute"), 100);
    assert_eq!(
        number(&reply, "x-ratelimit-remaining-minute"),
        97,
        "requests on /payments counted toward the global limit"
    );
    users.clear();

    // The global 100: 97 more across /users and /orders pass, the next is refused.
    for i in 4..=100u64 {
        let path = if i % 2 == 0 { "/users" } else { "/orders" };
        let reply = client::get(&envoy.url(path), &[("authorization", &mobile)]);
        assert_eq!(reply.status, 200, "request {i} on {path}: {}", reply.text());
        assert_eq!(number(&reply, "x-ratelimit-remaining-minute"), 100 - i);
    }
    let reply = client::get(&envoy.url("/orders"), &[("authorization", &mobile)]);
    assert_eq!(reply.status, 429, "{}", reply.text());
    assert_eq!(
        reply.json(),
        serde_json::json!({"message": "API rate limit exceeded"})
    );
    assert_eq!(number(&reply, "x-ratelimit-limit-minute"), 100);
    assert_eq!(users.count() + orders.count(), 97);
    // web-app's counter is its own: one request used.
    let reply = client::get(&envoy.url("/orders"), &[("authorization", &web)]);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(number(&reply, "x-ratelimit-remaining-minute"), 98);
}

// ---------------------------------------------------------------------------------------
// Kong's router

/// One upstream per service of tests/kong/routing.yaml, by the placeholder naming its port.
const ROUTING_UPSTREAMS: [&str; 13] = [
    "PREFIX",
    "SPECIAL",
    "DOCS_GENERAL",
    "DOCS_SPECIFIC",
    "ITEMS_ANY",
    "ITEMS_POST",
    "HOST_NONE",
    "HOST_WILD",
    "HOST_EXACT",
    "HDR_V2",
    "JOINED",
    "VERSIONED",
    "HOSTS",
];

struct Routing {
    upstreams: BTreeMap<&'static str, Upstream>,
    envoy: Envoy,
}

impl Routing {
    /// Sends `method path` with `headers` (a `host` among them replaces the listener's), and
    /// returns the one upstream that received it and what it received; panics if none or
    /// several did.
    fn reached(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (&'static str, Recorded) {
        let reply = self.send(method, path, headers);
        let hit: Vec<&'static str> = self
            .upstreams
            .iter()
            .filter(|(_, u)| u.count() > 0)
            .map(|(name, _)| *name)
            .collect();
        assert_eq!(
            hit.len(),
            1,
            "{method} {path} {headers:?} reached {hit:?}; the client got {} {}",
            reply.status,
            reply.text()
        );
        let name = hit[0];
        assert_eq!(reply.status, 200, "{method} {path}: {}", reply.text());
        (name, only(&self.upstreams[name]))
    }

    /// Sends a request that no route matches: Kong's 404 and no upstream saw it. The Proxy
    /// Reference ("Overview") shows the 404 of a request no route matches; Kong 3 words
    /// its body `no Route matched with those values` (its own spec tests).
    fn unmatched(&self, method: &str, path: &str, headers: &[(&str, &str)]) {
        let reply = self.send(method, path, headers);
        assert_eq!(
            serde_json::from_slice::<Value>(&reply.body).ok(),
            Some(serde_json::json!({"message": "no Route matched with those values"})),
            "{method} {path} {headers:?}: {} {}",
            reply.status,
            reply.text()
        );
        let hit: Vec<&str> = self
            .upstreams
            .iter()
            .filter(|(_, u)| u.count() > 0)
            .map(|(name, _)| *name)
            .collect();
        assert_eq!(
            (reply.status, hit.as_slice()),
            (404, [].as_slice()),
            "{method} {path} {headers:?}: {}",
            reply.text()
        );
    }

    /// One request on its own connection, written out so any `Host` can be sent.
    fn send(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
        let listener = format!("127.0.0.1:{}", self.envoy.port());
        let host = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("host"))
            .map(|(_, v)| *v)
            .unwrap_or(&listener);
        let mut request = format!("{method} {path} HTTP/1.1\r\nhost: {host}\r\n");
        for (name, value) in headers
            .iter()
            .filter(|(n, _)| !n.eq_ignore_ascii_case("host"))
        {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("content-length: 0\r\nconnection: close\r\n\r\n");
        client::send_raw(self.envoy.port(), request.as_bytes())
    }
}

/// Kong's router, one group of overlapping routes at a time, in one Envoy: prefixes, regex
/// paths and regex_priority, methods, hosts, headers, strip_path with the service's path,
/// and preserve_host.
#[test]
fn routes_match_and_rewrite_as_kongs_router_does() {
    let upstreams: BTreeMap<&'static str, Upstream> = ROUTING_UPSTREAMS
        .iter()
        .map(|name| (*name, Upstream::start(&name.to_ascii_lowercase())))
        .collect();
    let vars: Vec<(&str, String)> = upstreams
        .iter()
        .map(|(name, u)| (*name, u.port().to_string()))
        .collect();
    let vars: Vec<(String, String)> = vars
        .into_iter()
        .map(|(name, port)| (format!("{name}_PORT"), port))
        .collect();
    let vars: Vec<(&str, String)> = vars.iter().map(|(n, p)| (n.as_str(), p.clone())).collect();
    let imported = import(&kong_file("routing.yaml", &vars), false, &["--strict"]);
    let envoy = imported.start_envoy();
    let (routes, _) = route_and_cluster_names(&envoy);
    for route in [
        "v1",
        "v1-special",
        "docs-general",
        "docs-specific",
        "items-post",
    ] {
        assert!(
            routes.iter().any(|r| r == route),
            "no route {route} in {routes:?}"
        );
    }
    let at = Routing { upstreams, envoy };
    let get = |path: &str| at.reached("GET", path, &[]);

    // "Traditional router" > Path: a request matches when its path is prefixed with one of
    // the route's paths (a string prefix: /v1beta is under /v1); "the longest paths get
    // evaluated first", whatever the order in the file.
    assert_eq!(get("/v1").0, "PREFIX");
    assert_eq!(get("/v1beta").0, "PREFIX");
    assert_eq!(get("/v1/other").0, "PREFIX");
    assert_eq!(get("/v1/special").0, "SPECIAL");
    assert_eq!(get("/v1/special/42").0, "SPECIAL");
    // strip_path: false keeps the whole path.
    assert_eq!(get("/v1/special/42?x=1").1.path, "/v1/special/42?x=1");
    at.unmatched("GET", "/v2", &[]);
    at.unmatched("GET", "/V1", &[]);

    // "Regex evaluation order": routes with a regex path are considered before those with
    // prefix paths, and among them the higher regex_priority first. /docs/42 matches both
    // regexes and the /docs prefix: regex_priority 10 wins. The regexes are anchored at
    // the start of the path (Kong 3's router prefixes them with `^`), not at its end.
    assert_eq!(get("/docs/42").0, "DOCS_SPECIFIC");
    assert_eq!(get("/docs/abc").0, "DOCS_GENERAL");
    assert_eq!(get("/docs/42/more").0, "DOCS_GENERAL");
    assert_eq!(get("/docs").0, "PREFIX");
    at.unmatched("GET", "/x/docs/42", &[]);

    // "HTTP method" and "Route priority": a route that names methods has a higher match
    // weight than one with the same path alone, so it is tried first.
    assert_eq!(at.reached("POST", "/items", &[]).0, "ITEMS_POST");
    assert_eq!(at.reached("GET", "/items", &[]).0, "ITEMS_ANY");
    assert_eq!(at.reached("DELETE", "/items/3", &[]).0, "ITEMS_ANY");

    // "Host header", "Using wildcard hostnames", "Route priority": a route with hosts weighs
    // more than one without; among those, plain hosts before wildcards. A leftmost
    // wildcard matches any subdomain, not the bare domain.
    let host = |h: &'static str| [("host", h)];
    assert_eq!(
        at.reached("GET", "/h", &host("api.example.test")).0,
        "HOST_EXACT"
    );
    assert_eq!(
        at.reached("GET", "/h", &host("other.example.test")).0,
        "HOST_WILD"
    );
    assert_eq!(
        at.reached("GET", "/h", &host("a.b.example.test")).0,
        "HOST_WILD"
    );
    assert_eq!(
        at.reached("GET", "/h", &host("example.test")).0,
        "HOST_NONE"
    );
    assert_eq!(at.reached("GET", "/h", &[]).0, "HOST_NONE");

    // "Headers": the request must carry the header with one of the listed values (Kong
    // compares the values without regard to case).
    assert_eq!(
        at.reached("GET", "/hdr", &[("x-version", "v2")]).0,
        "HDR_V2"
    );
    assert_eq!(
        at.reached("GET", "/hdr", &[("x-version", "v2.1")]).0,
        "HDR_V2"
    );
    assert_eq!(
        at.reached("GET", "/hdr", &[("x-version", "V2")]).0,
        "HDR_V2"
    );
    // Without one of them, /hdr is still under another route's prefix: /h (host-none,
    // strip_path true), which sends what is left, "dr", to its service.
    for headers in [&[("x-version", "v3")][..], &[]] {
        let (name, seen) = at.reached("GET", "/hdr", headers);
        assert_eq!((name, seen.path.as_str()), ("HOST_NONE", "/dr"));
    }

    // "Routes" > strip_path and path_handling v0 (the default), on a service whose path is
    // /s: the service path, then what is left of the request path, one slash between.
    assert_eq!(get("/tv0/req").1.path, "/s/req");
    assert_eq!(get("/tv0/req?a=1&b=2").1.path, "/s/req?a=1&b=2");
    assert_eq!(get("/tv0").1.path, "/s");
    assert_eq!(get("/fv0/req").1.path, "/s/fv0/req");
    assert_eq!(get("/fv0").1.path, "/s/fv0");
    // strip_path left out is true (the Route schema's default).
    assert_eq!(get("/dv0/x/y").1.path, "/s/x/y");
    // "if a regex path is defined on a Route that has strip_path enabled, the entirety of
    // the request URL matching sequence will be stripped" (the page's own example).
    let (name, seen) = get("/version/1/service/path/to/resource");
    assert_eq!(name, "VERSIONED");
    assert_eq!(seen.path, "/path/to/resource");

    // "Routes" > preserve_host: by default the upstream's Host is the service's host; with
    // preserve_host: true, the client's.
    let (_, seen) = at.reached("GET", "/ph", &host("keep.example.test"));
    assert_eq!(seen.header("host"), Some("keep.example.test"));
    let (name, seen) = at.reached("GET", "/ph", &host("rewrite.example.test"));
    assert_eq!(name, "HOSTS");
    let hosts_port = at.upstreams["HOSTS"].port();
    assert!(
        ["127.0.0.1".to_owned(), format!("127.0.0.1:{hosts_port}")]
            .iter()
            .any(|h| seen.header("host") == Some(h.as_str())),
        "preserve_host false: the upstream got Host {:?}, not the service's host",
        seen.header("host")
    );
    at.unmatched("GET", "/ph", &host("elsewhere.test"));
}

// ---------------------------------------------------------------------------------------
// --admin-url

const ADMIN_TOKEN: &str = "kong-import-e2e-admin-token";

/// The consumers of the Admin API's answer to `GET path` (`{"data": [...]}`).
fn listed(admin: &AdminService, path: &str) -> Vec<Value> {
    let reply = admin.request("GET", path, &[]);
    assert_eq!(reply.status, 200, "GET {path}: {}", reply.text());
    reply.json()["data"].as_array().cloned().unwrap_or_default()
}

/// What the admin holds of the seed's consumers: usernames with ids, credential keys and
/// groups, sorted.
fn admin_state(admin: &AdminService) -> Vec<(String, String, Vec<String>, Vec<String>)> {
    let mut state: Vec<_> = listed(admin, "/consumers")
        .iter()
        .map(|c| {
            let username = c["username"].as_str().unwrap_or_default().to_owned();
            let id = c["id"].as_str().unwrap_or_default().to_owned();
            let field = |path: &str, name: &str| -> Vec<String> {
                let mut values: Vec<String> = listed(admin, &format!("/consumers/{id}/{path}"))
                    .iter()
                    .filter_map(|e| e[name].as_str().map(str::to_owned))
                    .collect();
                values.sort();
                values
            };
            (
                username,
                id.clone(),
                field("jwt", "key"),
                field("acls", "group"),
            )
        })
        .collect();
    state.sort();
    state
}

/// `--admin-url`: the import loads the seed's consumers, credentials and groups into a real
/// portcullis-admin (behind an admin token) instead of the static policy, and the gateway's
/// jwt filter looks them up there (`consumer_source`). A second run changes nothing.
#[test]
fn admin_url_loads_the_consumers_into_portcullis_admin() {
    let db_dir = ScratchDir::new("kong-admin-db").unwrap_or_else(|e| panic!("scratch: {e}"));
    let db = format!("sqlite:{}", db_dir.path().join("admin.db").display());
    let admin = AdminService::start_with(
        &admin_binary(),
        &db,
        &[],
        &[("PORTCULLIS_ADMIN_TOKEN", ADMIN_TOKEN)],
    )
    .unwrap_or_else(|e| panic!("{e:#}"));
    let users = Upstream::start("user-service");
    let orders = Upstream::start("order-service");
    let payments = Upstream::start("payment-service");
    let kong = kong_file(
        "seed.yaml",
        &[
            ("USERS_PORT", users.port().to_string()),
            ("ORDERS_PORT", orders.port().to_string()),
            ("PAYMENTS_PORT", payments.port().to_string()),
        ],
    );
    let admin_url = format!("http://{}", admin.admin_address());
    let data_plane = admin.data_plane_address().to_string();
    let args = [
        "--admin-url",
        admin_url.as_str(),
        "--admin-token",
        ADMIN_TOKEN,
        "--admin-data-plane",
        data_plane.as_str(),
    ];
    // The Kong file on stdin (`-`), as `deck file render | portcullis kong import -` would.
    let imported = import(&kong, true, &args);

    let expected = vec![
        (
            "mobile-app".to_owned(),
            MOBILE_ID.to_owned(),
            vec![MOBILE_KEY.to_owned()],
            vec!["admins".to_owned()],
        ),
        (
            "web-app".to_owned(),
            WEB_ID.to_owned(),
            vec![WEB_KEY.to_owned()],
            vec!["customers".to_owned()],
        ),
    ];
    assert_eq!(admin_state(&admin), expected, "what the admin holds");
    // The consumers live in the admin, not in the filter's configuration.
    let jwt = imported.policy("jwt");
    assert!(
        jwt.get("consumer_source").is_some(),
        "policies/jwt.json has no consumer_source: {jwt}"
    );
    assert!(
        jwt.get("consumers")
            .and_then(Value::as_array)
            .is_none_or(|c| c.is_empty()),
        "policies/jwt.json still lists consumers: {jwt}"
    );

    let envoy = imported.start_envoy();
    let mobile = bearer(&hs256(MOBILE_KEY, MOBILE_SECRET.as_bytes()));
    let web = bearer(&hs256(WEB_KEY, WEB_SECRET.as_bytes()));
    // Until the filter has loaded the admin's revocations it answers looked-up tokens 503
    // (jwt README, consumer_source): wait for the first 200.
    let started = Instant::now();
    let reply = loop {
        let reply = client::get(&envoy.url("/users"), &[("authorization", &mobile)]);
        if reply.status != 503 || started.elapsed() > Duration::from_secs(10) {
            break reply;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(reply.status, 200, "{}", reply.text());
    let seen = only(&users);
    assert_eq!(seen.header("x-consumer-username"), Some("mobile-app"));
    assert_eq!(seen.header("x-consumer-id"), Some(MOBILE_ID));
    assert_eq!(seen.header("x-credential-identifier"), Some(MOBILE_KEY));
    // The groups come from the admin too: web-app is no admin.
    let reply = client::get(&envoy.url("/payments"), &[("authorization", &web)]);
    assert_eq!(reply.status, 403, "{}", reply.text());
    let reply = client::get(&envoy.url("/payments"), &[("authorization", &mobile)]);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(only(&payments).header("x-consumer-groups"), Some("admins"));
    // Forged key: still refused.
    let forged = bearer(&hs256(MOBILE_KEY, WEB_SECRET.as_bytes()));
    let reply = client::get(&envoy.url("/users"), &[("authorization", &forged)]);
    assert_eq!(reply.status, 401, "{}", reply.text());

    // Run again: the same consumers, credentials and groups, nothing doubled, and the
    // gateway still answers.
    let again = import(&kong, false, &args);
    assert_eq!(admin_state(&admin), expected, "after the second import");
    assert_eq!(again.read("envoy.yaml"), imported.read("envoy.yaml"));
    let reply = client::get(&envoy.url("/users"), &[("authorization", &web)]);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(only(&users).header("x-consumer-username"), Some("web-app"));
}
