//! TLS and mutual TLS over real gRPC: a client that trusts the service's CA is answered and
//! counted; without TLS, with an untrusted CA, without a client certificate or with one from
//! another CA, no call reaches a counter. Broken TLS files stop the start with the flag named.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;

use common::{binary, request};
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_client::RateLimitServiceClient;
use envoy_types::pb::envoy::service::ratelimit::v3::RateLimitResponse;
use portcullis_tests::certs::{Authority, Pair};
use portcullis_tests::paths::ScratchDir;
use portcullis_tests::ratelimit_service::RateLimitService;
use portcullis_tests::redis::RedisServer;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

/// The name in the service's certificate that clients check.
const SERVER_NAME: &str = "ratelimit.test";

fn path(pair: &Path) -> &str {
    pair.to_str().unwrap()
}

/// How a test client reaches the service.
enum Client<'a> {
    Cleartext,
    Tls {
        trusts: &'a Path,
        presents: Option<&'a Pair>,
    },
}

/// One call over a fresh connection; `Err` holds why it failed (connecting or calling).
async fn call(service: &RateLimitService, client: Client<'_>) -> Result<RateLimitResponse, String> {
    let channel = match client {
        Client::Cleartext => Channel::from_shared(service.url()).unwrap(),
        Client::Tls { trusts, presents } => {
            let mut tls = ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(std::fs::read(trusts).unwrap()))
                .domain_name(SERVER_NAME);
            if let Some(pair) = presents {
                tls = tls.identity(Identity::from_pem(
                    std::fs::read(&pair.cert).unwrap(),
                    std::fs::read(&pair.key).unwrap(),
                ));
            }
            Channel::from_shared(format!("https://{}", service.address()))
                .unwrap()
                .tls_config(tls)
                .unwrap()
        }
    };
    let channel = channel.connect().await.map_err(|e| format!("{e:?}"))?;
    RateLimitServiceClient::new(channel)
        .should_rate_limit(request())
        .await
        .map(|answer| answer.into_inner())
        .map_err(|status| format!("{status:?}"))
}

fn start(redis: &RedisServer, server: &Pair, extra: &[&str]) -> RateLimitService {
    let mut args = vec![
        "--redis-url",
        &redis.url(),
        "--tls-cert",
        path(&server.cert),
        "--tls-key",
        path(&server.key),
    ]
    .into_iter()
    .map(str::to_owned)
    .collect::<Vec<_>>();
    args.extend(extra.iter().map(|arg| (*arg).to_owned()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    RateLimitService::start_with(binary(), &args).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_a_client_trusting_the_ca_is_answered_and_others_reach_no_counter() {
    let redis = RedisServer::start().unwrap();
    let ca = Authority::new("ratelimit-tls").unwrap();
    let other = Authority::new("ratelimit-other").unwrap();
    let service = start(&redis, &ca.server(SERVER_NAME).unwrap(), &[]);
    let cleartext = call(&service, Client::Cleartext).await.unwrap_err();
    let untrusted = call(
        &service,
        Client::Tls {
            trusts: other.cert(),
            presents: None,
        },
    )
    .await
    .unwrap_err();
    assert!(untrusted.contains("UnknownIssuer"), "{untrusted}");
    assert_eq!(
        redis.integer(&["DBSIZE"]).unwrap(),
        Some(0),
        "cleartext ({cleartext}) and an untrusted server reach no counter"
    );
    let answer = call(
        &service,
        Client::Tls {
            trusts: ca.cert(),
            presents: None,
        },
    )
    .await
    .unwrap();
    assert_eq!(answer.overall_code, Code::Ok as i32);
    assert_eq!(answer.statuses[0].limit_remaining, 9);
    assert!(service.log().contains("(TLS)"), "{}", service.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_client_certificates_only_callers_the_ca_signed_are_answered() {
    let redis = RedisServer::start().unwrap();
    let ca = Authority::new("ratelimit-mtls").unwrap();
    let other = Authority::new("ratelimit-other").unwrap();
    let service = start(
        &redis,
        &ca.server(SERVER_NAME).unwrap(),
        &["--tls-client-ca", path(ca.cert())],
    );
    let envoy = ca.client("envoy").unwrap();
    let stranger = other.client("stranger").unwrap();
    for presents in [None, Some(&stranger)] {
        let refused = call(
            &service,
            Client::Tls {
                trusts: ca.cert(),
                presents,
            },
        )
        .await
        .unwrap_err();
        assert!(!refused.contains("overall_code"), "{presents:?}: {refused}");
    }
    assert_eq!(redis.integer(&["DBSIZE"]).unwrap(), Some(0));
    let answer = call(
        &service,
        Client::Tls {
            trusts: ca.cert(),
            presents: Some(&envoy),
        },
    )
    .await
    .unwrap();
    assert_eq!(answer.statuses[0].limit_remaining, 9);
    assert!(
        service
            .log()
            .contains("(TLS with client certificates (mTLS))"),
        "{}",
        service.log()
    );
}

#[test]
fn beyond_loopback_client_certificates_authenticate_and_a_cleartext_secret_is_warned_about() {
    let ca = Authority::new("ratelimit-mtls").unwrap();
    let server = ca.server(SERVER_NAME).unwrap();
    let mut mutual = RateLimitService::start_with(
        binary(),
        &[
            "--listen",
            "0.0.0.0:0",
            "--tls-cert",
            path(&server.cert),
            "--tls-key",
            path(&server.key),
            "--tls-client-ca",
            path(ca.cert()),
        ],
    )
    .unwrap();
    assert!(mutual.stop());
    assert!(
        mutual
            .log()
            .contains("calls authenticated by client certificate"),
        "{}",
        mutual.log()
    );
    assert!(!mutual.log().contains("warning"), "{}", mutual.log());
    let dir = ScratchDir::new("ratelimit-secret").unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "0123456789abcdef0123").unwrap();
    let mut cleartext = RateLimitService::start_with(
        binary(),
        &["--listen", "0.0.0.0:0", "--secret-file", path(&secret)],
    )
    .unwrap();
    assert!(cleartext.stop());
    assert!(
        cleartext
            .log()
            .contains("warning: --listen 0.0.0.0:0: beyond loopback without TLS, the shared secret crosses the network in cleartext"),
        "{}",
        cleartext.log()
    );
    // TLS without client certificates or a secret authenticates nobody.
    let refused = RateLimitService::start_with(
        binary(),
        &[
            "--listen",
            "0.0.0.0:0",
            "--tls-cert",
            path(&server.cert),
            "--tls-key",
            path(&server.key),
        ],
    )
    .unwrap_err();
    assert!(
        format!("{refused:#}").contains("beyond loopback, and calls are not authenticated"),
        "{refused:#}"
    );
}

#[test]
fn broken_tls_files_stop_the_start_naming_the_flag() {
    let ca = Authority::new("ratelimit-broken").unwrap();
    let server = ca.server(SERVER_NAME).unwrap();
    let other = ca.server("other.test").unwrap();
    let dir = ScratchDir::new("ratelimit-broken").unwrap();
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(
        &garbage,
        "-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let (cert, key, empty, garbage) = (
        path(&server.cert),
        path(&server.key),
        path(&empty),
        path(&garbage),
    );
    let rows: Vec<(Vec<&str>, String)> = vec![
        (
            vec!["--tls-cert", cert],
            "--tls-cert: needs --tls-key, its private key".to_owned(),
        ),
        (
            vec!["--tls-key", key],
            "--tls-key: needs --tls-cert, the certificate it belongs to".to_owned(),
        ),
        (
            vec!["--tls-client-ca", path(ca.cert())],
            "--tls-client-ca: client certificates need TLS: add --tls-cert and --tls-key"
                .to_owned(),
        ),
        (
            vec!["--tls-cert", "/nonexistent/cert.pem", "--tls-key", key],
            "--tls-cert /nonexistent/cert.pem: No such file or directory".to_owned(),
        ),
        (
            vec!["--tls-cert", empty, "--tls-key", key],
            format!("--tls-cert {empty}: no certificate in it"),
        ),
        (
            vec!["--tls-cert", garbage, "--tls-key", key],
            format!("--tls-cert {garbage}: "),
        ),
        (
            vec!["--tls-cert", cert, "--tls-key", cert],
            format!("--tls-key {cert}: no private key in it"),
        ),
        (
            vec!["--tls-cert", cert, "--tls-key", path(&other.key)],
            format!("--tls-cert {cert} / --tls-key {}: ", path(&other.key)),
        ),
        (
            vec![
                "--tls-cert",
                cert,
                "--tls-key",
                key,
                "--tls-client-ca",
                empty,
            ],
            format!("--tls-client-ca {empty}: no certificate in it"),
        ),
    ];
    for (args, wanted) in rows {
        let refused = RateLimitService::start_with(binary(), &args).unwrap_err();
        let refused = format!("{refused:#}");
        assert!(
            refused.contains(&wanted),
            "{args:?}: want {wanted:?} in\n{refused}"
        );
    }
}
