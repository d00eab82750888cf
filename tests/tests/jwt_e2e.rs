//! The jwt filter in a real Envoy (two workers) in front of a real recording upstream:
//! tokens of every family accepted with Kong's headers upstream, every main rejection class
//! stopped before the upstream, forged identity headers removed, a remote JWKS served by a
//! loopback server through an Envoy cluster (rotation and outage), and what an operator sees
//! in `/stats/prometheus` and in Envoy's log.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use portcullis_tests::config::portcullis_filter;
use portcullis_tests::tokens::{self, b64, now, public_pem, sign_raw};
use portcullis_tests::{client, Envoy, Gateway, Reply, Response, Upstream};
use serde_json::{json, Value};

const HS256_SECRET: &str = "e2e-only-hs256-secret-0123456789";
const HS512_SECRET: &str = "e2e-only-hs512-secret-0123456789e2e-only-hs512-secret-0123456789";

/// Every family Envoy's host crypto or the module verifies.
const ALGORITHMS: [&str; 8] = [
    "HS256", "HS512", "RS256", "RS512", "PS256", "ES256", "ES384", "EdDSA",
];

fn secret(alg: &str) -> &'static str {
    if alg == "HS512" {
        HS512_SECRET
    } else {
        HS256_SECRET
    }
}

fn key_for(alg: &str) -> String {
    format!("{}-key", alg.to_lowercase())
}

/// Consumer alice with one credential per algorithm, a public route, and (when given) an
/// issuer whose keys come from the JWKS server's cluster.
fn jwt_config(jwks_cluster: Option<&str>) -> String {
    jwt_config_refreshing(jwks_cluster, 600, 2000)
}

/// [`jwt_config`] with the remote JWKS refreshed every `refresh_interval` seconds and
/// fetched with `timeout_ms`.
fn jwt_config_refreshing(
    jwks_cluster: Option<&str>,
    refresh_interval: u64,
    timeout_ms: u64,
) -> String {
    let credentials: Vec<Value> = ALGORITHMS
        .iter()
        .map(|alg| {
            if alg.starts_with("HS") {
                json!({"key": key_for(alg), "algorithm": alg, "secret": secret(alg)})
            } else {
                json!({"key": key_for(alg), "algorithm": alg, "public_key": public_pem(alg)})
            }
        })
        .collect();
    let mut config = json!({
        "consumers": [{"username": "alice", "id": "c-alice", "custom_id": "ext-1",
                       "groups": ["admins", "ops"], "credentials": credentials}],
        "claims_to_headers": {"sub": "x-jwt-sub"},
        "routes": {"docs": {"public": true}}
    });
    if let Some(cluster) = jwks_cluster {
        config["providers"] = json!([{
            "name": "corp",
            "issuer": "https://corp.example",
            "remote_jwks": {
                "cluster": cluster,
                "uri": "http://keys.corp.example/.well-known/jwks.json",
                "refresh_interval": refresh_interval,
                "min_refresh_interval": 1,
                "timeout_ms": timeout_ms
            }
        }]);
    }
    config.to_string()
}

fn start(gateway: &Gateway) -> Envoy {
    Envoy::builder(gateway.render())
        .concurrency(2)
        .start()
        .unwrap_or_else(|e| panic!("{e:#}"))
}

/// Envoy with the jwt filter in front of `orders` (route `orders`) and `docs` (public).
fn gateway(orders: &Upstream, docs: &Upstream) -> Gateway {
    Gateway::new()
        .route("orders", "/orders", orders)
        .route("docs", "/docs", docs)
}

/// A good token of alice's credential for `alg`, with `extra` claims.
fn token(alg: &str, extra: Value) -> String {
    tokens::token(alg, &key_for(alg), None, extra, secret(alg).as_bytes())
}

fn call(envoy: &Envoy, token: &str) -> Reply {
    client::get(
        &envoy.url("/orders"),
        &[("authorization", &format!("Bearer {token}"))],
    )
}

/// The value of a counter the jwt filter defined, summed over Envoy's workers, as
/// `/stats/prometheus` lists it (wasm metrics keep their own name and no labels).
fn metric(envoy: &Envoy, name: &str) -> f64 {
    envoy.metric(&format!("{name}{{}}")).unwrap_or(0.0)
}

#[test]
fn tokens_of_every_family_pass_with_kongs_headers_and_the_host_checks_rs_and_es() {
    let orders = Upstream::start("orders");
    let docs = Upstream::start("docs");
    let envoy =
        start(&gateway(&orders, &docs).filter(portcullis_filter("jwt", Some(&jwt_config(None)))));
    assert!(
        envoy.wait_for_log(
            "portcullis-jwt: signatures checked by the host: RS256,RS384,RS512,ES256,ES384; \
             in the module: none (and HS*, PS*, EdDSA)"
        ),
        "no crypto backend line in:\n{}",
        envoy.log()
    );
    for alg in ALGORITHMS {
        let token = token(alg, json!({}));
        let reply = call(&envoy, &token);
        assert_eq!(reply.status, 200, "{alg}: {}", reply.text());
        let seen = orders.requests().pop().unwrap();
        assert_eq!(seen.header("x-consumer-id"), Some("c-alice"), "{alg}");
        assert_eq!(seen.header("x-consumer-custom-id"), Some("ext-1"), "{alg}");
        assert_eq!(seen.header("x-consumer-username"), Some("alice"), "{alg}");
        assert_eq!(
            seen.header("x-credential-identifier"),
            Some(key_for(alg).as_str()),
            "{alg}"
        );
        assert_eq!(
            seen.header_all("x-consumer-groups"),
            ["admins, ops"],
            "{alg}"
        );
        assert_eq!(
            seen.header("x-jwt-sub"),
            Some(key_for(alg).as_str()),
            "{alg}"
        );
        assert_eq!(
            seen.header("authorization"),
            Some(format!("Bearer {token}").as_str()),
            "{alg}"
        );
        // The echoing upstream hands the identity back to the client too.
        assert_eq!(reply.json()["headers"]["x-consumer-username"], "alice");
    }
    assert_eq!(orders.count(), ALGORITHMS.len());
    assert_eq!(
        metric(&envoy, "portcullis_jwt_accepted_total"),
        ALGORITHMS.len() as f64,
        "{}",
        envoy.stats_prometheus()
    );
    assert_eq!(metric(&envoy, "portcullis_jwt_rejected_total"), 0.0);
}

#[test]
fn crypto_in_module_gives_envoy_the_same_verdicts() {
    let orders = Upstream::start("orders");
    let docs = Upstream::start("docs");
    let mut config: Value = serde_json::from_str(&jwt_config(None)).unwrap();
    config["crypto"] = json!("in_module");
    let in_module =
        start(&gateway(&orders, &docs).filter(portcullis_filter("jwt", Some(&config.to_string()))));
    let on_host =
        start(&gateway(&orders, &docs).filter(portcullis_filter("jwt", Some(&jwt_config(None)))));
    assert!(in_module.wait_for_log(
        "portcullis-jwt: signatures checked by the host: none; \
         in the module: RS256,RS384,RS512,ES256,ES384 (and HS*, PS*, EdDSA)"
    ));
    for alg in ["RS256", "RS512", "ES256", "ES384"] {
        let good = token(alg, json!({}));
        let flipped = with_signature(&good, |s| s[7] ^= 0x20);
        let truncated = with_signature(&good, |s| {
            s.pop();
        });
        for (what, token, status) in [
            ("good", &good, 200),
            ("flipped", &flipped, 401),
            ("truncated", &truncated, 401),
        ] {
            let (a, b) = (call(&in_module, token), call(&on_host, token));
            assert_eq!(a.status, status, "{alg} {what} in the module: {}", a.text());
            assert_eq!((a.status, a.text()), (b.status, b.text()), "{alg} {what}");
        }
    }
    assert_eq!(orders.count(), 8);
}

fn hs256_raw(header: &str, payload: &str) -> String {
    let input = format!("{}.{}", b64(header), b64(payload));
    let key = openssl::pkey::PKey::hmac(HS256_SECRET.as_bytes()).unwrap();
    let mut signer =
        openssl::sign::Signer::new(openssl::hash::MessageDigest::sha256(), &key).unwrap();
    let mac = signer.sign_oneshot_to_vec(input.as_bytes()).unwrap();
    format!("{input}.{}", b64(mac))
}

fn with_signature(token: &str, change: impl Fn(&mut Vec<u8>)) -> String {
    let (input, signature) = token.rsplit_once('.').unwrap();
    let mut signature = URL_SAFE_NO_PAD.decode(signature).unwrap();
    change(&mut signature);
    format!("{input}.{}", b64(signature))
}

#[test]
fn each_rejection_class_is_stopped_before_the_upstream() {
    let orders = Upstream::start("orders");
    let docs = Upstream::start("docs");
    let envoy =
        start(&gateway(&orders, &docs).filter(portcullis_filter("jwt", Some(&jwt_config(None)))));
    let t = now();
    let payload = json!({"iss": "hs256-key", "exp": t + 600}).to_string();
    let message = |m: &str| json!({ "message": m });
    let invalid_json = message("Bad token; invalid JSON");
    let invalid_signature = message("Invalid signature");
    let good = token("HS256", json!({}));
    let (h, p, s) = {
        let parts: Vec<&str> = good.split('.').collect();
        (
            parts[0].to_owned(),
            parts[1].to_owned(),
            parts[2].to_owned(),
        )
    };
    let cases: Vec<(&str, Option<String>, Value, &str)> = vec![
        ("no token", None, message("Unauthorized"), "missing"),
        (
            "alg none",
            Some(format!("{}.{}.", b64(r#"{"alg":"none"}"#), b64(&payload))),
            message("Bad token; invalid alg"),
            "alg_none",
        ),
        (
            "alg NoNe",
            Some(hs256_raw(r#"{"alg":"NoNe"}"#, &payload)),
            message("Bad token; invalid alg"),
            "alg_none",
        ),
        (
            "unknown crit",
            Some(hs256_raw(
                r#"{"alg":"HS256","crit":["exp"],"exp":1}"#,
                &payload,
            )),
            invalid_json.clone(),
            "malformed",
        ),
        (
            "b64 false",
            Some(hs256_raw(
                r#"{"alg":"HS256","b64":false,"crit":["b64"]}"#,
                &payload,
            )),
            invalid_json.clone(),
            "malformed",
        ),
        (
            "duplicate iss",
            Some(hs256_raw(
                r#"{"alg":"HS256"}"#,
                &format!(r#"{{"iss":"hs256-key","iss":"admin","exp":{}}}"#, t + 600),
            )),
            invalid_json.clone(),
            "malformed",
        ),
        (
            "payload not an object",
            Some(hs256_raw(r#"{"alg":"HS256"}"#, "[]")),
            invalid_json.clone(),
            "malformed",
        ),
        (
            "padded header",
            Some(format!("{h}=.{p}.{s}")),
            invalid_json.clone(),
            "malformed",
        ),
        (
            "two segments",
            Some(format!("{h}.{p}")),
            invalid_json.clone(),
            "malformed",
        ),
        (
            "a JWE",
            Some(format!(
                "{}.a2V5.aXY.Y3Q.dGFn",
                b64(r#"{"alg":"RSA-OAEP","enc":"A256GCM"}"#)
            )),
            invalid_json.clone(),
            "malformed",
        ),
        (
            "over 8 KiB",
            Some(token("HS256", json!({"pad": "x".repeat(8192)}))),
            message("Bad token; too large"),
            "too_large",
        ),
        (
            "HS256 flipped",
            Some(with_signature(&good, |s| s[0] ^= 1)),
            invalid_signature.clone(),
            "bad_signature",
        ),
        (
            "RS256 flipped (host)",
            Some(with_signature(&token("RS256", json!({})), |s| s[10] ^= 1)),
            invalid_signature.clone(),
            "bad_signature",
        ),
        (
            "RS256 truncated (host)",
            Some(with_signature(&token("RS256", json!({})), |s| {
                s.pop();
            })),
            invalid_signature.clone(),
            "bad_signature",
        ),
        (
            "ES256 flipped (host)",
            Some(with_signature(&token("ES256", json!({})), |s| s[40] ^= 1)),
            invalid_signature.clone(),
            "bad_signature",
        ),
        (
            "ES256 r zero",
            Some(with_signature(&token("ES256", json!({})), |s| {
                s[..32].fill(0)
            })),
            invalid_signature.clone(),
            "malformed_signature",
        ),
        (
            "EdDSA flipped",
            Some(with_signature(&token("EdDSA", json!({})), |s| s[5] ^= 1)),
            invalid_signature.clone(),
            "bad_signature",
        ),
        (
            "HS512 under the HS256 credential",
            Some(tokens::token(
                "HS512",
                "hs256-key",
                None,
                json!({}),
                HS512_SECRET.as_bytes(),
            )),
            message("Invalid algorithm"),
            "algorithm_mismatch",
        ),
        (
            "expired",
            Some(token("ES256", json!({"exp": t - 120}))),
            json!({"exp": "token expired"}),
            "expired",
        ),
        (
            "nbf in the future",
            Some(token("RS256", json!({"nbf": t + 600, "exp": t + 3600}))),
            json!({"nbf": "token not valid yet"}),
            "not_yet_valid",
        ),
        (
            "iat in the future",
            Some(token("HS256", json!({"iat": t + 600, "exp": t + 3600}))),
            json!({"iat": "token issued in the future"}),
            "issued_in_future",
        ),
        (
            "no exp",
            Some(sign_raw(
                &json!({"alg": "HS256"}),
                &json!({"iss": "hs256-key"}),
                HS256_SECRET.as_bytes(),
            )),
            json!({"exp": "must be a number"}),
            "claim_not_number",
        ),
        (
            "unknown iss",
            Some(tokens::token(
                "HS256",
                "nobody",
                None,
                json!({}),
                HS256_SECRET.as_bytes(),
            )),
            message("No credentials found for given 'iss'"),
            "unknown_credential",
        ),
    ];
    for (what, token, body, label) in &cases {
        let before = metric(&envoy, &format!("portcullis_jwt_rejected_{label}_total"));
        let headers: Vec<(&str, String)> = token
            .iter()
            .map(|t| ("authorization", format!("Bearer {t}")))
            .collect();
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let reply = client::get(&envoy.url("/orders"), &headers);
        assert_eq!(reply.status, 401, "{what}: {}", reply.text());
        assert_eq!(&reply.json(), body, "{what}");
        assert_eq!(
            reply.header("content-type"),
            Some("application/json; charset=utf-8"),
            "{what}"
        );
        let challenge = if token.is_some() {
            r#"Bearer realm="portcullis", error="invalid_token""#
        } else {
            r#"Bearer realm="portcullis""#
        };
        assert_eq!(reply.header("www-authenticate"), Some(challenge), "{what}");
        assert_eq!(
            metric(&envoy, &format!("portcullis_jwt_rejected_{label}_total")),
            before + 1.0,
            "{what}"
        );
    }

    // Two different tokens at once (a repeated header needs a raw request).
    let port = envoy.listener_port(Gateway::LISTENER);
    let raw = format!(
        "GET /orders HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {good}\r\n\
         authorization: Bearer {}\r\nconnection: close\r\n\r\n",
        token("RS256", json!({}))
    );
    let reply = client::send_raw(port, raw.as_bytes());
    assert_eq!(reply.status, 401, "{}", reply.text());
    assert_eq!(reply.json(), message("Multiple tokens provided"));

    assert_eq!(orders.count(), 0, "a refused request reached the upstream");
    assert_eq!(
        metric(&envoy, "portcullis_jwt_rejected_total"),
        (cases.len() + 1) as f64,
        "{}",
        envoy.stats_prometheus()
    );
    assert!(envoy.wait_for_log("portcullis-jwt: rejected: token expired"));
    // The good token still passes.
    assert_eq!(call(&envoy, &good).status, 200);
}

#[test]
fn forged_identity_headers_never_reach_the_upstream() {
    let orders = Upstream::start("orders");
    let docs = Upstream::start("docs");
    let envoy =
        start(&gateway(&orders, &docs).filter(portcullis_filter("jwt", Some(&jwt_config(None)))));
    let forged = [
        ("x-consumer-username", "root"),
        ("x-consumer-groups", "admins"),
        ("x-consumer-id", "c-root"),
        ("x-credential-identifier", "root-key"),
        ("x-anonymous-consumer", "false"),
        ("x-jwt-sub", "root"),
    ];
    let reply = client::get(&envoy.url("/docs/intro"), &forged);
    assert_eq!(reply.status, 200, "{}", reply.text());
    let seen = docs.requests().pop().unwrap();
    for (name, _) in forged {
        assert_eq!(seen.header(name), None, "public route: {name}");
    }

    let token = token("HS256", json!({}));
    let bearer = format!("Bearer {token}");
    let mut headers: Vec<(&str, &str)> = forged.to_vec();
    headers.push(("authorization", &bearer));
    let reply = client::get(&envoy.url("/orders"), &headers);
    assert_eq!(reply.status, 200, "{}", reply.text());
    let seen = orders.requests().pop().unwrap();
    assert_eq!(seen.header_all("x-consumer-username"), ["alice"]);
    assert_eq!(seen.header_all("x-consumer-groups"), ["admins, ops"]);
    assert_eq!(seen.header("x-anonymous-consumer"), None);
    assert_eq!(seen.header_all("x-jwt-sub"), ["hs256-key"]);

    // Bytes that are not UTF-8 (obs-text) must not smuggle one through. Envoy passes
    // obs-text on (the control header arrives, recorded lossily), so the forged identity
    // headers' absence upstream is the filter's doing.
    let port = envoy.listener_port(Gateway::LISTENER);
    let raw = |extra: &[u8]| {
        let mut request = b"GET /docs/raw HTTP/1.1\r\nhost: localhost\r\n".to_vec();
        request.extend_from_slice(extra);
        request.extend_from_slice(b"connection: close\r\n\r\n");
        client::send_raw(port, &request)
    };
    let control = raw(b"x-trace: t\xff\r\n");
    assert_eq!(control.status, 200, "{}", control.text());
    assert_eq!(
        docs.requests().pop().unwrap().header("x-trace"),
        Some("t\u{fffd}"),
        "obs-text passes Envoy"
    );
    let reply = raw(b"x-consumer-username: root\xff\r\nx-consumer-groups: admins\xe9\r\n");
    assert_eq!(reply.status, 200, "{}", reply.text());
    let seen = docs.requests().pop().unwrap();
    assert_eq!(seen.path, "/docs/raw");
    assert_eq!(seen.header("x-consumer-username"), None);
    assert_eq!(seen.header("x-consumer-groups"), None);
}

/// The JWKS document for `keys`.
fn jwks(keys: &[Value]) -> Response {
    Response::json(200, &json!({ "keys": keys }))
}

fn rsa_jwk(kid: &str) -> Value {
    let key = openssl::pkey::PKey::public_key_from_pem(public_pem("RS256").as_bytes()).unwrap();
    let rsa = key.rsa().unwrap();
    json!({"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
           "n": b64(rsa.n().to_vec()), "e": b64(rsa.e().to_vec())})
}

fn ec_jwk(kid: &str) -> Value {
    let key = openssl::pkey::PKey::public_key_from_pem(public_pem("ES256").as_bytes()).unwrap();
    let ec = key.ec_key().unwrap();
    let mut ctx = openssl::bn::BigNumContext::new().unwrap();
    let (mut x, mut y) = (
        openssl::bn::BigNum::new().unwrap(),
        openssl::bn::BigNum::new().unwrap(),
    );
    ec.public_key()
        .affine_coordinates(ec.group(), &mut x, &mut y, &mut ctx)
        .unwrap();
    json!({"kty": "EC", "crv": "P-256", "kid": kid,
           "x": b64(x.to_vec_padded(32).unwrap()), "y": b64(y.to_vec_padded(32).unwrap())})
}

/// A corp token: `k1` is the RSA key, `k2` the P-256 key, any other kid unknown.
fn corp(kid: &str) -> String {
    let alg = if kid == "k2" { "ES256" } else { "RS256" };
    tokens::token(
        alg,
        "https://corp.example",
        Some(kid),
        json!({"sub": "svc-billing"}),
        b"",
    )
}

/// Sends `token` until it passes, for at most `bound`; the last reply.
fn until_accepted(envoy: &Envoy, token: &str, bound: Duration) -> Reply {
    let deadline = Instant::now() + bound;
    loop {
        let reply = call(envoy, token);
        if reply.status == 200 || Instant::now() >= deadline {
            return reply;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_remote_jwks_is_fetched_through_a_cluster_rotated_and_kept_through_an_outage() {
    let orders = Upstream::start("orders");
    let docs = Upstream::start("docs");
    let keys = Upstream::start("jwks");
    keys.set_response(jwks(&[rsa_jwk("k1")]));
    let envoy = start(
        &gateway(&orders, &docs)
            .route_to("jwks", "/never-routed-jwks", keys.name(), keys.port())
            .filter(portcullis_filter(
                "jwt",
                Some(&jwt_config(Some(keys.name()))),
            )),
    );

    // The first request fetches the keys through the cluster and waits for them. (A fetch
    // some other VM has in flight can refuse it for a moment: hence the short bound, far
    // below the seconds a lost start-up fetch once cost.)
    let reply = until_accepted(&envoy, &corp("k1"), Duration::from_secs(2));
    assert_eq!(reply.status, 200, "k1: {}", reply.text());
    let fetch = keys.requests()[0].clone();
    assert_eq!(fetch.method, "GET");
    assert_eq!(fetch.path, "/.well-known/jwks.json");
    assert_eq!(fetch.header("host"), Some("keys.corp.example"));
    let seen = orders.requests().pop().unwrap();
    assert_eq!(seen.header("x-credential-identifier"), Some("corp"));
    assert_eq!(seen.header("x-consumer-username"), Some("svc-billing"));
    let fetches_at_start = keys.count();
    assert!(
        (1..=3).contains(&fetches_at_start),
        "{fetches_at_start} fetches at start"
    );
    assert!(metric(&envoy, "portcullis_jwt_jwks_fetched_total") >= 1.0);

    // Rotation: the issuer publishes k2; past the 1 s floor the first k2 token fetches and
    // passes, on whichever worker it lands.
    keys.set_response(jwks(&[rsa_jwk("k1"), ec_jwk("k2")]));
    std::thread::sleep(Duration::from_millis(1100));
    let reply = call(&envoy, &corp("k2"));
    assert_eq!(reply.status, 200, "k2 after rotation: {}", reply.text());
    assert_eq!(keys.count(), fetches_at_start + 1);
    for _ in 0..4 {
        assert_eq!(call(&envoy, &corp("k2")).status, 200, "k2 on every worker");
        assert_eq!(call(&envoy, &corp("k1")).status, 200, "k1 still published");
    }
    assert_eq!(keys.count(), fetches_at_start + 1, "workers fetched again");

    // Outage, 500: a token with an unknown kid makes a fetch, which fails; the last good
    // set stays and its tokens keep passing.
    keys.set_response(Response::new(500).body("maintenance"));
    std::thread::sleep(Duration::from_millis(1100));
    let reply = call(&envoy, &corp("k3"));
    assert_eq!(reply.status, 401, "k3: {}", reply.text());
    assert_eq!(
        reply.json(),
        json!({"message": "No credentials found for given 'kid'"})
    );
    assert_eq!(
        keys.count(),
        fetches_at_start + 2,
        "the unknown kid made no fetch"
    );
    assert!(envoy.wait_for_log(
        "portcullis-jwt: JWKS of corp not refreshed, keeping the last good set: status 500"
    ));
    for _ in 0..4 {
        assert_eq!(call(&envoy, &corp("k1")).status, 200, "k1 during the 500s");
        assert_eq!(call(&envoy, &corp("k2")).status, 200, "k2 during the 500s");
    }

    // Outage, the server gone: the same.
    drop(keys);
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(call(&envoy, &corp("k3")).status, 401);
    for _ in 0..4 {
        assert_eq!(
            call(&envoy, &corp("k1")).status,
            200,
            "k1 with the server gone"
        );
        assert_eq!(
            call(&envoy, &corp("k2")).status,
            200,
            "k2 with the server gone"
        );
    }
    assert!(
        metric(&envoy, "portcullis_jwt_jwks_fetch_failed_total") >= 2.0,
        "{}",
        envoy.stats_prometheus()
    );
    let log = envoy.log();
    assert!(
        log.matches("JWKS of corp not refreshed, keeping the last good set")
            .count()
            >= 2,
        "{log}"
    );
    // Only the accepted requests reached the upstream, each as corp's caller.
    let seen = orders.requests();
    assert_eq!(seen.len(), 1 + 1 + 8 + 8 + 8);
    assert!(seen
        .iter()
        .all(|r| r.header("x-credential-identifier") == Some("corp")));
}

/// A token naming corp's issuer and a `kid` nobody publishes, without a valid signature:
/// what an attacker sends to make Envoy fetch the key set.
fn unsigned_with_unknown_kid() -> String {
    format!(
        "{}.{}.{}",
        b64(br#"{"alg":"RS256","typ":"JWT","kid":"attacker-kid"}"#),
        b64(
            json!({"iss": "https://corp.example", "sub": "mallory", "exp": now() + 3600})
                .to_string()
                .into_bytes()
        ),
        b64(b"not a signature")
    )
}

/// Until `stop`: requests with `token`, each connection closed by the client 20 ms after
/// its request was sent, long before a JWKS fetch it caused could answer. Returns how many.
fn resetting_client(port: u16, token: &str, stop: &AtomicBool) -> usize {
    let request =
        format!("GET /orders HTTP/1.1\r\nhost: gateway\r\nauthorization: Bearer {token}\r\n\r\n");
    let mut sent = 0;
    while !stop.load(Ordering::Relaxed) {
        if let Ok(mut conn) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            if conn.write_all(request.as_bytes()).is_ok() {
                sent += 1;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    sent
}

#[test]
fn clients_resetting_mid_fetch_cannot_keep_a_removed_key_trusted() {
    const REFRESH_INTERVAL_S: u64 = 10;
    const TIMEOUT_MS: u64 = 1500;
    let orders = Upstream::start("orders");
    let docs = Upstream::start("docs");
    let keys = Upstream::start("jwks");
    keys.set_response(jwks(&[rsa_jwk("k1"), ec_jwk("k2")]));
    let config = jwt_config_refreshing(Some(keys.name()), REFRESH_INTERVAL_S, TIMEOUT_MS);
    let envoy = start(
        &gateway(&orders, &docs)
            .route_to("jwks", "/never-routed-jwks", keys.name(), keys.port())
            .filter(portcullis_filter("jwt", Some(&config))),
    );
    let reply = until_accepted(&envoy, &corp("k2"), Duration::from_secs(2));
    assert_eq!(reply.status, 200, "k2 while published: {}", reply.text());

    // The issuer removes k2, and its JWKS server now takes a second to answer. Attackers
    // send tokens with an unknown kid, each reset 20 ms in: every fetch such a request
    // causes would be cancelled with its stream if the stream owned it.
    keys.set_response(jwks(&[rsa_jwk("k1")]).delay(Duration::from_secs(1)));
    let removed = Instant::now();
    let stop = AtomicBool::new(false);
    let attack = unsigned_with_unknown_kid();
    let port = envoy.port();
    let (refused_after, attacks) = std::thread::scope(|scope| {
        let attackers: Vec<_> = (0..4)
            .map(|_| scope.spawn(|| resetting_client(port, &attack, &stop)))
            .collect();
        let mut refused_after = None;
        while removed.elapsed() < Duration::from_secs(20) {
            if call(&envoy, &corp("k2")).status == 401 {
                refused_after = Some(removed.elapsed());
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        stop.store(true, Ordering::Relaxed);
        let attacks: usize = attackers.into_iter().map(|a| a.join().unwrap()).sum();
        (refused_after, attacks)
    });
    let bound = Duration::from_secs(REFRESH_INTERVAL_S) + Duration::from_millis(TIMEOUT_MS);
    let refused_after = refused_after.unwrap_or_else(|| {
        panic!(
            "k2 still accepted 20 s after its removal, {attacks} resetting requests, {} fetches\n{}",
            keys.count(),
            envoy.log()
        )
    });
    eprintln!(
        "k2 refused {refused_after:?} after its removal; {attacks} resetting requests, {} fetches",
        keys.count()
    );
    assert!(
        refused_after <= bound,
        "k2 refused only {refused_after:?} after its removal (bound {bound:?}), {attacks} resetting requests"
    );
    assert!(attacks >= 100, "only {attacks} resetting requests");
    // Every worker refuses it within a tick (a second): the worker that fetched the new
    // set refused it first; the others take the set up on their tick, or sooner on a
    // token with an unknown kid. A call sent later than that is never accepted. Each
    // refusal may itself claim a refetch (an unknown kid, the floor passed) and wait for
    // it: the server answers at once from now on, with the same set. Eight fresh
    // connections in a row refuse it; k1 still passes, and no attacker reached the upstream.
    keys.set_response(jwks(&[rsa_jwk("k1")]));
    let first_refusal = Instant::now();
    let mut refused_in_a_row = 0;
    while refused_in_a_row < 8 {
        let sent = first_refusal.elapsed();
        let status = call(&envoy, &corp("k2")).status;
        match status {
            401 => refused_in_a_row += 1,
            200 => {
                assert!(
                    sent < Duration::from_secs(2),
                    "k2 accepted on a call sent {sent:?} after a worker refused it"
                );
                refused_in_a_row = 0;
            }
            other => panic!("k2 answered {other} {sent:?} after a worker refused it"),
        }
        assert!(
            first_refusal.elapsed() < Duration::from_secs(20),
            "no eight refusals of k2 in a row 20 s after the first"
        );
    }
    for _ in 0..4 {
        assert_eq!(call(&envoy, &corp("k1")).status, 200, "k1 still published");
    }
    assert!(orders
        .requests()
        .iter()
        .all(|r| r.header("x-consumer-username") == Some("svc-billing")));
}
