//! The verified-token cache: a token seen before skips its signature check and costs fewer
//! instructions, but every request still faces the clock, the route's own rules and the key
//! lookup — the cache never turns a refusal into a pass or the other way round.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

#[test]
fn a_repeated_token_is_a_cache_hit_that_costs_fewer_instructions() {
    let host = Host::new();
    let mut jwt = host.start("jwt", &config());
    for alg in ["HS256", "RS256", "PS256", "ES256", "EdDSA"] {
        let token = token(alg);
        let hits = host.metric_value("portcullis_jwt_cache_hits_total");
        let first = jwt.send(bearer(&token));
        assert_accepted(&first, alg);
        assert_eq!(
            host.metric_value("portcullis_jwt_cache_hits_total"),
            hits,
            "{alg}: first"
        );
        let second = jwt.send(bearer(&token));
        assert_accepted(&second, alg);
        assert_eq!(
            host.metric_value("portcullis_jwt_cache_hits_total"),
            hits + 1,
            "{alg}: second"
        );
        let (miss, hit) = (first.instructions_of("jwt"), second.instructions_of("jwt"));
        assert!(hit < miss, "{alg}: hit {hit} instructions, miss {miss}");
        // Same verdict, same headers.
        assert_eq!(identity_headers(&first), identity_headers(&second), "{alg}");
        assert_eq!(identity(&first), identity(&second), "{alg}");
    }
}

fn identity_headers(exchange: &Exchange) -> Vec<(String, Vec<u8>)> {
    let upstream = exchange.upstream.as_ref().unwrap();
    let headers: Vec<_> = upstream
        .headers
        .pairs
        .iter()
        .filter(|(name, _)| name.starts_with("x-consumer-") || name.starts_with("x-credential-"))
        .cloned()
        .collect();
    assert_eq!(headers.len(), 5, "{headers:?}");
    headers
}

#[test]
fn expiry_and_nbf_are_still_enforced_on_a_cache_hit() {
    let host = Host::new();
    let mut jwt = host.start("jwt", &config());
    let token = token_with("RS256", json!({"exp": NOW + 120}));
    assert_accepted(&jwt.send(bearer(&token)), "fresh");
    assert_accepted(&jwt.send(bearer(&token)), "cached");
    assert_eq!(host.metric_value("portcullis_jwt_cache_hits_total"), 1);
    // exp + 60 s of leeway.
    host.advance(Duration::from_secs(180));
    assert_refused(
        &mut jwt,
        bearer(&token),
        json!({"exp": "token expired"}),
        "expired",
        "cached but expired",
    );

    let early = token_with("HS256", json!({"nbf": NOW + 300, "exp": NOW + 3600}));
    assert_refused(
        &mut jwt,
        bearer(&early),
        json!({"nbf": "token not valid yet"}),
        "not_yet_valid",
        "not yet",
    );
    assert_refused(
        &mut jwt,
        bearer(&early),
        json!({"nbf": "token not valid yet"}),
        "not_yet_valid",
        "still not yet",
    );
    // NOW + 180 + 60 s: nbf lies within the leeway now.
    host.advance(Duration::from_secs(60));
    assert_accepted(&jwt.send(bearer(&early)), "valid from nbf on");
}

#[test]
fn a_cached_token_still_meets_each_routes_own_rules() {
    let host = Host::new();
    let mut jwt = host.start(
        "jwt",
        &config_with(json!({"routes": {
            "admin": {"required_claims": ["tenant"]},
            "partners": {"header_names": ["x-partner-token"]}
        }})),
    );
    let token = token("ES256");
    assert_accepted(&jwt.send(bearer(&token)), "default route");
    let on = |route: &str| {
        Request::get("/x")
            .route(route)
            .header("authorization", &format!("Bearer {token}"))
    };
    assert_refused(
        &mut jwt,
        on("admin"),
        json!({"tenant": "required claim missing"}),
        "missing_claim",
        "admin wants a tenant",
    );
    assert_refused(
        &mut jwt,
        on("partners"),
        message("Unauthorized"),
        "missing",
        "partners look elsewhere",
    );
    assert_accepted(&jwt.send(on("api")), "default route again");
}

#[test]
fn a_bad_signature_stays_bad_however_often_it_is_sent() {
    let host = Host::new();
    let mut jwt = host.start("jwt", &config());
    let good = token("RS256");
    let mut signature = signature_of(&good);
    signature[100] ^= 0x04;
    let bad = with_signature(&good, &signature);
    for round in 0..3 {
        assert_refused(
            &mut jwt,
            bearer(&bad),
            message("Invalid signature"),
            "bad_signature",
            &format!("round {round}"),
        );
        assert_accepted(&jwt.send(bearer(&good)), &format!("good, round {round}"));
    }
}

#[test]
fn the_cache_never_changes_a_verdict() {
    // Good tokens, tokens that fail on the signature, on the clock and on the key lookup.
    let mut corpus: Vec<(String, String)> = Vec::new();
    for alg in ALGORITHMS {
        let good = token(alg);
        let mut signature = signature_of(&good);
        let last = signature.len() - 1;
        signature[last] ^= 0x01;
        corpus.push((format!("{alg} good"), good.clone()));
        corpus.push((format!("{alg} flipped"), with_signature(&good, &signature)));
        corpus.push((
            format!("{alg} expires in 61 s"),
            token_with(alg, json!({"exp": NOW + 1})),
        ));
    }
    corpus.push((
        "alg mismatch".into(),
        sign("HS512", json!({}), claims("hs256-key")),
    ));
    corpus.push((
        "unknown iss".into(),
        sign("HS256", json!({}), claims("nobody")),
    ));
    let run = |cache: usize| {
        let host = Host::new();
        let mut jwt = host.start("jwt", &config_with(json!({"token_cache_size": cache})));
        let mut verdicts = Vec::new();
        // Twice through at the start, then once more after the clock moved past 61 s.
        for round in 0..3 {
            if round == 2 {
                host.advance(Duration::from_secs(61));
            }
            for (what, token) in &corpus {
                let exchange = jwt.send(bearer(token));
                verdicts.push((
                    format!("{what}, round {round}"),
                    exchange.status(),
                    exchange.body_text(),
                ));
            }
        }
        (
            verdicts,
            host.metric_value("portcullis_jwt_cache_hits_total"),
        )
    };
    let (cached, hits) = run(1024);
    let (uncached, no_hits) = run(0);
    assert_eq!(cached, uncached);
    assert_eq!(no_hits, 0, "token_cache_size 0 still hit the cache");
    // 12 good tokens and 12 about to expire, seen again in round 1; the 12 good again in 2.
    assert_eq!(hits, 36);
    let passed = cached
        .iter()
        .filter(|(_, status, _)| *status == 200)
        .count();
    assert_eq!(passed, 12 * 2 + 12 * 2 + 12, "{cached:#?}");
    assert!(cached
        .iter()
        .all(|(_, status, _)| matches!(status, 200 | 401)));
}
