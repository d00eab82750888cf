//! The rate-limiting filter's whole policy: Kong's rate-limiting plugin (windows from a second
//! to a year, `limit_by`, its headers and its 429), exact across every worker of one Envoy,
//! in bounded memory.
//!
//! The glue compiles the configuration once ([`RateLimitPolicySet::from_json`]), builds a
//! [`Limiter`] and creates its counter table in shared data ([`table::Table::initialise`]),
//! then per request hands [`Limiter::decide`] the route, the request's facts
//! ([`RequestFacts`]), shared data ([`SharedStore`](crate::shared::SharedStore)) and the time, and acts on the
//! [`Decision`].
//!
//! | module | holds |
//! |---|---|
//! | [`config`] | the JSON fields and their checks |
//! | [`policy`] | the compiled policies, and which apply to a route |
//! | [`key`] | what a request is counted under (`limit_by`, client IP) |
//! | [`window`] | calendar windows and the sliding weight |
//! | [`counter`] | one window's count: rolling, usage, reset and retry times |
//! | [`slot`] | a slot's bytes and the owner hash |
//! | [`table`] | the bounded table of slots: keys, probing, overflow |
//! //! | [`limiter`] | check all, count all, CAS retries, undo |
//! | [`headers`] | Kong's and the IETF draft's response headers |
//! | [`rls`] | `policy: redis`: Envoy's rate limit service protocol, and the local fallback |

pub mod config;
pub mod counter;
pub mod headers;
pub mod key;
pub mod limiter;
pub mod policy;
pub mod rls;
pub mod slot;
pub mod table;
pub mod window;

pub use config::RawConfig;
pub use counter::Algorithm;
pub use key::{LimitBy, RequestFacts};
pub use limiter::{Decision, Limiter, FAULT_BODY};
pub use policy::{Policy, RateLimitPolicySet, ServiceSettings};
pub use rls::{Answer, Reply, ServiceCall};
pub use window::Period;

/// Milliseconds since the Unix epoch, as the host's clock reports them. Handed in by the
/// glue: nothing here reads a clock, so tests stand at any instant (window edges, the 29th
/// of February, a clock stepping back).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UnixMillis(pub u64);

impl UnixMillis {
    /// The whole seconds.
    pub fn secs(self) -> u64 {
        self.0 / 1_000
    }
}
