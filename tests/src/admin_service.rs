//! The project's control plane (`services/admin`, binary `portcullis-admin`) as a real
//! process: started on SQLite or a given database with both listeners (the Admin API and
//! the data plane the gateways follow) on free loopback ports, read from the line it prints;
//! killed (SIGKILL) and started again on the same ports and database; and driven through
//! the Admin API as Kong's documentation writes it (form data, as `curl --data`), for tests
//! that put a real Envoy behind it.
//!
//! ```no_run
//! use portcullis_tests::admin_service::AdminService;
//!
//! let mut admin = AdminService::sqlite().unwrap();
//! admin.create_consumer("mobile-app", None);
//! admin.create_jwt("mobile-app", "mobile-key", "a-secret-of-at-least-thirty-two-bytes");
//! admin.add_group("mobile-app", "admins");
//! // An Envoy cluster at admin.data_plane_address(); then an outage and a recovery:
//! admin.kill();
//! admin.start_again().unwrap();
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use serde_json::Value;

use crate::client::{self, Reply};
use crate::paths::{built_binary, ScratchDir};
use crate::service::ServiceProcess;

/// The line the service prints once it listens: `<this><admin>, data plane on <data>`.
const READY: &str = "portcullis-admin listening on ";
const DATA_PLANE: &str = ", data plane on ";
/// How long one start may take.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long [`AdminService::start_again`] keeps trying to bind the old ports.
const REBIND_TIMEOUT: Duration = Duration::from_secs(5);
/// The variables the service reads. A developer's own settings of them must not reach a
/// test: they are removed, and set only as a test gives them.
const ENV: [&str; 3] = [
    "PORTCULLIS_ADMIN_TOKEN",
    "PORTCULLIS_ADMIN_DATA_PLANE_TOKEN",
    "PORTCULLIS_ADMIN_DB",
];

/// The `portcullis-admin` binary cargo built alongside the running test, found as
/// [`built_binary`] finds it (`$PORTCULLIS_ADMIN` overrides it). Tests inside
/// `services/admin` pass `env!("CARGO_BIN_EXE_portcullis-admin")` instead.
pub fn admin_binary() -> PathBuf {
    built_binary("portcullis-admin", "PORTCULLIS_ADMIN")
}

/// A running `portcullis-admin`; see the module doc. Stopped with SIGTERM when dropped,
/// its log printed if a test is failing.
#[derive(Debug)]
pub struct AdminService {
    process: ServiceProcess,
    admin: SocketAddr,
    data_plane: SocketAddr,
    binary: PathBuf,
    db: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    // Holds the log (and the SQLite file of `sqlite()`): removed after the process.
    dir: ScratchDir,
}

impl AdminService {
    /// [`admin_binary`] on a fresh SQLite file of its own (removed with it).
    pub fn sqlite() -> anyhow::Result<AdminService> {
        let dir = ScratchDir::new("admin").context("scratch directory for the service")?;
        let db = format!("sqlite:{}", dir.path().join("admin.db").display());
        Self::launch(&admin_binary(), &db, &[], &[], dir)
    }

    /// [`admin_binary`] on `db`: `sqlite:PATH` or a `postgres://…` URL
    /// ([`crate::postgres::Postgres::database`] makes one).
    pub fn start(db: &str) -> anyhow::Result<AdminService> {
        Self::start_with(&admin_binary(), db, &[], &[])
    }

    /// `binary --db <db> --listen 127.0.0.1:0 --data-plane-listen 127.0.0.1:0 <args…>`
    /// with `env` (`PORTCULLIS_ADMIN_TOKEN`, …) and none of the service's other variables;
    /// waits for the line naming both ports. An error holds its log, which says why it
    /// refused to start.
    pub fn start_with(
        binary: &Path,
        db: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<AdminService> {
        let dir = ScratchDir::new("admin").context("scratch directory for the service")?;
        Self::launch(binary, db, args, env, dir)
    }

    fn launch(
        binary: &Path,
        db: &str,
        args: &[&str],
        env: &[(&str, &str)],
        dir: ScratchDir,
    ) -> anyhow::Result<AdminService> {
        let (process, admin, data_plane) = spawn(binary, db, None, args, env, dir.path())?;
        Ok(AdminService {
            process,
            admin,
            data_plane,
            binary: binary.to_owned(),
            db: db.to_owned(),
            args: args.iter().map(|a| a.to_string()).collect(),
            env: env
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            dir,
        })
    }

    /// Kills the service (SIGKILL: a crash, nothing flushed, requests in flight cut off).
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Stops it with SIGTERM (requests in flight finish); whether it exited 0 within 5 s.
    pub fn stop(&mut self) -> bool {
        self.process.stop()
    }

    /// Starts it again (after [`kill`](Self::kill) or [`stop`](Self::stop); a running one
    /// is stopped first) on the same ports, database, arguments and environment, and waits
    /// for its ready line. A port a SIGKILL left in use is retried for up to 5 s.
    pub fn start_again(&mut self) -> anyhow::Result<()> {
        self.process.stop();
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let ports = (self.admin, self.data_plane);
        let deadline = Instant::now() + REBIND_TIMEOUT;
        loop {
            match spawn(
                &self.binary,
                &self.db,
                Some(ports),
                &args,
                &env,
                self.dir.path(),
            ) {
                Ok((process, admin, data_plane)) => {
                    if (admin, data_plane) != ports {
                        bail!("started again on {admin} and {data_plane}, not {ports:?}");
                    }
                    self.process = process;
                    return Ok(());
                }
                Err(e) if Instant::now() < deadline && format!("{e:#}").contains("in use") => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Whether it runs: not killed, stopped or exited.
    pub fn is_running(&self) -> bool {
        self.process
            .pid()
            .is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists())
    }

    /// Where the Admin API listens.
    pub fn admin_address(&self) -> SocketAddr {
        self.admin
    }

    /// Where the data plane listens: the address of the gateways' cluster.
    pub fn data_plane_address(&self) -> SocketAddr {
        self.data_plane
    }

    /// `http://<admin address><path>`.
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    /// `http://<data-plane address><path>`.
    pub fn data_plane_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.data_plane)
    }

    /// The `--db` it runs on.
    pub fn db(&self) -> &str {
        &self.db
    }

    /// Everything it wrote to stderr so far, every start included.
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// The value of `variable` in the environment it was started with.
    fn env(&self, variable: &str) -> Option<&str> {
        self.env
            .iter()
            .find(|(n, _)| n == variable)
            .map(|(_, v)| v.as_str())
    }

    // -----------------------------------------------------------------------------------
    // The Admin API, as Kong's documentation writes it

    /// An Admin API request with form data (as `curl --data a=b --data c=d` sends it; none:
    /// no body), and `Kong-Admin-Token` when it was started with `PORTCULLIS_ADMIN_TOKEN`.
    /// Any status comes back; panics on a transport failure.
    pub fn request(&self, method: &str, path: &str, form: &[(&str, &str)]) -> Reply {
        let mut headers = Vec::new();
        if let Some(token) = self.env("PORTCULLIS_ADMIN_TOKEN") {
            headers.push(("kong-admin-token", token));
        }
        let body: Option<String> = (!form.is_empty()).then(|| {
            headers.push(("content-type", "application/x-www-form-urlencoded"));
            form_urlencoded::Serializer::new(String::new())
                .extend_pairs(form)
                .finish()
        });
        client::send(
            method,
            &self.admin_url(path),
            &headers,
            body.as_deref().map(str::as_bytes),
        )
    }

    /// `request`, panicking unless the answer is `status`; the answer's JSON (null for a
    /// 204).
    fn expect(&self, status: u16, method: &str, path: &str, form: &[(&str, &str)]) -> Value {
        let reply = self.request(method, path, form);
        assert_eq!(
            reply.status,
            status,
            "{method} {path} {form:?}: {}",
            reply.text()
        );
        if reply.body.is_empty() {
            Value::Null
        } else {
            reply.json()
        }
    }

    /// `POST /consumers --data username=… [--data custom_id=…]`: the consumer (201).
    pub fn create_consumer(&self, username: &str, custom_id: Option<&str>) -> Value {
        let mut form = vec![("username", username)];
        form.extend(custom_id.map(|id| ("custom_id", id)));
        self.expect(201, "POST", "/consumers", &form)
    }

    /// `DELETE /consumers/{username or id}` (204): its credentials, groups and cutoffs go
    /// with it.
    pub fn delete_consumer(&self, consumer: &str) {
        self.expect(204, "DELETE", &format!("/consumers/{consumer}"), &[]);
    }

    /// `POST /consumers/{consumer}/jwt --data key=… --data secret=…`: an HS256 credential
    /// (Kong's default algorithm; the secret at least 32 bytes). A token signed with
    /// `secret` and `iss` = `key` is this credential's. The credential (201).
    pub fn create_jwt(&self, consumer: &str, key: &str, secret: &str) -> Value {
        let path = format!("/consumers/{consumer}/jwt");
        self.expect(201, "POST", &path, &[("key", key), ("secret", secret)])
    }

    /// `DELETE /consumers/{consumer}/jwt/{key or id}` (204).
    pub fn delete_jwt(&self, consumer: &str, key: &str) {
        self.expect(
            204,
            "DELETE",
            &format!("/consumers/{consumer}/jwt/{key}"),
            &[],
        );
    }

    /// `POST /consumers/{consumer}/acls --data group=…`: the ACL (201).
    pub fn add_group(&self, consumer: &str, group: &str) -> Value {
        let path = format!("/consumers/{consumer}/acls");
        self.expect(201, "POST", &path, &[("group", group)])
    }

    /// `DELETE /consumers/{consumer}/acls/{group}` (204).
    pub fn remove_group(&self, consumer: &str, group: &str) {
        self.expect(
            204,
            "DELETE",
            &format!("/consumers/{consumer}/acls/{group}"),
            &[],
        );
    }

    /// `POST /revocations --data jti=… --data expires_at=…`: that token revoked, whoever
    /// issued it, until `expires_at` (its `exp`) plus the service's grace. The revocation
    /// (201).
    pub fn revoke_jti(&self, jti: &str, expires_at: u64) -> Value {
        let expires_at = expires_at.to_string();
        let form = [("jti", jti), ("expires_at", expires_at.as_str())];
        self.expect(201, "POST", "/revocations", &form)
    }

    /// `POST /revocations --data consumer=… [--data issued_before=…]`: every token of the
    /// consumer issued (`iat`) at or before the cutoff — now, in whole seconds, by default —
    /// revoked. The revocation (201 when new, 200 when it moved the consumer's cutoff).
    pub fn revoke_consumer(&self, consumer: &str, issued_before: Option<u64>) -> Value {
        let before = issued_before.map(|t| t.to_string());
        let mut form = vec![("consumer", consumer)];
        form.extend(before.as_deref().map(|t| ("issued_before", t)));
        let reply = self.request("POST", "/revocations", &form);
        assert!(
            matches!(reply.status, 200 | 201),
            "POST /revocations {form:?}: {} {}",
            reply.status,
            reply.text()
        );
        reply.json()
    }

    /// A data-plane `GET` (`/v1/credentials/{key}`, `/v1/changes?after=N`, …), with
    /// `Authorization: Bearer …` when it was started with
    /// `PORTCULLIS_ADMIN_DATA_PLANE_TOKEN`: what a gateway reads.
    pub fn data(&self, path: &str) -> Reply {
        let bearer = self
            .env("PORTCULLIS_ADMIN_DATA_PLANE_TOKEN")
            .map(|token| format!("Bearer {token}"));
        let headers: Vec<(&str, &str)> = bearer
            .as_deref()
            .map(|b| vec![("authorization", b)])
            .unwrap_or_default();
        client::get(&self.data_plane_url(path), &headers)
    }
}

/// Runs the binary and reads back where it listens: on free loopback ports unless `args`
/// say otherwise, or at `ports`, whatever `args` say (the last of a repeated flag wins).
fn spawn(
    binary: &Path,
    db: &str,
    ports: Option<(SocketAddr, SocketAddr)>,
    args: &[&str],
    env: &[(&str, &str)],
    dir: &Path,
) -> anyhow::Result<(ServiceProcess, SocketAddr, SocketAddr)> {
    let listen = |(admin, data_plane): (SocketAddr, SocketAddr)| {
        [
            "--listen".to_owned(),
            admin.to_string(),
            "--data-plane-listen".to_owned(),
            data_plane.to_string(),
        ]
    };
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut command = Command::new(binary);
    command.args(["--db", db]);
    match ports {
        None => command.args(listen((any, any))).args(args),
        Some(ports) => command.args(args).args(listen(ports)),
    };
    for variable in ENV {
        command.env_remove(variable);
    }
    command.envs(env.iter().copied());
    let log = dir.join("admin.log");
    let (process, rest) =
        ServiceProcess::spawn("portcullis-admin", &mut command, &log, READY, START_TIMEOUT)?;
    let printed = || format!("the service printed {READY:?}{rest:?}");
    let (admin, data_plane) = rest.split_once(DATA_PLANE).with_context(printed)?;
    Ok((
        process,
        admin.parse().with_context(printed)?,
        data_plane.parse().with_context(printed)?,
    ))
}
