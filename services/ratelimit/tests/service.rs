//! The service as Envoy meets it: the real binary, a real redis-server, and the gRPC client
//! from envoy-types. Each test has its own Redis and its own service processes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::binary;
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::rate_limit_descriptor::{
    Entry, RateLimitOverride,
};
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::rate_limit::Unit;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::{Code, RateLimit};
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_client::RateLimitServiceClient;
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use envoy_types::pb::google::protobuf::UInt64Value;
use portcullis_core::rate_limit::Period;
use portcullis_tests::ratelimit_service::RateLimitService;
use portcullis_tests::redis::RedisServer;
use tonic::transport::Channel;

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

fn request(descriptors: Vec<RateLimitDescriptor>) -> RateLimitRequest {
    RateLimitRequest {
        domain: "edge".to_owned(),
        descriptors,
        hits_addend: 0,
    }
}

async fn ask(
    client: &mut RateLimitServiceClient<Channel>,
    req: &RateLimitRequest,
) -> RateLimitResponse {
    client
        .should_rate_limit(req.clone())
        .await
        .unwrap()
        .into_inner()
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The counter key the README documents, spelled out independently of the service's code.
fn key(entries: &str, period: Period) -> String {
    let start = period.window_at(now_secs()).start;
    format!("{{edge}}:{entries}:{}:{start}", period.name())
}

/// `tasks` concurrent clients of `services` (round-robin), each sending `each` copies of
/// `req`: how many were admitted.
async fn hammer(
    services: &[&RateLimitService],
    tasks: usize,
    each: usize,
    req: &RateLimitRequest,
) -> usize {
    let mut handles = Vec::new();
    for task in 0..tasks {
        let mut client = client(services[task % services.len()]).await;
        let req = req.clone();
        handles.push(tokio::spawn(async move {
            let mut admitted = 0;
            for _ in 0..each {
                if ask(&mut client, &req).await.overall_code == Code::Ok as i32 {
                    admitted += 1;
                }
            }
            admitted
        }));
    }
    let mut admitted = 0;
    for handle in handles {
        admitted += handle.await.unwrap();
    }
    admitted
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn admits_exactly_the_limit_of_many_concurrent_requests() {
    let redis = RedisServer::start().unwrap();
    let service = RateLimitService::start(binary(), &redis.url()).unwrap();
    let req = request(vec![descriptor(
        &[("route", "users")],
        Some((150, Unit::Day)),
    )]);
    assert_eq!(hammer(&[&service], 8, 50, &req).await, 150);
    let counter = key("route=users", Period::Day);
    assert_eq!(redis.integer(&["GET", &counter]).unwrap(), Some(150));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_on_one_redis_admit_exactly_the_limit_between_them() {
    let redis = RedisServer::start().unwrap();
    let one = RateLimitService::start(binary(), &redis.url()).unwrap();
    let two = RateLimitService::start(binary(), &redis.url()).unwrap();
    let req = request(vec![descriptor(
        &[("route", "users")],
        Some((150, Unit::Day)),
    )]);
    assert_eq!(hammer(&[&one, &two], 8, 50, &req).await, 150);
    assert_eq!(
        redis
            .integer(&["GET", &key("route=users", Period::Day)])
            .unwrap(),
        Some(150)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_descriptor_over_counts_none_of_the_others() {
    let redis = RedisServer::start().unwrap();
    let service = RateLimitService::start(binary(), &redis.url()).unwrap();
    let mut client = client(&service).await;
    let req = request(vec![
        descriptor(&[("route", "pay")], Some((100, Unit::Day))),
        descriptor(&[("consumer", "app")], Some((2, Unit::Day))),
    ]);
    let codes: Vec<i32> = {
        let mut codes = Vec::new();
        for _ in 0..5 {
            codes.push(ask(&mut client, &req).await.overall_code);
        }
        codes
    };
    let (ok, over) = (Code::Ok as i32, Code::OverLimit as i32);
    assert_eq!(codes, vec![ok, ok, over, over, over]);
    assert_eq!(
        redis
            .integer(&["GET", &key("route=pay", Period::Day)])
            .unwrap(),
        Some(2)
    );
    assert_eq!(
        redis
            .integer(&["GET", &key("consumer=app", Period::Day)])
            .unwrap(),
        Some(2)
    );

    let refused = ask(&mut client, &req).await;
    assert_eq!(refused.statuses[0].code, ok);
    assert_eq!(refused.statuses[0].limit_remaining, 98);
    assert_eq!(refused.statuses[1].code, over);
    assert_eq!(refused.statuses[1].limit_remaining, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_requests_count_nowhere() {
    let redis = RedisServer::start().unwrap();
    let service = RateLimitService::start(binary(), &redis.url()).unwrap();
    let mut client = client(&service).await;
    let req = request(vec![descriptor(
        &[("ip", "10.0.0.1")],
        Some((3, Unit::Hour)),
    )]);
    let mut admitted = 0;
    for _ in 0..10 {
        if ask(&mut client, &req).await.overall_code == Code::Ok as i32 {
            admitted += 1;
        }
    }
    assert_eq!(admitted, 3);
    assert_eq!(
        redis
            .integer(&["GET", &key("ip=10.0.0.1", Period::Hour)])
            .unwrap(),
        Some(3)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_limit_remaining_and_time_to_reset() {
    let redis = RedisServer::start().unwrap();
    let service = RateLimitService::start(binary(), &redis.url()).unwrap();
    let mut client = client(&service).await;
    let mut req = request(vec![descriptor(
        &[("route", "users")],
        Some((5, Unit::Hour)),
    )]);
    req.hits_addend = 2;
    let first = ask(&mut client, &req).await;
    let end = Period::Hour.window_at(now_secs()).end;
    let status = &first.statuses[0];
    assert_eq!(first.overall_code, Code::Ok as i32);
    assert_eq!(
        status.current_limit,
        Some(RateLimit {
            name: String::new(),
            requests_per_unit: 5,
            unit: Unit::Hour as i32
        })
    );
    assert_eq!(status.limit_remaining, 3);
    let reset = status.duration_until_reset.unwrap();
    let expected = end.saturating_sub(now_secs()) as i64;
    assert!(
        (reset.seconds - expected).abs() <= 1,
        "reset {reset:?}, window ends in {expected}s"
    );

    assert_eq!(ask(&mut client, &req).await.statuses[0].limit_remaining, 1);
    let refused = ask(&mut client, &req).await;
    assert_eq!(refused.overall_code, Code::OverLimit as i32);
    assert_eq!(
        refused.statuses[0].limit_remaining, 1,
        "one left, but this request asked for two"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_descriptor_without_a_limit_is_ok_even_when_redis_is_down() {
    let mut redis = RedisServer::start().unwrap();
    let service = RateLimitService::start(binary(), &redis.url()).unwrap();
    redis.stop();
    let mut client = client(&service).await;
    let answer = ask(
        &mut client,
        &request(vec![descriptor(&[("route", "users")], None)]),
    )
    .await;
    assert_eq!(answer.overall_code, Code::Ok as i32);
    assert_eq!(answer.statuses.len(), 1);
    assert_eq!(answer.statuses[0].code, Code::Ok as i32);
    assert_eq!(answer.statuses[0].current_limit, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_unit_is_an_invalid_argument() {
    let redis = RedisServer::start().unwrap();
    let service = RateLimitService::start(binary(), &redis.url()).unwrap();
    let mut client = client(&service).await;
    let req = request(vec![descriptor(
        &[("route", "users")],
        Some((5, Unit::Unknown)),
    )]);
    let status = client.should_rate_limit(req).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().contains("descriptors[0].limit.unit"),
        "{}",
        status.message()
    );
}

/// Asks until the answer is not UNAVAILABLE, for at most `bound`.
async fn until_available(
    client: &mut RateLimitServiceClient<Channel>,
    req: &RateLimitRequest,
    bound: Duration,
) -> RateLimitResponse {
    let deadline = Instant::now() + bound;
    loop {
        match client.should_rate_limit(req.clone()).await {
            Ok(answer) => return answer.into_inner(),
            Err(status)
                if status.code() == tonic::Code::Unavailable && Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(status) => panic!("still failing after {bound:?}: {status:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_down_is_unavailable_at_once_and_counting_resumes_exactly_when_it_returns() {
    let mut redis = RedisServer::start().unwrap();
    let service = RateLimitService::start(binary(), &redis.url()).unwrap();
    let mut client = client(&service).await;
    let req = request(vec![descriptor(
        &[("route", "users")],
        Some((20, Unit::Day)),
    )]);
    assert_eq!(ask(&mut client, &req).await.overall_code, Code::Ok as i32);

    redis.stop();
    for _ in 0..5 {
        let started = Instant::now();
        let status = client.should_rate_limit(req.clone()).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
        assert!(status.message().contains("Redis"), "{}", status.message());
        assert!(
            started.elapsed() < Duration::from_millis(900),
            "took {:?}",
            started.elapsed()
        );
    }

    // Back, empty (nothing is saved): a fresh count, exact again under concurrency.
    redis.start_again().unwrap();
    until_available(&mut client, &req, Duration::from_secs(5)).await;
    assert_eq!(hammer(&[&service], 4, 20, &req).await, 19);
    assert_eq!(
        redis
            .integer(&["GET", &key("route=users", Period::Day)])
            .unwrap(),
        Some(20)
    );
    assert!(
        service.log().contains("cannot connect to Redis"),
        "{}",
        service.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_while_redis_is_down_and_serves_once_it_is_up() {
    let mut redis = RedisServer::start().unwrap();
    redis.stop();
    let service = RateLimitService::start(binary(), &redis.url()).unwrap();
    let mut client = client(&service).await;
    let req = request(vec![descriptor(
        &[("route", "users")],
        Some((5, Unit::Day)),
    )]);
    let status = client.should_rate_limit(req.clone()).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable);
    redis.start_again().unwrap();
    let answer = until_available(&mut client, &req, Duration::from_secs(5)).await;
    assert_eq!(answer.statuses[0].limit_remaining, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_stops_answering_is_unavailable_within_the_timeout() {
    let redis = RedisServer::start().unwrap();
    let service = RateLimitService::start_with(
        binary(),
        &["--redis-url", &redis.url(), "--redis-timeout-ms", "200"],
    )
    .unwrap();
    let mut client = client(&service).await;
    let req = request(vec![descriptor(
        &[("route", "users")],
        Some((5, Unit::Day)),
    )]);
    assert_eq!(ask(&mut client, &req).await.overall_code, Code::Ok as i32);
    redis.pause();
    let started = Instant::now();
    let status = client.should_rate_limit(req.clone()).await.unwrap_err();
    let took = started.elapsed();
    redis.resume();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(
        status.message().contains("within 200 ms"),
        "{}",
        status.message()
    );
    assert!(took < Duration::from_millis(900), "took {took:?}");
    // Redis runs the script it had already received once it thaws: a call that timed out
    // may still have counted (the README says so).
    let answer = until_available(&mut client, &req, Duration::from_secs(5)).await;
    let remaining = answer.statuses[0].limit_remaining;
    assert!((2..=3).contains(&remaining), "remaining {remaining}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn month_and_year_counters_expire_with_their_window() {
    let redis = RedisServer::start().unwrap();
    let service = RateLimitService::start(binary(), &redis.url()).unwrap();
    let mut client = client(&service).await;
    let req = request(vec![
        descriptor(&[("plan", "free")], Some((1_000, Unit::Month))),
        descriptor(&[("plan", "free")], Some((10_000, Unit::Year))),
        descriptor(&[("plan", "free")], Some((500, Unit::Week))),
    ]);
    assert_eq!(ask(&mut client, &req).await.overall_code, Code::Ok as i32);
    let now = now_secs() as i64;
    for period in [Period::Month, Period::Year] {
        let counter = key("plan=free", period);
        let ttl = redis.integer(&["TTL", &counter]).unwrap().unwrap();
        let end = period.window_at(now as u64).end as i64;
        // Window end plus the 5 s margin, give or take the second the request took.
        assert!(
            (ttl - (end - now + 5)).abs() <= 2,
            "{counter}: TTL {ttl}, window ends in {}",
            end - now
        );
    }
    assert_eq!(redis.integer(&["DBSIZE"]).unwrap(), Some(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stops_cleanly_on_sigterm() {
    let redis = RedisServer::start().unwrap();
    let mut service = RateLimitService::start(binary(), &redis.url()).unwrap();
    assert!(service.stop(), "exit on SIGTERM; log:\n{}", service.log());
    assert!(service.log().contains("SIGTERM"), "{}", service.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_counter_listed_twice_in_one_request_sees_both_hits() {
    let redis = RedisServer::start().unwrap();
    let service = RateLimitService::start(binary(), &redis.url()).unwrap();
    let mut client = client(&service).await;
    // The same entries twice: one counter, two hits per request, limit 3.
    let twice = descriptor(&[("route", "users")], Some((3, Unit::Day)));
    let req = request(vec![twice.clone(), twice]);
    let first = ask(&mut client, &req).await;
    assert_eq!(first.overall_code, Code::Ok as i32);
    assert_eq!(
        redis
            .integer(&["GET", &key("route=users", Period::Day)])
            .unwrap(),
        Some(2)
    );
    // 2 + 1 fits, 2 + 1 + 1 does not: refused, nothing counted.
    let second = ask(&mut client, &req).await;
    assert_eq!(second.overall_code, Code::OverLimit as i32);
    assert_eq!(second.statuses[0].code, Code::Ok as i32);
    assert_eq!(second.statuses[1].code, Code::OverLimit as i32);
    assert_eq!(
        redis
            .integer(&["GET", &key("route=users", Period::Day)])
            .unwrap(),
        Some(2)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_limits_apply_to_descriptors_without_an_override_and_an_override_wins() {
    let redis = RedisServer::start().unwrap();
    let dir = portcullis_tests::paths::ScratchDir::new("ratelimit-config").unwrap();
    let config = dir.path().join("limits.json");
    std::fs::write(
        &config,
        r#"{ "limits": [ { "domain": "edge", "entries": [{ "key": "remote_address" }],
                          "requests_per_unit": 2, "unit": "HOUR" } ] }"#,
    )
    .unwrap();
    let config = config.to_string_lossy().into_owned();
    let service = RateLimitService::start_with(
        binary(),
        &["--redis-url", &redis.url(), "--config", &config],
    )
    .unwrap();
    let mut client = client(&service).await;
    // Each address counted on its own, two an hour.
    for ip in ["10.0.0.1", "10.0.0.2"] {
        let req = request(vec![descriptor(&[("remote_address", ip)], None)]);
        let mut answers = Vec::new();
        for _ in 0..3 {
            answers.push(ask(&mut client, &req).await.overall_code);
        }
        let (ok, over) = (Code::Ok as i32, Code::OverLimit as i32);
        assert_eq!(answers, vec![ok, ok, over], "{ip}");
    }
    let answer = ask(
        &mut client,
        &request(vec![descriptor(&[("remote_address", "10.0.0.3")], None)]),
    )
    .await;
    assert_eq!(
        answer.statuses[0].current_limit,
        Some(RateLimit {
            name: String::new(),
            requests_per_unit: 2,
            unit: Unit::Hour as i32
        })
    );
    // An override replaces the file's limit (and counts in its own unit's window).
    let overridden = request(vec![descriptor(
        &[("remote_address", "10.0.0.1")],
        Some((5, Unit::Day)),
    )]);
    assert_eq!(
        ask(&mut client, &overridden).await.statuses[0].limit_remaining,
        4
    );
}

#[test]
fn a_broken_static_limits_file_keeps_the_service_from_starting() {
    let dir = portcullis_tests::paths::ScratchDir::new("ratelimit-config").unwrap();
    let config = dir.path().join("limits.json");
    std::fs::write(
        &config,
        r#"{"limits":[{"domain":"d","entries":[{"key":"k"}],"requests_per_unit":1,"unit":"FORTNIGHT"}]}"#,
    )
    .unwrap();
    let config = config.to_string_lossy().into_owned();
    let error = RateLimitService::start_with(binary(), &["--config", &config]).unwrap_err();
    let error = format!("{error:#}");
    assert!(
        error.contains(r#"limits[0].unit: "FORTNIGHT" is not one of SECOND"#),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hits_past_the_ceiling_are_refused_and_count_nowhere() {
    let redis = RedisServer::start().unwrap();
    let service = RateLimitService::start_with(
        binary(),
        &["--redis-url", &redis.url(), "--max-hits-addend", "5"],
    )
    .unwrap();
    let mut client = client(&service).await;
    let mut req = request(vec![descriptor(
        &[("route", "upload")],
        Some((100, Unit::Day)),
    )]);
    req.hits_addend = 5;
    assert_eq!(ask(&mut client, &req).await.statuses[0].limit_remaining, 95);

    req.hits_addend = 6;
    let status = client.should_rate_limit(req.clone()).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert_eq!(
        status.message(),
        "hits_addend: 6 is above this service's ceiling of 5 (--max-hits-addend)"
    );
    req.hits_addend = 0;
    req.descriptors[0].hits_addend = Some(UInt64Value { value: 1_000_000 });
    let status = client.should_rate_limit(req.clone()).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert_eq!(
        status.message(),
        "descriptors[0].hits_addend: 1000000 is above this service's ceiling of 5 (--max-hits-addend)"
    );
    assert_eq!(
        redis
            .integer(&["GET", &key("route=upload", Period::Day)])
            .unwrap(),
        Some(5),
        "the refused calls counted nothing"
    );
    assert!(
        service.log().contains(
            r#"domain "edge": refused, hits_addend: 6 is above this service's ceiling of 5 (--max-hits-addend) (1 calls past a ceiling so far)"#
        ),
        "{}",
        service.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limit_override_past_the_ceiling_is_counted_against_the_ceiling() {
    let redis = RedisServer::start().unwrap();
    let service =
        RateLimitService::start_with(binary(), &["--redis-url", &redis.url(), "--max-limit", "3"])
            .unwrap();
    let mut client = client(&service).await;
    let req = request(vec![descriptor(
        &[("consumer", "greedy")],
        Some((u32::MAX, Unit::Hour)),
    )]);
    let mut codes = Vec::new();
    for _ in 0..5 {
        let answer = ask(&mut client, &req).await;
        assert_eq!(
            answer.statuses[0]
                .current_limit
                .as_ref()
                .unwrap()
                .requests_per_unit,
            3,
            "current_limit tells the caller the limit applied"
        );
        codes.push(answer.overall_code);
    }
    let (ok, over) = (Code::Ok as i32, Code::OverLimit as i32);
    assert_eq!(codes, vec![ok, ok, ok, over, over]);
    let log = service.log();
    assert!(
        log.contains(
            r#"domain "edge": descriptors[0].limit.requests_per_unit: 4294967295 clamped to 3 (--max-limit) (1 calls past a ceiling so far)"#
        ),
        "{log}"
    );
    // Logged at the 1st, 2nd and 4th time, not at every call.
    assert_eq!(log.matches("clamped to 3").count(), 3, "{log}");
}

#[test]
fn a_ceiling_out_of_range_keeps_the_service_from_starting() {
    for (flag, value) in [("--max-hits-addend", "0"), ("--max-limit", "5000000000")] {
        let error = RateLimitService::start_with(binary(), &[flag, value]).unwrap_err();
        let error = format!("{error:#}");
        assert!(
            error.contains(&format!(
                "{flag} {value}: want a whole number from 1 to 4294967295"
            )),
            "{error}"
        );
    }
}
