//! The connection to Redis: made on first use, remade after any failure, and every call
//! bounded by one timeout, so a request never waits on Redis longer than that.
//!
//! The service starts whether Redis is up or not. While Redis is down every call fails
//! fast with [`Failure::Unavailable`]; at most one connection attempt runs at a time and, after
//! one fails, calls fail at once for [`RETRY_AFTER`] without trying again.

use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::AsyncConnectionConfig;
use tokio::sync::Mutex;

use crate::failure::Failure;
use crate::plan::Check;
use crate::script;

/// How long after a failed connection attempt calls fail without trying again.
pub const RETRY_AFTER: Duration = Duration::from_millis(100);

/// Redis, as the service uses it: one script per request.
pub struct Store {
    client: redis::Client,
    config: AsyncConnectionConfig,
    timeout: Duration,
    script: redis::Script,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    live: Option<MultiplexedConnection>,
    /// When the last connection attempt failed, and why.
    failed: Option<(Instant, String)>,
}

impl Store {
    /// A store on `url` (`redis://host:port/db`, `rediss://…`, `redis+unix:///path`)
    /// whose every call takes at most `timeout`. Connects on first use.
    pub fn new(url: &str, timeout: Duration) -> Result<Store, String> {
        let client = redis::Client::open(url).map_err(|e| format!("--redis-url {url}: {e}"))?;
        Ok(Store {
            client,
            config: AsyncConnectionConfig::new()
                .set_connection_timeout(Some(timeout))
                .set_response_timeout(Some(timeout)),
            timeout,
            script: redis::Script::new(script::LUA),
            state: Mutex::new(State::default()),
        })
    }

    /// Runs the script for `checks` at `now_secs`: the raw reply, or why there is none.
    pub async fn count(&self, checks: &[Check], now_secs: u64) -> Result<Vec<i64>, Failure> {
        match tokio::time::timeout(self.timeout, self.run(checks, now_secs)).await {
            Ok(result) => result,
            Err(_) => {
                // A Redis that stopped answering (paused, partitioned) may never close the
                // connection: drop it, the next call makes a new one. If another call holds
                // the lock it is connecting, and there is nothing live to drop.
                if let Ok(mut state) = self.state.try_lock() {
                    state.live = None;
                }
                Err(Failure::Unavailable(self.silent()))
            }
        }
    }

    fn silent(&self) -> String {
        format!(
            "no answer from Redis within {} ms",
            self.timeout.as_millis()
        )
    }

    async fn run(&self, checks: &[Check], now_secs: u64) -> Result<Vec<i64>, Failure> {
        let mut connection = self.connection().await?;
        let mut invocation = self.script.prepare_invoke();
        for check in checks {
            invocation.key(&check.key);
        }
        for argument in script::arguments(checks, now_secs) {
            invocation.arg(argument);
        }
        match invocation.invoke_async(&mut connection).await {
            Ok(reply) => Ok(reply),
            Err(error) => {
                let broken = error.is_io_error()
                    || error.is_connection_dropped()
                    || error.is_timeout()
                    || error.is_unrecoverable_error();
                if broken && self.state.lock().await.live.take().is_some() {
                    eprintln!("portcullis-ratelimit: Redis connection lost: {error}");
                }
                Err(Failure::Unavailable(if error.is_timeout() {
                    self.silent()
                } else {
                    format!("Redis failed the call: {error}")
                }))
            }
        }
    }

    /// The live connection, made now if there is none and the last attempt is not too recent.
    async fn connection(&self) -> Result<MultiplexedConnection, Failure> {
        let mut state = self.state.lock().await;
        if let Some(live) = &state.live {
            return Ok(live.clone());
        }
        if let Some((at, why)) = &state.failed {
            if at.elapsed() < RETRY_AFTER {
                return Err(Failure::Unavailable(why.clone()));
            }
        }
        match self
            .client
            .get_multiplexed_async_connection_with_config(&self.config)
            .await
        {
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
                Err(Failure::Unavailable(why))
            }
        }
    }
}
