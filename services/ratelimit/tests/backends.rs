//! The service on a Redis Cluster and behind Redis Sentinel: real `redis-server` processes
//! in cluster and sentinel mode, the real binary, the envoy-types gRPC client.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::binary;
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::rate_limit_descriptor::{
    Entry, RateLimitOverride,
};
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::rate_limit::Unit;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_client::RateLimitServiceClient;
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use portcullis_core::rate_limit::Period;
use portcullis_tests::ratelimit_service::RateLimitService;
use portcullis_tests::redis::{RedisCluster, RedisServer};
use tonic::transport::Channel;

fn limited(domain: &str, pairs: &[(&str, &str)], limit: u32) -> (String, RateLimitDescriptor) {
    let descriptor = RateLimitDescriptor {
        entries: pairs
            .iter()
            .map(|(key, value)| Entry {
                key: key.to_string(),
                value: value.to_string(),
            })
            .collect(),
        limit: Some(RateLimitOverride {
            requests_per_unit: limit,
            unit: Unit::Day as i32,
        }),
        hits_addend: None,
        is_negative_hits: false,
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let entries: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let key = format!(
        "{{{domain}}}:{}:day:{}",
        entries.join(","),
        Period::Day.window_at(now).start
    );
    (key, descriptor)
}

async fn ask(
    client: &mut RateLimitServiceClient<Channel>,
    req: &RateLimitRequest,
) -> Result<RateLimitResponse, tonic::Status> {
    client
        .should_rate_limit(req.clone())
        .await
        .map(|r| r.into_inner())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redis_cluster_counts_exactly_with_every_key_of_a_request_on_one_slot() {
    let cluster = RedisCluster::start(3).unwrap();
    let service = RateLimitService::start_with(
        binary(),
        &[
            "--redis-cluster",
            &cluster.urls().join(","),
            "--metrics-listen",
            "127.0.0.1:0",
        ],
    )
    .unwrap();
    // Three domains, whose hash tags fall on different primaries.
    let mut expected = Vec::new();
    let mut handles = Vec::new();
    for domain in ["edge", "internal", "partners"] {
        let (route_key, route) = limited(domain, &[("route", "users")], 40);
        let (app_key, app) = limited(domain, &[("consumer", "app")], 1_000);
        expected.push((route_key, 40));
        expected.push((app_key, 40));
        let req = RateLimitRequest {
            domain: domain.to_owned(),
            descriptors: vec![route, app],
            hits_addend: 0,
        };
        for _ in 0..4 {
            let mut client = RateLimitServiceClient::connect(service.url())
                .await
                .unwrap();
            let req = req.clone();
            handles.push(tokio::spawn(async move {
                let mut admitted = 0;
                for _ in 0..25 {
                    let answer = ask(&mut client, &req).await.unwrap();
                    if answer.overall_code == Code::Ok as i32 {
                        admitted += 1;
                    }
                }
                admitted
            }));
        }
    }
    let mut admitted = 0;
    for handle in handles {
        admitted += handle.await.unwrap();
    }
    assert_eq!(admitted, 3 * 40, "{}", service.log());
    for (key, count) in expected {
        assert_eq!(
            cluster.integer(&["GET", &key]).unwrap(),
            Some(count),
            "{key}"
        );
    }
    let holding: Vec<i64> = cluster
        .nodes()
        .iter()
        .map(|node| node.integer(&["DBSIZE"]).unwrap().unwrap())
        .collect();
    assert_eq!(holding.iter().sum::<i64>(), 6, "{holding:?}");
    // Each domain's pair of counters sits on one node, and the domains are spread out.
    assert!(holding.iter().all(|n| n % 2 == 0), "{holding:?}");
    assert!(
        holding.iter().filter(|n| **n > 0).count() >= 2,
        "{holding:?}"
    );
    // Ready: every primary answers the probe's PING.
    assert_eq!(readiness(&service).await, (200, "ready".to_owned()));
}

/// `GET /readyz`: its status and the `status` of its JSON.
async fn readiness(service: &RateLimitService) -> (u16, String) {
    let url = format!("{}/readyz", service.metrics_url());
    let reply = tokio::task::spawn_blocking(move || portcullis_tests::client::get(&url, &[]))
        .await
        .unwrap();
    let status = reply.json()["status"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    (reply.status, status)
}

/// Asks until the answer is not UNAVAILABLE, for at most `bound`.
async fn until_available(
    client: &mut RateLimitServiceClient<Channel>,
    req: &RateLimitRequest,
    bound: Duration,
) -> RateLimitResponse {
    let deadline = Instant::now() + bound;
    loop {
        match ask(client, req).await {
            Ok(answer) => return answer,
            Err(status)
                if status.code() == tonic::Code::Unavailable && Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(status) => panic!("still failing after {bound:?}: {status:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_sentinel_it_follows_a_fail_over_to_the_promoted_replica() {
    let mut primary = RedisServer::start().unwrap();
    let primary_port = primary.port().to_string();
    let replica = RedisServer::start_with(&["--replicaof", "127.0.0.1", &primary_port]).unwrap();
    // The replica is in sync once it has what the primary was given.
    primary.command(&["SET", "probe", "1"]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while replica.command(&["GET", "probe"]).unwrap() != "1" {
        assert!(Instant::now() < deadline, "the replica never synced");
        std::thread::sleep(Duration::from_millis(50));
    }
    let sentinel = RedisServer::sentinel("portcullis", primary.port()).unwrap();
    let sentinels = format!("portcullis,redis://127.0.0.1:{}", sentinel.port());
    let service = RateLimitService::start_with(
        binary(),
        &[
            "--redis-sentinel",
            &sentinels,
            "--metrics-listen",
            "127.0.0.1:0",
        ],
    )
    .unwrap();
    let mut client = RateLimitServiceClient::connect(service.url())
        .await
        .unwrap();

    let (key, descriptor) = limited("edge", &[("route", "users")], 100);
    let req = RateLimitRequest {
        domain: "edge".to_owned(),
        descriptors: vec![descriptor],
        hits_addend: 0,
    };
    for _ in 0..3 {
        let answer = until_available(&mut client, &req, Duration::from_secs(5)).await;
        assert_eq!(answer.overall_code, Code::Ok as i32);
    }
    assert_eq!(primary.integer(&["GET", &key]).unwrap(), Some(3));
    let deadline = Instant::now() + Duration::from_secs(5);
    while replica.integer(&["GET", &key]).unwrap() != Some(3) {
        assert!(
            Instant::now() < deadline,
            "the count never reached the replica"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    primary.stop();
    // Sentinel sees the primary down after 1 s and promotes the replica; the service asks
    // Sentinel again on reconnection and counts on from what the replica holds.
    let answer = until_available(&mut client, &req, Duration::from_secs(30)).await;
    assert_eq!(answer.overall_code, Code::Ok as i32, "{}", service.log());
    assert_eq!(answer.statuses[0].limit_remaining, 96);
    assert_eq!(replica.integer(&["GET", &key]).unwrap(), Some(4));
    // Ready again on the promoted replica, asked through Sentinel.
    assert_eq!(readiness(&service).await, (200, "ready".to_owned()));
    drop(sentinel);
}
