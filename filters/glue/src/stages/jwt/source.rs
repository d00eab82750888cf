//! `consumer_source` in the glue: the worker's [`Directory`] and [`Poller`] over the host's
//! shared data, the data-plane calls dispatched from the root context (a call belongs to
//! the VM, never to the stream that wanted it), and the requests that wait for a lookup.

use std::cell::RefCell;
use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::types::{LogLevel, Status};

use crate::host::{self, log, Counter};
use crate::shared::HostStore;
use portcullis_core::jwt::source::directory::{Answered, Resolve};
use portcullis_core::jwt::source::poller::Outcome;
use portcullis_core::jwt::source::shared::worker_id;
use portcullis_core::jwt::source::{Call, ConsumerSource, Directory, Poller};

struct Metrics {
    lookups: Counter,
    lookup_failures: Counter,
    polls: Counter,
    poll_failures: Counter,
    resets: Counter,
    stale: Counter,
}

/// One worker's share of the consumer source.
pub struct Source {
    pub directory: RefCell<Directory>,
    poller: RefCell<Poller>,
    /// Keys whose lookup this worker claimed, for the root context to dispatch.
    pub to_lookup: RefCell<Vec<String>>,
    /// When the view last forgot what expired (at most once a second: the root context
    /// ticks every few milliseconds while requests wait).
    expired_at: std::cell::Cell<u64>,
    metrics: Metrics,
}

impl Source {
    pub fn new(settings: ConsumerSource) -> Source {
        // A number no other worker has, for the poller's lease; should shared data fail,
        // the clock makes one unlikely to collide.
        let owner = worker_id(&HostStore).unwrap_or_else(|_| host::now_millis() | 1 << 63);
        Source {
            poller: RefCell::new(Poller::new(settings.clone(), owner)),
            directory: RefCell::new(Directory::new(settings)),
            to_lookup: RefCell::new(Vec::new()),
            expired_at: std::cell::Cell::new(0),
            metrics: Metrics {
                lookups: Counter::define("portcullis_jwt_source_lookups_total"),
                lookup_failures: Counter::define("portcullis_jwt_source_lookup_failed_total"),
                polls: Counter::define("portcullis_jwt_source_polls_total"),
                poll_failures: Counter::define("portcullis_jwt_source_poll_failed_total"),
                resets: Counter::define("portcullis_jwt_source_resets_total"),
                stale: Counter::define("portcullis_jwt_source_stale_served_total"),
            },
        }
    }

    pub fn settings(&self) -> ConsumerSource {
        self.directory.borrow().source().clone()
    }

    /// Catches up with what the poller published. A host error leaves the view as it was
    /// (it only ever serves less fresh, and `stale_ttl` still bounds it).
    pub fn sync(&self) {
        if let Err(e) = self.directory.borrow_mut().sync(&HostStore) {
            log(
                LogLevel::Warn,
                &format!("portcullis-jwt: consumer source: {e}"),
            );
        }
    }

    /// Finds `key`'s answer in shared data or claims its lookup (queued for dispatch).
    pub fn resolve(&self, key: &str) -> Result<Resolve, ()> {
        let now = host::now_millis();
        let resolved = self.directory.borrow_mut().resolve(&HostStore, key, now);
        match resolved {
            Ok(Resolve::Claimed) => {
                self.to_lookup.borrow_mut().push(key.to_owned());
                Ok(Resolve::Claimed)
            }
            Ok(other) => Ok(other),
            Err(e) => {
                log(
                    LogLevel::Warn,
                    &format!("portcullis-jwt: consumer source: {e}"),
                );
                Err(())
            }
        }
    }

    /// Counts a request served from the cache while the admin is away.
    pub fn served(&self) {
        if self.directory.borrow().stale(host::now_millis()) {
            self.metrics.stale.inc();
        }
    }

    /// The calls the poller wants now.
    pub fn poll(&self) -> Vec<Call> {
        let now = host::now_millis();
        if now.saturating_sub(self.expired_at.get()) >= 1000 {
            self.directory.borrow_mut().expire(now);
            self.expired_at.set(now);
        }
        let calls = self.poller.borrow_mut().tick(&HostStore, now);
        calls.unwrap_or_else(|e| {
            log(
                LogLevel::Warn,
                &format!("portcullis-jwt: consumer source poll: {e}"),
            );
            Vec::new()
        })
    }

    /// Takes the answer to `call`; returns the calls that follow it.
    pub fn answered(&self, call: &Call, status: Option<&str>, body: &[u8]) -> Vec<Call> {
        let now = host::now_millis();
        if let Call::Credential { key } = call {
            self.metrics.lookups.inc();
            let answered = self
                .directory
                .borrow_mut()
                .answered(&HostStore, key, status, body, now);
            match answered {
                Ok(Answered::Stored | Answered::Discarded) => {}
                Ok(Answered::Failed(why)) => {
                    self.metrics.lookup_failures.inc();
                    log(
                        LogLevel::Warn,
                        &format!(
                            "portcullis-jwt: consumer source lookup of {} failed: {why}",
                            portcullis_core::log_value::quote(key)
                        ),
                    );
                }
                Err(e) => {
                    self.metrics.lookup_failures.inc();
                    log(
                        LogLevel::Warn,
                        &format!("portcullis-jwt: consumer source: {e}"),
                    );
                }
            }
            return Vec::new();
        }
        let answered = self
            .poller
            .borrow_mut()
            .answered(&HostStore, call, status, body, now);
        match answered {
            Ok((calls, outcome)) => {
                match &outcome {
                    Outcome::Pending => {}
                    Outcome::Loaded { revocations } => {
                        self.metrics.polls.inc();
                        log(
                            LogLevel::Info,
                            &format!("portcullis-jwt: consumer source loaded: {revocations} revocations in force"),
                        );
                    }
                    Outcome::Applied { .. } => self.metrics.polls.inc(),
                    Outcome::Reset => {
                        self.metrics.resets.inc();
                        log(
                            LogLevel::Warn,
                            "portcullis-jwt: consumer source reset (feed pruned or another database): every cached consumer dropped",
                        );
                    }
                    Outcome::Failed(why) => {
                        self.metrics.poll_failures.inc();
                        log(
                            LogLevel::Warn,
                            &format!(
                                "portcullis-jwt: consumer source poll failed ({}): {why}",
                                call.path()
                            ),
                        );
                    }
                }
                calls
            }
            Err(e) => {
                self.metrics.poll_failures.inc();
                log(
                    LogLevel::Warn,
                    &format!("portcullis-jwt: consumer source: {e}"),
                );
                Vec::new()
            }
        }
    }

    /// The tick the source needs: its poll interval, or a short one until loaded.
    pub fn tick(&self) -> Duration {
        let settings = self.directory.borrow();
        let interval = Duration::from_millis(settings.source().poll_interval_ms);
        if settings.loaded() {
            interval
        } else {
            interval.min(Duration::from_millis(100))
        }
    }
}

/// Dispatches `call` to the admin's data plane; the answer comes to the calling context's
/// `on_http_call_response`.
pub fn dispatch(settings: &ConsumerSource, call: &Call) -> Result<u32, Status> {
    let path = call.path();
    let headers = settings.headers(&path);
    hostcalls::dispatch_http_call(
        &settings.cluster,
        headers.iter().map(|(n, v)| (*n, v.as_str())).collect(),
        None,
        vec![],
        Duration::from_millis(settings.timeout_ms),
    )
}
