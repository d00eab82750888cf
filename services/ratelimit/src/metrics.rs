//! What the service counts, and its Prometheus text exposition (format 0.0.4) for
//! `GET /metrics`. Written by hand, as portcullis-admin's is: a dozen families need no
//! registry, and the service keeps its dependency set.
//!
//! Every count is an atomic, bumped after the fact; the one lock is the map from a domain
//! to its counters, taken for a lookup (a write only the first time a domain is seen) and
//! never held across an await, so scrapes and the gRPC path never wait on each other or
//! on Redis. Domains come from clients: past [`MAX_DOMAINS`] distinct ones, the rest are
//! counted together under [`OTHER_DOMAIN`], so a client cannot grow the exposition (or the
//! memory) without bound.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use envoy_types::pb::envoy::service::ratelimit::v3::RateLimitResponse;

use crate::failure::{Failure, Outage};

/// The most domains counted under their own name.
pub const MAX_DOMAINS: usize = 100;
/// The `domain` label of every domain past the first [`MAX_DOMAINS`].
pub const OTHER_DOMAIN: &str = "_other";

/// Upper bounds (`le`) of the Redis round-trip histogram, in seconds: from a loopback
/// Redis (well under a millisecond) to past the default 100 ms timeout.
pub const ROUND_TRIP_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// How a call was answered, the `answer` label of `portcullis_ratelimit_requests_total`.
const ANSWERS: [&str; 3] = ["ok", "over_limit", "error"];
/// How a descriptor was answered, the `answer` label of
/// `portcullis_ratelimit_descriptors_total`.
const DESCRIPTOR_ANSWERS: [&str; 3] = ["ok", "over_limit", "no_limit"];
/// gRPC status codes by number (Envoy's and tonic's numbering), as labels; 0 (OK) is
/// never an error.
const GRPC_CODES: [&str; 17] = [
    "ok",
    "cancelled",
    "unknown",
    "invalid_argument",
    "deadline_exceeded",
    "not_found",
    "already_exists",
    "permission_denied",
    "resource_exhausted",
    "failed_precondition",
    "aborted",
    "out_of_range",
    "unimplemented",
    "internal",
    "unavailable",
    "data_loss",
    "unauthenticated",
];
/// The `code` label of an error answered at the HTTP level, without a gRPC status.
const HTTP_ERROR: &str = "http";

/// One domain's counts.
#[derive(Default)]
pub struct DomainCounts {
    /// By [`ANSWERS`].
    requests: [AtomicU64; 3],
    /// By [`DESCRIPTOR_ANSWERS`].
    descriptors: [AtomicU64; 3],
}

/// Every count of the service; see the module doc.
pub struct Metrics {
    /// When the process started, Unix seconds.
    started: f64,
    domains: RwLock<HashMap<String, Arc<DomainCounts>>>,
    other: Arc<DomainCounts>,
    /// By [`Failure::INVALID_LABELS`].
    invalid: [AtomicU64; 7],
    clamped: AtomicU64,
    /// Calls answered `UNAVAILABLE`, by [`Outage::ALL`].
    unavailable: [AtomicU64; 6],
    /// Redis failures (calls and readiness probes), by [`Outage::ALL`]; `backoff` stays 0.
    redis_errors: [AtomicU64; 6],
    round_trips: Histogram,
    /// By gRPC code number; the last one is [`HTTP_ERROR`].
    grpc_errors: [AtomicU64; 18],
}

impl Metrics {
    /// Counts from zero, for a process started at `started`.
    pub fn new(started: SystemTime) -> Metrics {
        Metrics {
            started: started
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |since| since.as_secs_f64()),
            domains: RwLock::new(HashMap::new()),
            other: Arc::default(),
            invalid: Default::default(),
            clamped: AtomicU64::new(0),
            unavailable: Default::default(),
            redis_errors: Default::default(),
            round_trips: Histogram::default(),
            grpc_errors: Default::default(),
        }
    }

    /// The counts of `domain` (its own, or [`OTHER_DOMAIN`]'s once [`MAX_DOMAINS`] are
    /// taken).
    pub fn domain(&self, domain: &str) -> Arc<DomainCounts> {
        let known = self
            .domains
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(domain)
            .cloned();
        if let Some(counts) = known {
            return counts;
        }
        let mut domains = self.domains.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(counts) = domains.get(domain) {
            return Arc::clone(counts);
        }
        if domains.len() >= MAX_DOMAINS {
            return Arc::clone(&self.other);
        }
        let counts = Arc::<DomainCounts>::default();
        domains.insert(domain.to_owned(), Arc::clone(&counts));
        counts
    }

    /// One `ShouldRateLimit` call of `domain`, answered with `result`.
    pub fn answered(&self, domain: &DomainCounts, result: &Result<RateLimitResponse, Failure>) {
        let answer = match result {
            Ok(response) => {
                for status in &response.statuses {
                    let index = if status.current_limit.is_none() {
                        2
                    } else if status.code == Code::OverLimit as i32 {
                        1
                    } else {
                        0
                    };
                    bump(&domain.descriptors, index);
                }
                if response.overall_code == Code::OverLimit as i32 {
                    1
                } else {
                    0
                }
            }
            Err(failure) => {
                match failure {
                    Failure::Unavailable(outage, _) => {
                        bump(&self.unavailable, outage_index(*outage))
                    }
                    refused => {
                        if let Some(index) = refused.invalid_label().and_then(|label| {
                            Failure::INVALID_LABELS.iter().position(|l| *l == label)
                        }) {
                            bump(&self.invalid, index);
                        }
                    }
                }
                2
            }
        };
        bump(&domain.requests, answer);
    }

    /// `n` descriptors whose limit was clamped to `--max-limit`.
    pub fn clamped(&self, n: usize) {
        self.clamped.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Redis failed a call or a readiness probe.
    pub fn redis_error(&self, outage: Outage) {
        bump(&self.redis_errors, outage_index(outage));
    }

    /// One script run answered by Redis after `elapsed`.
    pub fn redis_round_trip(&self, elapsed: Duration) {
        self.round_trips.observe(elapsed);
    }

    /// A gRPC call answered with an error: its `grpc-status`, or none for an HTTP-level
    /// error answer.
    pub fn grpc_error(&self, code: Option<i32>) {
        let index = code
            .and_then(|code| usize::try_from(code).ok())
            .filter(|code| (1..GRPC_CODES.len()).contains(code))
            .unwrap_or(GRPC_CODES.len());
        bump(&self.grpc_errors, index);
    }

    /// The Prometheus text exposition, format 0.0.4.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8 * 1024);
        let mut domains: Vec<(String, Arc<DomainCounts>)> = self
            .domains
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(name, counts)| (name.clone(), Arc::clone(counts)))
            .collect();
        domains.sort_by(|a, b| a.0.cmp(&b.0));
        if read(&self.other.requests).iter().any(|n| *n > 0) {
            domains.push((OTHER_DOMAIN.to_owned(), Arc::clone(&self.other)));
        }

        family(
            &mut out,
            "portcullis_ratelimit_requests_total",
            "counter",
            "ShouldRateLimit calls answered, by domain and answer (ok, over_limit, error).",
        );
        for (name, counts) in &domains {
            for (answer, n) in ANSWERS.iter().zip(read(&counts.requests)) {
                let _ = writeln!(
                    out,
                    "portcullis_ratelimit_requests_total{{domain=\"{}\",answer=\"{answer}\"}} {n}",
                    escape(name)
                );
            }
        }
        family(
            &mut out,
            "portcullis_ratelimit_descriptors_total",
            "counter",
            "Descriptors of answered calls, by domain and answer (ok, over_limit, no_limit: no limit, nothing counted).",
        );
        for (name, counts) in &domains {
            for (answer, n) in DESCRIPTOR_ANSWERS.iter().zip(read(&counts.descriptors)) {
                let _ = writeln!(
                    out,
                    "portcullis_ratelimit_descriptors_total{{domain=\"{}\",answer=\"{answer}\"}} {n}",
                    escape(name)
                );
            }
        }
        labelled(
            &mut out,
            "portcullis_ratelimit_invalid_requests_total",
            "Calls refused as malformed (INVALID_ARGUMENT), by reason.",
            "reason",
            Failure::INVALID_LABELS
                .iter()
                .copied()
                .zip(read(&self.invalid)),
        );
        family(
            &mut out,
            "portcullis_ratelimit_clamped_descriptors_total",
            "counter",
            "Descriptors whose limit override was above --max-limit and was counted against it.",
        );
        let _ = writeln!(
            out,
            "portcullis_ratelimit_clamped_descriptors_total {}",
            self.clamped.load(Ordering::Relaxed)
        );
        labelled(
            &mut out,
            "portcullis_ratelimit_unavailable_total",
            "Calls answered UNAVAILABLE because Redis failed, by cause; the caller then applies its failure mode.",
            "cause",
            Outage::ALL
                .iter()
                .map(|outage| outage.metric_label())
                .zip(read(&self.unavailable)),
        );
        labelled(
            &mut out,
            "portcullis_ratelimit_redis_errors_total",
            "Redis failures of calls and readiness probes, by kind.",
            "kind",
            Outage::ALL
                .iter()
                .zip(read(&self.redis_errors))
                .filter(|(outage, _)| outage.is_redis_error())
                .map(|(outage, n)| (outage.metric_label(), n)),
        );
        self.round_trips.render(
            &mut out,
            "portcullis_ratelimit_redis_duration_seconds",
            "Round trips of the rate limit script to Redis that got an answer, in seconds.",
        );
        labelled(
            &mut out,
            "portcullis_ratelimit_grpc_errors_total",
            "gRPC calls answered with an error status, by code (http: an HTTP-level error without one).",
            "code",
            GRPC_CODES
                .iter()
                .copied()
                .chain([HTTP_ERROR])
                .zip(read(&self.grpc_errors))
                .skip(1),
        );
        family(
            &mut out,
            "portcullis_ratelimit_start_time_seconds",
            "gauge",
            "When the process started, in seconds since the Unix epoch.",
        );
        let _ = writeln!(
            out,
            "portcullis_ratelimit_start_time_seconds {}",
            self.started
        );
        family(
            &mut out,
            "portcullis_ratelimit_build_info",
            "gauge",
            "Always 1; the version of portcullis-ratelimit in its label.",
        );
        let _ = writeln!(
            out,
            "portcullis_ratelimit_build_info{{version=\"{}\"}} 1",
            escape(env!("CARGO_PKG_VERSION"))
        );
        out
    }
}

/// Latencies by fixed buckets ([`ROUND_TRIP_BUCKETS`]), in atomics.
#[derive(Default)]
struct Histogram {
    /// Per bucket (not cumulative), the last one past every bound.
    counts: [AtomicU64; 13],
    sum_nanos: AtomicU64,
}

impl Histogram {
    fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let bucket = ROUND_TRIP_BUCKETS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(ROUND_TRIP_BUCKETS.len());
        bump(&self.counts, bucket);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Cumulative buckets, and `_count` equal to the `+Inf` bucket by construction (the
    /// counts are read once).
    fn render(&self, out: &mut String, name: &str, help: &str) {
        family(out, name, "histogram", help);
        let counts = read(&self.counts);
        let mut cumulative = 0u64;
        for (bound, n) in ROUND_TRIP_BUCKETS.iter().zip(counts) {
            cumulative = cumulative.saturating_add(n);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let total = counts.iter().fold(0u64, |sum, n| sum.saturating_add(*n));
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {total}");
        let sum = Duration::from_nanos(self.sum_nanos.load(Ordering::Relaxed)).as_secs_f64();
        let _ = writeln!(out, "{name}_sum {sum}");
        let _ = writeln!(out, "{name}_count {total}");
    }
}

fn outage_index(outage: Outage) -> usize {
    Outage::ALL
        .iter()
        .position(|o| *o == outage)
        .unwrap_or_default()
}

fn bump(counters: &[AtomicU64], index: usize) {
    if let Some(counter) = counters.get(index) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

fn read<const N: usize>(counters: &[AtomicU64; N]) -> [u64; N] {
    counters
        .each_ref()
        .map(|counter| counter.load(Ordering::Relaxed))
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// A counter family with one label whose every value is listed, zeros included: a rate
/// over a series that appears only at its first event misses that event.
fn labelled<'a>(
    out: &mut String,
    name: &str,
    help: &str,
    label: &str,
    values: impl Iterator<Item = (&'a str, u64)>,
) {
    family(out, name, "counter", help);
    for (value, n) in values {
        let _ = writeln!(out, "{name}{{{label}=\"{}\"}} {n}", escape(value));
    }
}

/// A label value as the text format wants it: `\`, `"` and line feed escaped.
pub fn escape(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '"' => escaped.push_str("\\\""),
            '\n' => escaped.push_str("\\n"),
            c => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::{
        DescriptorStatus, RateLimit,
    };

    fn metrics() -> Metrics {
        Metrics::new(UNIX_EPOCH + Duration::from_millis(1_795_624_220_500))
    }

    fn line<'a>(text: &'a str, series: &str) -> Option<&'a str> {
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
    }

    #[test]
    fn counts_answers_and_descriptors_per_domain() {
        let metrics = metrics();
        let edge = metrics.domain("edge");
        let limited = DescriptorStatus {
            code: Code::Ok as i32,
            current_limit: Some(RateLimit::default()),
            ..DescriptorStatus::default()
        };
        let over = DescriptorStatus {
            code: Code::OverLimit as i32,
            ..limited.clone()
        };
        let free = DescriptorStatus {
            code: Code::Ok as i32,
            ..DescriptorStatus::default()
        };
        let admitted = RateLimitResponse {
            overall_code: Code::Ok as i32,
            statuses: vec![limited.clone(), free.clone()],
            ..RateLimitResponse::default()
        };
        let refused = RateLimitResponse {
            overall_code: Code::OverLimit as i32,
            statuses: vec![limited, over, free],
            ..RateLimitResponse::default()
        };
        metrics.answered(&edge, &Ok(admitted.clone()));
        metrics.answered(&edge, &Ok(admitted));
        metrics.answered(&edge, &Ok(refused));
        metrics.answered(&edge, &Err(Failure::NoDescriptors));
        let text = metrics.render();
        let rows = [
            (
                "portcullis_ratelimit_requests_total{domain=\"edge\",answer=\"ok\"}",
                "2",
            ),
            (
                "portcullis_ratelimit_requests_total{domain=\"edge\",answer=\"over_limit\"}",
                "1",
            ),
            (
                "portcullis_ratelimit_requests_total{domain=\"edge\",answer=\"error\"}",
                "1",
            ),
            (
                "portcullis_ratelimit_descriptors_total{domain=\"edge\",answer=\"ok\"}",
                "3",
            ),
            (
                "portcullis_ratelimit_descriptors_total{domain=\"edge\",answer=\"over_limit\"}",
                "1",
            ),
            (
                "portcullis_ratelimit_descriptors_total{domain=\"edge\",answer=\"no_limit\"}",
                "3",
            ),
            (
                "portcullis_ratelimit_invalid_requests_total{reason=\"no_descriptors\"}",
                "1",
            ),
            (
                "portcullis_ratelimit_invalid_requests_total{reason=\"empty_domain\"}",
                "0",
            ),
            ("portcullis_ratelimit_start_time_seconds", "1795624220.5"),
        ];
        for (series, value) in rows {
            assert_eq!(line(&text, series), Some(value), "{series} in\n{text}");
        }
    }

    #[test]
    fn domains_past_the_cap_share_one_label_and_values_are_escaped() {
        let metrics = metrics();
        for n in 0..MAX_DOMAINS + 5 {
            let counts = metrics.domain(&format!("d{n:03}"));
            metrics.answered(&counts, &Err(Failure::EmptyDomain));
        }
        let odd = metrics.domain("a\"b\\c\nd");
        metrics.answered(&odd, &Err(Failure::EmptyDomain));
        let text = metrics.render();
        assert_eq!(
            line(
                &text,
                "portcullis_ratelimit_requests_total{domain=\"_other\",answer=\"error\"}"
            ),
            Some("6")
        );
        assert_eq!(
            text.matches("portcullis_ratelimit_requests_total{").count(),
            3 * (MAX_DOMAINS + 1)
        );
        // A domain seen before the cap keeps its own series.
        let early = metrics.domain("d000");
        metrics.answered(&early, &Err(Failure::EmptyDomain));
        assert_eq!(
            line(
                &metrics.render(),
                "portcullis_ratelimit_requests_total{domain=\"d000\",answer=\"error\"}"
            ),
            Some("2")
        );
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn the_histogram_is_cumulative_and_counts_what_it_sums() {
        let metrics = metrics();
        for micros in [100, 500, 501, 3_000, 200_000, 9_000_000] {
            metrics.redis_round_trip(Duration::from_micros(micros));
        }
        let text = metrics.render();
        let name = "portcullis_ratelimit_redis_duration_seconds";
        let rows = [
            ("_bucket{le=\"0.0005\"}", "2"),
            ("_bucket{le=\"0.001\"}", "3"),
            ("_bucket{le=\"0.005\"}", "4"),
            ("_bucket{le=\"0.1\"}", "4"),
            ("_bucket{le=\"0.25\"}", "5"),
            ("_bucket{le=\"2.5\"}", "5"),
            ("_bucket{le=\"+Inf\"}", "6"),
            ("_count", "6"),
            ("_sum", "9.204101"),
        ];
        for (suffix, value) in rows {
            assert_eq!(
                line(&text, &format!("{name}{suffix}")),
                Some(value),
                "{suffix}"
            );
        }
    }

    #[test]
    fn grpc_errors_by_code_and_unknown_codes_as_http() {
        let metrics = metrics();
        metrics.grpc_error(Some(16));
        metrics.grpc_error(Some(16));
        metrics.grpc_error(Some(12));
        metrics.grpc_error(None);
        metrics.grpc_error(Some(99));
        let text = metrics.render();
        let name = "portcullis_ratelimit_grpc_errors_total";
        assert_eq!(
            line(&text, &format!("{name}{{code=\"unauthenticated\"}}")),
            Some("2")
        );
        assert_eq!(
            line(&text, &format!("{name}{{code=\"unimplemented\"}}")),
            Some("1")
        );
        assert_eq!(line(&text, &format!("{name}{{code=\"http\"}}")), Some("2"));
        assert_eq!(line(&text, &format!("{name}{{code=\"ok\"}}")), None);
    }
}
