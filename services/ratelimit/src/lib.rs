//! `portcullis-ratelimit`: Envoy's rate limit service
//! (`envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit`) with every counter in
//! Redis. It holds no policy — each descriptor carries its limit in its `limit` override —
//! and no state, so any number of replicas on one Redis count exactly.
//!
//! | module | holds |
//! |---|---|
//! | [`cli`] | the command line |
//! | [`auth`] | who may call: the shared secret, and where the service may listen without it |
//! | [`tls`] | TLS and mutual TLS: certificates read and checked at start-up |
//! | [`config`] | the optional static limits for descriptors without an override |
//! | [`window`] | Envoy's units as calendar UTC windows |
//! | [`key`] | counter keys and their escaping |
//! | [`plan`] | a request checked and turned into counters |
//! | [`script`] | the one atomic Lua script, its arguments and reply |
//! | [`reply`] | the response for what was counted |
//! | [`store`] | the Redis connection: reconnects, timeouts, the readiness `PING` |
//! | [`service`] | the gRPC service: the clock, then the functions above |
//! | [`failure`] | why a call fails, and its gRPC status |
//! | [`metrics`] | what the service counts, and its Prometheus exposition |
//! | [`grpc`] | the gRPC server's outer service: counts every error answer |
//! | [`endpoint`] | the operators' HTTP endpoint: `/metrics`, `/healthz`, `/readyz` |

pub mod auth;
pub mod cli;
pub mod config;
pub mod endpoint;
pub mod failure;
pub mod grpc;
pub mod key;
pub mod metrics;
pub mod plan;
pub mod reply;
pub mod script;
pub mod service;
pub mod store;
pub mod tls;
pub mod window;
