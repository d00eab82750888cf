//! Portcullis policy logic shared by every filter.
//!
//! Everything here is plain Rust with no proxy-wasm dependency, so it unit-tests natively
//! with `cargo test`. The filters under `filters/` are thin glue around this crate.

pub mod acl;
pub mod config;
pub mod decimal;
pub mod decision;
pub mod envoy_foreign;
pub mod gateway;
pub mod header_map;
pub mod identity;
pub mod jose;
pub mod jwt;
pub mod log_value;
pub mod path;
pub mod rate_limit;
pub mod shared;
pub mod token_issuer;

/// Kong's body for a failure that is not the client's (a host that cannot give what a
/// decision needs, a counter that cannot be kept): every filter answers it with 500.
pub const UNEXPECTED_ERROR_BODY: &str = r#"{"message":"An unexpected error occurred"}"#;

/// Seconds since the Unix epoch, as the host's clock reports them. Policy code never reads a
/// clock: the glue hands `now` in, so tests can stand at any instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UnixTime(pub u64);

impl UnixTime {
    /// The instant as whole seconds since the epoch.
    pub fn secs(self) -> u64 {
        self.0
    }
}
