//! Portcullis policy logic shared by every filter.
//!
//! Everything here is plain Rust with no proxy-wasm dependency, so it unit-tests natively
//! with `cargo test`. The filters under `filters/` are thin glue around this crate.
