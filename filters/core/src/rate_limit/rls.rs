//! The `redis` policy: every window counted by a rate limit service, over Envoy's own gRPC
//! protocol (`envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit`), so one limit
//! holds across every Envoy node that asks the same service. The project ships such a
//! service (`services/ratelimit`, counters in Redis); envoyproxy/ratelimit and Limitador
//! speak the same protocol.
//!
//! One request makes one call. Each window of each policy that applies is one descriptor:
//! `portcullis_policy=<policy>`, `<key kind>=<key>` (what `limit_by` found), and the limit
//! itself in the descriptor's `limit` override, so the service needs no copy of the policy.
//! The service answers every descriptor at once; the filter turns the answer into Kong's
//! 429 and headers with [`client_headers`], exactly as the local policy does.
//!
//! When the call fails (the service unreachable, slower than `timeout`, Redis down, an
//! answer that does not fit the question), `fault_tolerant` decides: true counts the
//! request in the local shared-data limiter instead ([`Answer::Fallback`]), false answers
//! 500.

use prost::Message;

use super::headers::{client_headers, logged_window, WindowReport};
use super::key::{LimitKey, RequestFacts};
use super::limiter::{Decision, Limiter};
use super::policy::{Policy, Selection, ServiceSettings};
use super::window::Period;
use super::UnixMillis;
use crate::shared::SharedStore;

/// The gRPC service and method called.
pub const SERVICE: &str = "envoy.service.ratelimit.v3.RateLimitService";
pub const METHOD: &str = "ShouldRateLimit";
/// The descriptor entry naming the policy (`global`, `routes.<name>`).
pub const POLICY_ENTRY: &str = "portcullis_policy";

/// `envoy.service.ratelimit.v3.RateLimitRequest`.
#[derive(Clone, PartialEq, Message)]
pub struct RateLimitRequest {
    #[prost(string, tag = "1")]
    pub domain: String,
    #[prost(message, repeated, tag = "2")]
    pub descriptors: Vec<RateLimitDescriptor>,
    #[prost(uint32, tag = "3")]
    pub hits_addend: u32,
}

/// `envoy.extensions.common.ratelimit.v3.RateLimitDescriptor`.
#[derive(Clone, PartialEq, Message)]
pub struct RateLimitDescriptor {
    #[prost(message, repeated, tag = "1")]
    pub entries: Vec<Entry>,
    #[prost(message, optional, tag = "2")]
    pub limit: Option<RateLimitOverride>,
}

/// `RateLimitDescriptor.Entry`.
#[derive(Clone, PartialEq, Message)]
pub struct Entry {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `RateLimitDescriptor.RateLimitOverride`; `unit` is `envoy.type.v3.RateLimitUnit`.
#[derive(Clone, PartialEq, Message)]
pub struct RateLimitOverride {
    #[prost(uint32, tag = "1")]
    pub requests_per_unit: u32,
    #[prost(int32, tag = "2")]
    pub unit: i32,
}

/// `envoy.service.ratelimit.v3.RateLimitResponse` (the fields the filter reads; the
/// others are skipped when decoding).
#[derive(Clone, PartialEq, Message)]
pub struct RateLimitResponse {
    #[prost(int32, tag = "1")]
    pub overall_code: i32,
    #[prost(message, repeated, tag = "2")]
    pub statuses: Vec<DescriptorStatus>,
}

/// `RateLimitResponse.DescriptorStatus`.
#[derive(Clone, PartialEq, Message)]
pub struct DescriptorStatus {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(message, optional, tag = "2")]
    pub current_limit: Option<RateLimit>,
    #[prost(uint32, tag = "3")]
    pub limit_remaining: u32,
    #[prost(message, optional, tag = "4")]
    pub duration_until_reset: Option<ProtoDuration>,
}

/// `RateLimitResponse.RateLimit`.
#[derive(Clone, PartialEq, Message)]
pub struct RateLimit {
    #[prost(string, tag = "3")]
    pub name: String,
    #[prost(uint32, tag = "1")]
    pub requests_per_unit: u32,
    #[prost(int32, tag = "2")]
    pub unit: i32,
}

/// `google.protobuf.Duration`.
#[derive(Clone, PartialEq, Message)]
pub struct ProtoDuration {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

/// `RateLimitResponse.Code`.
pub const CODE_OK: i32 = 1;
pub const CODE_OVER_LIMIT: i32 = 2;

/// `envoy.type.v3.RateLimitUnit` of a period (the same numbers as [`Period::code`]).
pub fn unit(period: Period) -> i32 {
    i32::from(period.code())
}

/// One window asked about: which policy (index into the request's keys), which period,
/// what limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Asked {
    subject: usize,
    period: Period,
    limit: u64,
}

/// One request's question to the service, and what is needed to read the answer and, if
/// the service fails, to count locally instead. Owned: it waits in the HTTP context while
/// the call is out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceCall {
    route: Option<String>,
    keys: Vec<LimitKey>,
    asked: Vec<Asked>,
    /// The encoded `RateLimitRequest`.
    pub message: Vec<u8>,
}

/// What the gRPC call gave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply<'a> {
    /// gRPC status 0 and the response message.
    Message(&'a [u8]),
    /// A gRPC status other than OK (14 unavailable, 4 deadline exceeded, …), or the call
    /// could not even be dispatched (`None`).
    Failed(Option<u32>),
}

/// The request's fate once the service has answered (or failed to).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer<'a> {
    /// The service decided (`Allow` or `Limit`).
    Decided(Decision<'a>),
    /// The service failed and the policy is fault tolerant: `decision` is the local
    /// limiter's, `error` says why the service was not used (log it, count it).
    Fallback {
        decision: Decision<'a>,
        error: String,
    },
    /// The service failed and the policy is not fault tolerant: answer 500.
    Failed { error: String },
}

impl Limiter {
    /// The call to make for a request on `route`, or `None` when no policy applies; or,
    /// when the request cannot be counted (see [`Limiter::keys`]), what to answer instead,
    /// asking nothing.
    pub fn service_call(
        &self,
        settings: &ServiceSettings,
        route: Option<&str>,
        facts: &mut dyn RequestFacts,
    ) -> Result<Option<ServiceCall>, Decision<'_>> {
        let selection = self.policies().select(route);
        if selection.policies.is_empty() {
            return Ok(None);
        }
        let keys = self.keys(route, facts)?;
        let mut asked = Vec::new();
        let mut descriptors = Vec::new();
        for (subject, (policy, key)) in selection.policies.iter().zip(&keys).enumerate() {
            for (period, limit) in &policy.limits {
                asked.push(Asked {
                    subject,
                    period: *period,
                    limit: *limit,
                });
                descriptors.push(RateLimitDescriptor {
                    entries: vec![
                        Entry {
                            key: POLICY_ENTRY.to_owned(),
                            value: policy.name.clone(),
                        },
                        Entry {
                            key: key.kind.tag().to_owned(),
                            value: key.value.clone(),
                        },
                    ],
                    limit: Some(RateLimitOverride {
                        // Configuration refuses limits over u32::MAX with this policy.
                        requests_per_unit: u32::try_from(*limit).unwrap_or(u32::MAX),
                        unit: unit(*period),
                    }),
                });
            }
        }
        let message = RateLimitRequest {
            domain: settings.domain.clone(),
            descriptors,
            hits_addend: 1,
        }
        .encode_to_vec();
        Ok(Some(ServiceCall {
            route: route.map(str::to_owned),
            keys,
            asked,
            message,
        }))
    }

    /// Reads the service's reply to `call`; on a failure, counts locally or refuses as
    /// `fault_tolerant` says.
    pub fn service_answer(
        &self,
        call: &ServiceCall,
        reply: Reply<'_>,
        store: &dyn SharedStore,
        now: UnixMillis,
    ) -> Answer<'_> {
        let selection = self.policies().select(call.route.as_deref());
        let response = selection.response;
        let error = match reply {
            Reply::Message(bytes) => match read(call, bytes, &selection, now) {
                Ok(decision) => return Answer::Decided(decision),
                Err(e) => e,
            },
            Reply::Failed(Some(status)) => format!("the service answered {}", grpc_status(status)),
            Reply::Failed(None) => "the call could not be made".to_owned(),
        };
        if response.fault_tolerant {
            Answer::Fallback {
                decision: self.decide_keyed(call.route.as_deref(), &call.keys, store, now),
                error,
            }
        } else {
            Answer::Failed { error }
        }
    }
}

/// The service's answer as a decision, or why it cannot be one.
fn read<'a>(
    call: &ServiceCall,
    bytes: &[u8],
    selection: &Selection<'a>,
    now: UnixMillis,
) -> Result<Decision<'a>, String> {
    let response = selection.response;
    let answer = RateLimitResponse::decode(bytes)
        .map_err(|e| format!("the service's answer is not a RateLimitResponse: {e}"))?;
    if answer.statuses.len() != call.asked.len() {
        return Err(format!(
            "the service answered {} descriptors of {}",
            answer.statuses.len(),
            call.asked.len()
        ));
    }
    let limited = match answer.overall_code {
        CODE_OK => false,
        CODE_OVER_LIMIT => true,
        other => return Err(format!("the service answered overall code {other}")),
    };
    let reports: Vec<WindowReport> = call
        .asked
        .iter()
        .zip(&answer.statuses)
        .map(|(asked, status)| {
            let exceeded = status.code == CODE_OVER_LIMIT;
            // The service's `current_limit` when it gives one (a service may apply its own
            // limit over the override), else the limit asked for.
            let limit = status
                .current_limit
                .as_ref()
                .filter(|l| l.requests_per_unit > 0)
                .map_or(asked.limit, |l| u64::from(l.requests_per_unit));
            WindowReport {
                period: asked.period,
                limit,
                remaining: if exceeded {
                    0
                } else {
                    u64::from(status.limit_remaining).min(limit)
                },
                reset: reset_secs(status, asked.period, now),
                exceeded,
            }
        })
        .collect();
    if limited && !reports.iter().any(|r| r.exceeded) {
        return Err("the service answered over limit for no descriptor".to_owned());
    }
    let headers = if response.hide_client_headers {
        Vec::new()
    } else {
        client_headers(&reports)
    };
    let window = logged_window(&reports);
    if !limited {
        return Ok(Decision::Allow {
            headers,
            overflowed: false,
            window,
        });
    }
    Ok(Decision::Limit {
        status: response.error_code,
        body: &response.error_body,
        headers,
        reason: reason(call, &selection.policies, &reports),
        overflowed: false,
        window,
    })
}

/// Whole seconds until the window resets, rounded up and at least 1: the service's
/// `duration_until_reset`, or (a service that leaves it out) the calendar window's end.
fn reset_secs(status: &DescriptorStatus, period: Period, now: UnixMillis) -> u64 {
    match &status.duration_until_reset {
        Some(d) if d.seconds >= 0 => {
            let secs = u64::try_from(d.seconds).unwrap_or(0);
            let up = u64::from(d.nanos > 0);
            (secs + up).max(1)
        }
        _ => period.window_at(now.secs()).secs_until_end(now),
    }
}

/// The log line of a refusal: the key, the policy and the window that refused longest.
fn reason(call: &ServiceCall, policies: &[&Policy], reports: &[WindowReport]) -> String {
    let binding = call
        .asked
        .iter()
        .zip(reports)
        .filter(|(_, r)| r.exceeded)
        .max_by_key(|(_, r)| r.reset);
    match binding {
        Some((asked, report)) => format!(
            "{} by {} {}: limit {} reached (rate limit service), retry in {} s",
            call.keys
                .get(asked.subject)
                .map_or_else(|| "unknown".to_owned(), LimitKey::describe),
            policies.get(asked.subject).map_or("?", |p| p.name.as_str()),
            asked.period.name(),
            report.limit,
            report.reset
        ),
        None => "over the limit (rate limit service)".to_owned(),
    }
}

/// A gRPC status for a log line: `14 (unavailable)`.
fn grpc_status(code: u32) -> String {
    let name = match code {
        1 => "cancelled",
        2 => "unknown",
        3 => "invalid argument",
        4 => "deadline exceeded",
        5 => "not found",
        7 => "permission denied",
        8 => "resource exhausted",
        12 => "unimplemented",
        13 => "internal",
        14 => "unavailable",
        16 => "unauthenticated",
        _ => "error",
    };
    format!("gRPC status {code} ({name})")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::rate_limit::headers::{ClientHeaders, Decimal};
    use crate::rate_limit::key::tests::Facts;
    use crate::rate_limit::RateLimitPolicySet;
    use crate::shared::MemoryStore;

    /// 2026-01-01T00:00:10Z.
    const NOW: UnixMillis = UnixMillis(1_767_225_610_000);

    fn limiter(config: serde_json::Value) -> (Limiter, ServiceSettings) {
        let set = RateLimitPolicySet::from_json(config.to_string().as_bytes()).unwrap();
        let settings = set.service().cloned().unwrap();
        (Limiter::new(set, "rate-limiting"), settings)
    }

    fn scenario() -> (Limiter, ServiceSettings) {
        limiter(json!({
            "minute": 100,
            "hour": 1000,
            "limit_by": "ip",
            "policy": "redis",
            "rate_limit_service": {"cluster": "ratelimit", "domain": "shop", "timeout": 250},
            "routes": {"payments": {"minute": 20}}
        }))
    }

    fn status(code: i32, remaining: u32, reset: i64) -> DescriptorStatus {
        DescriptorStatus {
            code,
            current_limit: None,
            limit_remaining: remaining,
            duration_until_reset: Some(ProtoDuration {
                seconds: reset,
                nanos: 0,
            }),
        }
    }

    fn answer(overall: i32, statuses: Vec<DescriptorStatus>) -> Vec<u8> {
        RateLimitResponse {
            overall_code: overall,
            statuses,
        }
        .encode_to_vec()
    }

    /// The limiter's decision on the service's answer `bytes` to `call` (`store` is where a
    /// fallback would count); panics when the answer is a fault or a fallback instead.
    fn decided<'a>(
        limiter: &'a Limiter,
        call: &ServiceCall,
        bytes: &[u8],
        store: &MemoryStore,
    ) -> Decision<'a> {
        match limiter.service_answer(call, Reply::Message(bytes), store, NOW) {
            Answer::Decided(decision) => decision,
            _ => panic!("not decided"),
        }
    }

    fn headers(d: &Decision<'_>) -> ClientHeaders {
        match d {
            Decision::Allow { headers, .. } | Decision::Limit { headers, .. } => headers.clone(),
            _ => Vec::new(),
        }
    }

    fn header<'a>(h: &'a [(&'static str, Decimal)], name: &str) -> Option<&'a str> {
        h.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }

    #[test]
    fn a_request_asks_every_window_of_every_policy_with_its_limit() {
        let (limiter, settings) = scenario();
        assert_eq!(settings.cluster, "ratelimit");
        assert_eq!(settings.timeout_ms, 250);
        let call = limiter
            .service_call(
                &settings,
                Some("payments"),
                &mut Facts::from_ip("203.0.113.7"),
            )
            .unwrap()
            .unwrap();
        let request = RateLimitRequest::decode(call.message.as_slice()).unwrap();
        assert_eq!(request.domain, "shop");
        assert_eq!(request.hits_addend, 1);
        let seen: Vec<(String, String, u32, i32)> = request
            .descriptors
            .iter()
            .map(|d| {
                let limit = d.limit.clone().unwrap();
                (
                    d.entries[0].value.clone(),
                    format!("{}={}", d.entries[1].key, d.entries[1].value),
                    limit.requests_per_unit,
                    limit.unit,
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                ("global".into(), "ip=203.0.113.7".into(), 100, 2),
                ("global".into(), "ip=203.0.113.7".into(), 1000, 3),
                ("routes.payments".into(), "ip=203.0.113.7".into(), 20, 2),
            ]
        );
        assert!(request
            .descriptors
            .iter()
            .all(|d| d.entries[0].key == POLICY_ENTRY));
    }

    #[test]
    fn descriptors_carry_the_client_as_the_local_policy_keys_it() {
        let (limiter, settings) = scenario();
        let ip_entries = |source: &str| {
            let mut facts = Facts {
                source: Some(source.to_owned()),
                ..Facts::default()
            };
            let call = limiter
                .service_call(&settings, Some("payments"), &mut facts)
                .unwrap()
                .unwrap();
            let request = RateLimitRequest::decode(call.message.as_slice()).unwrap();
            request
                .descriptors
                .iter()
                .map(|d| format!("{}={}", d.entries[1].key, d.entries[1].value))
                .collect::<Vec<_>>()
        };
        let one_64 = vec!["ip=2001:db8:1:2::/64".to_owned(); 3];
        assert_eq!(ip_entries("[2001:db8:1:2::1]:40000"), one_64);
        assert_eq!(ip_entries("[2001:db8:1:2:ab:cd:ef:1%eth0]:0"), one_64);
        let v4 = vec!["ip=203.0.113.7".to_owned(); 3];
        assert_eq!(ip_entries("[::ffff:203.0.113.7]:0"), v4);
        assert_eq!(ip_entries("203.0.113.7:40000"), v4);
    }

    #[test]
    fn a_repeated_counted_header_asks_nothing_and_is_refused() {
        let (limiter, settings) = limiter(json!({
            "minute": 100, "limit_by": "header", "header_name": "x-api-key",
            "policy": "redis", "rate_limit_service": {"cluster": "ratelimit"}
        }));
        let mut facts = Facts::from_ip("10.0.0.1")
            .header("x-api-key", "random")
            .header("x-api-key", "k-real");
        let Err(Decision::Reject { status, .. }) =
            limiter.service_call(&settings, Some("users"), &mut facts)
        else {
            panic!("a call was made");
        };
        assert_eq!(status, 400);
    }

    #[test]
    fn a_route_without_policies_makes_no_call() {
        let (limiter, settings) = limiter(json!({
            "policy": "redis",
            "rate_limit_service": {"cluster": "ratelimit"},
            "routes": {"payments": {"minute": 20}}
        }));
        assert_eq!(
            limiter.service_call(&settings, Some("users"), &mut Facts::from_ip("10.0.0.1")),
            Ok(None)
        );
        assert_eq!(settings.domain, "portcullis");
    }

    #[test]
    fn an_ok_answer_admits_with_the_headers_of_the_tightest_window() {
        let (limiter, settings) = scenario();
        let call = limiter
            .service_call(&settings, Some("payments"), &mut Facts::from_ip("10.0.0.1"))
            .unwrap()
            .unwrap();
        let bytes = answer(
            CODE_OK,
            vec![status(1, 97, 50), status(1, 990, 3590), status(1, 17, 50)],
        );
        let store = MemoryStore::new();
        let decision = decided(&limiter, &call, &bytes, &store);
        assert!(matches!(decision, Decision::Allow { .. }));
        let h = headers(&decision);
        assert_eq!(header(&h, "x-ratelimit-limit-minute"), Some("20"));
        assert_eq!(header(&h, "x-ratelimit-remaining-minute"), Some("17"));
        assert_eq!(header(&h, "x-ratelimit-remaining-hour"), Some("990"));
        assert_eq!(header(&h, "ratelimit-remaining"), Some("17"));
        assert_eq!(header(&h, "ratelimit-reset"), Some("50"));
        assert_eq!(header(&h, "retry-after"), None);
        assert_eq!(store.len(), 0, "nothing counted locally");
    }

    #[test]
    fn an_over_limit_answer_refuses_with_kongs_body_and_retry_after() {
        let (limiter, settings) = scenario();
        let call = limiter
            .service_call(&settings, Some("payments"), &mut Facts::from_ip("10.0.0.1"))
            .unwrap()
            .unwrap();
        let bytes = answer(
            CODE_OVER_LIMIT,
            vec![status(1, 80, 50), status(1, 980, 3590), status(2, 0, 50)],
        );
        let store = MemoryStore::new();
        let Answer::Decided(Decision::Limit {
            status: code,
            body,
            headers,
            reason,
            ..
        }) = limiter.service_answer(&call, Reply::Message(&bytes), &store, NOW)
        else {
            panic!("not limited")
        };
        assert_eq!(code, 429);
        assert_eq!(body, r#"{"message":"API rate limit exceeded"}"#);
        assert_eq!(header(&headers, "retry-after"), Some("50"));
        assert_eq!(header(&headers, "x-ratelimit-remaining-minute"), Some("0"));
        assert_eq!(header(&headers, "ratelimit-limit"), Some("20"));
        assert!(
            reason.contains("ip:10.0.0.1 by routes.payments minute"),
            "{reason}"
        );
    }

    #[test]
    fn the_services_current_limit_is_the_one_reported() {
        let (limiter, settings) = scenario();
        let call = limiter
            .service_call(&settings, Some("users"), &mut Facts::from_ip("10.0.0.1"))
            .unwrap()
            .unwrap();
        let mut minute = status(1, 40, 50);
        minute.current_limit = Some(RateLimit {
            name: String::new(),
            requests_per_unit: 50,
            unit: unit(Period::Minute),
        });
        let bytes = answer(CODE_OK, vec![minute, status(1, 990, 3590)]);
        let decision = decided(&limiter, &call, &bytes, &MemoryStore::new());
        let h = headers(&decision);
        assert_eq!(header(&h, "x-ratelimit-limit-minute"), Some("50"));
        assert_eq!(header(&h, "x-ratelimit-remaining-minute"), Some("40"));
        assert_eq!(
            header(&h, "x-ratelimit-limit-hour"),
            Some("1000"),
            "none given: asked"
        );
    }

    #[test]
    fn a_missing_reset_falls_back_to_the_calendar_window() {
        let (limiter, settings) = scenario();
        let call = limiter
            .service_call(&settings, Some("users"), &mut Facts::from_ip("10.0.0.1"))
            .unwrap()
            .unwrap();
        let mut first = status(1, 5, 0);
        first.duration_until_reset = None;
        let bytes = answer(CODE_OK, vec![first, status(1, 6, 1)]);
        let decision = decided(&limiter, &call, &bytes, &MemoryStore::new());
        let h = headers(&decision);
        assert_eq!(
            header(&h, "ratelimit-reset"),
            Some("50"),
            "minute ends at :60"
        );
    }

    #[test]
    fn answers_that_do_not_fit_the_question_are_faults_never_admissions() {
        let (limiter, settings) = limiter(json!({
            "minute": 1,
            "limit_by": "ip",
            "policy": "redis",
            "fault_tolerant": false,
            "rate_limit_service": {"cluster": "ratelimit"}
        }));
        let call = limiter
            .service_call(&settings, None, &mut Facts::from_ip("10.0.0.1"))
            .unwrap()
            .unwrap();
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("garbage", vec![0xff, 0xff, 0xff]),
            ("too few statuses", answer(CODE_OK, vec![])),
            (
                "too many statuses",
                answer(CODE_OK, vec![status(1, 1, 1), status(1, 1, 1)]),
            ),
            ("unknown overall code", answer(0, vec![status(1, 1, 1)])),
            (
                "over limit for nothing",
                answer(CODE_OVER_LIMIT, vec![status(1, 1, 1)]),
            ),
        ];
        for (name, bytes) in cases {
            let got =
                limiter.service_answer(&call, Reply::Message(&bytes), &MemoryStore::new(), NOW);
            assert!(matches!(got, Answer::Failed { .. }), "{name}: {got:?}");
        }
        let got = limiter.service_answer(&call, Reply::Failed(Some(14)), &MemoryStore::new(), NOW);
        let Answer::Failed { error } = got else {
            panic!()
        };
        assert_eq!(error, "the service answered gRPC status 14 (unavailable)");
    }

    #[test]
    fn a_failed_call_counts_locally_when_fault_tolerant() {
        let (limiter, settings) = limiter(json!({
            "minute": 2,
            "limit_by": "ip",
            "policy": "redis",
            "rate_limit_service": {"cluster": "ratelimit"}
        }));
        let store = MemoryStore::new();
        limiter.table().initialise(&store).unwrap();
        let mut statuses = Vec::new();
        for _ in 0..3 {
            let call = limiter
                .service_call(&settings, None, &mut Facts::from_ip("10.0.0.1"))
                .unwrap()
                .unwrap();
            match limiter.service_answer(&call, Reply::Failed(Some(4)), &store, NOW) {
                Answer::Fallback { decision, error } => {
                    assert_eq!(
                        error,
                        "the service answered gRPC status 4 (deadline exceeded)"
                    );
                    statuses.push(match decision {
                        Decision::Allow { .. } => 200,
                        Decision::Limit { status, .. } => status,
                        other => panic!("{other:?}"),
                    });
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(statuses, [200, 200, 429], "the local limit holds meanwhile");
    }

    #[test]
    fn hidden_headers_stay_hidden() {
        let (limiter, settings) = limiter(json!({
            "minute": 5,
            "limit_by": "ip",
            "policy": "redis",
            "hide_client_headers": true,
            "rate_limit_service": {"cluster": "ratelimit"}
        }));
        let call = limiter
            .service_call(&settings, None, &mut Facts::from_ip("10.0.0.1"))
            .unwrap()
            .unwrap();
        let bytes = answer(CODE_OVER_LIMIT, vec![status(2, 0, 3)]);
        let got = limiter.service_answer(&call, Reply::Message(&bytes), &MemoryStore::new(), NOW);
        let Answer::Decided(decision) = got else {
            panic!()
        };
        assert!(matches!(decision, Decision::Limit { .. }));
        assert!(headers(&decision).is_empty());
    }
}
