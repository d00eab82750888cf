//! host-test: a proxy-wasm host (ABI 0.2.1) on wasmtime that drives filter modules request by
//! request, as Envoy would, with no Envoy.
//!
//! ```no_run
//! use host_test::{Host, Request};
//! let host = Host::new();
//! let mut acl = host.start("acl", &serde_json::json!({ "allow": ["admins"] }));
//! let exchange = acl.send(Request::get("/payments").route("payments"));
//! assert_eq!(exchange.status(), 401);
//! assert!(!exchange.reached_upstream());
//! ```
//!
//! One [`Host`] is one Envoy process: its plugins share shared data, metrics, logs and the
//! clock. One [`Plugin`] is one VM instance with its root context (one worker's copy of one
//! filter); start several from one host to act as several workers, and move them to threads
//! to race them for real.

pub mod abi;
mod chain;
mod connection_manager;
mod exchange;
pub mod foreign;
mod headers;
mod host;
mod hostcalls;
mod plugin;
mod properties;
mod request;
mod stream;
mod upstream;
mod wasi;

use std::path::PathBuf;

pub use abi::{LogLevel, MetricType, Status};
pub use chain::send;
pub use exchange::{ClientResponse, Exchange};
pub use headers::Headers;
pub use host::{
    GrpcAnswer, GrpcOutcome, GrpcRequest, GrpcService, Host, HttpCallReply, HttpCallRequest,
    LogEntry, Metric, SharedWriter, EPOCH_START_NANOS,
};
pub use plugin::{Metered, Plugin, PluginBuilder, StartError};
pub use request::{Request, DEFAULT_ENVOY_ADDRESS};
pub use stream::LocalResponse;
pub use upstream::{UpstreamRequest, UpstreamResponse};

/// The workspace root (where `dist/` lives).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}

/// `dist/portcullis-<filter>.wasm`, as `make build` writes it. Panics with the fix when the
/// module is missing, so a test never runs against nothing.
pub fn dist(filter: &str) -> PathBuf {
    existing(workspace_root().join(format!("dist/portcullis-{filter}.wasm")))
}

/// `dist/fixtures/<name>.wasm`: test fixtures built by `make build` (the probe filter).
pub fn fixture(name: &str) -> PathBuf {
    existing(workspace_root().join(format!("dist/fixtures/{name}.wasm")))
}

fn existing(path: PathBuf) -> PathBuf {
    assert!(
        path.exists(),
        "{} is missing: run `make build` first",
        path.display()
    );
    path
}
