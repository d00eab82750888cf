//! The gRPC service: `envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit`. Reads
//! the clock once per call and hands it to the plain functions that decide.

use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_server::RateLimitService;
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use portcullis_core::rate_limit::UnixMillis;
use tonic::{Request, Response, Status};

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::config::Limits;
use crate::failure::Failure;
use crate::metrics::Metrics;
use crate::plan::{plan, Ceilings};
use crate::reply::response;
use crate::script::Counted;
use crate::store::Store;

/// The service: a store, a clock, the optional static limits and the ceilings on what a
/// client may ask — no rate limit counters of its own, only the metrics of what it answered.
pub struct RateLimiter {
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    limits: Limits,
    ceilings: Ceilings,
    clock: fn() -> UnixMillis,
    /// How many calls so far asked past a ceiling, for the log (1st, 2nd, 4th, 8th… logged).
    past_ceiling: AtomicU64,
}

impl RateLimiter {
    pub fn new(
        store: Arc<Store>,
        metrics: Arc<Metrics>,
        limits: Limits,
        ceilings: Ceilings,
        clock: fn() -> UnixMillis,
    ) -> RateLimiter {
        RateLimiter {
            store,
            metrics,
            limits,
            ceilings,
            clock,
            past_ceiling: AtomicU64::new(0),
        }
    }

    /// Logs a call that asked past a ceiling on stderr: the 1st, 2nd, 4th, 8th… so that a
    /// misconfigured or hostile client is visible without flooding the log.
    fn past_ceiling(&self, domain: &str, what: &str) {
        let seen = self.past_ceiling.fetch_add(1, Ordering::Relaxed) + 1;
        if seen.is_power_of_two() {
            eprintln!(
                "portcullis-ratelimit: domain {domain:?}: {what} ({seen} calls past a ceiling so far)"
            );
        }
    }

    /// One call: plan at `now`, count in Redis (only if a descriptor is limited), answer.
    pub async fn decide(&self, request: &RateLimitRequest) -> Result<RateLimitResponse, Failure> {
        let now = (self.clock)();
        let plan = match plan(request, &self.limits, self.ceilings, now) {
            Ok(plan) => plan,
            Err(failure @ Failure::HitsAboveCeiling { .. }) => {
                self.past_ceiling(&request.domain, &format!("refused, {failure}"));
                return Err(failure);
            }
            Err(failure) => return Err(failure),
        };
        self.metrics.clamped(plan.clamped.len());
        for (descriptor, asked) in &plan.clamped {
            self.past_ceiling(
                &request.domain,
                &format!(
                    "descriptors[{descriptor}].limit.requests_per_unit: {asked} clamped to {} (--max-limit)",
                    self.ceilings.limit
                ),
            );
        }
        let counted = if plan.checks.is_empty() {
            Counted {
                admitted: true,
                counts: Vec::new(),
            }
        } else {
            self.store.count(&plan.checks, now.secs()).await?
        };
        Ok(response(&plan, &counted, now))
    }
}

#[tonic::async_trait]
impl RateLimitService for RateLimiter {
    async fn should_rate_limit(
        &self,
        request: Request<RateLimitRequest>,
    ) -> Result<Response<RateLimitResponse>, Status> {
        let request = request.get_ref();
        // Looked up before the call, bumped after it: no lock is held across Redis.
        let domain = self.metrics.domain(&request.domain);
        let answer = self.decide(request).await;
        self.metrics.answered(&domain, &answer);
        match answer {
            Ok(answer) => Ok(Response::new(answer)),
            Err(failure) => Err(failure.status()),
        }
    }
}

/// The host's clock: milliseconds since the Unix epoch (0 if it reads before it).
pub fn system_clock() -> UnixMillis {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis())
        .unwrap_or(0);
    UnixMillis(u64::try_from(millis).unwrap_or(u64::MAX))
}
