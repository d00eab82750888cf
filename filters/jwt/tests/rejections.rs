//! Every way a token is refused, as a client sees it: 401, Kong's body, `WWW-Authenticate`,
//! the upstream never reached, and the counter of that reason moved. Cheap shape checks,
//! then the signature, then the claims and their clock edges; and claim values that must
//! never become headers.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use serde_json::{json, Value};

const HS: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

fn good_payload() -> String {
    claims("hs256-key").to_string()
}

fn invalid_json() -> Value {
    message("Bad token; invalid JSON")
}

fn invalid_signature() -> Value {
    message("Invalid signature")
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

/// The order of the P-256 group: an ECDSA `r` or `s` must be below it.
fn p256_order() -> Vec<u8> {
    hex("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551")
}

/// A good token of `alg` with its signature changed by `change`.
fn resigned(alg: &str, change: impl Fn(&mut Vec<u8>)) -> String {
    let token = token(alg);
    let mut signature = signature_of(&token);
    change(&mut signature);
    with_signature(&token, &signature)
}

/// A good HS256 token whose payload segment holds both `-` and `_`, the two characters in
/// which base64url and standard base64 differ.
fn token_with_url_safe_characters() -> String {
    // `?` and `>` encode to `_` and `-` at some offsets: shift them until both show.
    (0..12)
        .map(|shift| {
            token_with(
                "HS256",
                json!({"note": format!("{}??>>??>>", "a".repeat(shift))}),
            )
        })
        .find(|token| {
            let payload = token.split('.').nth(1).unwrap();
            payload.contains('-') && payload.contains('_')
        })
        .unwrap()
}

#[test]
fn malformed_tokens_are_refused_before_any_key_is_looked_up() {
    let host = Host::new();
    let mut jwt = host.start("jwt", &config());
    let payload = good_payload();
    let url_safe = token_with_url_safe_characters();
    let [h, p, s]: [&str; 3] = url_safe.split('.').collect::<Vec<_>>().try_into().unwrap();
    let invalid_alg = message("Bad token; invalid alg");
    let mut cases: Vec<(String, String, Value, &str)> = Vec::new();
    for alg in ["none", "None", "NONE", "nOnE"] {
        let header = format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#);
        cases.push((
            format!("alg {alg}"),
            raw_token(&header, &payload, &[]),
            invalid_alg.clone(),
            "alg_none",
        ));
        // Signed or not, none is none.
        cases.push((
            format!("alg {alg} with a signature"),
            hs256_raw(&header, &payload),
            invalid_alg.clone(),
            "alg_none",
        ));
    }
    let rows: Vec<(&str, String, Value, &str)> = vec![
        (
            "alg missing",
            hs256_raw(r#"{"typ":"JWT"}"#, &payload),
            invalid_alg.clone(),
            "malformed",
        ),
        (
            "alg unknown",
            hs256_raw(r#"{"alg":"HS1"}"#, &payload),
            invalid_alg.clone(),
            "malformed",
        ),
        (
            "alg in lower case",
            hs256_raw(r#"{"alg":"hs256"}"#, &payload),
            invalid_alg.clone(),
            "malformed",
        ),
        (
            "crit names an unknown extension",
            hs256_raw(r#"{"alg":"HS256","crit":["exp"],"exp":1}"#, &payload),
            invalid_json(),
            "malformed",
        ),
        (
            "crit empty",
            hs256_raw(r#"{"alg":"HS256","crit":[]}"#, &payload),
            invalid_json(),
            "malformed",
        ),
        (
            "b64 false",
            hs256_raw(r#"{"alg":"HS256","b64":false,"crit":["b64"]}"#, &payload),
            invalid_json(),
            "malformed",
        ),
        (
            "duplicate alg",
            hs256_raw(r#"{"alg":"none","alg":"HS256"}"#, &payload),
            invalid_json(),
            "malformed",
        ),
        (
            "duplicate iss",
            hs256_raw(
                HS,
                &format!(r#"{{"iss":"hs256-key","iss":"admin","exp":{}}}"#, NOW + 600),
            ),
            invalid_json(),
            "malformed",
        ),
        (
            "duplicate nested member",
            hs256_raw(
                HS,
                &format!(
                    r#"{{"iss":"hs256-key","exp":{},"x":{{"a":1,"a":2}}}}"#,
                    NOW + 600
                ),
            ),
            invalid_json(),
            "malformed",
        ),
        (
            "header an array",
            hs256_raw(r#"["HS256"]"#, &payload),
            invalid_json(),
            "malformed",
        ),
        (
            "payload an array",
            hs256_raw(HS, "[1]"),
            invalid_json(),
            "malformed",
        ),
        (
            "payload a string",
            hs256_raw(HS, r#""hs256-key""#),
            invalid_json(),
            "malformed",
        ),
        (
            "payload null",
            hs256_raw(HS, "null"),
            invalid_json(),
            "malformed",
        ),
        (
            "payload not JSON",
            hs256_raw(HS, "iss=hs256-key"),
            invalid_json(),
            "malformed",
        ),
        (
            "kid a number",
            hs256_raw(r#"{"alg":"HS256","kid":7}"#, &payload),
            invalid_json(),
            "malformed",
        ),
        (
            "padded header",
            format!("{h}=.{p}.{s}"),
            invalid_json(),
            "malformed",
        ),
        (
            "padded payload",
            format!("{h}.{p}==.{s}"),
            invalid_json(),
            "malformed",
        ),
        (
            "padded signature",
            format!("{h}.{p}.{s}="),
            message("Bad token; invalid signature"),
            "malformed",
        ),
        (
            "space inside the payload",
            format!("{h}.{} {}.{s}", &p[..10], &p[10..]),
            invalid_json(),
            "malformed",
        ),
        (
            "standard alphabet",
            format!("{h}.{}.{s}", p.replace('-', "+").replace('_', "/")),
            invalid_json(),
            "malformed",
        ),
        (
            "two segments",
            format!("{h}.{p}"),
            invalid_json(),
            "malformed",
        ),
        (
            "four segments",
            format!("{h}.{p}.{s}.{s}"),
            invalid_json(),
            "malformed",
        ),
        (
            "a JWE (five segments)",
            format!(
                "{}.a2V5.aXY.Y2lwaGVydGV4dA.dGFn",
                tokens::b64(r#"{"alg":"RSA-OAEP","enc":"A256GCM"}"#)
            ),
            invalid_json(),
            "malformed",
        ),
        (
            "over 8 KiB",
            token_with("HS256", json!({"pad": "x".repeat(8192)})),
            message("Bad token; too large"),
            "too_large",
        ),
    ];
    cases.extend(rows.into_iter().map(|(w, t, b, l)| (w.to_owned(), t, b, l)));
    for (what, token, body, label) in cases {
        assert_refused(&mut jwt, bearer(&token), body, label, &what);
    }
    // The untouched token passes: every refusal above is the change it names.
    assert_accepted(&jwt.send(bearer(&url_safe)), "the url-safe original");
}

#[test]
fn max_token_bytes_bounds_the_token_before_it_is_parsed() {
    let host = Host::new();
    let mut jwt = host.start("jwt", &config_with(json!({"max_token_bytes": 300})));
    let small = token("HS256");
    assert!(small.len() <= 300, "{}", small.len());
    assert_accepted(&jwt.send(bearer(&small)), "HS256 under the limit");
    let rsa = token("RS256");
    assert!(rsa.len() > 300);
    assert_refused(
        &mut jwt,
        bearer(&rsa),
        message("Bad token; too large"),
        "too_large",
        "RS256",
    );
}

#[test]
fn broken_signatures_are_refused() {
    let host = Host::new();
    let mut jwt = host.start("jwt", &config());
    let flip = |i: usize| move |s: &mut Vec<u8>| s[i] ^= 0x01;
    let last = |s: &mut Vec<u8>| {
        let n = s.len();
        s[n - 1] ^= 0x80;
    };
    let truncate = |s: &mut Vec<u8>| {
        s.pop();
    };
    let extend = |s: &mut Vec<u8>| s.push(0);
    let n = p256_order();
    let one = {
        let mut v = vec![0u8; 32];
        v[31] = 1;
        v
    };
    let mut cases: Vec<(String, String, Value, &str)> = Vec::new();
    for alg in ALGORITHMS {
        cases.push((
            format!("{alg} first byte flipped"),
            resigned(alg, flip(0)),
            invalid_signature(),
            "bad_signature",
        ));
        cases.push((
            format!("{alg} last bit flipped"),
            resigned(alg, last),
            invalid_signature(),
            "bad_signature",
        ));
        // Where the algorithm fixes the length, a wrong length is refused before any crypto.
        let length_label = if alg.starts_with("RS") || alg.starts_with("PS") {
            "bad_signature"
        } else {
            "malformed_signature"
        };
        cases.push((
            format!("{alg} truncated"),
            resigned(alg, truncate),
            invalid_signature(),
            length_label,
        ));
        cases.push((
            format!("{alg} over-long"),
            resigned(alg, extend),
            invalid_signature(),
            length_label,
        ));
    }
    let ecdsa: Vec<(&str, Vec<u8>)> = vec![
        ("r zero", [vec![0; 32], one.clone()].concat()),
        ("s zero", [one.clone(), vec![0; 32]].concat()),
        ("r the group order", [n.clone(), one.clone()].concat()),
        ("s the group order", [one.clone(), n.clone()].concat()),
        ("s all ones", [one.clone(), vec![0xff; 32]].concat()),
    ];
    let es256 = token("ES256");
    for (what, signature) in ecdsa {
        cases.push((
            format!("ES256 {what}"),
            with_signature(&es256, &signature),
            invalid_signature(),
            "malformed_signature",
        ));
    }
    let es384 = token("ES384");
    cases.push((
        "ES384 r and s zero".into(),
        with_signature(&es384, &[0; 96]),
        invalid_signature(),
        "malformed_signature",
    ));
    // A valid signature over other bytes, and one by a key nobody configured.
    let other = token_with("HS256", json!({"sub": "mallory"}));
    cases.push((
        "HS256 signature of another token".into(),
        with_signature(&token("HS256"), &signature_of(&other)),
        invalid_signature(),
        "bad_signature",
    ));
    cases.push((
        "RS256 by an unknown key".into(),
        sign_with_other_rsa("RS256", json!({}), claims("rs256-key")),
        invalid_signature(),
        "bad_signature",
    ));
    for (what, token, body, label) in cases {
        assert_refused(&mut jwt, bearer(&token), body, label, &what);
    }
}

#[test]
fn an_algorithm_other_than_the_credential_pins_is_refused() {
    let host = Host::new();
    let mut jwt = host.start("jwt", &config());
    let invalid_algorithm = message("Invalid algorithm");
    let rsa_pem = tokens::public_pem("RS256");
    let cases = [
        (
            "HS512 under the HS256 credential",
            sign("HS512", json!({}), claims("hs256-key")),
        ),
        (
            "RS256 under the PS256 credential",
            sign("RS256", json!({}), claims("ps256-key")),
        ),
        (
            "ES256 under the RS256 credential",
            sign("ES256", json!({}), claims("rs256-key")),
        ),
        (
            "EdDSA under the ES256 credential",
            sign("EdDSA", json!({}), claims("es256-key")),
        ),
        // The classic key confusion: the RSA public key used as an HMAC secret.
        (
            "HS256 keyed with the RS256 public key",
            tokens::sign_raw(
                &json!({"alg": "HS256", "typ": "JWT"}),
                &claims("rs256-key"),
                rsa_pem.as_bytes(),
            ),
        ),
    ];
    for (what, token) in cases {
        assert_refused(
            &mut jwt,
            bearer(&token),
            invalid_algorithm.clone(),
            "algorithm_mismatch",
            what,
        );
    }
}

#[test]
fn a_token_naming_no_credential_is_refused() {
    let host = Host::new();
    let mut jwt = host.start("jwt", &config());
    let exp = json!({"sub": "x", "exp": NOW + 600});
    assert_refused(
        &mut jwt,
        bearer(&sign(
            "HS256",
            json!({}),
            merged(exp.clone(), json!({"iss": "nobody"})),
        )),
        message("No credentials found for given 'iss'"),
        "unknown_credential",
        "unknown iss",
    );
    assert_refused(
        &mut jwt,
        bearer(&sign("HS256", json!({"kid": "nobody-kid"}), exp.clone())),
        message("No credentials found for given 'iss'"),
        "unknown_credential",
        "unknown kid, no iss",
    );
    assert_refused(
        &mut jwt,
        bearer(&sign("HS256", json!({}), exp)),
        message("No mandatory 'iss' in claims"),
        "missing_key_claim",
        "neither iss nor kid",
    );
    assert_refused(
        &mut jwt,
        get("/orders"),
        message("Unauthorized"),
        "missing",
        "no token at all",
    );
}

/// (what, extra config, claims beside iss, accepted or the refusal's body and label)
type TimeCase = (&'static str, Value, Value, Option<(Value, &'static str)>);

#[test]
fn time_claims_are_checked_with_the_leeway_to_the_second() {
    let expired = Some((json!({"exp": "token expired"}), "expired"));
    let not_yet = Some((json!({"nbf": "token not valid yet"}), "not_yet_valid"));
    let future = Some((
        json!({"iat": "token issued in the future"}),
        "issued_in_future",
    ));
    let exp_nan = Some((json!({"exp": "must be a number"}), "claim_not_number"));
    let later = NOW + 600;
    let cases: Vec<TimeCase> = vec![
        ("exp 59 s ago", json!({}), json!({"exp": NOW - 59}), None),
        (
            "exp 60 s ago",
            json!({}),
            json!({"exp": NOW - 60}),
            expired.clone(),
        ),
        (
            "exp a day ago",
            json!({}),
            json!({"exp": NOW - 86_400}),
            expired.clone(),
        ),
        (
            "leeway 0, exp now",
            json!({"leeway": 0}),
            json!({"exp": NOW}),
            expired.clone(),
        ),
        (
            "leeway 0, exp in 1 s",
            json!({"leeway": 0}),
            json!({"exp": NOW + 1}),
            None,
        ),
        (
            "leeway 300, exp 299 s ago",
            json!({"leeway": 300}),
            json!({"exp": NOW - 299}),
            None,
        ),
        (
            "nbf 60 s ahead",
            json!({}),
            json!({"exp": later, "nbf": NOW + 60}),
            None,
        ),
        (
            "nbf 61 s ahead",
            json!({}),
            json!({"exp": later, "nbf": NOW + 61}),
            not_yet.clone(),
        ),
        (
            "leeway 0, nbf 1 s ahead",
            json!({"leeway": 0}),
            json!({"exp": later, "nbf": NOW + 1}),
            not_yet,
        ),
        (
            "iat 60 s ahead",
            json!({}),
            json!({"exp": later, "iat": NOW + 60}),
            None,
        ),
        (
            "iat 61 s ahead",
            json!({}),
            json!({"exp": later, "iat": NOW + 61}),
            future,
        ),
        ("no exp", json!({}), json!({}), exp_nan.clone()),
        (
            "exp a string",
            json!({}),
            json!({"exp": "tomorrow"}),
            exp_nan,
        ),
        (
            "no exp, exp_required false",
            json!({"exp_required": false}),
            json!({}),
            None,
        ),
        (
            "expired, exp_required false",
            json!({"exp_required": false}),
            json!({"exp": NOW - 3600}),
            expired,
        ),
        (
            "no nbf, claims_to_verify nbf",
            json!({"claims_to_verify": ["exp", "nbf"]}),
            json!({"exp": later}),
            Some((json!({"nbf": "must be a number"}), "claim_not_number")),
        ),
        (
            "exp at maximum_expiration",
            json!({"maximum_expiration": 3600}),
            json!({"exp": NOW + 3600}),
            None,
        ),
        (
            "exp past maximum_expiration",
            json!({"maximum_expiration": 3600}),
            json!({"exp": NOW + 3601}),
            Some((
                json!({"exp": "exceeds maximum allowed expiration"}),
                "exceeds_maximum_expiration",
            )),
        ),
        (
            "tenant present",
            json!({"required_claims": ["tenant"]}),
            json!({"exp": later, "tenant": "t1"}),
            None,
        ),
        (
            "tenant missing",
            json!({"required_claims": ["tenant"]}),
            json!({"exp": later}),
            Some((json!({"tenant": "required claim missing"}), "missing_claim")),
        ),
        (
            "tenant null",
            json!({"required_claims": ["tenant"]}),
            json!({"exp": later, "tenant": null}),
            Some((json!({"tenant": "required claim missing"}), "missing_claim")),
        ),
    ];
    // One host compiles the module once; each row gets its own plugin.
    let host = Host::new();
    for (what, extra, claims, expected) in cases {
        let mut jwt = host.start("jwt", &config_with(extra));
        let token = sign(
            "HS256",
            json!({}),
            merged(json!({"iss": "hs256-key"}), claims),
        );
        match expected {
            None => assert_accepted(&jwt.send(bearer(&token)), what),
            Some((body, label)) => {
                assert_refused(&mut jwt, bearer(&token), body, label, what);
            }
        }
    }
}

#[test]
fn a_token_expires_on_the_host_clock_once_the_leeway_is_spent() {
    let host = Host::new();
    let mut jwt = host.start("jwt", &config());
    let token = token_with("ES256", json!({"exp": NOW + 30}));
    assert_accepted(&jwt.send(bearer(&token)), "fresh");
    host.advance(std::time::Duration::from_secs(89));
    assert_accepted(&jwt.send(bearer(&token)), "29 s past exp");
    host.advance(std::time::Duration::from_secs(1));
    assert_refused(
        &mut jwt,
        bearer(&token),
        json!({"exp": "token expired"}),
        "expired",
        "60 s past exp",
    );
}

#[test]
fn a_claim_with_cr_lf_or_nul_never_becomes_a_header() {
    let host = Host::new();
    let mut jwt = host.start(
        "jwt",
        &config_with(json!({"claims_to_headers": {"sub": "x-jwt-sub", "email": "x-jwt-email"}})),
    );
    let values = [
        json!("a@example.com\r\nx-admin: true"),
        json!("a@example.com\nx-admin: true"),
        json!("a@example.com\rx-admin: true"),
        json!("a@example.com\u{0}x-admin: true"),
        json!(["ok", "b\r\nx-admin: true"]),
    ];
    for value in values {
        let what = value.to_string();
        let exchange = jwt.send(bearer(&token_with("HS256", json!({"email": value}))));
        // The token is good: the request passes, without the poisoned header.
        assert_accepted(&exchange, &what);
        let upstream = exchange.upstream.as_ref().unwrap();
        assert_eq!(upstream.header("x-jwt-email"), None, "{what}");
        assert_eq!(upstream.header("x-admin"), None, "{what}");
        assert!(
            upstream
                .headers
                .pairs
                .iter()
                .all(|(_, v)| !v.iter().any(|b| matches!(b, b'\r' | b'\n' | 0))),
            "{what}: {:?}",
            upstream.headers
        );
        assert_eq!(
            upstream.header("x-jwt-sub").as_deref(),
            Some("alice-sub"),
            "{what}"
        );
        assert!(!identity(&exchange).claims.contains_key("email"), "{what}");
    }
    assert!(host.logged(
        LogLevel::Warn,
        "portcullis-jwt: claim email not forwarded: unsafe header value"
    ));

    // An issuer's username claim is held to the same rule.
    let token = sign(
        "RS256",
        json!({"kid": "idp-rsa"}),
        json!({"iss": "https://idp.example", "aud": "orders-api", "sub": "eve\r\nx-admin: true",
               "exp": NOW + 600}),
    );
    let exchange = jwt.send(bearer(&token));
    assert_accepted(&exchange, "provider sub with CRLF");
    assert_eq!(exchange.upstream_header("x-consumer-username"), None);
    assert_eq!(exchange.upstream_header("x-jwt-sub"), None);
    assert_eq!(identity(&exchange).username, None);
}
