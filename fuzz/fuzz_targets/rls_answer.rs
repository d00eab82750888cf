//! The rate limit service's gRPC answer (a `RateLimitResponse`) as the rate-limiting filter
//! reads it with `policy: redis`: `Limiter::service_answer` never panics, and with
//! `fault_tolerant` a bad answer falls back to counting locally, never a 500.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_core::identity::Identity;
use portcullis_core::rate_limit::{
    Answer, Limiter, RateLimitPolicySet, Reply, RequestFacts, UnixMillis,
};
use portcullis_core::shared::MemoryStore;

/// A request from one IP, nothing else.
struct Facts;

impl RequestFacts for Facts {
    fn source_address(&mut self) -> Option<String> {
        Some("203.0.113.7:40000".to_owned())
    }
    fn header(&mut self, _: &str) -> Option<String> {
        None
    }
    fn header_values(&mut self, _: &str) -> Result<Vec<String>, String> {
        Ok(Vec::new())
    }
    fn path(&mut self) -> Option<String> {
        Some("/payments".to_owned())
    }
    fn identity(&mut self) -> Option<&Identity> {
        None
    }
    fn service(&mut self) -> Option<String> {
        None
    }
}

/// The demo's redis policy: two windows on every route, a tighter minute on payments.
const CONFIG: &str = r#"{
    "minute": 100, "hour": 1000, "limit_by": "ip", "policy": "redis", "fault_tolerant": true,
    "rate_limit_service": {"cluster": "ratelimit", "domain": "shop", "timeout": 250},
    "routes": {"payments": {"minute": 20}}
}"#;

/// 2026-01-01T00:00:10Z.
const NOW: UnixMillis = UnixMillis(1_767_225_610_000);

fuzz_target!(|data: &[u8]| {
    let Ok(set) = RateLimitPolicySet::from_json(CONFIG.as_bytes()) else {
        panic!("the target's own config is refused");
    };
    let Some(settings) = set.service().cloned() else {
        panic!("the target's config has no rate_limit_service");
    };
    let limiter = Limiter::new(set, "rate-limiting");
    // The first byte picks the route, so both the default and a route's policy are read.
    let (route, bytes) = match data.split_first() {
        Some((b, rest)) if b % 2 == 1 => (Some("payments"), rest),
        Some((_, rest)) => (None, rest),
        None => (None, data),
    };
    let Ok(Some(call)) = limiter.service_call(&settings, route, &mut Facts) else {
        panic!("no service call for a plain request");
    };
    let store = MemoryStore::new();
    let answer = limiter.service_answer(&call, Reply::Message(bytes), &store, NOW);
    assert!(
        !matches!(answer, Answer::Failed { .. }),
        "fault_tolerant yet failed"
    );
});
