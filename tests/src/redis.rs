//! A real Redis for the tests: Debian's `/usr/bin/redis-server` on a free loopback port,
//! its files in a scratch directory, nothing saved to disk, killed on drop. It can be stopped
//! and started again on the same port, for outage tests, and paused. [`RedisServer::sentinel`]
//! runs a Sentinel, [`RedisCluster`] a Redis Cluster of several such servers.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

use crate::paths::{free_port, ScratchDir};

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
    /// A config file written into the scratch directory and passed first (Sentinel's).
    config: Option<String>,
    /// Arguments after the defaults.
    args: Vec<String>,
}

impl RedisServer {
    /// Starts Redis on a free loopback port and waits until it answers PING.
    pub fn start() -> anyhow::Result<RedisServer> {
        Self::start_with(&[])
    }

    /// Like [`start`](Self::start), with more `redis-server` arguments (`--replicaof`,
    /// `--cluster-enabled yes`, …), kept for [`start_again`](Self::start_again).
    pub fn start_with(args: &[&str]) -> anyhow::Result<RedisServer> {
        Self::launch(None, args)
    }

    /// Starts a Sentinel (`redis-server sentinel.conf --sentinel`) watching the primary on
    /// `127.0.0.1:primary_port` as `master`, with quorum 1 and a primary declared down after
    /// 1 s, so one Sentinel fails over alone.
    pub fn sentinel(master: &str, primary_port: u16) -> anyhow::Result<RedisServer> {
        let config = format!(
            "sentinel monitor {master} 127.0.0.1 {primary_port} 1\n\
             sentinel down-after-milliseconds {master} 1000\n\
             sentinel failover-timeout {master} 5000\n"
        );
        Self::launch(Some(config), &["--sentinel"])
    }

    fn launch(config: Option<String>, args: &[&str]) -> anyhow::Result<RedisServer> {
        let mut server = RedisServer {
            port: 0,
            dir: ScratchDir::new("redis").context("scratch directory for Redis")?,
            child: None,
            config,
            args: args.iter().map(|arg| arg.to_string()).collect(),
        };
        // A cluster node also listens on its port + 10000 (the cluster bus), so its port
        // must be at most 55535 and that one free too.
        let cluster = args.contains(&"--cluster-enabled");
        // The port is free when asked for, but another process may take it before Redis
        // binds it: try a few.
        let mut attempts = 0;
        loop {
            server.port = free_port().context("finding a free port")?;
            if cluster {
                let bus_free = server
                    .port
                    .checked_add(10_000)
                    .is_some_and(|bus| TcpListener::bind(("127.0.0.1", bus)).is_ok());
                if !bus_free {
                    continue;
                }
            }
            match server.start_again() {
                Ok(()) => return Ok(server),
                Err(e) if attempts >= 4 => return Err(e),
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
        let mut command = Command::new(redis_server_binary());
        if let Some(config) = &self.config {
            // Sentinel rewrites its file with what it learns: write it only the first time.
            let path = self.dir.path().join("redis.conf");
            if !path.exists() {
                std::fs::write(&path, config).context("writing the Redis config")?;
            }
            command.arg(path);
        }
        let child = command
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--daemonize", "no"])
            .arg("--logfile")
            .arg(&log)
            .args(&self.args)
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

/// A Redis Cluster of `masters` primaries (no replicas), each a [`RedisServer`] with
/// `--cluster-enabled yes`, joined by `redis-cli --cluster create`, all slots covered.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts the nodes, creates the cluster and waits until every node says
    /// `cluster_state:ok`. Redis Cluster needs at least 3 primaries.
    pub fn start(masters: usize) -> anyhow::Result<RedisCluster> {
        let nodes = (0..masters)
            .map(|_| {
                RedisServer::start_with(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-node-timeout",
                    "2000",
                ])
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let addresses: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect();
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .context("running redis-cli --cluster create")?;
        if !created.status.success() {
            bail!(
                "redis-cli --cluster create failed:\n{}{}",
                String::from_utf8_lossy(&created.stdout),
                String::from_utf8_lossy(&created.stderr)
            );
        }
        let cluster = RedisCluster { nodes };
        let deadline = Instant::now() + START_TIMEOUT;
        while !cluster.nodes.iter().all(|node| {
            node.command(&["CLUSTER", "INFO"])
                .is_ok_and(|info| info == "cluster_state:ok")
        }) {
            if Instant::now() > deadline {
                bail!("the cluster on {addresses:?} did not reach cluster_state:ok");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(cluster)
    }

    /// Every node's `redis://127.0.0.1:<port>` (no database: a cluster has only 0).
    pub fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|node| format!("redis://127.0.0.1:{}", node.port()))
            .collect()
    }

    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// Runs `args` on the node that owns their key: the first whose reply is not `-MOVED`.
    pub fn command(&self, args: &[&str]) -> anyhow::Result<String> {
        for node in &self.nodes {
            let reply = node.command(args)?;
            if !reply.starts_with("-MOVED") {
                return Ok(reply);
            }
        }
        bail!("no node owns {args:?}")
    }

    /// Like [`RedisServer::integer`], on the node that owns the key.
    pub fn integer(&self, args: &[&str]) -> anyhow::Result<Option<i64>> {
        for node in &self.nodes {
            if !node.command(args)?.starts_with("-MOVED") {
                return node.integer(args);
            }
        }
        bail!("no node owns {args:?}")
    }
}
