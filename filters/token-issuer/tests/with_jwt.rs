//! Issued tokens through the jwt filter, for every algorithm and whichever backend signed
//! them: the host's `sign` where it works, the module's own crypto where the host has none,
//! or answers wrong.

// Test code: clippy.toml lets #[test] functions panic, and these helpers are test code too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::*;
use serde_json::json;

/// A chain as Envoy runs it: the issuer first, then the jwt filter (public on the login
/// route), sharing one host.
struct Gateway {
    host: Host,
    issuer: Plugin,
    jwt: Plugin,
}

impl Gateway {
    fn new(host: Host, alg: &str, issuer_config: &serde_json::Value) -> Gateway {
        let mut issuer = host.start("token-issuer", issuer_config);
        let jwks = (!alg.starts_with("HS")).then(|| jwks(&mut issuer));
        let jwt = host.start("jwt", &jwt_config(alg, jwks.as_deref()));
        Gateway { host, issuer, jwt }
    }

    fn send(&mut self, request: Request) -> Exchange {
        host_test::send(&mut [&mut self.issuer, &mut self.jwt], request)
    }

    fn orders(&mut self, token: &str) -> Exchange {
        self.send(orders(token))
    }
}

#[test]
fn every_algorithm_logs_in_and_reaches_a_protected_route() {
    for alg in ALGORITHMS {
        let mut gateway = Gateway::new(Host::new(), alg, &config(alg));
        let token = token_of(&gateway.send(login(ok(&profile()))));
        assert_eq!(header_of(&token)["alg"], alg);
        assert_eq!(header_of(&token)["kid"], kid(alg));
        let ex = gateway.orders(&token);
        assert!(
            ex.reached_upstream(),
            "{alg}: {} {}",
            ex.status(),
            ex.body_text()
        );
        if !alg.starts_with("HS") {
            assert_eq!(
                ex.upstream_header("x-consumer-username").as_deref(),
                Some("123"),
                "{alg}"
            );
            assert_eq!(
                ex.upstream_header("x-consumer-groups").as_deref(),
                Some("admins"),
                "{alg}"
            );
        }
        let none = gateway.send(Request::get("/orders").route("orders"));
        assert_eq!(none.status(), 401, "{alg}");
    }
}

#[test]
fn a_tampered_or_expired_token_is_refused() {
    for alg in ["HS256", "RS256", "ES256", "EdDSA"] {
        let mut gateway = Gateway::new(Host::new(), alg, &config(alg));
        let token = token_of(&gateway.send(login(ok(&profile()))));
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        let mut claims = claims_of(&token);
        claims["groups"] = json!(["admins", "root"]);
        parts[1] = tokens::b64(claims.to_string());
        let ex = gateway.orders(&parts.join("."));
        assert_eq!(ex.status(), 401, "{alg}: tampered");
        gateway
            .host
            .advance(std::time::Duration::from_secs(900 + 61));
        let ex = gateway.orders(&token);
        assert_eq!(ex.status(), 401, "{alg}: expired");
    }
}

#[test]
fn rs256_and_es256_are_signed_on_the_host_when_it_signs_correctly() {
    for alg in ["RS256", "ES256"] {
        let host = Host::new();
        let mut gateway = Gateway::new(host.clone(), alg, &config(alg));
        assert!(
            host.logged(
                LogLevel::Info,
                &format!("signing {alg} (kid {}) on the host", kid(alg))
            ),
            "{alg}: {:?}",
            host.log_messages(LogLevel::Info)
        );
        let token = token_of(&gateway.send(login(ok(&profile()))));
        assert!(gateway.orders(&token).reached_upstream(), "{alg}");
    }
}

#[test]
fn a_host_without_sign_falls_back_to_the_module() {
    for alg in ["RS256", "ES256"] {
        let host = Host::new();
        host.remove_foreign_function("sign");
        let mut gateway = Gateway::new(host.clone(), alg, &config(alg));
        assert!(
            host.logged(
                LogLevel::Info,
                &format!(
                    "signing {alg} (kid {}) in the module (host sign unavailable",
                    kid(alg)
                )
            ),
            "{alg}: {:?}",
            host.log_messages(LogLevel::Info)
        );
        let token = token_of(&gateway.send(login(ok(&profile()))));
        let ex = gateway.orders(&token);
        assert!(ex.reached_upstream(), "{alg}: {}", ex.body_text());
        assert_eq!(
            ex.upstream_header("x-consumer-username").as_deref(),
            Some("123"),
            "{alg}"
        );
    }
}

#[test]
fn a_host_whose_signatures_do_not_verify_is_not_trusted() {
    let host = Host::new();
    // Answers `result: true` with a signature of the wrong text.
    host.foreign_function("sign", |arguments| {
        use sign_messages::*;
        let mut args = decode_sign(arguments);
        args.text.push(b'!');
        host_test::foreign::sign(&encode_sign(&args))
    });
    let mut gateway = Gateway::new(host.clone(), "ES256", &config("ES256"));
    assert!(
        host.logged(
            LogLevel::Info,
            "signing ES256 (kid es256-1) in the module (the host's signature did not verify)"
        ),
        "{:?}",
        host.log_messages(LogLevel::Info)
    );
    let token = token_of(&gateway.send(login(ok(&profile()))));
    assert!(gateway.orders(&token).reached_upstream());
}

#[test]
fn crypto_in_module_never_asks_the_host() {
    let host = Host::new();
    let mut gateway = Gateway::new(
        host.clone(),
        "RS256",
        &with(config("RS256"), json!({"crypto": "in_module"})),
    );
    assert!(host.logged(
        LogLevel::Info,
        "signing RS256 (kid rs256-1) in the module (crypto: in_module)"
    ));
    let token = token_of(&gateway.send(login(ok(&profile()))));
    assert!(gateway.orders(&token).reached_upstream());
}

#[test]
fn hmac_and_eddsa_are_always_signed_in_the_module() {
    for alg in ["HS512", "EdDSA"] {
        let host = Host::new();
        let _ = host.start("token-issuer", &config(alg));
        assert!(
            host.logged(
                LogLevel::Info,
                &format!(
                    "signing {alg} (kid {}) in the module (the host signs RS256 and ES256 only)",
                    kid(alg)
                )
            ),
            "{alg}"
        );
    }
}

/// The `sign` messages, through the harness's own codec.
mod sign_messages {
    pub use host_test::foreign::SignArguments;

    pub fn decode_sign(bytes: &[u8]) -> SignArguments {
        <SignArguments as prost::Message>::decode(bytes).unwrap()
    }

    pub fn encode_sign(args: &SignArguments) -> Vec<u8> {
        prost::Message::encode_to_vec(args)
    }
}
