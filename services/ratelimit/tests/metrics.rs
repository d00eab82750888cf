//! The operators' endpoint (`--metrics-listen`) of the real binary on a real redis-server:
//! every `/metrics` answer read whole by a strict exposition reader, counters compared
//! exactly with the calls made, readiness following Redis down, frozen, failing and back,
//! and clear answers to requests the endpoint does not serve.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
#[path = "common/exposition.rs"]
mod exposition;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::binary;
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::rate_limit_descriptor::{
    Entry, RateLimitOverride,
};
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::CheckRequest;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::rate_limit::Unit;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_client::RateLimitServiceClient;
use envoy_types::pb::envoy::service::ratelimit::v3::RateLimitRequest;
use exposition::Exposition;
use portcullis_tests::client::{self, Reply};
use portcullis_tests::paths::ScratchDir;
use portcullis_tests::ratelimit_service::RateLimitService;
use portcullis_tests::redis::RedisServer;
use prost::bytes::{Buf as _, BufMut as _};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;

const REQUESTS: &str = "portcullis_ratelimit_requests_total";
const DESCRIPTORS: &str = "portcullis_ratelimit_descriptors_total";
const INVALID: &str = "portcullis_ratelimit_invalid_requests_total";
const UNAVAILABLE: &str = "portcullis_ratelimit_unavailable_total";
const REDIS_ERRORS: &str = "portcullis_ratelimit_redis_errors_total";
const ROUND_TRIPS: &str = "portcullis_ratelimit_redis_duration_seconds";
const GRPC_ERRORS: &str = "portcullis_ratelimit_grpc_errors_total";

/// A series and the value it must have.
type Row<'a> = (&'a str, &'a [(&'a str, &'a str)], f64);

/// The service on `redis` with its endpoint on a free loopback port, plus `args`.
fn start(redis: &RedisServer, args: &[&str]) -> RateLimitService {
    let url = redis.url();
    let mut all = vec!["--redis-url", &url, "--metrics-listen", "127.0.0.1:0"];
    all.extend_from_slice(args);
    RateLimitService::start_with(binary(), &all).unwrap()
}

async fn client(service: &RateLimitService) -> RateLimitServiceClient<Channel> {
    RateLimitServiceClient::connect(service.url())
        .await
        .unwrap()
}

fn descriptor(pairs: &[(&str, &str)], limit: Option<(u32, Unit)>) -> RateLimitDescriptor {
    RateLimitDescriptor {
        entries: pairs
            .iter()
            .map(|(key, value)| Entry {
                key: key.to_string(),
                value: value.to_string(),
            })
            .collect(),
        limit: limit.map(|(requests_per_unit, unit)| RateLimitOverride {
            requests_per_unit,
            unit: unit as i32,
        }),
        hits_addend: None,
        is_negative_hits: false,
    }
}

fn request(domain: &str, descriptors: Vec<RateLimitDescriptor>) -> RateLimitRequest {
    RateLimitRequest {
        domain: domain.to_owned(),
        descriptors,
        hits_addend: 0,
    }
}

/// One HTTP request to the endpoint, off the runtime's threads.
async fn http(method: &str, url: String) -> Reply {
    let method = method.to_owned();
    tokio::task::spawn_blocking(move || client::send(&method, &url, &[], None))
        .await
        .unwrap()
}

/// `GET /metrics`, checked whole and read.
async fn scrape(service: &RateLimitService) -> Exposition {
    let reply = http("GET", format!("{}/metrics", service.metrics_url())).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        reply.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = reply.text();
    let exposition = exposition::parse(&text).unwrap_or_else(|why| panic!("{why}\nin:\n{text}"));
    for name in exposition.types.keys() {
        assert!(
            name.starts_with("portcullis_ratelimit_"),
            "{name}: every family is portcullis_ratelimit_*"
        );
        assert!(exposition.help.contains_key(name), "{name} has no HELP");
    }
    exposition
}

/// The value of one series, 0 if the exposition lacks it: every label set the tests
/// read here is listed from the start, so a missing one fails the equality that follows.
fn value(exposition: &Exposition, name: &str, labels: &[(&str, &str)]) -> f64 {
    exposition
        .value(name, labels)
        .unwrap_or_else(|| panic!("no {name}{labels:?} in {:#?}", exposition.series(name)))
}

/// The sum of every series of `name`.
fn total(exposition: &Exposition, name: &str) -> f64 {
    exposition.series(name).iter().map(|s| s.value).sum()
}

/// `GET /readyz` until it answers `status` (at most `bound`); the last reply.
async fn readiness(service: &RateLimitService, status: u16, bound: Duration) -> Reply {
    let deadline = Instant::now() + bound;
    loop {
        let reply = http("GET", format!("{}/readyz", service.metrics_url())).await;
        if reply.status == status || Instant::now() > deadline {
            return reply;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrape_counts_exactly_the_calls_answered() {
    let started = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let redis = RedisServer::start().unwrap();
    let service = start(&redis, &["--max-limit", "1000"]);
    let mut client = client(&service).await;
    // Nothing answered yet: the fixed label sets are there at 0, no domain is.
    let before = scrape(&service).await;
    assert!(before.series(REQUESTS).is_empty());
    assert_eq!(value(&before, INVALID, &[("reason", "empty_domain")]), 0.0);
    assert_eq!(
        value(
            &before,
            "portcullis_ratelimit_redis_duration_seconds_count",
            &[]
        ),
        0.0
    );

    let users = request(
        "edge",
        vec![
            descriptor(&[("route", "users")], Some((2, Unit::Day))),
            descriptor(&[("free", "1")], None),
        ],
    );
    let mut codes = Vec::new();
    for _ in 0..3 {
        let answer = client.should_rate_limit(users.clone()).await.unwrap();
        codes.push(answer.into_inner().overall_code);
    }
    assert_eq!(
        codes,
        [Code::Ok as i32, Code::Ok as i32, Code::OverLimit as i32]
    );
    // Above --max-limit: counted against 1000, and counted as clamped.
    let big = request(
        "edge",
        vec![descriptor(&[("big", "1")], Some((5_000, Unit::Day)))],
    );
    client.should_rate_limit(big).await.unwrap();
    let mut negative = request(
        "edge",
        vec![descriptor(&[("a", "1")], Some((5, Unit::Day)))],
    );
    negative.descriptors[0].is_negative_hits = true;
    let unknown = request(
        "edge",
        vec![descriptor(&[("a", "1")], Some((5, Unit::Unknown)))],
    );
    let empty = request("", vec![descriptor(&[("a", "1")], Some((5, Unit::Day)))]);
    for refused in [negative, unknown, empty] {
        let status = client.should_rate_limit(refused).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
    }
    // A domain that needs escaping in a label value.
    let odd_domain = "odd \"dom\\ain\"\nline two";
    let odd = request(
        odd_domain,
        vec![descriptor(&[("x", "1")], Some((5, Unit::Minute)))],
    );
    client.should_rate_limit(odd).await.unwrap();

    let after = scrape(&service).await;
    let rows: [Row; 22] = [
        (REQUESTS, &[("domain", "edge"), ("answer", "ok")], 3.0),
        (
            REQUESTS,
            &[("domain", "edge"), ("answer", "over_limit")],
            1.0,
        ),
        (REQUESTS, &[("domain", "edge"), ("answer", "error")], 2.0),
        (REQUESTS, &[("domain", ""), ("answer", "error")], 1.0),
        (REQUESTS, &[("domain", ""), ("answer", "ok")], 0.0),
        (REQUESTS, &[("domain", odd_domain), ("answer", "ok")], 1.0),
        (DESCRIPTORS, &[("domain", "edge"), ("answer", "ok")], 3.0),
        (
            DESCRIPTORS,
            &[("domain", "edge"), ("answer", "over_limit")],
            1.0,
        ),
        (
            DESCRIPTORS,
            &[("domain", "edge"), ("answer", "no_limit")],
            3.0,
        ),
        (
            DESCRIPTORS,
            &[("domain", odd_domain), ("answer", "ok")],
            1.0,
        ),
        (INVALID, &[("reason", "negative_hits")], 1.0),
        (INVALID, &[("reason", "unknown_unit")], 1.0),
        (INVALID, &[("reason", "empty_domain")], 1.0),
        (INVALID, &[("reason", "hits_above_ceiling")], 0.0),
        ("portcullis_ratelimit_clamped_descriptors_total", &[], 1.0),
        (GRPC_ERRORS, &[("code", "invalid_argument")], 3.0),
        (GRPC_ERRORS, &[("code", "unavailable")], 0.0),
        (UNAVAILABLE, &[("cause", "connect")], 0.0),
        (REDIS_ERRORS, &[("kind", "connect")], 0.0),
        // Five calls reached Redis: three on users, big, odd.
        (
            "portcullis_ratelimit_redis_duration_seconds_count",
            &[],
            5.0,
        ),
        (
            "portcullis_ratelimit_redis_duration_seconds_bucket",
            &[("le", "+Inf")],
            5.0,
        ),
        (
            "portcullis_ratelimit_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))],
            1.0,
        ),
    ];
    for (name, labels, expected) in rows {
        assert_eq!(value(&after, name, labels), expected, "{name}{labels:?}");
    }
    // Three domains, three answers each; nothing else.
    assert_eq!(after.series(REQUESTS).len(), 9);
    assert_eq!(total(&after, REQUESTS), 8.0);
    assert_eq!(total(&after, UNAVAILABLE), 0.0);
    assert_eq!(total(&after, REDIS_ERRORS), 0.0);
    assert_eq!(total(&after, GRPC_ERRORS), 3.0);
    let sum = value(
        &after,
        "portcullis_ratelimit_redis_duration_seconds_sum",
        &[],
    );
    assert!(
        sum > 0.0 && sum < 5.0,
        "sum of five loopback round trips: {sum}"
    );
    let start_time = value(&after, "portcullis_ratelimit_start_time_seconds", &[]);
    assert!(
        start_time >= started - 1.0 && start_time <= started + 30.0,
        "start time {start_time}, test started at {started}"
    );
    assert_eq!(after.types[ROUND_TRIPS], "histogram");
    assert_eq!(after.types[REQUESTS], "counter");
    assert_eq!(
        after.types["portcullis_ratelimit_start_time_seconds"],
        "gauge"
    );
    // The endpoint counts nothing of its own: a second scrape reads the same counters.
    assert_eq!(
        scrape(&service)
            .await
            .samples
            .iter()
            .filter(|s| s.name != "portcullis_ratelimit_start_time_seconds")
            .count(),
        after
            .samples
            .iter()
            .filter(|s| s.name != "portcullis_ratelimit_start_time_seconds")
            .count()
    );
}

/// A gRPC codec that sends and reads raw bytes, to send what no typed client would.
struct RawBytes;

impl Codec for RawBytes {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawBytes;
    type Decoder = RawBytes;
    fn encoder(&mut self) -> RawBytes {
        RawBytes
    }
    fn decoder(&mut self) -> RawBytes {
        RawBytes
    }
}

impl Encoder for RawBytes {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawBytes {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
        Ok(Some(src.copy_to_bytes(src.remaining()).to_vec()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_before_the_service_are_counted_by_their_grpc_code() {
    let redis = RedisServer::start().unwrap();
    let dir = ScratchDir::new("ratelimit-metrics-secret").unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "s3cr3t-0123456789abcdef\n").unwrap();
    let secret = secret.to_string_lossy().into_owned();
    let service = start(&redis, &["--secret-file", &secret]);
    let mut client = client(&service).await;
    let plain = request(
        "edge",
        vec![descriptor(&[("a", "1")], Some((5, Unit::Day)))],
    );
    for _ in 0..2 {
        let status = client.should_rate_limit(plain.clone()).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unauthenticated);
    }
    // A service this server does not have: tonic's router answers UNIMPLEMENTED.
    let mut other = AuthorizationClient::connect(service.url()).await.unwrap();
    let status = other.check(CheckRequest::default()).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unimplemented);
    // Bytes that are no RateLimitRequest, with the secret: tonic's decoder answers INTERNAL.
    let channel = Channel::from_shared(service.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut raw = tonic::client::Grpc::new(channel);
    raw.ready().await.unwrap();
    let mut garbage = tonic::Request::new(vec![0xff; 3]);
    garbage.metadata_mut().insert(
        "authorization",
        "Bearer s3cr3t-0123456789abcdef".parse().unwrap(),
    );
    let status = raw
        .unary::<_, Vec<u8>, _>(
            garbage,
            PathAndQuery::from_static(
                "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit",
            ),
            RawBytes,
        )
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Internal, "{status:?}");

    let metrics = scrape(&service).await;
    assert_eq!(
        value(&metrics, GRPC_ERRORS, &[("code", "unauthenticated")]),
        2.0
    );
    assert_eq!(
        value(&metrics, GRPC_ERRORS, &[("code", "unimplemented")]),
        1.0
    );
    assert_eq!(value(&metrics, GRPC_ERRORS, &[("code", "internal")]), 1.0);
    assert_eq!(total(&metrics, GRPC_ERRORS), 4.0);
    // None reached the service's answer: no call counted, nothing asked of Redis.
    assert!(metrics.series(REQUESTS).is_empty());
    assert_eq!(
        value(
            &metrics,
            "portcullis_ratelimit_redis_duration_seconds_count",
            &[]
        ),
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_and_the_fault_counters_follow_redis_down_frozen_failing_and_back() {
    let mut redis = RedisServer::start().unwrap();
    let service = start(&redis, &[]);
    let mut client = client(&service).await;
    let users = request(
        "edge",
        vec![descriptor(&[("route", "users")], Some((100, Unit::Day)))],
    );
    let ready = readiness(&service, 200, Duration::ZERO).await;
    assert_eq!(ready.status, 200);
    assert_eq!(ready.json(), serde_json::json!({ "status": "ready" }));
    assert_eq!(ready.header("cache-control"), Some("no-store"));
    client.should_rate_limit(users.clone()).await.unwrap();

    // Down: every call UNAVAILABLE, each counted once by its cause; not ready.
    redis.stop();
    for _ in 0..5 {
        let status = client.should_rate_limit(users.clone()).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unavailable);
    }
    let down = scrape(&service).await;
    assert_eq!(total(&down, UNAVAILABLE), 5.0);
    assert_eq!(
        value(&down, REQUESTS, &[("domain", "edge"), ("answer", "error")]),
        5.0
    );
    assert_eq!(
        value(&down, REQUESTS, &[("domain", "edge"), ("answer", "ok")]),
        1.0
    );
    assert_eq!(value(&down, GRPC_ERRORS, &[("code", "unavailable")]), 5.0);
    assert_eq!(value(&down, INVALID, &[("reason", "empty_domain")]), 0.0);
    // Redis was asked at least once (the broken connection, a refused connect); the other
    // calls may have failed at once inside the 100 ms back-off, asking nothing.
    let asked = total(&down, REDIS_ERRORS);
    assert!((1.0..=5.0).contains(&asked), "redis errors {asked}");
    assert_eq!(
        asked + value(&down, UNAVAILABLE, &[("cause", "backoff")]),
        5.0,
        "every call either asked Redis or backed off"
    );
    assert_eq!(
        value(
            &down,
            "portcullis_ratelimit_redis_duration_seconds_count",
            &[]
        ),
        1.0
    );
    let not_ready = readiness(&service, 503, Duration::ZERO).await;
    assert_eq!(not_ready.status, 503);
    assert_eq!(not_ready.json()["status"], "not ready");
    let reason = not_ready.json()["reason"].as_str().unwrap().to_owned();
    assert!(reason.contains("Redis"), "{reason}");

    // Back: ready again (after the back-off), and counting.
    redis.start_again().unwrap();
    let back = readiness(&service, 200, Duration::from_secs(3)).await;
    assert_eq!(back.status, 200, "{}", back.text());
    client.should_rate_limit(users.clone()).await.unwrap();

    // Frozen: the call times out, and so does the probe.
    let before = scrape(&service).await;
    redis.pause();
    let status = client.should_rate_limit(users.clone()).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable);
    let asked_at = Instant::now();
    let frozen = readiness(&service, 503, Duration::ZERO).await;
    assert!(
        asked_at.elapsed() < Duration::from_secs(2),
        "the probe is bounded"
    );
    redis.resume();
    assert_eq!(frozen.status, 503, "{}", frozen.text());
    let after = scrape(&service).await;
    let delta = |exposition: &Exposition, name, labels| {
        value(exposition, name, labels) - value(&before, name, labels)
    };
    assert_eq!(delta(&after, UNAVAILABLE, &[("cause", "timeout")]), 1.0);
    assert!(delta(&after, REDIS_ERRORS, &[("kind", "timeout")]) >= 1.0);
    let back = readiness(&service, 200, Duration::from_secs(3)).await;
    assert_eq!(back.status, 200, "{}", back.text());

    // Failing: Redis answers the script with an error (out of memory): one error reply,
    // a round trip all the same; the probe's PING still passes.
    let before = scrape(&service).await;
    assert_eq!(
        redis.command(&["CONFIG", "SET", "maxmemory", "1"]).unwrap(),
        "+OK"
    );
    let status = client.should_rate_limit(users.clone()).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert!(status.message().contains("OOM"), "{}", status.message());
    let failing = scrape(&service).await;
    let delta = |name, labels| value(&failing, name, labels) - value(&before, name, labels);
    assert_eq!(delta(UNAVAILABLE, &[("cause", "error_reply")]), 1.0);
    assert_eq!(delta(REDIS_ERRORS, &[("kind", "error_reply")]), 1.0);
    assert_eq!(
        delta("portcullis_ratelimit_redis_duration_seconds_count", &[]),
        1.0
    );
    assert_eq!(
        total(&failing, UNAVAILABLE) - total(&before, UNAVAILABLE),
        1.0
    );
    assert_eq!(
        redis.command(&["CONFIG", "SET", "maxmemory", "0"]).unwrap(),
        "+OK"
    );
    client.should_rate_limit(users).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_the_endpoint_does_not_serve_get_clear_answers() {
    let redis = RedisServer::start().unwrap();
    let service = start(&redis, &[]);
    let base = service.metrics_url();
    let alive = http("GET", format!("{base}/healthz")).await;
    assert_eq!(
        (alive.status, alive.json()),
        (200, serde_json::json!({ "status": "alive" }))
    );

    for path in [
        "/",
        "/metric",
        "/metrics/x",
        "/healthz/",
        "/stats/prometheus",
    ] {
        let reply = http("GET", format!("{base}{path}")).await;
        assert_eq!(reply.status, 404, "{path}");
        assert_eq!(
            reply.json()["message"],
            "not found: this endpoint serves /metrics, /healthz and /readyz",
            "{path}"
        );
    }
    for (method, path) in [
        ("POST", "/metrics"),
        ("DELETE", "/readyz"),
        ("PUT", "/healthz"),
    ] {
        let reply = http(method, format!("{base}{path}")).await;
        assert_eq!(reply.status, 405, "{method} {path}");
        assert_eq!(reply.header("allow"), Some("GET, HEAD"), "{method} {path}");
        assert_eq!(
            reply.json()["message"],
            format!("{path} answers GET and HEAD only, not {method}")
        );
    }
    // HEAD: the head of GET, no body.
    let head = http("HEAD", format!("{base}/metrics")).await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert!(
        head.header("content-length")
            .unwrap()
            .parse::<usize>()
            .unwrap()
            > 1_000
    );
    // A query string is no other endpoint.
    let query = http("GET", format!("{base}/metrics?name[]=up")).await;
    assert_eq!(query.status, 200);
    // Not HTTP at all: hyper's 400, and the endpoint goes on serving.
    let port = service.metrics_address().unwrap().port();
    let garbage =
        tokio::task::spawn_blocking(move || client::send_raw(port, b"NOT HTTP AT ALL\r\n\r\n"))
            .await
            .unwrap();
    assert_eq!(garbage.status, 400);
    scrape(&service).await;
    // The gRPC port is not the endpoint: the endpoint is not on it.
    let on_grpc = client::try_send("GET", &format!("{}/metrics", service.url()), &[], None);
    assert!(
        !matches!(on_grpc, Ok(ref reply) if reply.status == 200),
        "{on_grpc:?}"
    );
}

#[test]
fn without_the_flag_there_is_no_endpoint_and_a_taken_port_stops_the_start() {
    let redis = RedisServer::start().unwrap();
    let plain = RateLimitService::start(binary(), &redis.url()).unwrap();
    assert_eq!(plain.metrics_address(), None);
    drop(plain);

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let refused = RateLimitService::start_with(
        binary(),
        &["--redis-url", &redis.url(), "--metrics-listen", &address],
    )
    .unwrap_err()
    .to_string();
    assert!(
        refused.contains(&format!("--metrics-listen {address}: ")),
        "{refused}"
    );
    let malformed = RateLimitService::start_with(
        binary(),
        &["--redis-url", &redis.url(), "--metrics-listen", "9102"],
    )
    .unwrap_err()
    .to_string();
    assert!(
        malformed.contains("--metrics-listen 9102: invalid socket address syntax (want ADDR:PORT)"),
        "{malformed}"
    );
}
