//! The jwt stage: the proxy-wasm glue around `portcullis_core::jwt`. At configure time it
//! compiles the configuration and picks where signatures are checked; from the root context
//! it keeps remote key sets fresh and the consumer source in step; per request it reads the
//! request once, asks the policy, and acts.

mod jwks;
mod source;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::types::LogLevel;

use portcullis_core::decision::{Filter, Outcome, Record};
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
use source::Source;

use crate::chain::{Resume, Stage, Step};
use crate::exchange::Exchange;
use crate::host::{self, log, Counter};
use crate::host_crypto::{self, HostCrypto};

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

/// The jwt stage of one worker: what its requests share with its root context.
pub struct Jwt {
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
    /// Fetches the root context dispatched: token → provider.
    fetches: RefCell<HashMap<u32, String>>,
    /// Calls to the consumer source the root context dispatched.
    source_calls: RefCell<HashMap<u32, Call>>,
}

/// How often the root context looks for delayed refusals to send while any wait.
const DELAY_TICK: Duration = Duration::from_millis(10);
/// How soon the root context dispatches a fetch a request claimed.
const DISPATCH_TICK: Duration = Duration::from_millis(1);

impl Jwt {
    /// Publishes this stage's decision record, unless `decision_records` is off.
    fn record(&self, record: &Record<'_>) {
        if self.policies.decision_records() {
            host::publish_decision(record);
        }
    }

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

impl Jwt {
    /// The separate filter's configuration (none: every default).
    pub fn configure(bytes: Option<Vec<u8>>) -> Option<Jwt> {
        let bytes = bytes.unwrap_or_else(|| b"{}".to_vec());
        match JwtPolicySet::from_json(&bytes) {
            Ok(policies) => Some(Jwt::new(policies)),
            Err(e) => {
                log(
                    LogLevel::Error,
                    &format!("portcullis-jwt: configuration refused: {e}"),
                );
                None
            }
        }
    }

    pub fn new(policies: JwtPolicySet) -> Jwt {
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
        let jwt = Jwt {
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
            fetches: RefCell::new(HashMap::new()),
            source_calls: RefCell::new(HashMap::new()),
        };
        // With remote key sets, look for due refreshes every second. The first fetch is the
        // first request's or the first tick's, not configure time's: Envoy also configures
        // VMs on its main thread and may destroy one at once, losing a fetch started here
        // while its claim kept every worker from fetching for twice the fetch timeout.
        jwt.retick();
        jwt
    }
}

impl Stage for Jwt {
    type Request = ();

    fn request(&self, x: &mut Exchange, _r: &mut ()) -> Step {
        let context = x.context();
        let forged = match x.read_headers() {
            Ok(headers) => self.policies.forged_headers(headers.names()),
            Err(e) => {
                // Nothing can be checked, not even the identity headers to strip: fail closed.
                self.metrics.rejected("headers_unreadable");
                self.record(
                    &Record::new(Filter::Jwt, Outcome::Failed)
                        .reason("headers_unreadable")
                        .status(500),
                );
                log(LogLevel::Error, &format!("portcullis-jwt: {e}"));
                host::respond_json(500, portcullis_core::UNEXPECTED_ERROR_BODY, &[]);
                return Step::Answered;
            }
        };
        // Client-sent identity headers never pass, authenticated or not.
        for name in forged {
            x.set_header(name, None);
        }
        let route = x.route(self.policies.needs_route_name()).map(str::to_owned);
        let RoutePolicy::Protected(policy) = self.policies.for_route(route.as_deref()) else {
            self.record(
                &Record::new(Filter::Jwt, Outcome::Skipped)
                    .reason("no_policy")
                    .route(route.as_deref()),
            );
            return Step::Next;
        };
        let method = x.header(":method").unwrap_or_default();
        if policy.skips_preflight(&method) {
            self.record(
                &Record::new(Filter::Jwt, Outcome::Skipped)
                    .reason("preflight")
                    .route(route.as_deref()),
            );
            return Step::Next;
        }
        let request = Request {
            policy: policy.clone(),
            route,
            waiting_since_ms: None,
        };
        self.decide(context, x, request, true)
    }

    fn done(&self, context: u32) {
        // A client that leaves while its request waits for keys: forget the request; the
        // fetch goes on (it belongs to the root context). One that leaves while its refusal
        // is delayed frees its place in the queue.
        self.waiting.borrow_mut().retain(|w| w.context != context);
        self.delayed.borrow_mut().ended(context);
    }

    fn http_call_answer(
        &self,
        root: u32,
        token: u32,
        body_size: usize,
        resume: &mut Resume<'_>,
    ) -> bool {
        let call = self.source_calls.borrow_mut().remove(&token);
        if let Some(call) = call {
            self.source_answered(root, &call, body_size, resume);
            return true;
        }
        let Some(provider) = self.fetches.borrow_mut().remove(&token) else {
            return false;
        };
        if let Some(remote) = self.remote(&provider) {
            self.fetched(remote, body_size);
        }
        self.settle(root, &provider, resume);
        true
    }

    fn tick(&self, root: u32, resume: &mut Resume<'_>) {
        self.send_delayed(root);
        let claimed: Vec<String> = self.to_dispatch.borrow_mut().drain(..).collect();
        for provider in claimed {
            if let Some(remote) = self.remote(&provider) {
                self.dispatch(root, remote, resume);
            }
        }
        self.tick_source(root, resume);
        let now = UnixTime(host::now_secs());
        for remote in self.policies.remote_jwks() {
            jwks::sync(&mut self.keys.borrow_mut(), &remote.provider);
            let trigger = if self.keys.borrow().generation(&remote.provider).is_some() {
                Trigger::Tick
            } else {
                Trigger::NoKeys
            };
            if jwks::claim(remote, now, trigger) {
                self.dispatch(root, remote, resume);
            }
        }
        self.retick();
    }
}

impl Jwt {
    /// The consumer source's share of a tick: the poll when due, the lookups claimed by
    /// requests, and the requests waiting for another worker's lookup looked at again.
    fn tick_source(&self, root: u32, resume: &mut Resume<'_>) {
        let Some(source) = &self.source else {
            return;
        };
        let settings = source.settings();
        let mut calls = source.poll();
        let keys: Vec<String> = source.to_lookup.borrow_mut().drain(..).collect();
        calls.extend(keys.into_iter().map(|key| Call::Credential { key }));
        self.dispatch_source(root, &settings, calls, resume);
        self.settle_lookups(root, None, resume);
    }

    fn dispatch_source(
        &self,
        root: u32,
        settings: &portcullis_core::jwt::source::ConsumerSource,
        calls: Vec<Call>,
        resume: &mut Resume<'_>,
    ) {
        for call in calls {
            match source::dispatch(settings, &call) {
                Ok(token) => {
                    self.source_calls.borrow_mut().insert(token, call);
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
                    if let Some(source) = &self.source {
                        source.answered(&call, None, &[]);
                    }
                    if let Call::Credential { key } = &call {
                        self.settle_lookups(root, Some(key), resume);
                    }
                }
            }
        }
    }

    fn source_answered(&self, root: u32, call: &Call, body_size: usize, resume: &mut Resume<'_>) {
        let Some(source) = &self.source else {
            return;
        };
        let (status, body) = host::http_call_response(body_size);
        let more = source.answered(call, status.as_deref(), &body);
        let settings = source.settings();
        self.dispatch_source(root, &settings, more, resume);
        match call {
            Call::Credential { key } => self.settle_lookups(root, Some(key), resume),
            // Changes applied may answer other workers' waiting requests sooner.
            _ => self.settle_lookups(root, None, resume),
        }
    }

    /// Decides again the requests waiting for a lookup (of `key`, or all): each finds the
    /// answer, keeps waiting (within `timeout_ms`), or is refused.
    fn settle_lookups(&self, root: u32, key: Option<&str>, resume: &mut Resume<'_>) {
        self.settle_where(
            root,
            |awaits| match awaits {
                Awaits::Lookup(k) => key.is_none_or(|key| key == k),
                Awaits::Keys(_) => false,
            },
            resume,
        );
    }

    /// Sends the delayed refusals that are due, each on its own stream; a stream that is
    /// gone (the client left) is skipped.
    fn send_delayed(&self, root: u32) {
        let due = self.delayed.borrow_mut().due(host::now_millis());
        for (context, refusal) in due {
            if hostcalls::set_effective_context(context).is_ok() {
                respond(&refusal);
            }
        }
        let _ = hostcalls::set_effective_context(root);
    }

    /// Dispatches a fetch this worker claimed, from the root context, so that it lives as
    /// long as the VM whatever becomes of the request that wanted it. A fetch that cannot
    /// be dispatched releases the claim and settles the requests waiting for it.
    fn dispatch(&self, root: u32, remote: &RemoteJwks, resume: &mut Resume<'_>) {
        match jwks::fetch(remote) {
            Ok(token) => {
                self.fetches
                    .borrow_mut()
                    .insert(token, remote.provider.clone());
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
                self.metrics.jwks_failed.inc();
                self.settle(root, &remote.provider, resume);
            }
        }
    }

    /// Decides the requests that waited for `provider`'s fetch, each on its own stream (a
    /// stream that is gone is skipped), with the keys as good as they will get.
    fn settle(&self, root: u32, provider: &str, resume: &mut Resume<'_>) {
        self.settle_where(
            root,
            |awaits| matches!(awaits, Awaits::Keys(p) if p == provider),
            resume,
        );
    }

    /// Takes the waiting requests `settles` picks and decides each again on its own stream
    /// (a stream that is gone is skipped): it goes on, is refused, or waits anew.
    fn settle_where(&self, root: u32, settles: impl Fn(&Awaits) -> bool, resume: &mut Resume<'_>) {
        let settled: Vec<Waiting> = {
            let mut waiting = self.waiting.borrow_mut();
            let (settled, still) = waiting.drain(..).partition(|w| settles(&w.awaits));
            *waiting = still;
            settled
        };
        for w in settled {
            if hostcalls::set_effective_context(w.context).is_err() {
                continue;
            }
            let context = w.context;
            let mut request = Some(w.request);
            resume(context, &mut |x| match request.take() {
                Some(request) => self.decide(context, x, request, false),
                None => Step::Answered,
            });
        }
        let _ = hostcalls::set_effective_context(root);
        self.retick();
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

/// What the stage reads from a request, once: the rest is in its [`Exchange`].
struct Request {
    policy: std::sync::Arc<JwtPolicy>,
    /// The route name, when the policy set needed it (for the access log too).
    route: Option<String>,
    /// When it first waited for a lookup (milliseconds): it waits at most `timeout_ms`.
    waiting_since_ms: Option<u64>,
}

impl Jwt {
    /// Authenticates the request of stream `context` (the effective context) and acts:
    /// continue with the identity handed on, refuse, or (once, when `may_fetch`) claim a
    /// fetch of a provider's keys for the root context to dispatch, and pause until it lands.
    fn decide(&self, context: u32, x: &mut Exchange, request: Request, may_fetch: bool) -> Step {
        let policy = request.policy.clone();
        let now = UnixTime(x.now_millis() / 1000);
        // Read when the request came in (an unreadable map was refused then).
        let sources = match x.read_headers() {
            Ok(headers) => TokenSources::from_headers(policy.locations(), headers.iter()),
            Err(_) => TokenSources::default(),
        };
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
                        return Step::Wait;
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
                return Step::Wait;
            }
        }
        let route = request.route.as_deref();
        match outcome {
            Ok(accepted) => {
                self.accept(x, &accepted, &policy, route);
                Step::Next
            }
            Err(rejection) => {
                self.refuse(context, &rejection, &policy, route);
                Step::Answered
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
        x: &mut Exchange,
        accepted: &Accepted,
        policy: &JwtPolicy,
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
            let edits = match x.read_headers() {
                Ok(headers) => hide(&accepted.token_locations, headers),
                Err(_) => Vec::new(),
            };
            for (name, value) in edits {
                x.set_header(name, value.as_deref());
            }
        }
        for (name, value) in accepted.upstream_headers() {
            x.set_shared_header(name, value);
        }
        x.publish_identity(&accepted.handoff);
        self.record(
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
        self.record(
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
