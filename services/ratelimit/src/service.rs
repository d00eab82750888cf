//! The gRPC service: `envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit`. Reads
//! the clock once per call and hands it to the plain functions that decide.

use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_server::RateLimitService;
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use portcullis_core::rate_limit::UnixMillis;
use tonic::{Request, Response, Status};

use crate::config::Limits;
use crate::failure::Failure;
use crate::plan::plan;
use crate::reply::response;
use crate::script::{counted, Counted};
use crate::store::Store;

/// The service: a store, a clock and the optional static limits — no counters of its own.
pub struct RateLimiter {
    store: Store,
    limits: Limits,
    clock: fn() -> UnixMillis,
}

impl RateLimiter {
    pub fn new(store: Store, limits: Limits, clock: fn() -> UnixMillis) -> RateLimiter {
        RateLimiter {
            store,
            limits,
            clock,
        }
    }

    /// One call: plan at `now`, count in Redis (only if a descriptor is limited), answer.
    pub async fn decide(&self, request: &RateLimitRequest) -> Result<RateLimitResponse, Failure> {
        let now = (self.clock)();
        let plan = plan(request, &self.limits, now)?;
        let counted = if plan.checks.is_empty() {
            Counted {
                admitted: true,
                counts: Vec::new(),
            }
        } else {
            let reply = self.store.count(&plan.checks, now.secs()).await?;
            counted(&reply, plan.checks.len())?
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
        match self.decide(request.get_ref()).await {
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
