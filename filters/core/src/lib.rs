//! Portcullis policy logic shared by every filter.
//!
//! Everything here is plain Rust with no proxy-wasm dependency, so it unit-tests natively
//! with `cargo test`. The filters under `filters/` are thin glue around this crate.

pub mod acl;
pub mod envoy_foreign;
pub mod header_map;
pub mod identity;
pub mod jwt;
pub mod log_value;
pub mod path;
pub mod rate_limit;
pub mod token_issuer;

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
