//! `make run`'s script (`envoy-config/run.sh`) as a user runs it: in a terminal of its own
//! (a new session, so Ctrl-C can go to its whole process group), on free ports, its scratch
//! files in a temporary directory instead of `.run/`. With two nodes (`make run NODES=2`)
//! it also starts Redis and the rate limit service, from the binaries the tests use.

use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use portcullis_tests::paths::{self, ScratchDir};
use portcullis_tests::ratelimit_service::ratelimit_binary;
use portcullis_tests::redis::redis_server_binary;

use super::BINARY;

/// The ports `run.sh` reads, by variable.
pub const PORT_VARIABLES: [&str; 6] = [
    "DEMO_PORT",
    "DEMO_ADMIN_PORT",
    "DEMO_USERS_PORT",
    "DEMO_ORDERS_PORT",
    "DEMO_PAYMENTS_PORT",
    "DEMO_LOGIN_PORT",
];

/// The ports `run.sh` reads besides [`PORT_VARIABLES`] with `DEMO_NODES=2`.
pub const NODE2_PORT_VARIABLES: [&str; 4] = [
    "DEMO_NODE2_PORT",
    "DEMO_NODE2_ADMIN_PORT",
    "DEMO_REDIS_PORT",
    "DEMO_RATELIMIT_PORT",
];

/// A running `envoy-config/run.sh`; its process group is killed when dropped.
pub struct MakeRun {
    child: Child,
    /// Port by variable, as [`PORT_VARIABLES`] (and [`NODE2_PORT_VARIABLES`]).
    pub ports: Vec<(&'static str, u16)>,
    /// Everything it printed, stdout and stderr, line by line.
    lines: Arc<Mutex<Vec<String>>>,
    _run_dir: ScratchDir,
}

impl MakeRun {
    /// Starts `run.sh` with the Envoy and services binaries the tests use, on free ports.
    pub fn start() -> MakeRun {
        Self::start_nodes(1)
    }

    /// Starts `run.sh` as `make run NODES=<nodes>` does (`DEMO_NODES`), with the binaries
    /// the tests use, on free ports.
    pub fn start_nodes(nodes: u8) -> MakeRun {
        let variables: Vec<&'static str> = if nodes == 1 {
            PORT_VARIABLES.to_vec()
        } else {
            [PORT_VARIABLES.as_slice(), NODE2_PORT_VARIABLES.as_slice()].concat()
        };
        // Ports the kernel hands out now, free again once the listeners close: run.sh checks
        // them before anything binds.
        let listeners: Vec<TcpListener> = variables
            .iter()
            .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        let ports: Vec<(&'static str, u16)> = variables
            .iter()
            .zip(&listeners)
            .map(|(v, l)| (*v, l.local_addr().unwrap().port()))
            .collect();
        drop(listeners);
        let run_dir = ScratchDir::new("make-run").unwrap();
        let root = paths::workspace_root();
        let mut child = Command::new("setsid")
            .arg(root.join("envoy-config/run.sh"))
            .current_dir(&root)
            .env("ENVOY", paths::envoy_binary())
            .env("SERVICES", BINARY)
            .env("DEMO_NODES", nodes.to_string())
            .env("REDIS", redis_server_binary())
            .env("RATELIMIT", ratelimit_binary())
            .env("DEMO_RUN_DIR", run_dir.path())
            .envs(ports.iter().map(|(v, p)| (v, p.to_string())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stdout = child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>);
        let stderr = child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>);
        for stream in [stdout, stderr].into_iter().flatten() {
            let sink = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    sink.lock().unwrap().push(line);
                }
            });
        }
        MakeRun {
            child,
            ports,
            lines,
            _run_dir: run_dir,
        }
    }

    pub fn port(&self, variable: &str) -> u16 {
        self.ports
            .iter()
            .find(|(v, _)| *v == variable)
            .map(|(_, p)| *p)
            .unwrap()
    }

    /// Every line printed so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// The value of a `NAME=value` line the script printed (`MOBILE`, `WEB`).
    pub fn printed(&self, name: &str) -> String {
        let prefix = format!("{name}=");
        self.lines()
            .iter()
            .find_map(|line| line.trim().strip_prefix(&prefix).map(str::to_owned))
            .unwrap_or_else(|| panic!("run.sh printed no {name}=…"))
    }

    /// Every live process in the script's process group (itself, and all it started that
    /// did not leave the group): pid and command name.
    pub fn processes(&self) -> Vec<(u32, String)> {
        let group = self.child.id();
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|entry| entry.file_name().to_string_lossy().parse::<u32>().ok())
            .filter_map(|pid| {
                let (name, pgrp) = live_process(pid)?;
                (pgrp == group).then_some((pid, name))
            })
            .collect()
    }

    /// Waits up to `timeout` for a line containing `needle`; panics, showing the output, if
    /// the script exits or none comes.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self.lines().into_iter().find(|l| l.contains(needle)) {
                return line;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("run.sh exited ({status}) before printing {needle:?}");
            }
            assert!(
                Instant::now() < deadline,
                "run.sh printed no {needle:?} within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// What a user's Ctrl-C does: SIGINT to the terminal's process group (the script, the
    /// services and Envoy alike). Returns how the script ended, within 15 s.
    pub fn ctrl_c(&mut self) -> ExitStatus {
        self.signal_group("INT");
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "run.sh still running 15 s after Ctrl-C"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn signal_group(&self, signal: &str) {
        // setsid made the script the leader of its own process group: its id is the pid.
        let _ = Command::new("kill")
            .args([
                &format!("-{signal}"),
                "--",
                &format!("-{}", self.child.id()),
            ])
            .stderr(Stdio::null())
            .status();
    }
}

/// The command name (`comm`, at most 15 bytes) and process group of `pid`, if it runs: a
/// zombie has exited (only its parent's wait is missing) and counts as gone.
pub fn live_process(pid: u32) -> Option<(String, u32)> {
    // `pid (comm) state ppid pgrp …`; comm may hold spaces and parentheses.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (open, close) = (stat.find('(')?, stat.rfind(')')?);
    let fields: Vec<&str> = stat.get(close + 1..)?.split_whitespace().collect();
    if fields.first() == Some(&"Z") {
        return None;
    }
    let pgrp = fields.get(2)?.parse().ok()?;
    Some((stat.get(open + 1..close)?.to_owned(), pgrp))
}

impl Drop for MakeRun {
    fn drop(&mut self) {
        // Only while the script is unreaped is its pid sure to name its group. Once it has
        // exited on its own, its trap has stopped Envoy and the services already.
        if !matches!(self.child.try_wait(), Ok(Some(_))) {
            self.signal_group("KILL");
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!("---- run.sh output ----\n{}", self.lines().join("\n"));
        }
    }
}
