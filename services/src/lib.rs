//! The demo's upstream services — user, order and payment services that answer with who the
//! gateway says is calling, and a login service that checks a username and password — and the
//! renderer of the demo's Envoy config. `make run` runs both; see `envoy-config/README.md`.

pub mod certs;
pub mod cli;
pub mod demo;
pub mod login;
pub mod server;
pub mod service;
