//! Portcullis jwt filter: the proxy-wasm glue around `portcullis_core::jwt`. The root
//! context compiles the configuration, picks where signatures are checked and keeps remote
//! key sets fresh; the HTTP context reads the request once, asks the policy, and acts.

mod jwks;
mod source;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

use portcullis_core::decision::{Filter, Outcome, Record};
use portcullis_core::header_map::HeaderMap;
use portcullis_core::jose::crypto::{AlgorithmSet, CryptoError, SplitBackend};
use portcullis_core::jose::{Algorithm, CryptoChoice, InModule, PreparedKey, SignatureBackend};
use portcullis_core::jwt::delay::DelayedRefusals;
use portcullis_core::jwt::keyring::RemoteJwks;
use portcullis_core::jwt::refresh::Trigger;
use portcullis_core::jwt::source::directory::Resolve;
use portcullis_core::jwt::source::Call;
use portcullis_core::jwt::sources::hide;
use portcullis_core::jwt::{
    authenticate, Accepted, JwtPolicy, JwtPolicySet, KeyStore, Refusal, Rejection, RoutePolicy,
    TokenCache, TokenSources, Verifier,
};
use portcullis_core::UnixTime;
use portcullis_glue::host::{self, log, Counter};
use portcullis_glue::host_crypto::{self, HostCrypto};
use source::Source;

proxy_wasm::main! {{
    portcullis_glue::start("jwt");
    proxy_wasm::set_root_context(|id| Box::new(JwtRoot { id, ..JwtRoot::default() }));
}}

/// Where signatures are checked, decided once at configure time.
enum Backend {
    InModule(InModule),
    Split(SplitBackend<HostCrypto>),
}

impl SignatureBackend for Backend {
    fn verify(
        &self,
        alg: Algorithm,
        key: &PreparedKey,
        input: &[u8],
        signature: &[u8],
    ) -> Result<bool, CryptoError> {
        match self {
            Backend::InModule(b) => b.verify(alg, key, input, signature),
            Backend::Split(b) => b.verify(alg, key, input, signature),
        }
    }
}

struct Metrics {
    accepted: Counter,
    rejected: Counter,
    cache_hits: Counter,
    jwks_fetched: Counter,
    jwks_failed: Counter,
    /// One counter per rejection reason, defined on first use.
    by_reason: RefCell<HashMap<&'static str, Counter>>,
}

impl Metrics {
    fn define() -> Metrics {
        Metrics {
            accepted: Counter::define("portcullis_jwt_accepted_total"),
            rejected: Counter::define("portcullis_jwt_rejected_total"),
            cache_hits: Counter::define("portcullis_jwt_cache_hits_total"),
            jwks_fetched: Counter::define("portcullis_jwt_jwks_fetched_total"),
            jwks_failed: Counter::define("portcullis_jwt_jwks_fetch_failed_total"),
            by_reason: RefCell::new(HashMap::new()),
        }
    }

    fn rejected(&self, label: &'static str) {
        self.rejected.inc();
        let mut by_reason = self.by_reason.borrow_mut();
        by_reason
            .entry(label)
            .or_insert_with(|| Counter::define(&format!("portcullis_jwt_rejected_{label}_total")))
            .inc();
    }
}

/// What every HTTP context of one worker shares with the root context.
struct Worker {
    policies: JwtPolicySet,
    backend: Backend,
    keys: RefCell<KeyStore>,
    cache: RefCell<TokenCache>,
    metrics: Metrics,
    /// Refusals held back by `failure_delay_ms`, answered by the root context's tick.
    delayed: RefCell<DelayedRefusals>,
    /// Providers whose fetch a request claimed, for the root context to dispatch at its
    /// next tick: a fetch belongs to the root context, never to the stream that wanted it,
    /// so no client can cancel it by resetting its stream.
    to_dispatch: RefCell<Vec<String>>,
    /// Requests paused until a fetch their worker claimed lands (one per claimed fetch), or
    /// until a consumer lookup (any worker's) is answered.
    waiting: RefCell<Vec<Waiting>>,
    /// `consumer_source`, when configured.
    source: Option<Source>,
    /// The tick the root context needs with nothing waiting (remote JWKS refreshes).
    normal_tick: Duration,
    /// The tick period last asked of the host: set again only when it must change, since
    /// Envoy restarts the timer whenever it is set (a flood of refusals setting it on every
    /// request would keep the tick from ever firing).
    tick: Cell<Duration>,
}

/// How often the root context looks for delayed refusals to send while any wait.
const DELAY_TICK: Duration = Duration::from_millis(10);
/// How soon the root context dispatches a fetch a request claimed.
const DISPATCH_TICK: Duration = Duration::from_millis(1);

impl Worker {
    fn remote(&self, provider: &str) -> Option<&RemoteJwks> {
        self.policies.remote_jwks().find(|r| r.provider == provider)
    }

    /// The tick the root context needs now: soon for a fetch to dispatch, often while
    /// refusals are delayed, else the normal one. Asks the host only on a change.
    fn retick(&self) {
        let lookups = self.source.as_ref();
        let wanted = if !self.to_dispatch.borrow().is_empty()
            || lookups.is_some_and(|s| !s.to_lookup.borrow().is_empty())
        {
            DISPATCH_TICK
        } else if !self.delayed.borrow().is_empty() || self.waits_for_lookup() {
            DELAY_TICK
        } else {
            match lookups {
                Some(source) if self.normal_tick.is_zero() => source.tick(),
                Some(source) => source.tick().min(self.normal_tick),
                None => self.normal_tick,
            }
        };
        if self.tick.get() != wanted && hostcalls::set_tick_period(wanted).is_ok() {
            self.tick.set(wanted);
        }
    }

    fn waits_for_lookup(&self) -> bool {
        self.waiting
            .borrow()
            .iter()
            .any(|w| matches!(w.awaits, Awaits::Lookup(_)))
    }

    fn fetched(&self, remote: &RemoteJwks, body_size: usize) -> bool {
        let installed = jwks::answered(
            &mut self.keys.borrow_mut(),
            remote,
            UnixTime(host::now_secs()),
            body_size,
        );
        if installed {
            self.metrics.jwks_fetched.inc();
        } else {
            self.metrics.jwks_failed.inc();
        }
        installed
    }
}

#[derive(Default)]
struct JwtRoot {
    id: u32,
    worker: Option<Rc<Worker>>,
    /// Fetches this root context dispatched: token → provider.
    fetches: HashMap<u32, String>,
    /// Calls to the consumer source this root context dispatched.
    source_calls: HashMap<u32, Call>,
}

impl Context for JwtRoot {
    fn on_http_call_response(&mut self, token: u32, _headers: usize, body: usize, _t: usize) {
        let Some(worker) = self.worker.clone() else {
            return;
        };
        if let Some(call) = self.source_calls.remove(&token) {
            self.source_answered(&worker, &call, body);
            return;
        }
        let Some(provider) = self.fetches.remove(&token) else {
            return;
        };
        if let Some(remote) = worker.remote(&provider) {
            worker.fetched(remote, body);
        }
        self.settle(&worker, &provider);
    }
}

impl RootContext for JwtRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = portcullis_glue::plugin_configuration().unwrap_or_else(|| b"{}".to_vec());
        let policies = match JwtPolicySet::from_json(&bytes) {
            Ok(policies) => policies,
            Err(e) => {
                log(
                    LogLevel::Error,
                    &format!("portcullis-jwt: configuration refused: {e}"),
                );
                return false;
            }
        };
        let backend = match policies.crypto() {
            CryptoChoice::InModule => Backend::InModule(InModule),
            CryptoChoice::Auto => Backend::Split(SplitBackend {
                host: HostCrypto,
                host_algorithms: host_crypto::probe(),
            }),
        };
        log(LogLevel::Info, &describe(&backend));
        let remote = policies.remote_jwks().count();
        let normal_tick = if remote > 0 {
            Duration::from_secs(1)
        } else {
            Duration::ZERO
        };
        let worker = Rc::new(Worker {
            cache: RefCell::new(TokenCache::new(policies.token_cache_size())),
            source: policies.consumer_source().cloned().map(Source::new),
            policies,
            backend,
            keys: RefCell::new(KeyStore::new()),
            metrics: Metrics::define(),
            delayed: RefCell::new(DelayedRefusals::new()),
            to_dispatch: RefCell::new(Vec::new()),
            waiting: RefCell::new(Vec::new()),
            normal_tick,
            tick: Cell::new(Duration::ZERO),
        });
        // With remote key sets, look for due refreshes every second. The first fetch is the
        // first request's or the first tick's, not this callback's: Envoy also configures
        // VMs on its main thread and may destroy one at once, losing a fetch started here
        // while its claim kept every worker from fetching for twice the fetch timeout.
        worker.retick();
        self.worker = Some(worker);
        true
    }

    fn on_tick(&mut self) {
        let Some(worker) = self.worker.clone() else {
            return;
        };
        self.send_delayed(&worker);
        let claimed: Vec<String> = worker.to_dispatch.borrow_mut().drain(..).collect();
        for provider in claimed {
            if let Some(remote) = worker.remote(&provider) {
                self.dispatch(&worker, remote);
            }
        }
        self.tick_source(&worker);
        let now = UnixTime(host::now_secs());
        for remote in worker.policies.remote_jwks() {
            jwks::sync(&mut worker.keys.borrow_mut(), &remote.provider);
            let trigger = if worker.keys.borrow().generation(&remote.provider).is_some() {
                Trigger::Tick
            } else {
                Trigger::NoKeys
            };
            if jwks::claim(remote, now, trigger) {
                self.dispatch(&worker, remote);
            }
        }
        worker.retick();
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        let worker = self.worker.clone()?;
        Some(Box::new(JwtFilter {
            id: context_id,
            worker,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

impl JwtRoot {
    /// The consumer source's share of a tick: the poll when due, the lookups claimed by
    /// requests, and the requests waiting for another worker's lookup looked at again.
    fn tick_source(&mut self, worker: &Worker) {
        let Some(source) = &worker.source else {
            return;
        };
        let settings = source.settings();
        let mut calls = source.poll();
        let keys: Vec<String> = source.to_lookup.borrow_mut().drain(..).collect();
        calls.extend(keys.into_iter().map(|key| Call::Credential { key }));
        self.dispatch_source(worker, &settings, calls);
        self.settle_lookups(worker, None);
    }

    fn dispatch_source(
        &mut self,
        worker: &Worker,
        settings: &portcullis_core::jwt::source::ConsumerSource,
        calls: Vec<Call>,
    ) {
        for call in calls {
            match source::dispatch(settings, &call) {
                Ok(token) => {
                    self.source_calls.insert(token, call);
                }
                Err(status) => {
                    log(
                        LogLevel::Warn,
                        &format!(
                            "portcullis-jwt: consumer source: cannot call cluster {}: {status:?}",
                            settings.cluster
                        ),
                    );
                    // Handled as an answer that never came: the lookup's slot is freed
                    // and its requests refused; the poll is retried at the next interval.
                    if let Some(source) = &worker.source {
                        source.answered(&call, None, &[]);
                    }
                    if let Call::Credential { key } = &call {
                        self.settle_lookups(worker, Some(key));
                    }
                }
            }
        }
    }

    fn source_answered(&mut self, worker: &Worker, call: &Call, body_size: usize) {
        let Some(source) = &worker.source else {
            return;
        };
        let (status, body) = host::http_call_response(body_size);
        let more = source.answered(call, status.as_deref(), &body);
        let settings = source.settings();
        self.dispatch_source(worker, &settings, more);
        match call {
            Call::Credential { key } => self.settle_lookups(worker, Some(key)),
            // Changes applied may answer other workers' waiting requests sooner.
            _ => self.settle_lookups(worker, None),
        }
    }

    /// Decides again the requests waiting for a lookup (of `key`, or all): each finds the
    /// answer, keeps waiting (within `timeout_ms`), or is refused.
    fn settle_lookups(&self, worker: &Worker, key: Option<&str>) {
        self.settle_where(worker, |awaits| match awaits {
            Awaits::Lookup(k) => key.is_none_or(|key| key == k),
            Awaits::Keys(_) => false,
        });
    }

    /// Sends the delayed refusals that are due, each on its own stream; a stream that is
    /// gone (the client left) is skipped.
    fn send_delayed(&self, worker: &Worker) {
        let due = worker.delayed.borrow_mut().due(host::now_millis());
        for (context, refusal) in due {
            if hostcalls::set_effective_context(context).is_ok() {
                respond(&refusal);
            }
        }
        let _ = hostcalls::set_effective_context(self.id);
    }

    /// Dispatches a fetch this worker claimed, from this root context, so that it lives as
    /// long as the VM whatever becomes of the request that wanted it. A fetch that cannot
    /// be dispatched releases the claim and settles the requests waiting for it.
    fn dispatch(&mut self, worker: &Worker, remote: &RemoteJwks) {
        match jwks::fetch(remote) {
            Ok(token) => {
                self.fetches.insert(token, remote.provider.clone());
            }
            Err(status) => {
                log(
                    LogLevel::Warn,
                    &format!(
                        "portcullis-jwt: JWKS of {}: cannot call cluster {}: {status:?}",
                        remote.provider, remote.cluster
                    ),
                );
                jwks::release(remote, UnixTime(host::now_secs()));
                worker.metrics.jwks_failed.inc();
                self.settle(worker, &remote.provider);
            }
        }
    }

    /// Decides the requests that waited for `provider`'s fetch, each on its own stream (a
    /// stream that is gone is skipped), with the keys as good as they will get.
    fn settle(&self, worker: &Worker, provider: &str) {
        self.settle_where(
            worker,
            |awaits| matches!(awaits, Awaits::Keys(p) if p == provider),
        );
    }

    /// Takes the waiting requests `settles` picks and decides each again on its own stream
    /// (a stream that is gone is skipped): it goes on, is refused, or waits anew.
    fn settle_where(&self, worker: &Worker, settles: impl Fn(&Awaits) -> bool) {
        let settled: Vec<Waiting> = {
            let mut waiting = worker.waiting.borrow_mut();
            let (settled, still) = waiting.drain(..).partition(|w| settles(&w.awaits));
            *waiting = still;
            settled
        };
        for w in settled {
            if hostcalls::set_effective_context(w.context).is_ok()
                && worker.decide(w.context, w.request, false) == Action::Continue
            {
                let _ = hostcalls::resume_http_request();
            }
        }
        let _ = hostcalls::set_effective_context(self.id);
        worker.retick();
    }
}

fn respond(refusal: &Refusal) {
    // A 503 says nothing about the token (the consumer source could not decide): no
    // `WWW-Authenticate` challenge, and a hint to retry in a second.
    let header = if refusal.status == 503 {
        ("retry-after", "1")
    } else {
        ("www-authenticate", refusal.www_authenticate.as_str())
    };
    host::respond_json(u32::from(refusal.status), &refusal.body, &[header]);
}

fn describe(backend: &Backend) -> String {
    let all = [
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::ES256,
        Algorithm::ES384,
    ];
    let host = match backend {
        Backend::InModule(_) => AlgorithmSet::EMPTY,
        Backend::Split(split) => split.host_algorithms,
    };
    let names = |on_host: bool| -> String {
        let list: Vec<&str> = all
            .iter()
            .filter(|a| host.contains(**a) == on_host)
            .map(|a| a.name())
            .collect();
        if list.is_empty() {
            "none".into()
        } else {
            list.join(",")
        }
    };
    format!(
        "portcullis-jwt: signatures checked by the host: {}; in the module: {} (and HS*, PS*, EdDSA)",
        names(true),
        names(false)
    )
}

/// A request that waits: its stream, what for, and the request as it was read.
struct Waiting {
    context: u32,
    awaits: Awaits,
    request: Request,
}

enum Awaits {
    /// A JWKS fetch its worker claimed, of this provider.
    Keys(String),
    /// The lookup of this key in the consumer source (by any worker).
    Lookup(String),
}

/// What the filter reads from a request, once, in `on_http_request_headers`.
struct Request {
    policy: std::sync::Arc<JwtPolicy>,
    headers: HeaderMap,
    /// The route name, when the policy set needed it (for the access log too).
    route: Option<String>,
    /// When it first waited for a lookup (milliseconds): it waits at most `timeout_ms`.
    waiting_since_ms: Option<u64>,
}

struct JwtFilter {
    id: u32,
    worker: Rc<Worker>,
}

impl Context for JwtFilter {
    fn on_done(&mut self) -> bool {
        // A client that leaves while its request waits for keys: forget the request; the
        // fetch goes on (it belongs to the root context). One that leaves while its refusal
        // is delayed frees its place in the queue.
        self.worker
            .waiting
            .borrow_mut()
            .retain(|w| w.context != self.id);
        self.worker.delayed.borrow_mut().ended(self.id);
        true
    }
}

impl HttpContext for JwtFilter {
    fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        let headers = match host::request_header_map() {
            Ok(headers) => headers,
            Err(e) => {
                // Nothing can be checked, not even the identity headers to strip: fail closed.
                self.worker.metrics.rejected("headers_unreadable");
                host::publish_decision(
                    &Record::new(Filter::Jwt, Outcome::Failed)
                        .reason("headers_unreadable")
                        .status(500),
                );
                log(LogLevel::Error, &format!("portcullis-jwt: {e}"));
                host::respond_json(500, portcullis_core::UNEXPECTED_ERROR_BODY, &[]);
                return Action::Pause;
            }
        };
        // Client-sent identity headers never pass, authenticated or not.
        for name in self.worker.policies.forged_headers(headers.names()) {
            host::set_request_header(name, None);
        }
        let route = host::route_name_if(self.worker.policies.needs_route_name());
        let RoutePolicy::Protected(policy) = self.worker.policies.for_route(route.as_deref())
        else {
            host::publish_decision(
                &Record::new(Filter::Jwt, Outcome::Skipped)
                    .reason("no_policy")
                    .route(route.as_deref()),
            );
            return Action::Continue;
        };
        let method = headers.get(":method").unwrap_or_default();
        if policy.skips_preflight(method) {
            host::publish_decision(
                &Record::new(Filter::Jwt, Outcome::Skipped)
                    .reason("preflight")
                    .route(route.as_deref()),
            );
            return Action::Continue;
        }
        let request = Request {
            policy: policy.clone(),
            headers,
            route,
            waiting_since_ms: None,
        };
        self.worker.decide(self.id, request, true)
    }
}

impl Worker {
    /// Authenticates the request of stream `context` (the effective context) and acts:
    /// continue with the identity handed on, refuse, or (once, when `may_fetch`) claim a
    /// fetch of a provider's keys for the root context to dispatch, and pause until it lands.
    fn decide(&self, context: u32, request: Request, may_fetch: bool) -> Action {
        let policy = request.policy.clone();
        let now = UnixTime(host::now_secs());
        let sources = TokenSources::from_headers(policy.locations(), request.headers.iter());
        if let Some(source) = &self.source {
            source.sync();
        }
        let mut outcome = self.authenticate(&sources, &policy, now);
        if let (Err(Rejection::NotCached { key }), Some(source)) = (&outcome, &self.source) {
            let key = key.clone();
            outcome = match source.resolve(&key) {
                Ok(Resolve::Ready) => match self.authenticate(&sources, &policy, now) {
                    // A slot answer that does not decode: as good as none.
                    Err(Rejection::NotCached { .. }) => Err(Rejection::SourceUnavailable),
                    other => other,
                },
                Ok(Resolve::Wait | Resolve::Claimed) => {
                    let now_ms = host::now_millis();
                    let since = request.waiting_since_ms.unwrap_or(now_ms);
                    let timeout = source.directory.borrow().source().timeout_ms;
                    if now_ms < since.saturating_add(timeout) {
                        self.waiting.borrow_mut().push(Waiting {
                            context,
                            awaits: Awaits::Lookup(key),
                            request: Request {
                                waiting_since_ms: Some(since),
                                ..request
                            },
                        });
                        self.retick();
                        return Action::Pause;
                    }
                    Err(Rejection::SourceUnavailable)
                }
                Ok(Resolve::Throttled) => Err(Rejection::LookupThrottled),
                Ok(Resolve::Failed) | Err(()) => Err(Rejection::SourceUnavailable),
            };
        }
        if let Err(
            Rejection::UnknownKid { provider, .. } | Rejection::KeysUnavailable { provider },
        ) = &outcome
        {
            let provider = provider.clone();
            // Another worker may have fetched newer keys already.
            if jwks::sync(&mut self.keys.borrow_mut(), &provider) {
                outcome = self.authenticate(&sources, &policy, now);
            } else if may_fetch && self.claim_fetch(&provider, now, &outcome) {
                self.to_dispatch.borrow_mut().push(provider.clone());
                self.waiting.borrow_mut().push(Waiting {
                    context,
                    awaits: Awaits::Keys(provider),
                    request,
                });
                self.retick();
                return Action::Pause;
            }
        }
        let route = request.route.as_deref();
        match outcome {
            Ok(accepted) => {
                self.accept(&accepted, &policy, &request.headers, route);
                Action::Continue
            }
            Err(rejection) => {
                self.refuse(context, &rejection, &policy, route);
                Action::Pause
            }
        }
    }

    fn authenticate(
        &self,
        sources: &TokenSources,
        policy: &JwtPolicy,
        now: UnixTime,
    ) -> Result<Accepted, Rejection> {
        let keys = self.keys.borrow();
        let mut cache = self.cache.borrow_mut();
        let directory = self.source.as_ref().map(|s| s.directory.borrow());
        let mut verifier = Verifier {
            backend: &self.backend,
            remote_keys: &keys,
            cache: (self.policies.token_cache_size() > 0).then_some(&mut *cache),
            source: directory.as_deref(),
        };
        authenticate(sources, policy, now, &mut verifier)
    }

    /// Claims the provider's fetch for this worker, if one is due.
    fn claim_fetch(
        &self,
        provider: &str,
        now: UnixTime,
        outcome: &Result<Accepted, Rejection>,
    ) -> bool {
        let Some(remote) = self.remote(provider) else {
            return false;
        };
        let trigger = match outcome {
            Err(Rejection::UnknownKid { .. }) => Trigger::UnknownKid,
            _ => Trigger::NoKeys,
        };
        jwks::claim(remote, now, trigger)
    }

    fn accept(
        &self,
        accepted: &Accepted,
        policy: &JwtPolicy,
        headers: &HeaderMap,
        route: Option<&str>,
    ) {
        let metrics = &self.metrics;
        metrics.accepted.inc();
        if accepted.cache_hit {
            metrics.cache_hits.inc();
        }
        if let (true, Some(source)) = (accepted.looked_up, &self.source) {
            source.served();
        }
        for claim in &accepted.dropped_claims {
            log(
                LogLevel::Warn,
                &format!("portcullis-jwt: claim {claim} not forwarded: unsafe header value"),
            );
        }
        if policy.hide_credentials() {
            for (name, value) in hide(&accepted.token_locations, headers) {
                host::set_request_header(name, value.as_deref());
            }
        }
        for (name, value) in accepted.upstream_headers() {
            host::set_request_header(name, Some(value));
        }
        if !host::publish_identity(accepted.encoded_identity()) {
            log(
                LogLevel::Error,
                "portcullis-jwt: the host refused the identity property; later filters will refuse",
            );
        }
        host::publish_decision(
            &Record::new(Filter::Jwt, Outcome::Accepted)
                .identity(Some(accepted.identity()))
                .route(route),
        );
    }

    fn refuse(&self, context: u32, rejection: &Rejection, policy: &JwtPolicy, route: Option<&str>) {
        self.metrics.rejected(rejection.metric_label());
        log(
            LogLevel::Info,
            &format!("portcullis-jwt: rejected: {}", rejection.log_reason()),
        );
        let refusal = policy.refusal(rejection);
        host::publish_decision(
            &Record::new(Filter::Jwt, rejection.outcome())
                .reason(rejection.metric_label())
                .status(refusal.status)
                .route(route),
        );
        if refusal.delay_ms == 0 {
            respond(&refusal);
            return;
        }
        // Pingap's `delay`: answer later, from the root context's tick, so that a
        // refusal takes as long whatever the reason (no timing oracle); at once past the
        // bound on waiting streams.
        let due_ms = host::now_millis() + refusal.delay_ms;
        let held = self.delayed.borrow_mut().hold(context, due_ms, refusal);
        if let Err(refusal) = held {
            respond(&refusal);
            return;
        }
        self.retick();
    }
}
