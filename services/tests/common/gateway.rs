//! The demo gateway as `make run` starts it: the demo config rendered from `envoy-config/` by
//! the services crate's renderer (gateway and admin on free ports), a real Envoy with two
//! workers running it, the real services behind it, and portcullis-admin (on SQLite of its
//! own) at the end of the cluster `portcullis_admin`; over HTTPS with certificates made by
//! `portcullis-services certs`, as `make run` does by default, or in plain HTTP
//! ([`Gateway::start_plain`], `make run TLS=0`). Plus what the scenario's requests need: the
//! demo consumers' tokens, logins, and the calendar minute the rate limits count in.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use portcullis_services::certs::{self, Leaf};
use portcullis_services::demo::{Chain, Demo, FILTERS};
use portcullis_services::service::Service;
use portcullis_tests::admin_service::{admin_binary, AdminService};
use portcullis_tests::paths::ScratchDir;
use portcullis_tests::{client, paths, tokens, Envoy, Reply};

use super::Services;

/// Lines of Envoy's log a failing test on the shared gateway shows.
const TAIL_LINES: usize = 80;

pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// `envoy-config/policies/`: the policies `make run` runs.
pub fn demo_policies() -> PathBuf {
    paths::workspace_root().join("envoy-config/policies")
}

/// `dist/`, holding every filter's `.wasm` (panics, saying to run `make build`, if not).
fn dist() -> PathBuf {
    let dist = paths::wasm(FILTERS[0])
        .parent()
        .map(Path::to_path_buf)
        .expect("dist/");
    for filter in FILTERS {
        assert_eq!(paths::wasm(filter).parent(), Some(dist.as_path()));
    }
    dist
}

/// The packaging the demo tests run: the one-VM gateway, as `make run` does, unless
/// `PORTCULLIS_PACKAGING=filters` asks for the four separate filters.
pub fn chain() -> Chain {
    match std::env::var("PORTCULLIS_PACKAGING").as_deref() {
        Ok("filters") => Chain::Filters,
        _ => Chain::Gateway,
    }
}

/// The demo with the policies in `policies`, the gateway, Envoy's admin and
/// portcullis-admin's data plane where given, and each service at `service(s)`.
pub fn demo(
    policies: &Path,
    gateway: SocketAddr,
    admin: SocketAddr,
    portcullis_admin: SocketAddr,
    service: impl Fn(Service) -> SocketAddr,
) -> Demo {
    Demo {
        template: paths::workspace_root().join("envoy-config/demo.yaml.tmpl"),
        policies: policies.to_path_buf(),
        dist: dist(),
        gateway,
        admin,
        services: Service::ALL.iter().map(|s| (*s, service(*s))).collect(),
        portcullis_admin,
        ratelimit: None,
        tls: None,
        access_log: None,
        chain: chain(),
    }
}

/// The demo exactly as `make run` renders it with its default ports: gateway 8080, admin
/// 9901, services 18081–18084, portcullis-admin's data plane 8005.
pub fn make_run_demo() -> Demo {
    let (gateway, admin, data_plane) = (loopback(8080), loopback(9901), loopback(8005));
    demo(&demo_policies(), gateway, admin, data_plane, |s| {
        let port = match s {
            Service::Users => 18081,
            Service::Orders => 18082,
            Service::Payments => 18083,
            Service::Login => 18084,
        };
        loopback(port)
    })
}

/// The demo config for services listening where `services` does and portcullis-admin's data
/// plane at `portcullis_admin`, gateway and admin on port 0 (the harness reads back the ports
/// Envoy bound); with `tls`, the demo certificates there (HTTPS and TLS to every upstream).
pub fn render(
    policies: &Path,
    services: &Services,
    portcullis_admin: SocketAddr,
    tls: Option<&DemoCerts>,
) -> String {
    let demo = demo(policies, loopback(0), loopback(0), portcullis_admin, |s| {
        loopback(services.port(s.name()))
    });
    Demo {
        tls: tls.map(|certs| certs.dir().to_path_buf()),
        ..demo
    }
    .render()
    .unwrap_or_else(|e| panic!("{e}"))
}

/// The demo's certificates as `make run` makes them (`portcullis-services certs`), in a
/// scratch directory of their own, their CA trusted by this process's client
/// ([`client::trust`]).
pub struct DemoCerts {
    dir: ScratchDir,
}

impl DemoCerts {
    pub fn new() -> DemoCerts {
        let dir = ScratchDir::new("demo-tls").unwrap();
        let status = std::process::Command::new(super::BINARY)
            .args(["certs", "--dir"])
            .arg(dir.path())
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "portcullis-services certs: {status}");
        client::trust(&dir.path().join(certs::CA_FILE));
        DemoCerts { dir }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `ca.pem`.
    pub fn ca(&self) -> PathBuf {
        self.dir().join(certs::CA_FILE)
    }

    /// `--tls-cert <leaf>.pem --tls-key <leaf>.key`.
    pub fn flags(&self, leaf: Leaf) -> Vec<String> {
        let (cert, key) = (leaf.cert(self.dir()), leaf.key(self.dir()));
        vec![
            "--tls-cert".to_owned(),
            cert.to_string_lossy().into_owned(),
            "--tls-key".to_owned(),
            key.to_string_lossy().into_owned(),
        ]
    }
}

/// The demo services on free ports, over HTTPS with `leaf`'s certificate when given.
pub fn start_services(certs: Option<(&DemoCerts, Leaf)>) -> Services {
    let flags = certs.map(|(c, leaf)| c.flags(leaf)).unwrap_or_default();
    let args: Vec<&str> = flags.iter().map(String::as_str).collect();
    Services::start_with(&["--users", "--orders", "--payments", "--login"], &args)
}

/// portcullis-admin on SQLite of its own, over TLS with the demo certificates when given.
pub fn start_admin(certs: Option<&DemoCerts>) -> AdminService {
    match certs {
        None => AdminService::sqlite(),
        Some(certs) => {
            let db = format!("sqlite:{}", certs.dir().join("admin.db").display());
            let flags = certs.flags(certs::ADMIN);
            let args: Vec<&str> = flags.iter().map(String::as_str).collect();
            AdminService::start_with(&admin_binary(), &db, &args, &[])
        }
    }
    .unwrap_or_else(|e| panic!("{e:#}"))
}

/// Envoy running the demo config, and the services and portcullis-admin behind it.
pub struct Gateway {
    // Declared first, so dropped first: Envoy stops before its upstreams do.
    pub envoy: Envoy,
    pub services: Services,
    pub admin: AdminService,
    /// The demo certificates, when it runs over HTTPS (removed after everything stopped).
    pub certs: Option<DemoCerts>,
}

impl Gateway {
    /// The demo as `make run` runs it: HTTPS from the client to Envoy and from Envoy to the
    /// services and portcullis-admin.
    pub fn start() -> Gateway {
        Self::start_tls(Some(DemoCerts::new()))
    }

    /// The demo as `make run TLS=0` runs it: plain HTTP everywhere.
    pub fn start_plain() -> Gateway {
        Self::start_tls(None)
    }

    fn start_tls(certs: Option<DemoCerts>) -> Gateway {
        let services = start_services(certs.as_ref().map(|c| (c, certs::SERVICES)));
        let admin = start_admin(certs.as_ref());
        let config = render(
            &demo_policies(),
            &services,
            admin.data_plane_address(),
            certs.as_ref(),
        );
        let envoy = Envoy::builder(config)
            .main_listener("gateway")
            // The harness disables hot restart, as `make run` does: with it on, Envoy asks
            // for SIGTERM when the *thread* that started it exits (PR_SET_PDEATHSIG), so the
            // shared gateway would stop when the first test ends.
            .start()
            .unwrap_or_else(|e| panic!("{e:#}"));
        // Until the consumer source's first poll has loaded the revocations, a token of a
        // consumer looked up at runtime gets 503 (fail closed, `Retry-After: 1`); the poll
        // runs on the jwt stage's first tick after start. The tests start after it.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while envoy
            .stat("wasmcustom.portcullis_jwt_source_polls_total")
            .unwrap_or(0)
            == 0
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        Gateway {
            envoy,
            services,
            admin,
            certs,
        }
    }

    /// `https://127.0.0.1:<gateway port><path>` (`http://` in plain HTTP).
    pub fn url(&self, path: &str) -> String {
        https_url(&self.envoy, self.certs.is_some(), path)
    }

    /// `GET path` through the gateway.
    pub fn get(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        client::get(&self.url(path), headers)
    }

    /// `POST path` with a JSON body through the gateway, as a login form would send it.
    pub fn post_json(&self, path: &str, headers: &[(&str, &str)], body: &str) -> Reply {
        let mut all = vec![("content-type", "application/json")];
        all.extend_from_slice(headers);
        client::send("POST", &self.url(path), &all, Some(body.as_bytes()))
    }

    /// Logs `username` in through `POST path` (`/login`, maybe with a query) and returns
    /// `Bearer <token>` from the token-issuer's answer.
    pub fn login(&self, path: &str, username: &str, password: &str) -> String {
        let body = serde_json::json!({ "username": username, "password": password });
        let reply = self.post_json(path, &[], &body.to_string());
        assert_eq!(reply.status, 200, "login as {username}: {}", reply.text());
        let answer = reply.json();
        assert_eq!(answer["token_type"], "Bearer", "{answer}");
        let token = answer["token"]
            .as_str()
            .unwrap_or_else(|| panic!("{answer}"));
        format!("Bearer {token}")
    }

    /// The value of one Prometheus series (`portcullis_jwt_accepted_total{}`); panics if Envoy
    /// does not list it.
    pub fn metric(&self, series: &str) -> f64 {
        self.envoy.metric(series).unwrap_or_else(|| {
            let listed: Vec<String> = self
                .envoy
                .stats_prometheus()
                .lines()
                .filter(|line| line.starts_with("portcullis"))
                .map(str::to_owned)
                .collect();
            panic!(
                "Envoy lists no {series}; its portcullis series:\n{}",
                listed.join("\n")
            )
        })
    }

    /// The last lines of Envoy's log and every line the services printed.
    fn dump(&self) -> String {
        let log = self.envoy.log();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n");
        format!(
            "---- Envoy log: last {TAIL_LINES} lines ----\n{tail}\n\
             ---- services' stdout ----\n{}\n---- end ----",
            self.services.lines().join("\n")
        )
    }
}

/// `envoy`'s main listener URL for `path`, `https://` when `tls`.
pub fn https_url(envoy: &Envoy, tls: bool, path: &str) -> String {
    let url = envoy.url(path);
    match url.strip_prefix("http://") {
        Some(rest) if tls => format!("https://{rest}"),
        _ => url,
    }
}

/// Who holds the shared gateway now; it stops when the last holder lets go.
static SHARED: Mutex<Weak<Gateway>> = Mutex::new(Weak::new());

/// The gateway shared by the tests that run at the same time and keep well inside every
/// limit: one Envoy start instead of one per test. Each test's requests are told apart by a
/// marker in their path. A later test may get a fresh gateway (counters at zero) or the same
/// one, so a test sharing it must not depend on counts others make.
pub fn shared() -> Shared {
    let mut slot = SHARED.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(gateway) = slot.upgrade() {
        return Shared(Some(gateway));
    }
    let gateway = Arc::new(Gateway::start());
    *slot = Arc::downgrade(&gateway);
    Shared(Some(gateway))
}

/// One test's hold on the shared gateway. When the test fails, it prints Envoy's log and the
/// services' output (the last holder's Envoy and services print theirs as they stop).
pub struct Shared(Option<Arc<Gateway>>);

impl std::ops::Deref for Shared {
    type Target = Gateway;

    fn deref(&self) -> &Gateway {
        self.0.as_deref().expect("held until dropped")
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Under the lock, so no other test takes the gateway up between the count and the drop.
        let _slot = SHARED.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(gateway) = self.0.take() {
            if std::thread::panicking() && Arc::strong_count(&gateway) > 1 {
                eprintln!("{}", gateway.dump());
            }
        }
    }
}

/// The demo consumer credential `key`'s HS256 secret, from `envoy-config/policies/jwt.json`.
pub fn consumer_secret(key: &str) -> String {
    let path = demo_policies().join("jwt.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let policy: serde_json::Value = serde_json::from_str(&text).expect("jwt.json is JSON");
    policy["consumers"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|consumer| consumer["credentials"].as_array().into_iter().flatten())
        .find(|credential| credential["key"] == key)
        .and_then(|credential| credential["secret"].as_str())
        .unwrap_or_else(|| panic!("no credential {key:?} with a secret in {path:?}"))
        .to_owned()
}

/// `Bearer <token>`: a good HS256 token of the demo consumer credential `key` (`mobile-app`,
/// `web-app`), as a Kong consumer would sign it.
pub fn consumer_token(key: &str) -> String {
    format!(
        "Bearer {}",
        tokens::hs256(key, consumer_secret(key).as_bytes())
    )
}

/// The calendar minute now (Unix time / 60): the rate-limiting filter's minute windows.
pub fn minute_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() / 60)
        .unwrap_or(0)
}

/// Waits, if less than `room` is left of this calendar minute, until just after the next one
/// begins: requests that must count in one minute window then fall in one. Returns the
/// minute they will count in.
pub fn minute_with_room(room: Duration) -> u64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970");
    let into_minute = Duration::from_millis((since_epoch.as_millis() % 60_000) as u64);
    let left = Duration::from_secs(60) - into_minute;
    if left < room {
        // A little past the edge: every Envoy worker reads the same clock a moment apart.
        std::thread::sleep(left + Duration::from_millis(250));
    }
    minute_now()
}
