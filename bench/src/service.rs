//! The cluster-wide rows' back end: Redis and the project's rate limit service, and the
//! counters in Redis that prove a row called it.

use portcullis_tests::ratelimit_service::{ratelimit_binary, RateLimitService};
use portcullis_tests::redis::RedisServer;

use crate::rows::Row;
use crate::wrk::{wrk, Run};

/// Redis and the project's rate limit service, on free ports, files in scratch
/// directories; both stopped when this is dropped.
pub struct Service {
    redis: RedisServer,
    pub service: RateLimitService,
}

impl Service {
    pub fn start() -> anyhow::Result<Service> {
        let redis = RedisServer::start()?;
        let service = RateLimitService::start(&ratelimit_binary(), &redis.url())?;
        Ok(Service { redis, service })
    }

    /// Deletes every counter under `domain` (`{<domain>}:…` keys). The limit is never
    /// reached, so this changes no answer; it lets [`counted`](Self::counted) read one
    /// wrk run, shorter than the 5 s a counter outlives its window, with none expiring.
    fn reset(&self, domain: &str) {
        const DELETE: &str = "for _, k in ipairs(redis.call('KEYS', ARGV[1])) do \
                              redis.call('DEL', k) end return 0";
        let _ = self
            .redis
            .integer(&["EVAL", DELETE, "0", &format!("{{{domain}}}:*")]);
    }

    /// The sum of every counter under `domain`, -1 if Redis fails.
    fn counted(&self, domain: &str) -> i64 {
        const SUM: &str = "local n = 0 for _, k in ipairs(redis.call('KEYS', ARGV[1])) do \
                           n = n + tonumber(redis.call('GET', k)) end return n";
        self.redis
            .integer(&["EVAL", SUM, "0", &format!("{{{domain}}}:*")])
            .ok()
            .flatten()
            .unwrap_or(-1)
    }

    /// One wrk run against `row`, and how many requests the service counted for it
    /// meanwhile (0 for a row that does not call it).
    pub fn load(service: Option<&Service>, row: &Row, url: &str, seconds: u64) -> (Run, i64) {
        let service = row.domain.zip(service);
        if let Some((domain, service)) = service {
            service.reset(domain);
        }
        let run = wrk(url, row.token.as_deref(), seconds);
        let counted = service.map_or(0, |(domain, service)| service.counted(domain));
        (run, counted)
    }
}
