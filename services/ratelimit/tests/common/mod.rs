//! What the service's test suites share: the binary cargo built, and one plain request.

use std::path::Path;

use envoy_types::pb::envoy::extensions::common::ratelimit::v3::rate_limit_descriptor::{
    Entry, RateLimitOverride,
};
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::rate_limit::Unit;
use envoy_types::pb::envoy::service::ratelimit::v3::RateLimitRequest;

/// The `portcullis-ratelimit` binary built for these tests.
pub fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_portcullis-ratelimit"))
}

/// Domain `edge`, one descriptor `route=users` limited to 10 a day: the first answer says 9
/// remain.
#[allow(dead_code)] // not every suite sends it
pub fn request() -> RateLimitRequest {
    RateLimitRequest {
        domain: "edge".to_owned(),
        descriptors: vec![RateLimitDescriptor {
            entries: vec![Entry {
                key: "route".to_owned(),
                value: "users".to_owned(),
            }],
            limit: Some(RateLimitOverride {
                requests_per_unit: 10,
                unit: Unit::Day as i32,
            }),
            hits_addend: None,
            is_negative_hits: false,
        }],
        hits_addend: 0,
    }
}
