//! Unary gRPC calls (`dispatch_grpc_call`) as Envoy makes them, driven through the probe
//! fixture: `/probe/grpc` calls a scripted service and echoes the outcome in `x-probe-grpc-*`
//! response headers.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use host_test::{fixture, GrpcAnswer, Host, Plugin, Request};

fn probe(host: &Host, config: &str) -> Plugin {
    host.plugin(fixture("probe"))
        .name("probe")
        .vm_id("probe")
        .config(config)
        .start()
        .expect("probe starts")
}

fn grpc(message: &str) -> Request {
    Request::get("/probe/grpc").header("x-probe-grpc-message", message)
}

#[test]
fn a_successful_call_delivers_its_message_to_the_waiting_request() {
    let host = Host::new();
    host.grpc_service("probe_grpc", |req| {
        GrpcAnswer::ok(format!("echo {}", String::from_utf8_lossy(&req.message)))
            .delay(Duration::from_millis(30))
    });
    let mut probe = probe(&host, "");
    let before = host.now_nanos();
    let ex = probe.send(grpc("hi").header("x-probe-grpc-timeout-ms", "250"));
    assert_eq!(ex.status(), 200, "{ex:?}");
    assert!(ex.reached_upstream());
    assert_eq!(ex.header("x-probe-grpc-dispatch").as_deref(), Some("Ok"));
    assert_eq!(ex.header("x-probe-grpc-status").as_deref(), Some("0"));
    assert_eq!(ex.header("x-probe-grpc-body").as_deref(), Some("echo hi"));
    // The request waited for the answer: the clock moved by its delay.
    assert_eq!(host.now_nanos() - before, 30_000_000);
    let calls = host.grpc_calls();
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert_eq!(
        (call.plugin.as_str(), call.cluster.as_str()),
        ("probe", "probe_grpc")
    );
    assert_eq!(
        (call.service.as_str(), call.method.as_str()),
        ("probe.Echo", "Say")
    );
    assert_eq!(call.message, b"hi");
    assert_eq!(call.metadata("x-probe-meta").as_deref(), Some("m1"));
    assert_eq!(call.timeout, Duration::from_millis(250));
    assert_eq!(probe.pending_grpc_calls(), 0);
}

#[test]
fn an_error_status_arrives_through_close_with_its_message() {
    let host = Host::new();
    host.grpc_service("probe_grpc", |_| {
        GrpcAnswer::status(8, "over the limit").delay(Duration::from_millis(5))
    });
    let mut probe = probe(&host, "");
    let ex = probe.send(grpc("x"));
    assert_eq!(ex.status(), 200, "{ex:?}");
    assert_eq!(ex.header("x-probe-grpc-status").as_deref(), Some("8"));
    assert_eq!(ex.header("x-probe-grpc-body").as_deref(), Some(""));
    assert_eq!(ex.header("x-probe-grpc-code").as_deref(), Some("8"));
    assert_eq!(
        ex.header("x-probe-grpc-message").as_deref(),
        Some("over the limit")
    );
}

#[test]
fn ok_without_a_message_is_internal_as_in_envoy() {
    let host = Host::new();
    host.grpc_service("probe_grpc", |_| GrpcAnswer::status(0, ""));
    let mut probe = probe(&host, "");
    let ex = probe.send(grpc("x"));
    assert_eq!(ex.header("x-probe-grpc-status").as_deref(), Some("13"));
}

#[test]
fn an_answer_later_than_the_timeout_ends_the_call_at_the_timeout() {
    let host = Host::new();
    host.grpc_service("probe_grpc", |_| {
        GrpcAnswer::ok("too late").delay(Duration::from_secs(3))
    });
    let mut probe = probe(&host, "");
    let before = host.now_nanos();
    let ex = probe.send(grpc("x").header("x-probe-grpc-timeout-ms", "200"));
    assert_eq!(ex.status(), 200, "{ex:?}");
    // Envoy 1.40 ends a timed-out call UNAVAILABLE, not DEADLINE_EXCEEDED (conformance_grpc).
    assert_eq!(ex.header("x-probe-grpc-status").as_deref(), Some("14"));
    assert_eq!(
        ex.header("x-probe-grpc-message").as_deref(),
        Some("upstream request timeout{response_timeout}")
    );
    assert_eq!(ex.header("x-probe-grpc-body").as_deref(), Some(""));
    assert_eq!(host.now_nanos() - before, 200_000_000);
    assert_eq!(probe.pending_grpc_calls(), 0);
}

#[test]
fn an_unknown_cluster_is_refused_at_dispatch_with_parse_failure() {
    let host = Host::new();
    let mut probe = probe(&host, "");
    let ex = probe.send(grpc("x").header("x-probe-grpc-cluster", "nowhere"));
    assert!(ex.crash.is_none(), "{ex:?}");
    assert_eq!(ex.status(), 200);
    assert_eq!(
        ex.header("x-probe-grpc-dispatch").as_deref(),
        Some("ParseFailure")
    );
    assert!(ex.header("x-probe-grpc-status").is_none());
    assert!(host.grpc_calls().is_empty());
}

#[test]
fn a_call_outlives_the_stream_that_made_it_and_its_answer_is_dropped() {
    let host = Host::new();
    host.grpc_service("probe_grpc", |_| {
        GrpcAnswer::ok("late").delay(Duration::from_millis(500))
    });
    let mut probe = probe(&host, "");
    let ex = probe.send(grpc("x").header("x-probe-grpc-wait", "no"));
    assert_eq!(ex.status(), 200, "{ex:?}");
    assert!(ex.header("x-probe-grpc-status").is_none());
    // Envoy keeps the call on the root context after the stream is gone...
    assert_eq!(probe.pending_grpc_calls(), 1);
    probe.advance(Duration::from_millis(499)).unwrap();
    assert_eq!(probe.pending_grpc_calls(), 1);
    // ...and delivers its answer, which the SDK drops: no context is left to take it.
    probe.advance(Duration::from_millis(1)).unwrap();
    assert_eq!(probe.pending_grpc_calls(), 0);
    assert!(probe.crashed().is_none());
    assert_eq!(host.metric_value("probe_grpc_root_answers"), 0);
    // The VM is fine for the next request.
    assert_eq!(probe.send(Request::get("/after")).status(), 200);
}

#[test]
fn cancel_drops_the_call_without_a_callback_and_a_second_cancel_is_not_found() {
    let host = Host::new();
    host.grpc_service("probe_grpc", |_| GrpcAnswer::ok("never seen"));
    let mut probe = probe(&host, "");
    let ex = probe.send(grpc("x").header("x-probe-grpc-cancel", "yes"));
    assert_eq!(ex.status(), 200, "{ex:?}");
    assert_eq!(
        ex.header("x-probe-grpc-cancel").as_deref(),
        Some("Ok(()) then Err(NotFound)")
    );
    assert!(ex.header("x-probe-grpc-status").is_none());
    assert_eq!(probe.pending_grpc_calls(), 0);
}

#[test]
fn a_root_context_call_is_answered_by_advance() {
    let host = Host::new();
    host.grpc_service("probe_grpc", |req| {
        assert_eq!(req.metadata("x-root").as_deref(), Some("yes"));
        GrpcAnswer::ok("hello root").delay(Duration::from_secs(1))
    });
    let mut probe = probe(&host, "grpc-root");
    assert_eq!(probe.pending_grpc_calls(), 1);
    probe.run_due().unwrap();
    assert_eq!(host.metric_value("probe_grpc_root_answers"), 0);
    probe.advance(Duration::from_secs(1)).unwrap();
    assert_eq!(host.metric_value("probe_grpc_root_answers"), 1);
    let (bytes, _) = host.shared_data("probe", "probe.grpc.root").unwrap();
    let outcome: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(outcome["status"], 0);
    assert_eq!(outcome["body"], "hello root");
    // Envoy's gRPC call tokens: 5, 9, 13, … (the low bits say "gRPC call").
    assert_eq!(outcome["token"], 5);
}

/// A tiny rate limit service: the third call and later are over the limit.
#[test]
fn a_scripted_service_keeps_state_across_calls_and_threads() {
    let host = Host::new();
    let seen = Arc::new(AtomicU32::new(0));
    let messages = Arc::new(Mutex::new(Vec::new()));
    let (count, log) = (seen.clone(), messages.clone());
    host.grpc_service("probe_grpc", move |req| {
        log.lock().unwrap().push(req.message.clone());
        match count.fetch_add(1, Ordering::SeqCst) {
            0 | 1 => GrpcAnswer::ok("OK"),
            _ => GrpcAnswer::status(8, "OVER_LIMIT"),
        }
    });
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let host = host.clone();
            std::thread::spawn(move || {
                let mut probe = probe(&host, "");
                probe.send(grpc("n")).header("x-probe-grpc-status")
            })
        })
        .collect();
    let mut statuses: Vec<_> = workers
        .into_iter()
        .map(|w| w.join().unwrap().unwrap())
        .collect();
    let mut probe = probe(&host, "");
    statuses.push(probe.send(grpc("n")).header("x-probe-grpc-status").unwrap());
    assert_eq!(statuses, ["0", "0", "8"]);
    assert_eq!(seen.load(Ordering::SeqCst), 3);
    assert_eq!(messages.lock().unwrap().len(), 3);
    assert_eq!(host.grpc_calls().len(), 3);
}

#[test]
fn a_stream_call_is_still_unimplemented_and_says_so() {
    let host = Host::new();
    let mut probe = probe(&host, "");
    let ex = probe.send(Request::get("/probe/grpc-stream"));
    let crash = ex.crash.clone().expect("must not succeed silently");
    assert!(
        crash.contains("env::proxy_grpc_stream is not implemented"),
        "{crash}"
    );
}
