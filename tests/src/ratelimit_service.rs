//! The project's rate limit service (`services/ratelimit`, binary `portcullis-ratelimit`)
//! as a real process: started on a free port against a Redis, its port read from the line
//! it prints, stopped with SIGTERM on drop, its log shown when a test needs it. Started with
//! `--metrics-listen`, the same line names the operators' endpoint too
//! ([`RateLimitService::metrics_url`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Context as _;

use crate::paths::{built_binary, ScratchDir};
use crate::service::ServiceProcess;

/// The line the service prints once it listens, before the address.
const READY: &str = "portcullis-ratelimit listening on ";
/// What follows the gRPC address on that line with `--metrics-listen`.
const METRICS: &str = ", metrics on ";
/// How long start-up may take.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// The `portcullis-ratelimit` binary cargo built alongside the running test, found as
/// [`built_binary`] finds it (`$PORTCULLIS_RATELIMIT` overrides it). Tests inside
/// `services/ratelimit` pass `env!("CARGO_BIN_EXE_portcullis-ratelimit")` to
/// [`RateLimitService::start`] instead.
pub fn ratelimit_binary() -> PathBuf {
    built_binary("portcullis-ratelimit", "PORTCULLIS_RATELIMIT")
}

/// A running `portcullis-ratelimit`; see the module doc.
#[derive(Debug)]
pub struct RateLimitService {
    process: ServiceProcess,
    address: SocketAddr,
    /// The operators' endpoint, if started with `--metrics-listen`.
    metrics: Option<SocketAddr>,
    // Holds the log: removed after the process (fields drop in order).
    _dir: ScratchDir,
}

impl RateLimitService {
    /// Starts `binary` on a free loopback port against `redis_url`, Redis timeout 100 ms.
    pub fn start(binary: &Path, redis_url: &str) -> anyhow::Result<RateLimitService> {
        Self::start_with(binary, &["--redis-url", redis_url])
    }

    /// Starts `binary --listen 127.0.0.1:0 <args…>` and waits for the line naming its port.
    pub fn start_with(binary: &Path, args: &[&str]) -> anyhow::Result<RateLimitService> {
        let dir = ScratchDir::new("ratelimit").context("scratch directory for the service")?;
        let mut command = Command::new(binary);
        command.args(["--listen", "127.0.0.1:0"]).args(args);
        let log = dir.path().join("ratelimit.log");
        let (process, address) = ServiceProcess::spawn(
            "portcullis-ratelimit",
            &mut command,
            &log,
            READY,
            START_TIMEOUT,
        )?;
        let printed = || format!("the service printed {READY:?}{address:?}");
        let (grpc, metrics) = match address.split_once(METRICS) {
            Some((grpc, metrics)) => (grpc, Some(metrics.parse().with_context(printed)?)),
            None => (address.as_str(), None),
        };
        Ok(RateLimitService {
            process,
            address: grpc.parse().with_context(printed)?,
            metrics,
            _dir: dir,
        })
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

    /// The operators' endpoint (`--metrics-listen`), if the service was started with one.
    pub fn metrics_address(&self) -> Option<SocketAddr> {
        self.metrics
    }

    /// `http://<metrics address>`, for `/metrics`, `/healthz` and `/readyz`; panics if the
    /// service was started without `--metrics-listen`.
    pub fn metrics_url(&self) -> String {
        match self.metrics {
            Some(address) => format!("http://{address}"),
            None => panic!("portcullis-ratelimit was started without --metrics-listen"),
        }
    }

    /// Everything the service wrote to stderr so far.
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// Stops the service with SIGTERM (SIGKILL if it has not exited within 5 s) and
    /// returns whether it exited on the SIGTERM with status 0. Does nothing (false) if it
    /// is not running.
    pub fn stop(&mut self) -> bool {
        self.process.stop()
    }
}
