//! Where signatures are checked: by Envoy's `verify_signature` (BoringSSL on the host) for
//! RS* and ES*, in the module for the rest and for hosts without it — chosen once at start
//! and giving the same verdict for every token either way. Also prints the instruction
//! counts per request that the benchmark issue asks for.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::*;
use host_test::Status;
use prost::Message as _;
use serde_json::{json, Value};

const ON_THE_HOST: &str = "portcullis-jwt: signatures checked by the host: \
     RS256,RS384,RS512,ES256,ES384; in the module: none (and HS*, PS*, EdDSA)";
const ALL_IN_THE_MODULE: &str = "portcullis-jwt: signatures checked by the host: none; \
     in the module: RS256,RS384,RS512,ES256,ES384 (and HS*, PS*, EdDSA)";

/// Replaces the host's `verify_signature` with the same function, counted.
fn count_host_checks(host: &Host) -> Arc<AtomicUsize> {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    host.foreign_function("verify_signature", move |arguments| {
        counter.fetch_add(1, Ordering::SeqCst);
        host_test::foreign::verify_signature(arguments)
    });
    calls
}

fn on_host(alg: &str) -> bool {
    alg.starts_with("RS") || alg.starts_with("ES")
}

#[test]
fn on_envoy_rs_and_es_signatures_are_checked_by_the_host_and_the_rest_in_the_module() {
    let host = Host::new();
    let calls = count_host_checks(&host);
    let mut jwt = host.start("jwt", &config());
    assert!(
        host.logged(LogLevel::Info, ON_THE_HOST),
        "{:?}",
        host.logs()
    );
    // The start-up probe: a good and a broken vector for each of RSA and ECDSA.
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    for alg in ALGORITHMS {
        let before = calls.load(Ordering::SeqCst);
        assert_accepted(&jwt.send(bearer(&token(alg))), alg);
        let expected = usize::from(on_host(alg));
        assert_eq!(calls.load(Ordering::SeqCst) - before, expected, "{alg}");
    }
}

#[test]
fn a_host_without_verify_signature_gets_every_check_done_in_the_module() {
    let host = Host::new();
    host.remove_foreign_function("verify_signature");
    let mut jwt = host.start("jwt", &config());
    assert!(
        host.logged(LogLevel::Info, ALL_IN_THE_MODULE),
        "{:?}",
        host.logs()
    );
    for alg in ALGORITHMS {
        assert_accepted(&jwt.send(bearer(&token(alg))), alg);
    }
}

#[test]
fn crypto_in_module_never_asks_the_host() {
    let host = Host::new();
    let calls = count_host_checks(&host);
    let mut jwt = host.start("jwt", &config_with(json!({"crypto": "in_module"})));
    assert!(
        host.logged(LogLevel::Info, ALL_IN_THE_MODULE),
        "{:?}",
        host.logs()
    );
    for alg in ALGORITHMS {
        assert_accepted(&jwt.send(bearer(&token(alg))), alg);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[test]
fn a_host_whose_verify_signature_says_yes_to_anything_is_not_trusted() {
    let host = Host::new();
    host.foreign_function("verify_signature", |_| {
        Ok(host_test::foreign::VerifySignatureResult {
            result: true,
            error: String::new(),
        }
        .encode_to_vec())
    });
    let mut jwt = host.start("jwt", &config());
    assert!(
        host.logged(LogLevel::Info, ALL_IN_THE_MODULE),
        "{:?}",
        host.logs()
    );
    let forged = with_signature(&token("RS256"), &[0x5a; 256]);
    assert_refused(
        &mut jwt,
        bearer(&forged),
        message("Invalid signature"),
        "bad_signature",
        "forged RS256",
    );
}

#[test]
fn a_host_check_that_fails_refuses_the_request_it_never_lets_it_through() {
    let host = Host::new();
    let calls = count_host_checks(&host);
    let mut jwt = host.start("jwt", &config());
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    // After the probe, the host's function breaks.
    host.foreign_function("verify_signature", |_| Err(Status::InternalFailure));
    let exchange = jwt.send(bearer(&token("ES256")));
    assert_eq!(exchange.status(), 500, "{}", exchange.body_text());
    assert!(!exchange.reached_upstream());
    assert_eq!(
        exchange.body_json(),
        message("An unexpected error occurred")
    );
    assert_eq!(
        host.metric_value("portcullis_jwt_rejected_verifier_error_total"),
        1
    );
    // What the module checks itself still works.
    assert_accepted(&jwt.send(bearer(&token("EdDSA"))), "EdDSA");
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

/// Good tokens of every algorithm, and for those the host can check (RS*, ES*) every way a
/// signature can be wrong: flipped bits, truncated, over-long, empty of meaning (zeros, all
/// ones), another token's, another key's, ECDSA `r`/`s` zero or not below the order, and
/// keys of the wrong type; issuer tokens too.
fn corpus() -> Vec<(String, String)> {
    let mut corpus = Vec::new();
    for alg in ALGORITHMS {
        corpus.push((format!("{alg} good"), token(alg)));
    }
    let orders = [
        ("ES256", hex("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551")),
        (
            "ES384",
            hex("ffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973"),
        ),
    ];
    for alg in [
        "RS256", "RS384", "RS512", "ES256", "ES384", "PS256", "EdDSA",
    ] {
        let good = token(alg);
        let sig = signature_of(&good);
        let n = sig.len();
        let mut push = |what: &str, signature: Vec<u8>| {
            corpus.push((format!("{alg} {what}"), with_signature(&good, &signature)));
        };
        for i in [0, n / 2 - 1, n / 2, n - 1] {
            let mut s = sig.clone();
            s[i] ^= 0x10;
            push(&format!("byte {i} flipped"), s);
        }
        push("truncated", sig[..n - 1].to_vec());
        push("half", sig[..n / 2].to_vec());
        push("over-long", [sig.clone(), vec![0]].concat());
        push("leading zero", [vec![0], sig.clone()].concat());
        push("zeros", vec![0; n]);
        push("all ones", vec![0xff; n]);
        let other = token_with(alg, json!({"sub": "mallory"}));
        push("of another token", signature_of(&other));
        if let Some((_, order)) = orders.iter().find(|(a, _)| *a == alg) {
            let half = n / 2;
            let (r, s) = sig.split_at(half);
            push("r zero", [vec![0; half], s.to_vec()].concat());
            push("s zero", [r.to_vec(), vec![0; half]].concat());
            push("r the order", [order.clone(), s.to_vec()].concat());
            push("s the order", [r.to_vec(), order.clone()].concat());
            // The same point negated: s' = n - s also verifies in raw ECDSA; both libraries
            // must agree on it (they accept it: JWS does not demand low-s).
            let negated = subtract(order, s);
            push("s negated", [r.to_vec(), negated].concat());
        }
    }
    corpus.push((
        "RS256 by another key".into(),
        sign_with_other_rsa("RS256", json!({}), claims("rs256-key")),
    ));
    corpus.push((
        "RS512 by another key".into(),
        sign_with_other_rsa("RS512", json!({}), claims("rs512-key")),
    ));
    // Wrong key types: an ES signature under an RSA credential and the other way round.
    corpus.push((
        "ES256 under rs256-key".into(),
        sign("ES256", json!({}), claims("rs256-key")),
    ));
    corpus.push((
        "RS256 under es256-key".into(),
        sign("RS256", json!({}), claims("es256-key")),
    ));
    let es_sig = signature_of(&token("ES256"));
    corpus.push((
        "ES256 signature as RS256".into(),
        with_signature(&token("RS256"), &es_sig),
    ));
    let rs_sig = signature_of(&token("RS256"));
    corpus.push((
        "RS256 signature as ES256".into(),
        with_signature(&token("ES256"), &rs_sig),
    ));
    // The issuer's keys, found by kid or tried in turn.
    let idp = json!({"iss": "https://idp.example", "sub": "u", "aud": "orders-api",
                     "exp": NOW + 600});
    for (alg, kid) in [
        ("RS256", Some("idp-rsa")),
        ("ES256", Some("idp-ec")),
        ("RS384", None),
    ] {
        let header = kid.map_or(json!({}), |kid| json!({ "kid": kid }));
        let good = sign(alg, header, idp.clone());
        let mut s = signature_of(&good);
        s[3] ^= 0x01;
        corpus.push((format!("issuer {alg} {kid:?}"), good.clone()));
        corpus.push((
            format!("issuer {alg} {kid:?} flipped"),
            with_signature(&good, &s),
        ));
    }
    corpus
}

/// `a - b` for big-endian numbers of the same length, `a > b`.
fn subtract(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; a.len()];
    let mut borrow = 0i16;
    for i in (0..a.len()).rev() {
        let mut d = i16::from(a[i]) - i16::from(b[i]) - borrow;
        borrow = i16::from(d < 0);
        if d < 0 {
            d += 256;
        }
        out[i] = d as u8;
    }
    out
}

/// (token, status, body) for the whole corpus on a fresh host.
fn verdicts(host: &Host, crypto: &str, corpus: &[(String, String)]) -> Vec<(String, u16, Value)> {
    let mut jwt = host.start("jwt", &config_with(json!({"crypto": crypto})));
    corpus
        .iter()
        .map(|(what, token)| {
            let exchange = jwt.send(bearer(token));
            assert!(
                exchange.crash.is_none(),
                "{crypto} {what}: {:?}",
                exchange.crash
            );
            assert_eq!(
                exchange.reached_upstream(),
                exchange.status() == 200,
                "{crypto} {what}"
            );
            (what.clone(), exchange.status(), exchange.body_json())
        })
        .collect()
}

#[test]
fn the_host_and_the_module_give_the_same_verdict_for_every_token() {
    let corpus = corpus();

    let envoy = Host::new();
    let host_calls = count_host_checks(&envoy);
    let auto = verdicts(&envoy, "auto", &corpus);

    let counted = Host::new();
    let module_calls = count_host_checks(&counted);
    let in_module = verdicts(&counted, "in_module", &corpus);

    let bare = Host::new();
    bare.remove_foreign_function("verify_signature");
    let no_host = verdicts(&bare, "auto", &corpus);

    for ((a, m), n) in auto.iter().zip(&in_module).zip(&no_host) {
        assert_eq!(a, m, "auto and in_module disagree");
        assert_eq!(a, n, "Envoy and a host without verify_signature disagree");
    }
    // Not a vacuous agreement: the host did the RS/ES work in `auto` and none otherwise,
    // and the corpus holds passes and refusals of several kinds.
    assert!(host_calls.load(Ordering::SeqCst) > 4 + 40, "{host_calls:?}");
    assert_eq!(module_calls.load(Ordering::SeqCst), 0);
    let passed: Vec<&str> = auto
        .iter()
        .filter(|(_, status, _)| *status == 200)
        .map(|(what, _, _)| what.as_str())
        .collect();
    let expected_passes: Vec<String> = ALGORITHMS
        .iter()
        .map(|alg| format!("{alg} good"))
        .chain(["ES256 s negated".into(), "ES384 s negated".into()])
        .chain(
            [
                "issuer RS256 Some(\"idp-rsa\")",
                "issuer ES256 Some(\"idp-ec\")",
                "issuer RS384 None",
            ]
            .map(String::from),
        )
        .collect();
    let mut passed_sorted = passed.clone();
    passed_sorted.sort_unstable();
    let mut expected_sorted: Vec<&str> = expected_passes.iter().map(String::as_str).collect();
    expected_sorted.sort_unstable();
    assert_eq!(passed_sorted, expected_sorted);
    let bodies: std::collections::BTreeSet<String> =
        auto.iter().map(|(_, _, body)| body.to_string()).collect();
    for body in [
        r#"{"message":"Invalid signature"}"#,
        r#"{"message":"Invalid algorithm"}"#,
    ] {
        assert!(bodies.contains(body), "no {body} in {bodies:?}");
    }
    eprintln!(
        "differential corpus: {} tokens, {} accepted, identical verdicts on the host, in the \
         module and on a host without verify_signature",
        auto.len(),
        passed.len()
    );
}

/// Wasm instructions of one request on the jwt filter: first sight (cache miss), then the
/// same token again (cache hit).
fn instructions(host: &Host, crypto: &str, alg: &str) -> (u64, u64) {
    let mut jwt = host.start("jwt", &config_with(json!({"crypto": crypto})));
    let token = token(alg);
    let miss = jwt.send(bearer(&token));
    let hit = jwt.send(bearer(&token));
    assert_accepted(&miss, alg);
    assert_accepted(&hit, alg);
    (miss.instructions_of("jwt"), hit.instructions_of("jwt"))
}

#[test]
fn instructions_per_request_by_algorithm_backend_and_cache() {
    eprintln!(
        "jwt filter, wasm instructions per request (host-test; the host's own crypto not counted):"
    );
    eprintln!(
        "  {:<7} {:<10} {:>12} {:>12}",
        "alg", "backend", "cache miss", "cache hit"
    );
    for alg in ["HS256", "RS256", "ES256", "PS256", "EdDSA"] {
        let backends: &[&str] = if on_host(alg) {
            &["host", "in-module"]
        } else {
            &["in-module"]
        };
        for backend in backends {
            let host = Host::new();
            let crypto = if *backend == "host" {
                "auto"
            } else {
                "in_module"
            };
            let (miss, hit) = instructions(&host, crypto, alg);
            eprintln!("  {alg:<7} {backend:<10} {miss:>12} {hit:>12}");
            assert!(hit < miss, "{alg} {backend}: hit {hit}, miss {miss}");
        }
    }
}
