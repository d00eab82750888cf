//! The jwt filter's `consumer_source` (#22): credentials looked up in portcullis-admin.
//!
//! Two rows of the `jwt` group send the token of a looked-up credential, each set against
//! its static twin in the same run (`versus`; the target with the cache is ≥ 0.95x); they
//! are warmed until the lookup is done, so the rounds measure cache hits. Below the tables,
//! [`report`] measures what the rows cannot:
//! - the wasm instructions of a looked-up credential's first request and of the same request
//!   again (host-test, its `portcullis_admin` cluster answered by the same admin), next to
//!   the same credential configured statically;
//! - *the first request on a miss*: credentials created, then each key's first request
//!   timed as a client sees it (a fresh connection; the lookup happens inside), next to the
//!   same request again, its key cached, in the same run;
//! - *propagation at the defaults*: a credential created for a key already refused as
//!   unknown, timed until 8 fresh connections answer 200 (every worker), the creations
//!   spread over the poll cycle — the bound is `poll_interval_ms` + one round trip.
//!
//! One portcullis-admin on SQLite (the binary beside this one, else `target/debug`) serves
//! all of it; every Envoy reaches its data plane through the HTTP/1.1 cluster [`CLUSTER`]
//! with `authority: localhost` (without a data-plane token the admin answers loopback Hosts
//! only).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use host_test::{HttpCallReply, Request};
use portcullis_tests::admin_service::{admin_binary, AdminService};
use portcullis_tests::{client, config, paths, tokens, Envoy};
use serde_json::json;

use crate::envoy::{start, Backends};
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
/// The default `poll_interval_ms`, which the propagation trials run at.
const POLL_INTERVAL: Duration = Duration::from_millis(1000);
/// #22's bound at the defaults: `poll_interval_ms` + one round trip, "≤ 2 s".
const BOUND: Duration = Duration::from_secs(2);
/// Between two timed lookups: ≤ 66 per second, under the default `max_lookups_per_second`
/// (100), past which an unknown key is refused with 503.
const LOOKUP_SPACING: Duration = Duration::from_millis(15);
/// How long a warm-up, or a trial, may wait for its answer.
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
        self.data_plane().port()
    }

    fn data_plane(&self) -> SocketAddr {
        self.service.data_plane_address()
    }

    /// Creates a consumer called `username`, in no group.
    fn consumer(&self, username: &str) {
        self.service.create_consumer(username, None);
    }

    /// Creates `username`'s credential `key`, signing with [`SECRET`].
    fn credential(&self, username: &str, key: &str) {
        self.service.create_jwt(username, key, SECRET);
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

/// One Envoy whose jwt looks consumers up, with every setting at its default (the token
/// cache on).
fn envoy(admin: &Admin, concurrency: u32) -> Envoy {
    let filter = config::portcullis_filter("jwt", Some(&jwt_config(true)));
    let row = Row::new("consumer_source", "jwt", filter, None).source();
    let backends = Backends {
        admin: Some(admin.port()),
        ..Backends::default()
    };
    start(&row, backends, concurrency)
}

/// The `p` quantile (0..=1) of `times` by nearest rank, in ms.
fn quantile(times: &[Duration], p: f64) -> f64 {
    let mut ms: Vec<f64> = times.iter().map(|t| t.as_secs_f64() * 1e3).collect();
    ms.sort_by(f64::total_cmp);
    let rank = ((p * ms.len() as f64).ceil() as usize).clamp(1, ms.len().max(1));
    ms.get(rank - 1).copied().unwrap_or(0.0)
}

/// The figures below the tables: the instructions of a looked-up credential's requests, what
/// a miss costs the request that makes it, and how soon a credential created in the admin
/// answers everywhere. `quick`: fewer keys and trials.
pub fn report(admin: &Admin, quick: bool) {
    let (keys, trials) = if quick { (20, 3) } else { (200, 10) };
    let built = admin_binary();
    let profile = built
        .parent()
        .and_then(|p| p.file_name())
        .map_or("?".into(), |p| p.to_string_lossy().into_owned());
    println!(
        "\n## jwt consumer_source: portcullis-admin ({profile} build, SQLite) behind the cluster `{CLUSTER}`\n"
    );
    // First, while the admin's feed is as short on every run: the counts repeat.
    instructions(admin);
    first_requests(admin, keys);
    propagation(admin, trials);
}

/// `keys` credentials created, then each key's first request and the same request again,
/// timed on fresh connections at `--concurrency 1`. Three keys before them warm the Envoy
/// up (its first lookup waits for the revocations to load).
fn first_requests(admin: &Admin, keys: usize) {
    const WARM_UP: usize = 3;
    let names: Vec<String> = (0..WARM_UP + keys)
        .map(|i| format!("miss-{i:04}"))
        .collect();
    // The admin keeps at most 100 credentials per consumer.
    for (n, keys) in names.chunks(50).enumerate() {
        let username = format!("miss-{n}");
        admin.consumer(&username);
        for key in keys {
            admin.credential(&username, key);
        }
    }
    let envoy = envoy(admin, 1);
    let url = envoy.url("/");
    let (mut misses, mut hits, mut refused) = (Vec::new(), Vec::new(), 0);
    for (i, key) in names.iter().enumerate() {
        let token = token_for(key);
        if i < WARM_UP {
            if let Err(last) = until_agreed(&envoy, &token, 200, Instant::now()) {
                println!("- first request on a miss: the warm-up never answered 200: {last}");
                return;
            }
            continue;
        }
        let auth = format!("Bearer {token}");
        let timed = || {
            let started = Instant::now();
            let status = client::get(&url, &[("authorization", &auth)]).status;
            (started.elapsed(), status)
        };
        let (miss, first) = timed();
        let (hit, again) = timed();
        misses.push(miss);
        hits.push(hit);
        refused += usize::from(first != 200) + usize::from(again != 200);
        std::thread::sleep(LOOKUP_SPACING);
    }
    println!(
        "- first request on a miss (`--concurrency 1`; {keys} credentials created, then each \
         key's first request, a fresh connection each, the lookup inside): p50 {:.2} ms, \
         p99 {:.2} ms; the same request again, its key cached: p50 {:.2} ms, p99 {:.2} ms{}",
        quantile(&misses, 0.5),
        quantile(&misses, 0.99),
        quantile(&hits, 0.5),
        quantile(&hits, 0.99),
        if refused > 0 {
            format!(" ({refused} answers other than 200!)")
        } else {
            String::new()
        }
    );
}

/// `trials` credentials created for keys every worker already refuses as unknown, each timed
/// from just before the Admin API call until 8 fresh connections answer 200, at
/// `--concurrency 2` and the default `poll_interval_ms`. A first, untimed creation puts the
/// trials at one phase of the poll cycle (a credential just followed: a poll just answered);
/// then trial `j` (from 0) waits `j / trials` of the poll interval after the previous one
/// settled, so the creations sweep the whole cycle, one of them within `1 / trials` of its
/// worst moment (just after a poll), rather than all landing at the same phase.
fn propagation(admin: &Admin, trials: usize) {
    let envoy = envoy(admin, 2);
    admin.consumer("late");
    let mut took = Vec::new();
    let mut failures = Vec::new();
    for n in 0..=trials {
        let key = format!("late-{n:04}");
        let token = token_for(&key);
        if let Err(last) = until_agreed(&envoy, &token, 401, Instant::now()) {
            failures.push(format!("{key} was not refused first: {last}"));
            continue;
        }
        if let Some(j) = n.checked_sub(1) {
            std::thread::sleep(POLL_INTERVAL.mul_f64(j as f64 / trials as f64));
        }
        let since = Instant::now();
        admin.credential("late", &key);
        match until_agreed(&envoy, &token, 200, since) {
            Ok(t) if n > 0 => took.push(t),
            Ok(_) => {}
            Err(last) => failures.push(format!("{key} never answered 200: {last}")),
        }
    }
    let max = took.iter().max().copied().unwrap_or_default();
    println!(
        "- propagation at the defaults (`poll_interval_ms` {}, `--concurrency 2`; {trials} \
         trials: a credential created for a key every worker refuses as unknown, until 8 \
         fresh connections answer 200): max {:.0} ms, p50 {:.0} ms (bound: the poll interval \
         + one round trip, ≤ {} s){}{}",
        POLL_INTERVAL.as_millis(),
        max.as_secs_f64() * 1e3,
        quantile(&took, 0.5),
        BOUND.as_secs(),
        if max > BOUND {
            " (past the bound!)"
        } else {
            ""
        },
        if failures.is_empty() {
            String::new()
        } else {
            format!(" ({}!)", failures.join("; "))
        },
    );
}

/// host-test's wasm instructions for a looked-up credential's first request (the lookup
/// dispatched, its answer read) and the same request again (a cache hit), next to the same
/// credential configured statically. host-test answers the cluster with the admin's own
/// answers.
fn instructions(admin: &Admin) {
    let data_plane = admin.data_plane();
    let count = |config: String, token: &str| -> Result<[(u64, u64, u64); 2], String> {
        let host = host_test::Host::new();
        host.upstream(CLUSTER, move |request| {
            let path = request.header(":path").unwrap_or("/");
            let reply = client::get(
                &format!("http://{data_plane}{path}"),
                &[("accept", "application/json")],
            );
            let mut answer = HttpCallReply::new(reply.status).body(reply.body.clone());
            if let Some(kind) = reply.header("content-type") {
                answer = answer.header("content-type", kind);
            }
            answer
        });
        let mut jwt = host
            .plugin(paths::wasm("jwt"))
            .name("jwt")
            .config(config)
            .start()
            .map_err(|e| e.to_string())?;
        // The first tick: the source loads the revocations before admitting anyone.
        jwt.advance(Duration::from_millis(150))?;
        let request = || Request::get("/").header("authorization", &format!("Bearer {token}"));
        let first = jwt.send(request());
        let again = jwt.send(request());
        if !(first.reached_upstream() && again.reached_upstream()) {
            return Err(format!("refused: {} {}", again.status(), again.body_text()));
        }
        Ok([first, again].map(|e| (e.instructions(), e.host_calls(), e.reentries())))
    };
    // The same credential, consumer and token, configured statically.
    let credential = json!({ "key": KEY, "algorithm": "HS256", "secret": SECRET });
    let fixed = json!({
        "consumers": [{ "username": CONSUMER, "groups": [GROUP], "credentials": [credential] }],
    });
    let looked_up = count(jwt_config(true), &token());
    let fixed = count(fixed.to_string(), &token());
    match (looked_up, fixed) {
        (Ok([first, again]), Ok([_, fixed])) => {
            let said = |(instructions, calls, values): (u64, u64, u64)| {
                format!("{instructions}, {calls} host calls ({values} returning a value)")
            };
            println!(
                "- wasm instructions (host-test, the same admin answering): a looked-up \
                 credential's first request {}; again, a cache hit: {}; the same credential \
                 configured statically, repeated: {}",
                said(first),
                said(again),
                said(fixed)
            );
        }
        (looked_up, fixed) => println!(
            "- wasm instructions: failed ({:?} / {:?})",
            looked_up.err(),
            fixed.err()
        ),
    }
}
