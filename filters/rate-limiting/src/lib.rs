//! Portcullis rate-limiting filter: the proxy-wasm glue around `portcullis_core::rate_limit`.
//! The root context compiles the configuration and creates the counter table in shared data;
//! the HTTP context hands the route, the request's facts and the clock to the limiter,
//! answers a refusal with Kong's 429, and puts the rate-limit headers on the response.
//! With `policy: redis` the request waits for the rate limit service instead (one gRPC
//! call), and the local limiter counts it only when the service fails.

use std::rc::Rc;
use std::time::Duration;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

use portcullis_core::decision::{Filter, Outcome, Record};
use portcullis_core::header_map::{HeaderMap, MalformedMap};
use portcullis_core::identity::Identity;
use portcullis_core::rate_limit::rls::{METHOD, SERVICE};
use portcullis_core::rate_limit::{
    Answer, Decision, Limiter, RateLimitPolicySet, Reply, RequestFacts, ServiceCall, UnixMillis,
    FAULT_BODY,
};
use portcullis_glue::host::{self, log, Counter};
use portcullis_glue::shared::HostStore;

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
    /// `policy: redis`: the rate limit service failed and the request was counted locally.
    service_fallbacks: Counter,
    /// Requests refused as they could not be counted (the counted header repeated with
    /// different values).
    rejected: Counter,
}

impl Metrics {
    fn define() -> Metrics {
        Metrics {
            allowed: Counter::define("portcullis_rate_limiting_allowed_total"),
            limited: Counter::define("portcullis_rate_limiting_limited_total"),
            faults: Counter::define("portcullis_rate_limiting_faults_total"),
            overflowed: Counter::define("portcullis_rate_limiting_overflowed_total"),
            service_fallbacks: Counter::define("portcullis_rate_limiting_service_fallbacks_total"),
            rejected: Counter::define("portcullis_rate_limiting_rejected_total"),
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
        if let Some(service) = limiter.policies().service() {
            log(
                LogLevel::Info,
                &format!(
                    "portcullis-rate-limiting: counting in the rate limit service of cluster \
                     {:?} (domain {:?}, timeout {} ms); shared data only if it fails",
                    service.cluster, service.domain, service.timeout_ms
                ),
            );
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
            pending: None,
            route: None,
            identity: None,
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
    /// `policy: redis`: the call out to the rate limit service, while the request waits.
    pending: Option<ServiceCall>,
    /// For the access log: the route name and the identity, when the policies read them.
    route: Option<String>,
    identity: Option<Identity>,
}

impl Context for RateLimitRequest {
    fn on_grpc_call_response(&mut self, _token_id: u32, status_code: u32, response_size: usize) {
        let (Some(worker), Some(call)) = (self.worker.clone(), self.pending.take()) else {
            return;
        };
        let body;
        let reply = match status_code {
            0 => {
                body = host::grpc_call_response(response_size);
                Reply::Message(body.as_deref().unwrap_or_default())
            }
            status => Reply::Failed(Some(status)),
        };
        let now = UnixMillis(host::now_millis());
        let answer = worker.limiter.service_answer(&call, reply, &HostStore, now);
        if let Action::Continue = self.answer(&worker, answer) {
            self.resume_http_request();
        }
    }
}

impl HttpContext for RateLimitRequest {
    fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        let Some(worker) = self.worker.clone() else {
            // Never configured: fail closed.
            host::publish_decision(
                &Record::new(Filter::RateLimiting, Outcome::Failed)
                    .reason("not_configured")
                    .status(500)
                    .passed(false),
            );
            host::respond_json(500, FAULT_BODY, &[]);
            return Action::Pause;
        };
        self.route = host::route_name_if(worker.limiter.policies().needs_route_name());
        let route = self.route.clone();
        let mut facts = HostFacts::default();
        if let Some(service) = worker.limiter.policies().service() {
            let called = worker
                .limiter
                .service_call(service, route.as_deref(), &mut facts);
            self.identity = facts.identity.take().flatten();
            let call = match called {
                Ok(Some(call)) => call,
                Ok(None) => return self.act(&worker, Decision::NotLimited, false),
                Err(refused) => return self.act(&worker, refused, false),
            };
            let dispatched = self.dispatch_grpc_call(
                &service.cluster,
                SERVICE,
                METHOD,
                Vec::new(),
                Some(&call.message),
                Duration::from_millis(service.timeout_ms),
            );
            return match dispatched {
                Ok(_) => {
                    self.pending = Some(call);
                    Action::Pause
                }
                Err(status) => {
                    log(
                        LogLevel::Warn,
                        &format!(
                            "portcullis-rate-limiting: no call to cluster {:?}: {status:?}",
                            service.cluster
                        ),
                    );
                    let now = UnixMillis(host::now_millis());
                    let answer =
                        worker
                            .limiter
                            .service_answer(&call, Reply::Failed(None), &HostStore, now);
                    self.answer(&worker, answer)
                }
            };
        }
        let now = UnixMillis(host::now_millis());
        let decision = worker
            .limiter
            .decide(route.as_deref(), &mut facts, &HostStore, now);
        self.identity = facts.identity.take().flatten();
        self.act(&worker, decision, false)
    }

    fn on_http_response_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        for (name, value) in self.response_headers.drain(..) {
            host::set_response_header(name, Some(&value));
        }
        Action::Continue
    }
}

impl RateLimitRequest {
    /// Acts on the rate limit service's answer (or on the local limiter's, when it failed).
    fn answer(&mut self, worker: &Worker, answer: Answer<'_>) -> Action {
        match answer {
            Answer::Decided(decision) => self.act(worker, decision, false),
            Answer::Fallback { decision, error } => {
                worker.metrics.service_fallbacks.inc();
                log(
                    LogLevel::Warn,
                    &format!(
                        "portcullis-rate-limiting: rate limit service failed ({error}); counted \
                         in shared data instead"
                    ),
                );
                self.act(worker, decision, true)
            }
            Answer::Failed { error } => {
                worker.metrics.faults.inc();
                log(
                    LogLevel::Error,
                    &format!(
                        "portcullis-rate-limiting: rate limit service failed ({error}), answered \
                         500 (fault_tolerant is false)"
                    ),
                );
                self.publish(
                    Record::new(Filter::RateLimiting, Outcome::Failed)
                        .reason("service_failed")
                        .status(500)
                        .passed(false),
                );
                host::respond_json(500, FAULT_BODY, &[]);
                Action::Pause
            }
        }
    }

    /// Publishes the decision for the access log, with the route and the identity if read.
    fn publish(&self, record: Record<'_>) {
        host::publish_decision(
            &record
                .route(self.route.as_deref())
                .identity(self.identity.as_ref()),
        );
    }

    /// Lets the request through (keeping the headers for the response) or answers it.
    /// `fallback`: the rate limit service failed and the local limiter decided.
    fn act(&mut self, worker: &Worker, decision: Decision<'_>, fallback: bool) -> Action {
        let metrics = &worker.metrics;
        // The access log's record when the rate limit service failed: `failed`, and
        // whether the local count let the request through.
        let fell_back = |passed: bool| {
            Record::new(Filter::RateLimiting, Outcome::Failed)
                .reason("service_fallback")
                .passed(passed)
        };
        match decision {
            Decision::NotLimited => {
                self.publish(
                    Record::new(Filter::RateLimiting, Outcome::Skipped).reason("no_policy"),
                );
                Action::Continue
            }
            Decision::Allow {
                headers,
                overflowed,
                window,
            } => {
                metrics.allowed.inc();
                if overflowed {
                    metrics.overflowed.inc();
                }
                let record = if fallback {
                    fell_back(true)
                } else {
                    Record::new(Filter::RateLimiting, Outcome::Accepted)
                };
                self.publish(record.window(window));
                self.response_headers = headers;
                Action::Continue
            }
            Decision::Limit {
                status,
                body,
                headers,
                reason,
                overflowed,
                window,
            } => {
                metrics.limited.inc();
                if overflowed {
                    metrics.overflowed.inc();
                }
                let record = if fallback {
                    fell_back(false)
                } else {
                    Record::new(Filter::RateLimiting, Outcome::Limited).reason("limited")
                };
                self.publish(record.status(status).window(window));
                log(
                    LogLevel::Info,
                    &format!("portcullis-rate-limiting: limited {reason}"),
                );
                let pairs: Vec<(&str, &str)> =
                    headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
                host::respond_json(u32::from(status), body, &pairs);
                Action::Pause
            }
            Decision::Reject {
                status,
                body,
                reason,
            } => {
                metrics.rejected.inc();
                log(
                    LogLevel::Info,
                    &format!("portcullis-rate-limiting: refused {reason}"),
                );
                self.publish(
                    Record::new(Filter::RateLimiting, Outcome::Rejected)
                        .reason("rejected")
                        .status(status),
                );
                host::respond_json(u32::from(status), &body, &[]);
                Action::Pause
            }
            Decision::Fault { error, pass } => {
                metrics.faults.inc();
                let action = if pass { "let through" } else { "answered 500" };
                log(
                    LogLevel::Error,
                    &format!("portcullis-rate-limiting: counting failed, {action}: {error}"),
                );
                let record = Record::new(Filter::RateLimiting, Outcome::Failed)
                    .reason(if fallback {
                        "service_fallback"
                    } else {
                        "fault"
                    })
                    .passed(pass);
                self.publish(if pass { record } else { record.status(500) });
                if pass {
                    Action::Continue
                } else {
                    host::respond_json(500, FAULT_BODY, &[]);
                    Action::Pause
                }
            }
        }
    }
}

/// The request as the limiter asks about it, read from the host on first use and kept.
#[derive(Default)]
struct HostFacts {
    source: Option<Option<String>>,
    identity: Option<Option<Identity>>,
    headers: Option<Result<HeaderMap, MalformedMap>>,
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

    fn header_values(&mut self, name: &str) -> Result<Vec<String>, String> {
        // The whole map, once: asked for one value, Envoy gives the first copy only.
        let map = self
            .headers
            .get_or_insert_with(host::request_header_map)
            .as_ref()
            .map_err(ToString::to_string)?;
        Ok(map
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.to_owned())
            .collect())
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
