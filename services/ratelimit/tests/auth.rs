//! Who may call the service: the shared secret over real gRPC, and the refusal to listen
//! beyond loopback without it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{binary, request};
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_client::RateLimitServiceClient;
use envoy_types::pb::envoy::service::ratelimit::v3::RateLimitResponse;
use portcullis_tests::paths::ScratchDir;
use portcullis_tests::ratelimit_service::RateLimitService;
use portcullis_tests::redis::RedisServer;

const SECRET: &str = "s3cr3t-0123456789abcdef";

/// One call carrying `authorization` (if any) as gRPC metadata.
async fn call(
    service: &RateLimitService,
    authorization: Option<&str>,
) -> Result<RateLimitResponse, tonic::Status> {
    let mut client = RateLimitServiceClient::connect(service.url())
        .await
        .unwrap();
    let mut call = tonic::Request::new(request());
    if let Some(value) = authorization {
        call.metadata_mut()
            .insert("authorization", value.parse().unwrap());
    }
    client
        .should_rate_limit(call)
        .await
        .map(|answer| answer.into_inner())
}

/// The service's log once it holds `text` (the start-up line follows the ready line).
fn log_with(service: &RateLimitService, text: &str) -> String {
    for _ in 0..100 {
        let log = service.log();
        if log.contains(text) {
            return log;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    panic!("no {text:?} in the log:\n{}", service.log())
}

fn secret_file(dir: &ScratchDir, text: &str) -> String {
    let path = dir.path().join("secret");
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_secret_only_calls_carrying_it_are_answered_and_counted() {
    let redis = RedisServer::start().unwrap();
    let dir = ScratchDir::new("ratelimit-secret").unwrap();
    let file = secret_file(&dir, &format!("{SECRET}\n"));
    let service = RateLimitService::start_with(
        binary(),
        &["--redis-url", &redis.url(), "--secret-file", &file],
    )
    .unwrap();
    let wrong = format!("Bearer {SECRET}x");
    for authorization in [
        None,
        Some("Bearer nope"),
        Some(wrong.as_str()),
        Some(SECRET),
    ] {
        let status = call(&service, authorization).await.unwrap_err();
        assert_eq!(
            status.code(),
            tonic::Code::Unauthenticated,
            "{authorization:?}"
        );
        assert_eq!(
            status.message(),
            "this rate limit service wants `authorization: Bearer <its shared secret>`"
        );
    }
    assert_eq!(
        redis.integer(&["DBSIZE"]).unwrap(),
        Some(0),
        "refused calls reach no counter"
    );
    let answer = call(&service, Some(&format!("Bearer {SECRET}")))
        .await
        .unwrap();
    assert_eq!(answer.overall_code, Code::Ok as i32);
    assert_eq!(answer.statuses[0].limit_remaining, 9);
    let log = service.log();
    assert!(
        log.contains("refused a call from 127.0.0.1:")
            && log.contains("with no authorization (1 refused so far)"),
        "{log}"
    );
    assert!(log.contains("(4 refused so far)"), "{log}");
    assert!(!log.contains("(3 refused so far)"), "{log}");
    assert!(
        !log.contains(SECRET),
        "the secret never reaches the log: {log}"
    );
}

#[test]
fn beyond_loopback_it_starts_only_with_a_secret_or_trusted_network() {
    let refused = RateLimitService::start_with(binary(), &["--listen", "0.0.0.0:0"]).unwrap_err();
    let refused = format!("{refused:#}");
    assert!(
        refused.contains("--listen 0.0.0.0:0: beyond loopback, and calls are not authenticated")
            && refused.contains("--trusted-network"),
        "{refused}"
    );
    let mut trusted =
        RateLimitService::start_with(binary(), &["--listen", "0.0.0.0:0", "--trusted-network"])
            .unwrap();
    log_with(&trusted, "calls not authenticated");
    assert!(trusted.stop());
    let dir = ScratchDir::new("ratelimit-secret").unwrap();
    let file = secret_file(&dir, SECRET);
    let mut secured =
        RateLimitService::start_with(binary(), &["--listen", "0.0.0.0:0", "--secret-file", &file])
            .unwrap();
    log_with(&secured, "calls authenticated by the shared secret");
    assert!(secured.stop());
}

#[test]
fn a_weak_secret_keeps_the_service_from_starting() {
    let dir = ScratchDir::new("ratelimit-secret").unwrap();
    let file = secret_file(&dir, "short\n");
    let refused = RateLimitService::start_with(binary(), &["--secret-file", &file]).unwrap_err();
    let refused = format!("{refused:#}");
    assert!(
        refused.contains(&format!(
            "--secret-file {file}: the secret is 5 bytes, at least 16 wanted"
        )),
        "{refused}"
    );
}
