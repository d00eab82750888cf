//! Portcullis end-to-end test helpers: a real Envoy ([`Envoy`]) in front of real recording
//! upstreams ([`Upstream`]), configured from YAML ([`config`]) and driven by a small HTTP
//! client ([`client`]). Beside them, the project's services as processes
//! ([`ratelimit_service`], [`admin_service`]) and real Redis ([`redis`]) and PostgreSQL
//! ([`postgres`]). Every resource — ports, scratch directories, Envoy base ids — is per
//! test, so tests run in parallel.
//!
//! ```no_run
//! use portcullis_tests::{client, config, Envoy, Gateway, Upstream};
//!
//! let users = Upstream::start("users");
//! let gateway = Gateway::new()
//!     .route("users", "/users", &users)
//!     .filter(config::portcullis_filter("jwt", Some("{}")));
//! let envoy = Envoy::builder(gateway.render()).start().unwrap();
//! let reply = client::get(&envoy.url("/users"), &[("x-trace", "1")]);
//! assert_eq!(reply.status, 200);
//! assert_eq!(users.requests()[0].header("x-trace"), Some("1"));
//! ```

pub mod admin_service;
pub mod certs;
mod chunked;
pub mod client;
pub mod config;
pub mod envoy;
pub mod headers;
pub mod load;
pub mod paths;
pub mod postgres;
pub mod ratelimit_service;
pub mod redis;
pub mod release;
pub mod service;
pub mod tokens;
pub mod upstream;

pub use client::Reply;
pub use config::Gateway;
pub use envoy::{Envoy, EnvoyBuilder};
pub use upstream::{Recorded, Response, Upstream};
