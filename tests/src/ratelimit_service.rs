//! The project's rate limit service (`services/ratelimit`, binary `portcullis-ratelimit`)
//! as a real process: started on a free port against a Redis, its port read from the line
//! it prints, stopped with SIGTERM on drop, its log shown when a test needs it.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};

use crate::paths::{workspace_root, ScratchDir};

/// The line the service prints once it listens, before the address.
const READY: &str = "portcullis-ratelimit listening on ";
/// How long start-up may take.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a SIGTERMed service may take to exit before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// The `portcullis-ratelimit` binary cargo built alongside the running test:
/// `$PORTCULLIS_RATELIMIT` if set; else `<target>/<profile>/portcullis-ratelimit` next to
/// this test executable's `deps/` (so it follows `CARGO_TARGET_DIR` and the profile); else
/// `<workspace>/target/debug/portcullis-ratelimit`, where `make build` puts it. Panics if
/// none exists. Tests inside `services/ratelimit` pass
/// `env!("CARGO_BIN_EXE_portcullis-ratelimit")` to [`RateLimitService::start`] instead.
pub fn ratelimit_binary() -> PathBuf {
    const NAME: &str = "portcullis-ratelimit";
    let from_env = std::env::var_os("PORTCULLIS_RATELIMIT")
        .filter(|value| !value.is_empty())
        .map(PathBuf::from);
    let beside_test = std::env::current_exe().ok().and_then(|exe| {
        let deps = exe.parent()?;
        let profile = if deps.ends_with("deps") {
            deps.parent()?
        } else {
            deps
        };
        Some(profile.join(NAME))
    });
    let default = workspace_root().join("target/debug").join(NAME);
    let candidates: Vec<PathBuf> = from_env
        .into_iter()
        .chain(beside_test)
        .chain(Some(default))
        .collect();
    let found = candidates.iter().find(|path| path.is_file()).cloned();
    assert!(
        found.is_some(),
        "no {NAME} binary at any of {candidates:?}: run `make build` (or `cargo build -p portcullis-ratelimit`)"
    );
    found.unwrap_or_default()
}

/// A running `portcullis-ratelimit`; see the module doc.
#[derive(Debug)]
pub struct RateLimitService {
    child: Option<Child>,
    address: SocketAddr,
    dir: ScratchDir,
}

impl RateLimitService {
    /// Starts `binary` on a free loopback port against `redis_url`, Redis timeout 100 ms.
    pub fn start(binary: &Path, redis_url: &str) -> anyhow::Result<RateLimitService> {
        Self::start_with(binary, &["--redis-url", redis_url])
    }

    /// Starts `binary --listen 127.0.0.1:0 <args…>` and waits for the line naming its port.
    pub fn start_with(binary: &Path, args: &[&str]) -> anyhow::Result<RateLimitService> {
        let dir = ScratchDir::new("ratelimit").context("scratch directory for the service")?;
        let log_path = dir.path().join("ratelimit.log");
        let log = std::fs::File::create(&log_path).context("creating the service log")?;
        let mut child = Command::new(binary)
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .with_context(|| format!("running {}", binary.display()))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow!("no stdout from the service"))?;
        let (lines, ready) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        let mut service = RateLimitService {
            child: Some(child),
            address: SocketAddr::from(([127, 0, 0, 1], 0)),
            dir,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match ready.recv_timeout(left) {
                Ok(line) => {
                    if let Some(address) = line.strip_prefix(READY) {
                        service.address = address
                            .trim()
                            .parse()
                            .with_context(|| format!("the service printed {line:?}"))?;
                        return Ok(service);
                    }
                }
                Err(_) => {
                    service.stop();
                    bail!(
                        "the service did not print {READY:?} within {START_TIMEOUT:?}; its log:\n{}",
                        service.log()
                    );
                }
            }
        }
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn port(&self) -> u16 {
        self.address.port()
    }

    /// `http://127.0.0.1:<port>`, for a gRPC client.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Everything the service wrote to stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("ratelimit.log")).unwrap_or_default()
    }

    /// Stops the service with SIGTERM (SIGKILL if it has not exited within 5 s) and
    /// returns whether it exited on the SIGTERM with status 0. Does nothing (false) if it
    /// is not running.
    pub fn stop(&mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return false;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }
}

impl Drop for RateLimitService {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!("--- portcullis-ratelimit log ---\n{}", self.log());
        }
    }
}
