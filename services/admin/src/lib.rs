//! `portcullis-admin`: the Portcullis control plane. It owns consumers, JWT credentials,
//! ACL groups and revocations in SQLite or PostgreSQL, serves Kong's Admin API for them
//! (so scripts written for Kong work unchanged), and tells the gateways what changed
//! through a read-only, versioned data-plane API.
//!
//! | module | holds |
//! |---|---|
//! | [`cli`] | the command line |
//! | [`server`] | the two listeners, the pruner, graceful shutdown |
//! | [`admin_api`] | Kong's Admin API routes |
//! | [`data_plane`] | the gateways' API (`/v1/…`) |
//! | [`http`] | what both listeners share: request, reply, token check, log line |
//! | [`input`] | bodies and query strings read as Kong reads them, field checks |
//! | [`failure`] | why a request failed, as Kong answers it |
//! | [`ops`] | the operations, written once for both databases |
//! | [`model`] | the entities as stored and shown |
//! | [`events`] | the change log: append, feed, prune |
//! | [`store`] | async handlers to blocking transactions |
//! | [`db`] | the database trait, SQLite, PostgreSQL, migrations |
//! | [`import`] | a jwt filter config's static consumers into the database |
//! | [`bench`] | the figures: lookups per second, change-to-event latency |
//! | [`tls`] | TLS and mTLS for both listeners |
//! | [`token`], [`ids`], [`clock`], [`metrics`] | tokens, UUIDs and secrets, time, counters |

pub mod admin_api;
pub mod bench;
pub mod cli;
pub mod clock;
pub mod data_plane;
pub mod db;
pub mod events;
pub mod failure;
pub mod http;
pub mod ids;
pub mod import;
pub mod input;
pub mod metrics;
pub mod model;
pub mod ops;
pub mod server;
pub mod store;
pub mod tls;
pub mod token;

use std::time::Instant;

use crate::store::Store;
use crate::token::Token;

impl App {
    /// Why a browser may have sent this request on its user's behalf, if so, on a listener
    /// guarded by `token`. A token is the guard, when there is one (a browser does not send
    /// it by itself). Client certificates are: but a browser sends one by itself, so a
    /// foreign `Origin` or a cross-site fetch is still refused (with TLS a rebound name
    /// fails the certificate check, so any `Host` is fine). Without either, loopback is
    /// the only guard: see [`crate::http::browser_refusal`].
    pub fn browser_refusal(
        &self,
        token: Option<&Token>,
        headers: &axum::http::HeaderMap,
    ) -> Option<&'static str> {
        if token.is_some() {
            return None;
        }
        let refusal = crate::http::browser_refusal(headers)?;
        if self.client_certificates && refusal == crate::http::FOREIGN_HOST {
            return None;
        }
        Some(refusal)
    }
}

/// What every request handler shares.
pub struct App {
    pub store: Store,
    pub admin_token: Option<Token>,
    pub data_plane_token: Option<Token>,
    pub max_body: usize,
    /// Timeouts and the connection cap of both listeners.
    pub limits: crate::server::Limits,
    /// How long revocations outlive their `expires_at`, and how many may be in force.
    pub revocations: crate::ops::revocations::RevocationPolicy,
    /// TLS for both listeners, if configured.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// Whether every client presented a certificate of `--tls-client-ca`: authenticated,
    /// as by a token.
    pub client_certificates: bool,
    pub started: Instant,
    /// The database, for `/` and the log (no password).
    pub database: String,
}
