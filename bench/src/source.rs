//! The jwt filter's `consumer_source` (#22): credentials looked up in portcullis-admin.
//!
//! Two rows of the `jwt` group send the token of a looked-up credential, each set against
//! its static twin in the same run (`versus`; the target with the cache is ≥ 0.95x); they
//! are warmed until the lookup is done, so the rounds measure cache hits.
//!
//! One portcullis-admin on SQLite (the binary beside this one, else `target/debug`) serves
//! all of it; every Envoy reaches its data plane through the HTTP/1.1 cluster [`CLUSTER`]
//! with `authority: localhost` (without a data-plane token the admin answers loopback Hosts
//! only).

use std::time::{Duration, Instant};

use portcullis_tests::admin_service::AdminService;
use portcullis_tests::{client, tokens, Envoy};
use serde_json::json;

use crate::rows::Row;

/// The admin's data-plane cluster in every Envoy that looks consumers up.
pub const CLUSTER: &str = "portcullis_admin";
/// The rows' looked-up credential: as long as the static rows' key (`bench-issuer`), so
/// both tokens have the same size.
const KEY: &str = "bench-source";
/// 61 bytes, as the static rows' secret: HMAC costs the same.
const SECRET: &str = "bench-only-looked-up-secret-0123456789abcdef-0123456789abcdef";
/// The consumer every credential belongs to, in the group the static consumer has.
const CONSUMER: &str = "bench";
const GROUP: &str = "admins";
/// How long a warm-up may wait for its answer.
const PATIENCE: Duration = Duration::from_secs(15);

/// The jwt configuration of the `consumer_source` rows: every setting at its default but
/// the cluster and authority; `cache: false` turns the token cache off, as in the static
/// row.
pub fn jwt_config(cache: bool) -> String {
    let mut config = json!({
        "consumer_source": { "cluster": CLUSTER, "authority": "localhost" },
    });
    if !cache {
        config["token_cache_size"] = json!(0);
    }
    config.to_string()
}

/// The token the `consumer_source` rows send.
pub fn token() -> String {
    token_for(KEY)
}

/// When the tokens were issued and until when they hold: fixed, as the static rows'
/// (`filters::token`: host-test's start clock, 2026-01-01, and 2100-01-01), so the
/// instruction counts repeat and both rows' tokens have the same size.
const ISSUED_AT: u64 = 1_767_225_600;
const EXPIRES_AT: u64 = 4_102_444_800;

/// A token of the looked-up credential `key`, with the claims of the static rows' token.
fn token_for(key: &str) -> String {
    let claims = json!({ "iss": key, "sub": key, "iat": ISSUED_AT, "exp": EXPIRES_AT,
                         "groups": [GROUP] });
    tokens::sign_raw(
        &json!({ "alg": "HS256", "typ": "JWT" }),
        &claims,
        SECRET.as_bytes(),
    )
}

/// portcullis-admin on a SQLite file of its own, holding the rows' consumer and credential;
/// stopped when dropped.
pub struct Admin {
    service: AdminService,
}

impl Admin {
    pub fn start() -> anyhow::Result<Admin> {
        let service = AdminService::sqlite()?;
        service.create_consumer(CONSUMER, None);
        service.add_group(CONSUMER, GROUP);
        service.create_jwt(CONSUMER, KEY, SECRET);
        Ok(Admin { service })
    }

    /// Its data plane's port, for the Envoy cluster.
    pub fn port(&self) -> u16 {
        self.service.data_plane_address().port()
    }
}

/// Requests `row`'s token on fresh connections until 8 in a row answer 200: the lookup is
/// done and the workers have the credential. Panics past [`PATIENCE`]: such a row would
/// measure refusals.
pub fn warm(row: &Row, envoy: &Envoy) {
    let token = row.token.clone().unwrap_or_default();
    if let Err(last) = until_agreed(envoy, &token, 200, Instant::now()) {
        panic!(
            "{}: the looked-up credential never answered 200: {last}",
            row.name
        );
    }
}

/// The first answer other than `status` on 8 fresh connections (Envoy spreads them over
/// its workers), if any.
fn disagreement(envoy: &Envoy, token: &str, status: u16) -> Option<String> {
    let auth = format!("Bearer {token}");
    (0..8).find_map(|_| {
        let reply = client::get(&envoy.url("/"), &[("authorization", &auth)]);
        (reply.status != status).then(|| format!("{} {}", reply.status, reply.text()))
    })
}

/// Asks until 8 fresh connections in a row answer `status`: the time since `since`, or the
/// last other answer once [`PATIENCE`] has passed.
fn until_agreed(
    envoy: &Envoy,
    token: &str,
    status: u16,
    since: Instant,
) -> Result<Duration, String> {
    loop {
        let Some(other) = disagreement(envoy, token, status) else {
            return Ok(since.elapsed());
        };
        if since.elapsed() > PATIENCE {
            return Err(other);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
