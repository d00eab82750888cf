//! A service binary as a test runs it: spawned with its stderr appended to a log file, ready
//! once it prints the line naming where it listens, stopped with SIGTERM (SIGKILL if it
//! takes longer than 5 s) or killed outright, and stopped when dropped — its log printed if
//! a test is failing. [`crate::ratelimit_service`] and [`crate::admin_service`] run on it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};

/// How long a SIGTERMed service may take to exit before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// One running service process; see the module doc.
#[derive(Debug)]
pub struct ServiceProcess {
    /// Its name, for the log's heading.
    name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl ServiceProcess {
    /// Runs `command` (stdin closed, stdout read here, stderr appended to `log`) and waits up
    /// to `timeout` for a stdout line starting with `ready`. Returns the process and the rest
    /// of that line. If the process exits first, or prints no such line in time, it is
    /// killed and the error holds its log.
    pub fn spawn(
        name: &str,
        command: &mut Command,
        log: &Path,
        ready: &str,
        timeout: Duration,
    ) -> anyhow::Result<(ServiceProcess, String)> {
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening {}", log.display()))?;
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("running {name}"))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow!("no stdout from {name}"))?;
        let (lines, ready_line) = mpsc::channel();
        std::thread::spawn(move || {
            // Read to the end, even once nobody listens: a service writing to a closed pipe
            // would get EPIPE.
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = lines.send(line);
            }
        });
        let mut process = ServiceProcess {
            name: name.to_owned(),
            child: Some(child),
            log: log.to_owned(),
        };
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            // A closed channel (the service exited) ends the wait at once, as a timeout does.
            match ready_line.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix(ready) {
                        let rest = rest.trim().to_owned();
                        return Ok((process, rest));
                    }
                }
                Err(_) => {
                    process.kill();
                    bail!(
                        "{name} did not print {ready:?} within {timeout:?}; its log:\n{}",
                        process.log()
                    );
                }
            }
        }
    }

    /// Everything the service wrote to stderr so far (over every start, for a log file
    /// reused by a restart).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Its process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Stops the service with SIGTERM (SIGKILL if it has not exited within 5 s) and returns
    /// whether it exited on the SIGTERM with status 0. Does nothing (false) if it is not
    /// running.
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

    /// Kills the service (SIGKILL, as a crash or an OOM kill: nothing is flushed, no request
    /// in flight finishes) and reaps it. Does nothing if it is not running.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!("--- {} log ---\n{}", self.name, self.log());
        }
    }
}
