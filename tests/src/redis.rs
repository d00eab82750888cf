//! A real Redis for the tests: Debian's `/usr/bin/redis-server` on a free loopback port,
//! its files in a scratch directory, nothing saved to disk, killed on drop. It can be stopped
//! and started again on the same port, for outage tests.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

use crate::paths::ScratchDir;

/// The server binary; `$PORTCULLIS_REDIS_SERVER` overrides it.
pub fn redis_server_binary() -> PathBuf {
    std::env::var_os("PORTCULLIS_REDIS_SERVER")
        .filter(|value| !value.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/redis-server"))
}

/// How long Redis may take to answer its first PING.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// One redis-server process; see the module doc.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    dir: ScratchDir,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts Redis on a free loopback port and waits until it answers PING.
    pub fn start() -> anyhow::Result<RedisServer> {
        let mut server = RedisServer {
            port: 0,
            dir: ScratchDir::new("redis").context("scratch directory for Redis")?,
            child: None,
        };
        // The port is free when asked for, but another process may take it before Redis
        // binds it: try a few.
        let mut attempts = 0;
        loop {
            server.port = free_port()?;
            match server.start_again() {
                Ok(()) => return Ok(server),
                Err(e) if attempts >= 2 => return Err(e),
                Err(_) => attempts += 1,
            }
        }
    }

    /// `redis://127.0.0.1:<port>/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills Redis (SIGKILL, as a crash) and waits for it to exit. Its data is gone: nothing
    /// is saved. Does nothing if it is not running.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-CONT", &child.id().to_string()])
                .status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes Redis (SIGSTOP): connections stay open, nothing answers — a hung server or a
    /// partition, as a client sees it. [`resume`](Self::resume) thaws it.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Thaws a [`pause`](Self::pause)d Redis (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        if let Some(child) = &self.child {
            let _ = Command::new("kill")
                .args([signal, &child.id().to_string()])
                .status();
        }
    }

    /// Starts Redis again on the same port (empty) and waits until it answers PING.
    pub fn start_again(&mut self) -> anyhow::Result<()> {
        self.stop();
        let log = self.dir.path().join("redis.log");
        let child = Command::new(redis_server_binary())
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--daemonize", "no"])
            .arg("--logfile")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("running {}", redis_server_binary().display()))?;
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(reply) = self.command(&["PING"]) {
                if reply == "+PONG" {
                    return Ok(());
                }
            }
            let exited = self
                .child
                .as_mut()
                .map(|child| child.try_wait().ok().flatten().is_some())
                .unwrap_or(true);
            if exited || Instant::now() > deadline {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                self.stop();
                bail!(
                    "Redis on port {} did not answer PING ({}); its log:\n{text}",
                    self.port,
                    if exited { "it exited" } else { "timed out" }
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends one command (RESP, no quoting issues) and returns the first line of the reply,
    /// type prefix included: `+PONG`, `:42`, `$-1` (nil), `-ERR …`. For a bulk string the
    /// value itself is returned, without its `$<len>` line.
    pub fn command(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut request = format!("*{}\r\n", args.len());
        for arg in args {
            request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
        }
        stream.write_all(request.as_bytes())?;
        let mut reply = Vec::new();
        let mut buf = [0u8; 4096];
        // Enough for a one-line reply or one bulk string: read until it is complete.
        loop {
            let n = stream.read(&mut buf)?;
            if n == 0 {
                bail!("Redis closed the connection");
            }
            reply.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&reply).into_owned();
            let mut lines = text.split("\r\n");
            let first = lines.next().unwrap_or_default().to_owned();
            if !text.contains("\r\n") {
                continue;
            }
            if first.starts_with('$') && first != "$-1" {
                match lines.next() {
                    Some(value) if text.matches("\r\n").count() >= 2 => return Ok(value.to_owned()),
                    _ => continue,
                }
            }
            return Ok(first);
        }
    }

    /// An integer reply (`GET` of a counter, `TTL`, `DBSIZE`): `None` for nil.
    pub fn integer(&self, args: &[&str]) -> anyhow::Result<Option<i64>> {
        let reply = self.command(args)?;
        if reply == "$-1" {
            return Ok(None);
        }
        let digits = reply.strip_prefix(':').unwrap_or(&reply);
        Ok(Some(digits.parse().with_context(|| {
            format!("{args:?}: not an integer reply: {reply:?}")
        })?))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}
