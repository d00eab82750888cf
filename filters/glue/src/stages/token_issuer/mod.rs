//! The token-issuer stage: the proxy-wasm glue around `portcullis_core::token_issuer`.
//! A login request passes untouched; its successful JSON answer is buffered and replaced by
//! a signed JWT. The stage also answers `jwks_path` with the public keys.
//!
//! How the body is replaced, given Envoy's rules (host-test/README.md): a header map is gone
//! once its callback continues, and pausing response headers stops body delivery unless
//! Envoy's `allow_on_headers_stop_iteration` is set. So by default the response headers
//! continue with `content-length` removed (Envoy then frames the new body itself, chunked
//! on HTTP/1.1) and the body is buffered and swapped. With `allow_on_headers_stop_iteration`
//! the headers are held instead, and set at the end: exact `content-length`, `Set-Cookie`.

mod signing;

use std::cell::RefCell;
use std::collections::HashMap;

use proxy_wasm::hostcalls;
use proxy_wasm::types::{Action, BufferType, LogLevel, MapType};

use portcullis_core::decision::{Filter, Outcome, Record};
use portcullis_core::header_map::is_method_override;
use portcullis_core::token_issuer::{
    BodyOutcome, HeadDecision, Refusal, RequestRoute, ResponseHead, SignError, TokenIssuer,
    Upstream, NO_STORE,
};
use portcullis_core::{log_value, UnixTime};
use signing::Backend;

use crate::chain::{Stage, Step};
use crate::exchange::Exchange;
use crate::host::{self, log, Counter};

const NAME: &str = "portcullis-token-issuer";

struct Metrics {
    issued: Counter,
    upstream_refusals: Counter,
    passed_through: Counter,
    rejected: Counter,
    jwks_served: Counter,
    /// Requests refused for an auth path spelt otherwise than configured.
    misspelt: Counter,
    /// One counter per rejection reason, defined on first use.
    by_reason: RefCell<HashMap<&'static str, Counter>>,
}

impl Metrics {
    fn define() -> Metrics {
        Metrics {
            issued: Counter::define("portcullis_token_issuer_issued_total"),
            upstream_refusals: Counter::define("portcullis_token_issuer_upstream_refusals_total"),
            passed_through: Counter::define("portcullis_token_issuer_passed_through_total"),
            rejected: Counter::define("portcullis_token_issuer_rejected_total"),
            jwks_served: Counter::define("portcullis_token_issuer_jwks_served_total"),
            misspelt: Counter::define("portcullis_token_issuer_misspelt_auth_path_total"),
            by_reason: RefCell::new(HashMap::new()),
        }
    }

    fn rejected(&self, label: &'static str) {
        self.rejected.inc();
        self.by_reason
            .borrow_mut()
            .entry(label)
            .or_insert_with(|| {
                Counter::define(&format!("portcullis_token_issuer_rejected_{label}_total"))
            })
            .inc();
    }
}

/// The token-issuer stage of one worker.
pub struct TokenIssuerStage {
    issuer: TokenIssuer,
    backend: Backend,
    metrics: Metrics,
}

impl TokenIssuerStage {
    /// Publishes this stage's decision record, unless `decision_records` is off.
    fn record(&self, record: &Record<'_>) {
        if self.issuer.decision_records() {
            host::publish_decision(record);
        }
    }

    /// The separate filter's configuration (none: every default, which refuses to start
    /// without a signing key).
    pub fn configure(bytes: Option<Vec<u8>>) -> Option<TokenIssuerStage> {
        let bytes = bytes.unwrap_or_else(|| b"{}".to_vec());
        match TokenIssuer::from_json(&bytes) {
            Ok(issuer) => TokenIssuerStage::new(issuer),
            Err(e) => {
                log(
                    LogLevel::Error,
                    &format!("{NAME}: configuration refused: {e}"),
                );
                None
            }
        }
    }

    /// `None` when there is no random source for the `jti` (logged).
    pub fn new(issuer: TokenIssuer) -> Option<TokenIssuerStage> {
        if signing::jti().is_none() {
            log(
                LogLevel::Error,
                &format!(
                    "{NAME}: no random source for jti (WASI random_get): build for wasm32-wasip1"
                ),
            );
            return None;
        }
        let (backend, why) = signing::choose(&issuer);
        let key = issuer.active_key();
        log(
            LogLevel::Info,
            &format!("{NAME}: signing {} (kid {}) {why}", key.alg(), key.kid()),
        );
        Some(TokenIssuerStage {
            issuer,
            backend,
            metrics: Metrics::define(),
        })
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum State {
    /// Not a login, or finished with it.
    #[default]
    Idle,
    /// A login request went upstream: look at its response.
    Login,
    /// A successful JSON answer is being buffered.
    Buffering,
}

impl Stage for TokenIssuerStage {
    type Request = State;

    const RESPONDS: bool = true;

    fn request(&self, x: &mut Exchange, state: &mut State) -> Step {
        let path = x.header(":path").unwrap_or_default();
        if !self.issuer.watches(&path) {
            // Almost every request: one host call, then on its way.
            return Step::Next;
        }
        let method = x.header(":method").unwrap_or_default();
        // Route and cluster cost a host call each: read only when an auth path names them.
        let needs_upstream = self.issuer.needs_upstream();
        let route = x.route(needs_upstream).map(str::to_owned);
        let cluster = needs_upstream
            .then(|| host::property_text(&["xds", "cluster_name"]))
            .flatten();
        // A login limited to some methods must not be run as one by an override header: the
        // header map (a watched path only) tells whether the request carries one.
        let method_overridden = self.issuer.limits_methods()
            && x.read_headers()
                .map(|headers| headers.names().any(is_method_override))
                .unwrap_or(true);
        let upstream = Upstream {
            route: route.as_deref(),
            cluster: cluster.as_deref(),
            method_overridden,
        };
        match self.issuer.route(&method, &path, &upstream) {
            RequestRoute::Other => Step::Next,
            RequestRoute::Misspelt => {
                // The upstream may serve this spelling as its login: it must not answer
                // unsigned, so it never gets the request.
                self.metrics.misspelt.inc();
                self.record(
                    &Record::new(Filter::TokenIssuer, Outcome::Rejected)
                        .reason("misspelt_auth_path")
                        .status(400)
                        .route(route.as_deref()),
                );
                log(
                    LogLevel::Info,
                    &format!(
                        "{NAME}: refused {method} {}: an auth path spelt otherwise than configured",
                        log_value::quote(&path)
                    ),
                );
                host::respond_json(400, r#"{"message":"Bad request"}"#, &[]);
                Step::Answered
            }
            RequestRoute::Login => {
                *state = State::Login;
                Step::Next
            }
            RequestRoute::Jwks => {
                self.metrics.jwks_served.inc();
                host::respond_json(
                    200,
                    self.issuer.jwks(),
                    &[("cache-control", "public, max-age=300")],
                );
                Step::Answered
            }
            RequestRoute::JwksMethodNotAllowed => {
                host::respond_json(
                    405,
                    r#"{"message":"Method not allowed"}"#,
                    &[("allow", "GET, HEAD")],
                );
                Step::Answered
            }
        }
    }

    fn response_headers(&self, state: &mut State, end_of_stream: bool) -> Action {
        if *state != State::Login {
            return Action::Continue;
        }
        *state = State::Idle;
        let (status, content_type, content_length, content_encoding) = (
            response_header(":status"),
            response_header("content-type"),
            response_header("content-length"),
            response_header("content-encoding"),
        );
        let head = ResponseHead {
            status: status.as_deref(),
            content_type: content_type.as_deref(),
            content_length: content_length.as_deref(),
            content_encoding: content_encoding.as_deref(),
            end_of_stream,
        };
        let issuer = &self.issuer;
        match issuer.inspect(&head) {
            HeadDecision::UpstreamRefusal => {
                // A failed login: the upstream's own answer goes to the client.
                self.metrics.upstream_refusals.inc();
                self.record(
                    &Record::new(Filter::TokenIssuer, Outcome::Rejected).reason("upstream_refusal"),
                );
                Action::Continue
            }
            HeadDecision::PassThrough(why) => {
                self.passed_through(why);
                Action::Continue
            }
            HeadDecision::Refuse(refusal) => self.refuse(&refusal),
            HeadDecision::Buffer if issuer.holds_headers() => {
                // Envoy keeps the headers (StopIteration) and still delivers the body.
                *state = State::Buffering;
                Action::Pause
            }
            HeadDecision::Buffer => {
                // The headers leave now: no stale length, and never cached.
                *state = State::Buffering;
                host::set_response_header("content-length", None);
                for (name, value) in NO_STORE {
                    host::set_response_header(name, Some(value));
                }
                Action::Continue
            }
        }
    }

    fn response_body(&self, state: &mut State, body_size: usize, end_of_stream: bool) -> Action {
        if *state != State::Buffering {
            return Action::Continue;
        }
        let worker = self;
        if let Err(refusal) = worker.issuer.check_size(body_size) {
            *state = State::Idle;
            return self.refuse(&refusal);
        }
        if !end_of_stream {
            return Action::Pause;
        }
        *state = State::Idle;
        let body = hostcalls::get_buffer(BufferType::HttpResponseBody, 0, body_size)
            .ok()
            .flatten()
            .unwrap_or_default();
        let Some(jti) = signing::jti() else {
            let failed = SignError::Failed("no random bytes for jti".into());
            return self.refuse(&Refusal::Signing(failed));
        };
        let now = UnixTime(host::now_secs());
        match worker.issuer.issue(&body, now, jti, &worker.backend) {
            BodyOutcome::Issued(issued) => {
                let replaced = hostcalls::set_buffer(
                    BufferType::HttpResponseBody,
                    0,
                    body_size,
                    issued.body.as_bytes(),
                );
                if let Err(status) = replaced {
                    // The profile must not reach the client in place of its token.
                    let failed = SignError::Failed(format!("replacing the body: {status:?}"));
                    return self.refuse(&Refusal::Signing(failed));
                }
                if worker.issuer.holds_headers() {
                    for (name, value) in issued.headers() {
                        host::set_response_header(name, Some(&value));
                    }
                }
                worker.metrics.issued.inc();
                // Who logged in (the token's `sub`); never the token itself.
                let record = Record {
                    consumer: issued.subject.as_deref(),
                    ..Record::new(Filter::TokenIssuer, Outcome::Issued)
                };
                self.record(&record);
                Action::Continue
            }
            BodyOutcome::PassThrough(why) => {
                self.passed_through(why);
                Action::Continue
            }
            BodyOutcome::Refused(refusal) => self.refuse(&refusal),
        }
    }

    fn response_trailers(&self, state: &mut State) -> Action {
        if *state == State::Buffering {
            // The body never ended on its own: trailers are not a login answer's shape.
            *state = State::Idle;
            self.passed_through("trailers follow the body");
        }
        Action::Continue
    }
}

impl TokenIssuerStage {
    fn passed_through(&self, why: &str) {
        self.metrics.passed_through.inc();
        self.record(&Record::new(Filter::TokenIssuer, Outcome::Skipped).reason("passed_through"));
        log(
            LogLevel::Debug,
            &format!("{NAME}: login answer passed unchanged: {why}"),
        );
    }

    /// Answers 502 in place of the upstream's answer; nothing of its body is sent.
    fn refuse(&self, refusal: &Refusal) -> Action {
        self.metrics.rejected(refusal.metric_label());
        // Signing failing is the gateway's failure; the rest, the login answer's shape.
        let outcome = match refusal {
            Refusal::Signing(_) => Outcome::Failed,
            _ => Outcome::Rejected,
        };
        let record = Record::new(Filter::TokenIssuer, outcome)
            .reason(refusal.metric_label())
            .status(refusal.status());
        self.record(&if outcome == Outcome::Failed {
            record.passed(false)
        } else {
            record
        });
        log(
            LogLevel::Info,
            &format!("{NAME}: no token: {}", refusal.log_reason()),
        );
        host::respond_json(u32::from(refusal.status()), refusal.body(), &[]);
        Action::Pause
    }
}

/// A response header as text; `None` when absent, unreadable or not UTF-8 (the SDK's own
/// getter panics on those).
fn response_header(name: &str) -> Option<String> {
    hostcalls::get_map_value_bytes(MapType::HttpResponseHeaders, name)
        .ok()
        .flatten()
        .and_then(|bytes| String::from_utf8(bytes).ok())
}
