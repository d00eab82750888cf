//! The Envoy process harness: start a real Envoy on a rendered config, wait until it is
//! ready, find the ports it bound, and stop it on drop — printing its log when a test fails.
//!
//! Every Envoy gets its own scratch directory (config, log, admin address), kernel-chosen
//! ports and a dynamic base id, so tests can run several at once.

use std::collections::BTreeMap;
use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};

use crate::client;
use crate::config::{fill, ADMIN};
use crate::paths::{envoy_binary, ScratchDir};
use crate::release;

/// How many lines of Envoy's log a failure shows.
const TAIL_LINES: usize = 80;

/// How to start an Envoy; see [`Envoy::builder`].
#[derive(Clone, Debug)]
pub struct EnvoyBuilder {
    template: String,
    vars: BTreeMap<String, String>,
    concurrency: u32,
    log_level: String,
    component_log_level: String,
    main_listener: Option<String>,
    start_timeout: Duration,
    args: Vec<String>,
}

impl EnvoyBuilder {
    /// Sets the value of the template's `{{NAME}}` placeholder.
    pub fn var(mut self, name: &str, value: impl Into<String>) -> Self {
        self.vars.insert(name.to_owned(), value.into());
        self
    }

    /// Worker threads (`--concurrency`); 2 unless set, so per-worker state shows up.
    pub fn concurrency(mut self, workers: u32) -> Self {
        self.concurrency = workers;
        self
    }

    /// `--log-level`; `info` unless set.
    pub fn log_level(mut self, level: &str) -> Self {
        self.log_level = level.to_owned();
        self
    }

    /// `--component-log-level`; `wasm:debug,main:warning` unless set: every line a filter
    /// logs is visible, the start-up banner (hundreds of extension names) is not.
    pub fn component_log_level(mut self, levels: &str) -> Self {
        self.component_log_level = levels.to_owned();
        self
    }

    /// The listener [`Envoy::url`] addresses: `main` if there is one, else the first in
    /// the config.
    pub fn main_listener(mut self, name: &str) -> Self {
        self.main_listener = Some(name.to_owned());
        self
    }

    /// How long start-up may take before it counts as a failure; 60 s unless set (it only bounds a failure: a start returns as soon as Envoy is ready; V8 compiling four modules on a loaded 2-core machine took over 20 s).
    pub fn start_timeout(mut self, timeout: Duration) -> Self {
        self.start_timeout = timeout;
        self
    }

    /// Passes one more command-line argument to Envoy.
    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.to_owned());
        self
    }

    /// The config Envoy will run: the template filled in, with [`ADMIN`] (port 0: the
    /// harness finds it through `--admin-address-path`) added when it has no `admin:`.
    pub fn render(&self) -> anyhow::Result<String> {
        let config = fill(&self.template, &self.vars).map_err(|e| anyhow!("template: {e}"))?;
        let has_admin = config.lines().any(|line| line.starts_with("admin:"));
        Ok(if has_admin {
            config
        } else {
            format!("{ADMIN}{config}")
        })
    }

    /// Starts Envoy and waits until its admin endpoint reports `LIVE`. The error carries the
    /// tail of Envoy's log if it exits or is not ready within the start timeout.
    pub fn start(self) -> anyhow::Result<Envoy> {
        let config = self.render()?;
        let mut process = self.spawn(&config)?;
        let admin = match process.wait(self.start_timeout)? {
            Outcome::Live(admin) => admin,
            Outcome::Exited(status) => bail!(
                "Envoy exited during start-up ({status}); its log ends:\n{}",
                process.tail(TAIL_LINES)
            ),
            Outcome::TimedOut => bail!(
                "Envoy was not ready within {:?}; its log ends:\n{}",
                self.start_timeout,
                process.tail(TAIL_LINES)
            ),
        };
        let listeners = listeners(admin)?;
        let main_listener = match self.main_listener {
            Some(name) => name,
            None if listeners.iter().any(|(name, _)| name == "main") => "main".to_owned(),
            None => listeners
                .first()
                .map(|(name, _)| name.clone())
                .unwrap_or_default(),
        };
        Ok(Envoy {
            process,
            admin,
            listeners,
            main_listener,
            config,
        })
    }

    /// Starts Envoy on a config it must refuse, and returns its log once it has exited with
    /// a failure status. Envoy 1.40 refuses at start-up: a wasm filter whose `on_configure`
    /// returns false with `fail_open: false` makes it log `Unable to create Wasm plugin
    /// <name>` and exit 1 before any listener opens. An error if Envoy instead comes up
    /// (`LIVE`), exits 0 or neither within the start timeout.
    pub fn start_expecting_refusal(self) -> anyhow::Result<String> {
        let config = self.render()?;
        let mut process = self.spawn(&config)?;
        match process.wait(self.start_timeout)? {
            Outcome::Exited(status) if !status.success() => Ok(process.log()),
            Outcome::Exited(status) => bail!(
                "Envoy exited with {status} instead of refusing; its log ends:\n{}",
                process.tail(TAIL_LINES)
            ),
            Outcome::Live(_) => bail!(
                "Envoy accepted the config and is serving (LIVE); its log ends:\n{}",
                process.tail(TAIL_LINES)
            ),
            Outcome::TimedOut => bail!(
                "Envoy neither refused nor came up within {:?}; its log ends:\n{}",
                self.start_timeout,
                process.tail(TAIL_LINES)
            ),
        }
    }

    fn spawn(&self, config: &str) -> anyhow::Result<Process> {
        let dir = ScratchDir::new("envoy").context("scratch directory for Envoy")?;
        let config_path = dir.path().join("envoy.yaml");
        std::fs::write(&config_path, config).context("writing the Envoy config")?;
        let log_path = dir.path().join("envoy.log");
        // Envoy logs to stderr; the access log goes to stdout. One file keeps their order,
        // and holds the final error Envoy prints on its way out, which --log-path would miss.
        let log = File::create(&log_path).context("creating the Envoy log")?;
        let mut command = Command::new(envoy_binary());
        command
            .arg("-c")
            .arg(&config_path)
            .args(["--concurrency", &self.concurrency.to_string()])
            .args(["--log-level", &self.log_level])
            .arg("--admin-address-path")
            .arg(dir.path().join("admin.txt"))
            // With hot restart on, Envoy is SIGTERMed when the thread that started it exits,
            // which kills an Envoy one test thread starts and another uses.
            .arg("--disable-hot-restart")
            .arg("--use-dynamic-base-id")
            .arg("--base-id-path")
            .arg(dir.path().join("base-id.txt"))
            // The access log is written by a flush thread, by default every 10 s: have it
            // flush as soon as there is anything, so a test can read its request's line.
            // Envoy 1.36 has no --file-flush-min-size-kb (new in 1.37): there it flushes
            // every 20 ms instead.
            .args(access_log_flush());
        if !self.component_log_level.is_empty() {
            command.args(["--component-log-level", &self.component_log_level]);
        }
        let child = command
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("sharing the Envoy log")?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("running {}", envoy_binary().display()))?;
        Ok(Process {
            child,
            dir,
            log: log_path,
        })
    }
}

/// The flags that have Envoy write access log lines at once: `--file-flush-min-size-kb 0`
/// where the release has it, else a flush every 20 ms.
fn access_log_flush() -> [&'static str; 2] {
    if release::has_flag("--file-flush-min-size-kb") {
        ["--file-flush-min-size-kb", "0"]
    } else {
        ["--file-flush-interval-msec", "20"]
    }
}

/// A running Envoy; stopped (SIGTERM, then SIGKILL) when dropped. Dropped while a test
/// panics, it prints the tail of its log to stderr and keeps its scratch directory.
pub struct Envoy {
    process: Process,
    admin: SocketAddr,
    /// Listener names and bound ports, in the order Envoy lists them (the config's).
    listeners: Vec<(String, u16)>,
    main_listener: String,
    config: String,
}

impl Envoy {
    /// A builder for an Envoy running `template` once its `{{NAME}}` placeholders are
    /// filled (see [`crate::config::fill`]). Listeners should bind port 0: the harness reads
    /// the bound ports back from the admin API by listener name.
    pub fn builder(template: impl Into<String>) -> EnvoyBuilder {
        EnvoyBuilder {
            template: template.into(),
            vars: BTreeMap::new(),
            concurrency: 2,
            log_level: "info".to_owned(),
            component_log_level: "wasm:debug,main:warning".to_owned(),
            main_listener: None,
            start_timeout: Duration::from_secs(60),
            args: Vec::new(),
        }
    }

    /// Runs `envoy --mode validate` on `config`: `Err` holds Envoy's output, naming the
    /// problem. Validation also loads each wasm filter and runs its `on_configure`.
    pub fn validate(config: &str) -> Result<(), String> {
        let dir = ScratchDir::new("validate").map_err(|e| format!("scratch directory: {e}"))?;
        let path = dir.path().join("envoy.yaml");
        std::fs::write(&path, config).map_err(|e| format!("writing the config: {e}"))?;
        let output = Command::new(envoy_binary())
            .args(["--mode", "validate", "--log-level", "info", "-c"])
            .arg(&path)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("running {}: {e}", envoy_binary().display()))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    }

    /// The Envoy process id (the launcher execs Envoy, so this is Envoy itself).
    pub fn pid(&self) -> u32 {
        self.process.child.id()
    }

    /// `http://127.0.0.1:<main listener port><path>`; `path` starts with `/`.
    pub fn url(&self, path: &str) -> String {
        format!(
            "http://127.0.0.1:{}{path}",
            self.listener_port(&self.main_listener)
        )
    }

    /// The port of the main listener (the one [`url`](Self::url) names).
    pub fn port(&self) -> u16 {
        self.listener_port(&self.main_listener)
    }

    /// The port Envoy bound for the listener called `name`; panics if there is none.
    pub fn listener_port(&self, name: &str) -> u16 {
        match self.listeners.iter().find(|(n, _)| n == name) {
            Some((_, port)) => *port,
            None => panic!(
                "Envoy has no listener {name:?}; it has {:?}",
                self.listeners
            ),
        }
    }

    /// `http://<admin address><path>`; `path` starts with `/`.
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    /// Every statistic in Prometheus text format (`GET /stats/prometheus`).
    pub fn stats_prometheus(&self) -> String {
        let reply = client::get(&self.admin_url("/stats/prometheus"), &[]);
        assert_eq!(reply.status, 200, "stats: {}", reply.text());
        reply.text()
    }

    /// The value of one Prometheus series, written as `GET /stats/prometheus` lists it
    /// (`envoy_cluster_upstream_rq_completed{envoy_cluster_name="users"}`), or `None`.
    pub fn metric(&self, series: &str) -> Option<f64> {
        let prefix = format!("{series} ");
        self.stats_prometheus()
            .lines()
            .find_map(|line| line.strip_prefix(&prefix)?.trim().parse().ok())
    }

    /// The value of the counter or gauge `name` (Envoy's dotted name, as `GET /stats` lists
    /// it), or `None` if Envoy has no such statistic.
    pub fn stat(&self, name: &str) -> Option<u64> {
        let reply = client::get(&self.admin_url("/stats"), &[]);
        let prefix = format!("{name}: ");
        reply
            .text()
            .lines()
            .find_map(|line| line.strip_prefix(&prefix)?.trim().parse().ok())
    }

    /// Envoy's whole log so far: its own lines, the access log, and what filters logged.
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// Waits up to 5 s for `needle` to appear in the log (the access log is written by a
    /// separate thread, a moment after the reply); whether it did.
    pub fn wait_for_log(&self, needle: &str) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if self.log().contains(needle) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The config Envoy is running, as rendered.
    pub fn config(&self) -> &str {
        &self.config
    }

    /// Envoy's scratch directory: `envoy.yaml`, `envoy.log`, `admin.txt`.
    pub fn dir(&self) -> &Path {
        self.process.dir.path()
    }
}

enum Outcome {
    Live(SocketAddr),
    Exited(ExitStatus),
    TimedOut,
}

/// The Envoy child process and its files.
struct Process {
    child: Child,
    dir: ScratchDir,
    log: PathBuf,
}

impl Process {
    /// Polls until Envoy's admin endpoint says `LIVE`, Envoy exits, or `timeout` passes.
    fn wait(&mut self, timeout: Duration) -> anyhow::Result<Outcome> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().context("waiting for Envoy")? {
                return Ok(Outcome::Exited(status));
            }
            if let Some(admin) = self.admin_address() {
                let ready = client::try_send("GET", &format!("http://{admin}/ready"), &[], None);
                if ready.is_ok_and(|reply| reply.status == 200 && reply.text().trim() == "LIVE") {
                    return Ok(Outcome::Live(admin));
                }
            }
            if Instant::now() >= deadline {
                return Ok(Outcome::TimedOut);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The admin address Envoy wrote to `admin.txt`, once it has written all of it.
    fn admin_address(&self) -> Option<SocketAddr> {
        let text = std::fs::read_to_string(self.dir.path().join("admin.txt")).ok()?;
        text.trim().parse().ok()
    }

    fn log(&self) -> String {
        std::fs::read(&self.log)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_else(|e| format!("(cannot read {}: {e})", self.log.display()))
    }

    fn tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// SIGTERM, up to 5 s for Envoy to exit, then SIGKILL; reaps the process either way.
    fn stop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // Read the log before stopping Envoy: what led to the failure, not the shutdown.
        let tail = std::thread::panicking().then(|| self.tail(TAIL_LINES));
        self.stop();
        if let Some(tail) = tail {
            self.dir.keep();
            eprintln!(
                "---- Envoy log: last {TAIL_LINES} lines (whole log kept in {}) ----\n{tail}\n\
                 ---- end of Envoy log ----",
                self.log.display(),
            );
        }
    }
}

/// Listener names and bound ports, from `GET /listeners?format=json`.
fn listeners(admin: SocketAddr) -> anyhow::Result<Vec<(String, u16)>> {
    let url = format!("http://{admin}/listeners?format=json");
    let reply = client::try_send("GET", &url, &[], None).map_err(|e| anyhow!("{url}: {e}"))?;
    let json: serde_json::Value =
        serde_json::from_slice(&reply.body).with_context(|| format!("{url}: {}", reply.text()))?;
    let statuses = json["listener_statuses"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    statuses
        .iter()
        .map(|status| {
            let name = status["name"].as_str();
            let port = status["local_address"]["socket_address"]["port_value"].as_u64();
            match (name, port.and_then(|p| u16::try_from(p).ok())) {
                (Some(name), Some(port)) => Ok((name.to_owned(), port)),
                _ => Err(anyhow!("{url}: unexpected listener status {status}")),
            }
        })
        .collect()
}
