//! The `portcullis-services` binary as the tests run it: every service on a free loopback
//! port, its stdout collected line by line, killed when dropped.
// Each test file uses its own part of this module.
#![allow(dead_code)]

pub mod gateway;
pub mod make_run;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BINARY: &str = env!("CARGO_BIN_EXE_portcullis-services");

/// A running `portcullis-services`.
pub struct Services {
    child: Child,
    /// Service name (`user-service`) to port.
    ports: BTreeMap<String, u16>,
    /// `http` or `https`, as the services said.
    scheme: &'static str,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Services {
    /// Starts the binary with `flags` (`--users`, …) each on `127.0.0.1:0` and waits until
    /// every service has said where it listens.
    pub fn start(flags: &[&str]) -> Services {
        Self::start_with(flags, &[])
    }

    /// [`Services::start`] with more arguments (`--tls-cert FILE`, …).
    pub fn start_with(flags: &[&str], args: &[&str]) -> Services {
        let mut command = Command::new(BINARY);
        for flag in flags {
            command.args([*flag, "127.0.0.1:0"]);
        }
        command.args(args);
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("{BINARY}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let mut services = Services {
            child,
            ports: BTreeMap::new(),
            scheme: "http",
            lines,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while services.ports.len() < flags.len() {
            assert!(
                Instant::now() < deadline,
                "services did not start; stdout: {:?}",
                services.lines()
            );
            if let Ok(Some(status)) = services.child.try_wait() {
                panic!("services exited with {status}: {:?}", services.lines());
            }
            let mut scheme = "http";
            services.ports = services
                .lines()
                .iter()
                .filter_map(|line| {
                    let (name, url) = line.split_once(" listening on ")?;
                    let port = match url.strip_prefix("https://127.0.0.1:") {
                        Some(port) => {
                            scheme = "https";
                            port
                        }
                        None => url.strip_prefix("http://127.0.0.1:")?,
                    };
                    Some((name.to_owned(), port.parse().ok()?))
                })
                .collect();
            services.scheme = scheme;
            std::thread::sleep(Duration::from_millis(10));
        }
        services
    }

    /// The port of `service` (`user-service`).
    pub fn port(&self, service: &str) -> u16 {
        match self.ports.get(service) {
            Some(port) => *port,
            None => panic!("no {service} among {:?}", self.ports),
        }
    }

    /// `http://127.0.0.1:<port of service><path>`, or `https://` when they serve HTTPS.
    pub fn url(&self, service: &str, path: &str) -> String {
        format!("{}://127.0.0.1:{}{path}", self.scheme, self.port(service))
    }

    /// Whether they serve HTTPS.
    pub fn tls(&self) -> bool {
        self.scheme == "https"
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// How the process ended, if it has.
    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Every line printed so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// The lines printed so far that start with `prefix`, waiting up to 5 s for at least
    /// `n` of them (stdout is read on another thread).
    pub fn wait_for_lines(&self, prefix: &str, n: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let found: Vec<String> = self
                .lines()
                .into_iter()
                .filter(|line| line.starts_with(prefix))
                .collect();
            if found.len() >= n || Instant::now() >= deadline {
                return found;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Services {
    /// The lines printed so far that contain `needle`.
    pub fn lines_containing(&self, needle: &str) -> Vec<String> {
        self.lines()
            .into_iter()
            .filter(|line| line.contains(needle))
            .collect()
    }

    /// The first line containing `needle`, waiting up to 5 s for it; panics, showing every
    /// line, if none comes. A service prints a request's line before it answers, so once the
    /// client has the answer to a request, waiting for its line also waits for the lines of
    /// every request answered before it.
    pub fn wait_for_line_containing(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(line) = self.lines_containing(needle).into_iter().next() {
                return line;
            }
            assert!(
                Instant::now() < deadline,
                "no service printed a line with {needle:?} within 5 s; they printed:\n{}",
                self.lines().join("\n")
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Services {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- services' stdout ----\n{}", self.lines().join("\n"));
        }
    }
}

/// Fails the test, saying why, when this process ignores SIGINT: a script's background job
/// does (bash), every process it starts inherits that, and so a SIGINT the test sends would
/// be ignored by the services, the script or Envoy, which is not what a user's Ctrl-C meets.
pub fn sigint_at_its_default() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let ignored = status
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .is_some_and(|mask| mask & (1 << (2 - 1)) != 0);
    assert!(
        !ignored,
        "SIGINT is ignored by the tests (started as a script's background job?): run them \
         with SIGINT at its default action"
    );
}
