//! Portcullis rate-limiting filter: the proxy-wasm glue around `portcullis_core::rate_limit`.
//! The root context compiles the configuration and creates the counter table in shared data;
//! the HTTP context hands the route, the request's facts and the clock to the limiter,
//! answers a refusal with Kong's 429, and puts the rate-limit headers on the response.

mod shared;

use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

use portcullis_core::identity::Identity;
use portcullis_core::rate_limit::{
    Decision, Limiter, RateLimitPolicySet, RequestFacts, UnixMillis, FAULT_BODY,
};
use portcullis_glue::host::{self, log, Counter};

use shared::HostStore;

proxy_wasm::main! {{
    portcullis_glue::start("rate-limiting");
    proxy_wasm::set_root_context(|_| Box::new(RateLimitRoot::default()));
}}

/// Every counter, defined once at configure time.
struct Metrics {
    /// Requests counted and admitted.
    allowed: Counter,
    /// Requests refused with `error_code`.
    limited: Counter,
    /// Counting failed (shared data refused, CAS contention); `fault_tolerant` decided.
    faults: Counter,
    /// Requests counted in a shared overflow slot: the table is full around their key.
    overflowed: Counter,
}

impl Metrics {
    fn define() -> Metrics {
        Metrics {
            allowed: Counter::define("portcullis_rate_limiting_allowed_total"),
            limited: Counter::define("portcullis_rate_limiting_limited_total"),
            faults: Counter::define("portcullis_rate_limiting_faults_total"),
            overflowed: Counter::define("portcullis_rate_limiting_overflowed_total"),
        }
    }
}

/// What every HTTP context of one worker shares with the root context.
struct Worker {
    limiter: Limiter,
    metrics: Metrics,
}

#[derive(Default)]
struct RateLimitRoot {
    worker: Option<Rc<Worker>>,
}

impl Context for RateLimitRoot {}

impl RootContext for RateLimitRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let Some(bytes) = portcullis_glue::plugin_configuration() else {
            log(
                LogLevel::Error,
                "portcullis-rate-limiting: configuration refused: none given; set at least one \
                 limit: second, minute, hour, day, month or year",
            );
            return false;
        };
        let set = match RateLimitPolicySet::from_json(&bytes) {
            Ok(set) => set,
            Err(e) => {
                log(
                    LogLevel::Error,
                    &format!("portcullis-rate-limiting: configuration refused: {e}"),
                );
                return false;
            }
        };
        // Filters sharing a VM id share shared data: the plugin name keeps tables apart.
        let namespace =
            host::property_text(&["plugin_name"]).unwrap_or_else(|| "rate-limiting".to_owned());
        let limiter = Limiter::new(set, &namespace);
        let table = limiter.table();
        let bound = table.bound(limiter.policies().max_windows());
        match table.initialise(&HostStore) {
            Ok(created) => log(
                LogLevel::Info,
                &format!(
                    "portcullis-rate-limiting: counter table ready: {} slots ({created} keys \
                     created here); shared data bounded by {} keys, {} bytes",
                    table.slots(),
                    bound.keys,
                    bound.bytes
                ),
            ),
            Err(e) => log(
                LogLevel::Warn,
                &format!(
                    "portcullis-rate-limiting: counter table not created ({e}); slots will be \
                     created as requests need them"
                ),
            ),
        }
        self.worker = Some(Rc::new(Worker {
            limiter,
            metrics: Metrics::define(),
        }));
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(RateLimitRequest {
            worker: self.worker.clone(),
            response_headers: Vec::new(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct RateLimitRequest {
    worker: Option<Rc<Worker>>,
    /// Decided with the request, set on the response: the request's header map is gone by
    /// then, and this one does not exist yet.
    response_headers: Vec<(&'static str, String)>,
}

impl Context for RateLimitRequest {}

impl HttpContext for RateLimitRequest {
    fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        let Some(worker) = self.worker.clone() else {
            // Never configured: fail closed.
            host::respond_json(500, FAULT_BODY, &[]);
            return Action::Pause;
        };
        let route = host::route_name();
        let now = UnixMillis(host::now_millis());
        let mut facts = HostFacts::default();
        let metrics = &worker.metrics;
        match worker
            .limiter
            .decide(route.as_deref(), &mut facts, &HostStore, now)
        {
            Decision::NotLimited => Action::Continue,
            Decision::Allow {
                headers,
                overflowed,
            } => {
                metrics.allowed.inc();
                if overflowed {
                    metrics.overflowed.inc();
                }
                self.response_headers = headers;
                Action::Continue
            }
            Decision::Limit {
                status,
                body,
                headers,
                reason,
                overflowed,
            } => {
                metrics.limited.inc();
                if overflowed {
                    metrics.overflowed.inc();
                }
                log(
                    LogLevel::Info,
                    &format!("portcullis-rate-limiting: limited {reason}"),
                );
                let pairs: Vec<(&str, &str)> =
                    headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
                host::respond_json(u32::from(status), body, &pairs);
                Action::Pause
            }
            Decision::Fault { error, pass } => {
                metrics.faults.inc();
                let action = if pass { "let through" } else { "answered 500" };
                log(
                    LogLevel::Error,
                    &format!("portcullis-rate-limiting: counting failed, {action}: {error}"),
                );
                if pass {
                    Action::Continue
                } else {
                    host::respond_json(500, FAULT_BODY, &[]);
                    Action::Pause
                }
            }
        }
    }

    fn on_http_response_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        for (name, value) in self.response_headers.drain(..) {
            host::set_response_header(name, Some(&value));
        }
        Action::Continue
    }
}

/// The request as the limiter asks about it, read from the host on first use and kept.
#[derive(Default)]
struct HostFacts {
    source: Option<Option<String>>,
    identity: Option<Option<Identity>>,
}

impl RequestFacts for HostFacts {
    fn source_address(&mut self) -> Option<String> {
        self.source
            .get_or_insert_with(|| host::property_text(&["source", "address"]))
            .clone()
    }

    fn header(&mut self, name: &str) -> Option<String> {
        host::request_header(name)
    }

    fn path(&mut self) -> Option<String> {
        host::request_header(":path")
    }

    fn identity(&mut self) -> Option<Identity> {
        self.identity
            .get_or_insert_with(|| match host::received_identity() {
                Ok(identity) => identity,
                Err(e) => {
                    // Not something a client can cause: filter state is ours. Count by
                    // what is left (the IP), as for a request without an identity.
                    log(
                        LogLevel::Warn,
                        &format!("portcullis-rate-limiting: {e}; counting by IP"),
                    );
                    None
                }
            })
            .clone()
    }

    fn service(&mut self) -> Option<String> {
        host::property_text(&["xds", "cluster_name"])
    }
}
