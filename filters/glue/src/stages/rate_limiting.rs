//! The rate-limiting stage: the proxy-wasm glue around `portcullis_core::rate_limit`. It
//! compiles the configuration and creates the counter table in shared data; per request it
//! hands the route, the request's facts and the clock to the limiter, answers a refusal
//! with Kong's 429, and puts the rate-limit headers on the response. With `policy: redis`
//! the request waits for the rate limit service instead (one gRPC call), and the local
//! limiter counts it only when the service fails.

use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::types::{Action, LogLevel};

use portcullis_core::decision::{Filter, Outcome, Record};
use portcullis_core::identity::Identity;
use portcullis_core::rate_limit::headers::ClientHeaders;
use portcullis_core::rate_limit::rls::{METHOD, SERVICE};
use portcullis_core::rate_limit::{
    Answer, Decision, Limiter, RateLimitPolicySet, Reply, RequestFacts, ServiceCall, UnixMillis,
    FAULT_BODY,
};

use crate::chain::{Stage, Step};
use crate::exchange::{Exchange, SharedIdentity};
use crate::host::{self, log, Counter};
use crate::shared::HostStore;

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

/// The rate-limiting stage of one worker.
pub struct RateLimiting {
    limiter: Limiter,
    metrics: Metrics,
}

/// What the stage keeps of one request.
#[derive(Default)]
pub struct Request {
    /// Decided with the request, set on the response: the request's header map is gone by
    /// then, and this one does not exist yet.
    response_headers: ClientHeaders,
    /// `policy: redis`: the call out to the rate limit service, while the request waits.
    pending: Option<ServiceCall>,
    /// For the access log: the route name and the identity, when the policies read them.
    route: Option<String>,
    identity: Option<SharedIdentity>,
}

impl RateLimiting {
    /// The separate filter's configuration: required.
    pub fn configure(bytes: Option<Vec<u8>>) -> Option<RateLimiting> {
        let Some(bytes) = bytes else {
            log(
                LogLevel::Error,
                "portcullis-rate-limiting: configuration refused: none given; set at least one \
                 limit: second, minute, hour, day, month or year",
            );
            return None;
        };
        match RateLimitPolicySet::from_json(&bytes) {
            Ok(set) => Some(RateLimiting::new(set)),
            Err(e) => {
                log(
                    LogLevel::Error,
                    &format!("portcullis-rate-limiting: configuration refused: {e}"),
                );
                None
            }
        }
    }

    pub fn new(set: RateLimitPolicySet) -> RateLimiting {
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
        RateLimiting {
            limiter,
            metrics: Metrics::define(),
        }
    }

    /// What a request gets when the filter was never configured: fail closed.
    pub fn unconfigured() {
        host::publish_decision(
            &Record::new(Filter::RateLimiting, Outcome::Failed)
                .reason("not_configured")
                .status(500)
                .passed(false),
        );
        host::respond_json(500, FAULT_BODY, &[]);
    }
}

impl Stage for RateLimiting {
    type Request = Request;

    const CALLS_OUT: bool = true;

    const RESPONDS: bool = true;

    fn request(&self, x: &mut Exchange, r: &mut Request) -> Step {
        let needs_route_name = self.limiter.policies().needs_route_name();
        r.route = x.route(needs_route_name).map(str::to_owned);
        let route = r.route.clone();
        let mut facts = Facts::new(x);
        if let Some(service) = self.limiter.policies().service() {
            let called = self
                .limiter
                .service_call(service, route.as_deref(), &mut facts);
            r.identity = facts.identity.take().flatten();
            let call = match called {
                Ok(Some(call)) => call,
                Ok(None) => return self.act(r, Decision::NotLimited, false),
                Err(refused) => return self.act(r, refused, false),
            };
            let dispatched = hostcalls::dispatch_grpc_call(
                &service.cluster,
                SERVICE,
                METHOD,
                Vec::new(),
                Some(&call.message),
                Duration::from_millis(service.timeout_ms),
            );
            return match dispatched {
                Ok(token) => {
                    r.pending = Some(call);
                    x.call = Some(token);
                    Step::Wait
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
                        self.limiter
                            .service_answer(&call, Reply::Failed(None), &HostStore, now);
                    self.answer(r, answer)
                }
            };
        }
        let now = UnixMillis(facts.x.now_millis());
        let decision = self
            .limiter
            .decide(route.as_deref(), &mut facts, &HostStore, now);
        r.identity = facts.identity.take().flatten();
        self.act(r, decision, false)
    }

    fn grpc_answer(&self, _x: &mut Exchange, r: &mut Request, status: u32, size: usize) -> Step {
        let Some(call) = r.pending.take() else {
            return Step::Answered;
        };
        let body;
        let reply = match status {
            0 => {
                body = host::grpc_call_response(size);
                Reply::Message(body.as_deref().unwrap_or_default())
            }
            status => Reply::Failed(Some(status)),
        };
        let now = UnixMillis(host::now_millis());
        let answer = self.limiter.service_answer(&call, reply, &HostStore, now);
        self.answer(r, answer)
    }

    fn response_headers(&self, r: &mut Request, _end_of_stream: bool) -> Action {
        for (name, value) in r.response_headers.drain(..) {
            host::set_response_header(name, Some(&value));
        }
        Action::Continue
    }
}

impl RateLimiting {
    /// Acts on the rate limit service's answer (or on the local limiter's, when it failed).
    fn answer(&self, r: &mut Request, answer: Answer<'_>) -> Step {
        match answer {
            Answer::Decided(decision) => self.act(r, decision, false),
            Answer::Fallback { decision, error } => {
                self.metrics.service_fallbacks.inc();
                log(
                    LogLevel::Warn,
                    &format!(
                        "portcullis-rate-limiting: rate limit service failed ({error}); counted \
                         in shared data instead"
                    ),
                );
                self.act(r, decision, true)
            }
            Answer::Failed { error } => {
                self.metrics.faults.inc();
                log(
                    LogLevel::Error,
                    &format!(
                        "portcullis-rate-limiting: rate limit service failed ({error}), answered \
                         500 (fault_tolerant is false)"
                    ),
                );
                self.publish(
                    r,
                    Record::new(Filter::RateLimiting, Outcome::Failed)
                        .reason("service_failed")
                        .status(500)
                        .passed(false),
                );
                host::respond_json(500, FAULT_BODY, &[]);
                Step::Answered
            }
        }
    }

    /// Lets the request through (keeping the headers for the response) or answers it.
    /// `fallback`: the rate limit service failed and the local limiter decided.
    fn act(&self, r: &mut Request, decision: Decision<'_>, fallback: bool) -> Step {
        let metrics = &self.metrics;
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
                    r,
                    Record::new(Filter::RateLimiting, Outcome::Skipped).reason("no_policy"),
                );
                Step::Next
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
                self.publish(r, record.window(window));
                r.response_headers = headers;
                Step::Next
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
                self.publish(r, record.status(status).window(window));
                log(
                    LogLevel::Info,
                    &format!("portcullis-rate-limiting: limited {reason}"),
                );
                let pairs: Vec<(&str, &str)> =
                    headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
                host::respond_json(u32::from(status), body, &pairs);
                Step::Answered
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
                    r,
                    Record::new(Filter::RateLimiting, Outcome::Rejected)
                        .reason("rejected")
                        .status(status),
                );
                host::respond_json(u32::from(status), &body, &[]);
                Step::Answered
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
                self.publish(r, if pass { record } else { record.status(500) });
                if pass {
                    Step::Next
                } else {
                    host::respond_json(500, FAULT_BODY, &[]);
                    Step::Answered
                }
            }
        }
    }

    /// Publishes the decision for the access log, with the route and the identity if read,
    /// unless `decision_records` is off.
    fn publish(&self, r: &Request, record: Record<'_>) {
        if self.limiter.policies().decision_records() {
            host::publish_decision(
                &record
                    .route(r.route.as_deref())
                    .identity(r.identity.as_deref()),
            );
        }
    }
}

/// The request as the limiter asks about it: through the exchange (what another stage read
/// is not read again), the rest from the host on first use and kept.
struct Facts<'x> {
    x: &'x mut Exchange,
    source: Option<Option<String>>,
    identity: Option<Option<SharedIdentity>>,
}

impl<'x> Facts<'x> {
    fn new(x: &'x mut Exchange) -> Facts<'x> {
        Facts {
            x,
            source: None,
            identity: None,
        }
    }
}

impl RequestFacts for Facts<'_> {
    fn source_address(&mut self) -> Option<String> {
        self.source
            .get_or_insert_with(|| host::property_text(&["source", "address"]))
            .clone()
    }

    fn header(&mut self, name: &str) -> Option<String> {
        self.x.header(name)
    }

    fn header_values(&mut self, name: &str) -> Result<Vec<String>, String> {
        // The whole map, once: asked for one value, Envoy gives the first copy only.
        self.x.header_values(name).map_err(|e| e.to_string())
    }

    fn path(&mut self) -> Option<String> {
        self.x.header(":path")
    }

    fn identity(&mut self) -> Option<&Identity> {
        if self.identity.is_none() {
            let identity = match self.x.identity() {
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
            };
            self.identity = Some(identity);
        }
        self.identity.as_ref().and_then(|i| i.as_deref())
    }

    fn service(&mut self) -> Option<String> {
        host::property_text(&["xds", "cluster_name"])
    }
}
