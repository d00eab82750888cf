//! The connection to Redis — one server, a Redis Cluster, or the primary that Sentinels name —
//! made on first use, remade after any failure, and every call bounded by one timeout, so a
//! request never waits on Redis longer than that.
//!
//! The service starts whether Redis is up or not. While Redis is down every call fails
//! fast with [`Failure::Unavailable`]; at most one connection attempt runs at a time and,
//! after one fails, calls fail at once for [`RETRY_AFTER`] without trying again. Every
//! failure says what happened ([`Outage`]) and is counted in the metrics, with the script's
//! round-trip time.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelServerType};
use redis::{AsyncConnectionConfig, ErrorKind, RedisError, RedisResult};
use tokio::sync::Mutex;

use crate::failure::{Failure, Outage};
use crate::metrics::Metrics;
use crate::plan::Check;
use crate::script::{self, Counted};

/// How long after a failed connection attempt calls fail without trying again.
pub const RETRY_AFTER: Duration = Duration::from_millis(100);

/// Which Redis holds the counters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// One server (or a proxy in front of several): `redis://host:port/db`.
    Server(String),
    /// A Redis Cluster, discovered from any of these nodes. Every key of one request shares
    /// the hash tag `{<domain>}`, so the script runs on the one node that owns its slot.
    Cluster(Vec<String>),
    /// The primary that these Sentinels know as `master`, asked again on every reconnection,
    /// so a fail-over is followed.
    Sentinel {
        master: String,
        sentinels: Vec<String>,
    },
}

/// Redis, as the service uses it: one script per request.
pub struct Store {
    timeout: Duration,
    script: redis::Script,
    state: Mutex<State>,
    metrics: Arc<Metrics>,
}

struct State {
    connector: Connector,
    live: Option<Live>,
    /// When the last connection attempt failed, and why.
    failed: Option<(Instant, String)>,
}

enum Connector {
    Server(redis::Client, AsyncConnectionConfig),
    Cluster(ClusterClient),
    Sentinel(Box<SentinelClient>, AsyncConnectionConfig),
}

#[derive(Clone)]
enum Live {
    Server(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl Connector {
    fn new(target: &Target, timeout: Duration) -> RedisResult<Connector> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout));
        Ok(match target {
            Target::Server(url) => Connector::Server(redis::Client::open(url.as_str())?, config),
            Target::Cluster(nodes) => Connector::Cluster(
                ClusterClient::builder(nodes.iter().map(String::as_str))
                    .connection_timeout(timeout)
                    .response_timeout(timeout)
                    .build()?,
            ),
            Target::Sentinel { master, sentinels } => Connector::Sentinel(
                Box::new(SentinelClient::build(
                    sentinels.iter().map(String::as_str).collect(),
                    master.clone(),
                    None,
                    SentinelServerType::Master,
                )?),
                config,
            ),
        })
    }

    async fn connect(&mut self) -> RedisResult<Live> {
        Ok(match self {
            Connector::Server(client, config) => Live::Server(
                client
                    .get_multiplexed_async_connection_with_config(config)
                    .await?,
            ),
            Connector::Cluster(client) => Live::Cluster(client.get_async_connection().await?),
            Connector::Sentinel(sentinel, config) => {
                let primary = sentinel.async_get_client().await?;
                Live::Server(
                    primary
                        .get_multiplexed_async_connection_with_config(config)
                        .await?,
                )
            }
        })
    }
}

impl Store {
    /// A store on `target` whose every call takes at most `timeout`, reporting Redis errors
    /// and round trips to `metrics`. Connects on first use; fails only on a malformed URL.
    pub fn new(target: &Target, timeout: Duration, metrics: Arc<Metrics>) -> Result<Store, String> {
        let connector =
            Connector::new(target, timeout).map_err(|e| format!("{}: {e}", describe(target)))?;
        Ok(Store {
            timeout,
            script: redis::Script::new(script::LUA),
            state: Mutex::new(State {
                connector,
                live: None,
                failed: None,
            }),
            metrics,
        })
    }

    /// Runs the script for `checks` at `now_secs` and reads its reply, or says why there is
    /// none. Each answered run is one observation of the round-trip histogram.
    pub async fn count(&self, checks: &[Check], now_secs: u64) -> Result<Counted, Failure> {
        let mut invocation = self.script.prepare_invoke();
        for check in checks {
            invocation.key(&check.key);
        }
        for argument in script::arguments(checks, now_secs) {
            invocation.arg(argument);
        }
        let invocation = &invocation;
        let reply: Vec<i64> = self
            .call(Observe::RoundTrip, |live| async move {
                match live {
                    Live::Server(mut connection) => invocation.invoke_async(&mut connection).await,
                    Live::Cluster(mut connection) => invocation.invoke_async(&mut connection).await,
                }
            })
            .await?;
        script::counted(&reply, checks.len()).inspect_err(|_| {
            self.metrics.redis_error(Outage::BadReply);
        })
    }

    /// `PING` (on a Cluster, every primary must answer): whether Redis answers within the
    /// timeout now, for the readiness probe. Connects if there is no connection, as a call
    /// would; a failure drops the connection as a call's does.
    pub async fn ping(&self) -> Result<(), Failure> {
        self.call(Observe::Nothing, |live| async move {
            let ping = redis::cmd("PING");
            match live {
                Live::Server(mut connection) => ping.query_async::<()>(&mut connection).await,
                Live::Cluster(mut connection) => ping.query_async::<()>(&mut connection).await,
            }
        })
        .await
    }

    fn silent(&self) -> String {
        format!(
            "no answer from Redis within {} ms",
            self.timeout.as_millis()
        )
    }

    /// Gets a connection and runs `ask` on it, the whole within the timeout; every failure
    /// is classified, counted in the metrics, and drops a connection it shows broken.
    async fn call<T, F, Fut>(&self, observe: Observe, ask: F) -> Result<T, Failure>
    where
        F: FnOnce(Live) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let result = self.call_within(observe, ask).await;
        if let Err(Failure::Unavailable(outage, _)) = &result {
            if outage.is_redis_error() {
                self.metrics.redis_error(*outage);
            }
        }
        result
    }

    async fn call_within<T, F, Fut>(&self, observe: Observe, ask: F) -> Result<T, Failure>
    where
        F: FnOnce(Live) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let live = match tokio::time::timeout_at(deadline, self.connection()).await {
            Ok(live) => live?,
            // Connecting (or waiting for another call that connects) took the whole time.
            Err(_) => return Err(Failure::Unavailable(Outage::Timeout, self.silent())),
        };
        let started = Instant::now();
        let error = match tokio::time::timeout_at(deadline, ask(live)).await {
            Ok(Ok(answer)) => {
                self.observe(observe, started);
                return Ok(answer);
            }
            Ok(Err(error)) => error,
            Err(_) => {
                // A Redis that stopped answering (paused, partitioned) may never close the
                // connection: drop it, the next call makes a new one. If another call holds
                // the lock it is connecting, and there is nothing live to drop.
                if let Ok(mut state) = self.state.try_lock() {
                    state.live = None;
                }
                return Err(Failure::Unavailable(Outage::Timeout, self.silent()));
            }
        };
        let outage = outage(&error);
        if matches!(outage, Outage::ErrorReply | Outage::BadReply) {
            // Redis answered, if not as hoped: a round trip all the same.
            self.observe(observe, started);
        }
        let broken = error.is_io_error()
            || error.is_connection_dropped()
            || error.is_timeout()
            || error.is_unrecoverable_error();
        if broken {
            // Bounded: past the deadline a call holding the lock is connecting, and there is
            // nothing live to drop.
            if let Ok(mut state) = tokio::time::timeout_at(deadline, self.state.lock()).await {
                if state.live.take().is_some() {
                    eprintln!("portcullis-ratelimit: Redis connection lost: {error}");
                }
            }
        }
        Err(Failure::Unavailable(
            outage,
            if outage == Outage::Timeout {
                self.silent()
            } else {
                format!("Redis failed the call: {error}")
            },
        ))
    }

    fn observe(&self, observe: Observe, started: Instant) {
        if observe == Observe::RoundTrip {
            self.metrics.redis_round_trip(started.elapsed());
        }
    }

    /// The live connection, made now if there is none and the last attempt is not too recent.
    async fn connection(&self) -> Result<Live, Failure> {
        let mut state = self.state.lock().await;
        if let Some(live) = &state.live {
            return Ok(live.clone());
        }
        if let Some((at, why)) = &state.failed {
            if at.elapsed() < RETRY_AFTER {
                return Err(Failure::Unavailable(Outage::Backoff, why.clone()));
            }
        }
        match state.connector.connect().await {
            Ok(live) => {
                if state.failed.take().is_some() {
                    eprintln!("portcullis-ratelimit: connected to Redis again");
                }
                state.live = Some(live.clone());
                Ok(live)
            }
            Err(error) => {
                let why = format!("cannot connect to Redis: {error}");
                if state.failed.is_none() {
                    eprintln!("portcullis-ratelimit: {why}");
                }
                state.failed = Some((Instant::now(), why.clone()));
                Err(Failure::Unavailable(Outage::Connect, why))
            }
        }
    }
}

/// Whether a call's round trip is observed in the latency histogram: the script's are,
/// the readiness probe's `PING`s are not (the histogram is the gRPC path's).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Observe {
    RoundTrip,
    Nothing,
}

/// What a failed call says about Redis.
fn outage(error: &RedisError) -> Outage {
    if error.is_timeout() {
        Outage::Timeout
    } else if matches!(
        error.kind(),
        ErrorKind::UnexpectedReturnType | ErrorKind::Parse
    ) {
        Outage::BadReply
    } else if error.is_io_error() || error.is_connection_dropped() || error.is_unrecoverable_error()
    {
        Outage::ConnectionLost
    } else {
        Outage::ErrorReply
    }
}

/// The target as the command line spells it, for messages.
pub fn describe(target: &Target) -> String {
    match target {
        Target::Server(url) => format!("--redis-url {url}"),
        Target::Cluster(nodes) => format!("--redis-cluster {}", nodes.join(",")),
        Target::Sentinel { master, sentinels } => {
            format!("--redis-sentinel {master},{}", sentinels.join(","))
        }
    }
}
