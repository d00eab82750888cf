//! An issuer whose keys live behind a JWKS URI, fetched through an Envoy cluster: fetched
//! at start, refetched when a token names a key the set lacks (never more often than the
//! floor), the last good set kept through an outage, and one copy shared by every worker.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use host_test::HttpCallRequest;
use serde_json::{json, Value};

/// The JWKS server behind the cluster `jwks`: answers every fetch with the reply set last,
/// and remembers the fetches.
#[derive(Clone)]
struct JwksServer {
    state: Arc<Mutex<(HttpCallReply, Vec<HttpCallRequest>)>>,
}

impl JwksServer {
    fn serve(host: &Host, reply: HttpCallReply) -> JwksServer {
        let server = JwksServer {
            state: Arc::new(Mutex::new((reply, Vec::new()))),
        };
        let state = server.state.clone();
        host.upstream("jwks", move |request| {
            let mut state = state.lock().unwrap();
            state.1.push(request.clone());
            state.0.clone()
        });
        server
    }

    fn answer(&self, reply: HttpCallReply) {
        self.state.lock().unwrap().0 = reply;
    }

    fn fetches(&self) -> usize {
        self.state.lock().unwrap().1.len()
    }

    fn requests(&self) -> Vec<HttpCallRequest> {
        self.state.lock().unwrap().1.clone()
    }
}

/// A JWKS document answer: 200, JSON.
fn jwks(keys: &[Value]) -> HttpCallReply {
    HttpCallReply::ok(json!({ "keys": keys }).to_string())
        .header("content-type", "application/json")
}

fn k1() -> Value {
    rsa_jwk("rsa2048.pub.pem", "k1")
}

fn k2() -> Value {
    ec_jwk("p256.pub.pem", "k2")
}

/// The scene with the issuer `https://corp.example`, whose keys are fetched through `jwks`.
fn remote_config() -> Value {
    config_with(json!({"providers": [{
        "name": "corp",
        "issuer": "https://corp.example",
        "remote_jwks": {
            "cluster": "jwks",
            "uri": "https://keys.corp.example/.well-known/jwks.json",
            "refresh_interval": 60,
            "min_refresh_interval": 30
        }
    }]}))
}

/// A corp token signed by `k1` (RS256) or `k2` (ES256), valid for a day.
fn corp(kid: &str) -> String {
    let alg = if kid == "k2" { "ES256" } else { "RS256" };
    sign(
        alg,
        json!({"kid": kid}),
        json!({"iss": "https://corp.example", "sub": "svc-billing", "iat": NOW - 10,
               "exp": NOW + 86_400}),
    )
}

fn assert_corp(exchange: &Exchange, what: &str) {
    assert_accepted(exchange, what);
    assert_eq!(
        exchange
            .upstream_header("x-credential-identifier")
            .as_deref(),
        Some("corp"),
        "{what}"
    );
    assert_eq!(
        exchange.upstream_header("x-consumer-username").as_deref(),
        Some("svc-billing"),
        "{what}"
    );
}

fn unknown_kid() -> Value {
    message("No credentials found for given 'kid'")
}

#[test]
fn the_first_request_fetches_the_key_set_through_the_cluster_and_waits_for_it() {
    let host = Host::new();
    let server = JwksServer::serve(&host, jwks(&[k1()]).delay(Duration::from_millis(30)));
    let mut jwt = host.start("jwt", &remote_config());
    assert_eq!(server.fetches(), 0, "fetched from on_configure");

    let before = host.now_nanos();
    let exchange = jwt.send(bearer(&corp("k1")));
    assert_corp(&exchange, "the first request");
    // The root context dispatches the fetch at its next tick (1 ms), then 30 ms of fetch.
    assert_eq!(
        host.now_nanos() - before,
        31_000_000,
        "the request did not wait"
    );
    assert_eq!(server.fetches(), 1);
    let fetch = &server.requests()[0];
    assert_eq!(fetch.header(":method"), Some("GET"));
    assert_eq!(fetch.header(":path"), Some("/.well-known/jwks.json"));
    assert_eq!(fetch.header(":authority"), Some("keys.corp.example"));
    assert_eq!(fetch.header("accept"), Some("application/json"));
    assert_eq!(fetch.timeout, Duration::from_millis(5000));
    assert_eq!(
        identity(&exchange),
        Identity {
            username: Some("svc-billing".into()),
            credential: Some("corp".into()),
            ..Identity::default()
        }
    );
    for _ in 0..5 {
        assert_corp(&jwt.send(bearer(&corp("k1"))), "k1 again");
    }
    assert_eq!(server.fetches(), 1, "fetched again without a reason");
    assert_eq!(host.metric_value("portcullis_jwt_jwks_fetched_total"), 1);
    assert_eq!(
        host.metric_value("portcullis_jwt_jwks_fetch_failed_total"),
        0
    );
    // One copy in shared data for every worker of this VM id.
    assert!(host
        .shared_data("portcullis-jwt", "portcullis.jwt.jwks.corp")
        .is_some());
}

#[test]
fn without_requests_the_first_tick_fetches_the_key_set() {
    let host = Host::new();
    let server = JwksServer::serve(&host, jwks(&[k1()]));
    let mut jwt = host.start("jwt", &remote_config());
    jwt.advance(Duration::from_secs(1)).unwrap();
    assert_eq!(server.fetches(), 1);
    assert_corp(&jwt.send(bearer(&corp("k1"))), "k1");
    assert_eq!(server.fetches(), 1);
}

#[test]
fn a_request_arriving_while_another_worker_fetches_is_refused_until_the_keys_land() {
    let host = Host::new();
    let server = JwksServer::serve(&host, jwks(&[k1()]).delay(Duration::from_millis(200)));
    let mut first = host.start("jwt", &remote_config());
    let mut second = host.start("jwt", &remote_config());
    // The first worker's tick starts the fetch; it takes 200 ms.
    first.advance(Duration::from_secs(1)).unwrap();
    assert_eq!(server.fetches(), 1);
    // Like jwt_authn's async_fetch with a fast listener: no keys yet is no entry, and the
    // second worker does not fetch a second copy.
    assert_refused(
        &mut second,
        bearer(&corp("k1")),
        message("Unauthorized"),
        "keys_unavailable",
        "keys still on their way",
    );
    first.advance(Duration::from_millis(200)).unwrap();
    assert_corp(&second.send(bearer(&corp("k1"))), "keys arrived");
    assert_corp(&first.send(bearer(&corp("k1"))), "on the fetching worker");
    assert_eq!(server.fetches(), 1);
}

#[test]
fn a_new_kid_makes_a_request_refetch_and_wait_but_never_more_often_than_the_floor() {
    let host = Host::new();
    let server = JwksServer::serve(&host, jwks(&[k1()]));
    let mut jwt = host.start("jwt", &remote_config());
    assert_corp(&jwt.send(bearer(&corp("k1"))), "k1");

    // The issuer rotates in k2. Within the floor (30 s) a k2 token is refused, unfetched.
    server.answer(jwks(&[k1(), k2()]));
    host.advance(Duration::from_secs(10));
    assert_refused(
        &mut jwt,
        bearer(&corp("k2")),
        unknown_kid(),
        "unknown_kid",
        "k2 within the floor",
    );
    assert_eq!(server.fetches(), 1);

    // Past the floor (but before the refresh period) the k2 request fetches, waits, passes.
    host.advance(Duration::from_secs(20));
    let exchange = jwt.send(bearer(&corp("k2")));
    assert_corp(&exchange, "k2 after the floor");
    assert_eq!(server.fetches(), 2, "the k2 request did not fetch");
    assert_corp(&jwt.send(bearer(&corp("k1"))), "k1 still good");

    // A kid nobody publishes cannot make the filter hammer the issuer.
    for _ in 0..5 {
        assert_refused(
            &mut jwt,
            bearer(&corp("k9")),
            unknown_kid(),
            "unknown_kid",
            "k9",
        );
    }
    assert_eq!(server.fetches(), 2);

    // The issuer retires k1: on the next refresh its tokens stop passing, cached or not.
    server.answer(jwks(&[k2()]));
    host.advance(Duration::from_secs(60));
    assert_refused(
        &mut jwt,
        bearer(&corp("k1")),
        unknown_kid(),
        "unknown_kid",
        "k1 retired",
    );
    assert_eq!(server.fetches(), 3);
    assert_corp(&jwt.send(bearer(&corp("k2"))), "k2 after k1 retired");
    assert_eq!(host.metric_value("portcullis_jwt_jwks_fetched_total"), 3);
}

#[test]
fn a_fetch_that_waits_delays_the_request_not_the_verdict() {
    let host = Host::new();
    let server = JwksServer::serve(&host, jwks(&[k1()]));
    let mut jwt = host.start("jwt", &remote_config());
    assert_corp(&jwt.send(bearer(&corp("k1"))), "k1");
    server.answer(jwks(&[k1(), k2()]).delay(Duration::from_millis(250)));
    host.advance(Duration::from_secs(30));
    let before = host.now_nanos();
    let body = r#"{"order":{"item":"book","qty":2}}"#;
    let exchange = jwt.send(
        Request::post("/orders")
            .route("api")
            .header("authorization", &format!("Bearer {}", corp("k2")))
            .header("content-type", "application/json")
            .body(body),
    );
    assert_corp(&exchange, "k2 after a slow fetch");
    assert_eq!(
        host.now_nanos() - before,
        251_000_000,
        "the request did not wait"
    );
    assert!(exchange.stalled.is_none());
    // The body held back while the request waited arrives whole.
    assert_eq!(exchange.upstream.as_ref().unwrap().body, body.as_bytes());
}

#[test]
fn a_key_replaced_under_the_same_kid_no_longer_verifies_what_it_used_to() {
    let host = Host::new();
    let server = JwksServer::serve(&host, jwks(&[k1()]));
    let mut jwt = host.start("jwt", &remote_config());
    let token = corp("k1");
    assert_corp(&jwt.send(bearer(&token)), "k1");
    assert_corp(&jwt.send(bearer(&token)), "k1, from the cache");
    assert_eq!(host.metric_value("portcullis_jwt_cache_hits_total"), 1);
    // The issuer replaces the key material behind k1 (a compromised key, say).
    server.answer(jwks(&[rsa_jwk_of_private("rsa2048-other.key.pem", "k1")]));
    host.advance(Duration::from_secs(60));
    assert_refused(
        &mut jwt,
        bearer(&token),
        message("Invalid signature"),
        "bad_signature",
        "a token of the replaced key",
    );
    assert_eq!(server.fetches(), 2);
    let fresh = sign_with_other_rsa(
        "RS256",
        json!({"kid": "k1"}),
        json!({"iss": "https://corp.example", "sub": "svc-billing", "exp": NOW + 86_400}),
    );
    assert_corp(&jwt.send(bearer(&fresh)), "a token of the new key");
}

#[test]
fn an_outage_keeps_the_last_good_key_set() {
    let host = Host::new();
    let server = JwksServer::serve(&host, jwks(&[k1()]));
    let mut jwt = host.start("jwt", &remote_config());
    assert_corp(&jwt.send(bearer(&corp("k1"))), "k1");
    let outages = [
        (
            "connection failure",
            HttpCallReply::failure(),
            "fetch failed (no answer)",
        ),
        ("500", HttpCallReply::new(500).body("oops"), "status 500"),
        (
            "not JSON",
            HttpCallReply::ok("<html>maintenance</html>"),
            "unusable document: JWKS is not a JSON object (or repeats a member)",
        ),
        (
            "no keys",
            jwks(&[]),
            "unusable document: JWKS has no usable key",
        ),
        (
            "timeout",
            jwks(&[k2()]).delay(Duration::from_secs(6)),
            "fetch failed (no answer)",
        ),
    ];
    // Due for its refresh (60 s); after that a failed fetch is retried at the floor (30 s).
    host.advance(Duration::from_secs(30));
    for (i, (what, reply, logged)) in outages.into_iter().enumerate() {
        server.answer(reply);
        host.clear_logs();
        host.advance(Duration::from_secs(30));
        let exchange = jwt.send(bearer(&corp("k1")));
        // A timed-out fetch answers on the harness clock later: let it.
        jwt.advance(Duration::from_secs(6)).unwrap();
        assert_eq!(server.fetches(), 2 + i, "{what}: no refresh was tried");
        assert_corp(&exchange, what);
        assert_corp(&jwt.send(bearer(&corp("k1"))), what);
        assert!(
            host.logged(
                LogLevel::Warn,
                &format!(
                    "portcullis-jwt: JWKS of corp not refreshed, keeping the last good set: {logged}"
                )
            ),
            "{what}: {:?}",
            host.logs()
        );
        assert_eq!(
            host.metric_value("portcullis_jwt_jwks_fetch_failed_total"),
            1 + i as i64,
            "{what}"
        );
    }
    // Back in service: the next refresh installs the new set.
    server.answer(jwks(&[k1(), k2()]));
    host.advance(Duration::from_secs(30));
    assert_corp(&jwt.send(bearer(&corp("k2"))), "k2 once the issuer is back");
    assert_eq!(host.metric_value("portcullis_jwt_jwks_fetched_total"), 2);
}

#[test]
fn two_workers_share_one_fetched_copy() {
    let host = Host::new();
    let server = JwksServer::serve(&host, jwks(&[k1()]));
    let mut first = host.start("jwt", &remote_config());
    let mut second = host.start("jwt", &remote_config());
    assert_corp(&first.send(bearer(&corp("k1"))), "first worker");
    assert_corp(&second.send(bearer(&corp("k1"))), "second worker");
    assert_eq!(server.fetches(), 1, "each worker fetched its own copy");

    // One worker fetches the rotated set; the other picks it up from shared data.
    server.answer(jwks(&[k1(), k2()]));
    host.advance(Duration::from_secs(30));
    assert_corp(&first.send(bearer(&corp("k2"))), "k2 on the first worker");
    assert_eq!(server.fetches(), 2);
    assert_corp(&second.send(bearer(&corp("k2"))), "k2 on the second worker");
    assert_eq!(server.fetches(), 2, "the second worker fetched again");

    // A worker of another VM id shares nothing, so it fetches its own.
    let mut other = host
        .filter("jwt")
        .vm_id("another-vm")
        .config_json(&remote_config())
        .started();
    assert_corp(&other.send(bearer(&corp("k2"))), "another VM id");
    assert_eq!(server.fetches(), 3);
}

#[test]
fn a_worker_whose_claim_loses_its_cas_does_not_fetch_even_the_first_time() {
    use portcullis_core::jwt::refresh::RefreshState;
    use portcullis_core::UnixTime;
    let host = Host::new();
    let server = JwksServer::serve(&host, jwks(&[k1()]).delay(Duration::from_millis(200)));
    let mut jwt = host.start("jwt", &remote_config());
    // Another worker claims the very first fetch between this worker's read of the refresh
    // state and its write. The ABI has no create-if-absent, so a claim written while the
    // key did not exist yet would succeed whatever happened meanwhile: the filter creates
    // the key first and claims with a CAS.
    let now = UnixTime(host.now_nanos() / 1_000_000_000 + 1);
    host.on_shared_get(move |key, writer| {
        if key == "portcullis.jwt.refresh.corp" && writer.get(key).is_some() {
            let claimed = RefreshState::default().started(now).encode();
            if writer.get(key) != Some(&claimed[..]) {
                writer.set(key, &claimed);
            }
        }
    });
    jwt.advance(Duration::from_secs(1)).unwrap();
    assert_eq!(server.fetches(), 0, "the other worker's claim stands");
    host.clear_shared_get_hook();
}

/// A token naming corp's issuer and a `kid` nobody publishes, with no valid signature: what
/// an attacker sends to make a worker fetch.
fn unsigned_with_unknown_kid() -> String {
    raw_token(
        r#"{"alg":"RS256","typ":"JWT","kid":"attacker-kid"}"#,
        &json!({"iss": "https://corp.example", "sub": "mallory", "exp": NOW + 86_400}).to_string(),
        b"not a signature",
    )
}

#[test]
fn a_client_that_resets_its_stream_cannot_stall_the_fetch_it_caused() {
    let host = Host::new();
    let server = JwksServer::serve(&host, jwks(&[k1(), k2()]));
    let mut jwt = host.start("jwt", &remote_config());
    assert_corp(&jwt.send(bearer(&corp("k2"))), "k2 while published");
    // The issuer removes k2, and its JWKS server is slow.
    server.answer(jwks(&[k1()]).delay(Duration::from_millis(500)));
    host.advance(Duration::from_secs(30));

    // The attacker's request claims the fetch (unknown kid, past the floor), then its
    // client resets the stream 10 ms in, long before the answer.
    let attack = jwt
        .send(bearer(&unsigned_with_unknown_kid()).client_resets_after(Duration::from_millis(10)));
    assert!(attack.was_reset(), "{attack:?}");
    assert!(!attack.reached_upstream());
    assert_eq!(server.fetches(), 2, "the attacker's request made no fetch");

    // The fetch belongs to the root context: it outlives the stream, lands, installs the set
    // without k2, and releases the claim.
    jwt.advance(Duration::from_millis(500)).unwrap();
    assert_eq!(host.metric_value("portcullis_jwt_jwks_fetched_total"), 2);
    assert_refused(
        &mut jwt,
        bearer(&corp("k2")),
        unknown_kid(),
        "unknown_kid",
        "k2 once the issuer removed it",
    );
    assert_corp(&jwt.send(bearer(&corp("k1"))), "k1 still published");
    // Released: past the floor the next unknown kid fetches again at once.
    host.advance(Duration::from_secs(30));
    server.answer(jwks(&[k1(), k2()]));
    assert_corp(&jwt.send(bearer(&corp("k2"))), "k2 published again");
    assert_eq!(server.fetches(), 3);
}

#[test]
fn resetting_clients_at_a_high_rate_never_keep_a_removed_key_trusted() {
    let host = Host::new();
    let server = JwksServer::serve(&host, jwks(&[k1(), k2()]));
    // Ticks half a second off the whole seconds at which a claim falls due (the refresh
    // state counts seconds), as a real worker's would be: attackers get there first.
    host.advance(Duration::from_millis(500));
    let mut jwt = host.start("jwt", &remote_config());
    assert_corp(&jwt.send(bearer(&corp("k2"))), "k2 while published");
    server.answer(jwks(&[k1()]).delay(Duration::from_millis(500)));
    let removed = host.now_nanos();
    // Every 50 ms an attacker's request with an unknown kid, reset after 10 ms, and every
    // second the key the issuer removed: refused within refresh_interval (60 s) plus the
    // fetch timeout (5 s), whoever wins each claim.
    let mut refused_after = None;
    for i in 0..2000u32 {
        let attack = jwt.send(
            bearer(&unsigned_with_unknown_kid()).client_resets_after(Duration::from_millis(10)),
        );
        assert!(!attack.reached_upstream(), "attack {i}");
        jwt.advance(Duration::from_millis(40)).unwrap();
        if i % 20 == 0 {
            let probe = jwt.send(bearer(&corp("k2")));
            if probe.status() == 401 {
                refused_after = Some(host.now_nanos() - removed);
                break;
            }
        }
    }
    let refused_after = refused_after.expect("k2 still trusted 100 s after its removal");
    assert!(
        refused_after <= 65_000_000_000,
        "k2 refused only {} ms after its removal",
        refused_after / 1_000_000
    );
}

#[test]
fn a_claim_left_by_a_worker_that_went_away_expires() {
    let host = Host::new();
    let server = JwksServer::serve(&host, jwks(&[k1()]).delay(Duration::from_millis(100)));
    let mut gone = host.start("jwt", &remote_config());
    // The first worker's tick claims and dispatches the first fetch, then its VM goes away
    // before the answer: its claim stays in shared data.
    gone.advance(Duration::from_secs(1)).unwrap();
    assert_eq!(server.fetches(), 1);
    drop(gone);
    let mut jwt = host.start("jwt", &remote_config());
    // A claim in flight for less than twice the fetch timeout (5 s) stands.
    assert_refused(
        &mut jwt,
        bearer(&corp("k1")),
        message("Unauthorized"),
        "keys_unavailable",
        "while the lost claim stands",
    );
    assert_eq!(server.fetches(), 1);
    // Past twice the timeout it is presumed lost; the fetch it stood for was an attempt all
    // the same, so the next one waits for the floor (30 s) since then, and no longer.
    jwt.advance(Duration::from_secs(28)).unwrap();
    assert_eq!(server.fetches(), 1, "fetched again within the floor");
    jwt.advance(Duration::from_secs(2)).unwrap();
    assert_eq!(server.fetches(), 2, "the lost claim still stands");
    jwt.advance(Duration::from_millis(100)).unwrap();
    assert_corp(
        &jwt.send(bearer(&corp("k1"))),
        "keys fetched by the next worker",
    );
}
