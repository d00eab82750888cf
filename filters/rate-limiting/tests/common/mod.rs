//! What both rate-limiting host-test suites share: the worker they start, the request of one
//! client, and the counters they read.

// Helpers outside `#[test]` functions may fail loudly, and not every test file uses all of
// them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use host_test::{Host, Plugin, Request};
use serde_json::Value;

/// The plugin name (and VM id) every worker of these tests runs under; it names the table.
pub const NAME: &str = "rate-limiting";

/// Starts one worker of the filter under [`NAME`], or fails the test with its refusal.
pub fn worker(host: &Host, config: &Value) -> Plugin {
    host.filter(NAME)
        .vm_id(NAME)
        .root_id(NAME)
        .config_json(config)
        .started()
}

/// `GET /users` on route `users` from the client at `ip`.
pub fn from(ip: &str) -> Request {
    Request::get("/users")
        .route("users")
        .source(&format!("{ip}:40000"))
}

/// The filter's counter `name` (`portcullis_rate_limiting_<name>_total`).
pub fn metric(host: &Host, name: &str) -> i64 {
    host.metric_value(&format!("portcullis_rate_limiting_{name}_total"))
}
