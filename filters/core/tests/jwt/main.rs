//! The jwt policy through its public API, as the glue will use it.

// Test helpers outside `#[test]` functions may fail loudly: clippy.toml's test allowances
// only cover the test functions themselves.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod authenticate;
mod backends;
mod common;
mod config;
mod jwks;
mod source;
