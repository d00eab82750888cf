//! host-test's own tests: each group of host calls, driven through the probe fixture
//! (`host-test/probe`), which records what it observes into shared data.

use std::time::Duration;

use host_test::{fixture, Host, HttpCallReply, LogLevel, Plugin, Request, UpstreamResponse};
use serde_json::Value;

fn probe(host: &Host) -> Plugin {
    host.plugin(fixture("probe"))
        .name("probe")
        .vm_id("probe")
        .start()
        .expect("probe starts")
}

/// The events the probe recorded for requests carrying `x-probe-id: id`.
fn record(host: &Host, id: &str) -> Vec<Value> {
    let (bytes, _) = host
        .shared_data("probe", &format!("probe.record.{id}"))
        .unwrap_or_default();
    serde_json::from_slice(&bytes).unwrap_or_default()
}

fn event<'a>(events: &'a [Value], name: &str) -> &'a Value {
    events
        .iter()
        .find(|e| e["event"] == name)
        .unwrap_or_else(|| panic!("no {name} event in {events:#?}"))
}

#[test]
fn start_runs_vm_start_and_configure() {
    let host = Host::new();
    let mut probe = probe(&host);
    assert!(probe.crashed().is_none());
    let ex = probe.send(Request::get("/anything"));
    assert_eq!(ex.status(), 200);
    assert!(ex.reached_upstream());
}

#[test]
fn refused_configuration_fails_start_with_the_modules_log() {
    let host = Host::new();
    let err = host
        .plugin(fixture("probe"))
        .config("refuse: field x is wrong")
        .start()
        .err()
        .expect("start must fail");
    assert!(
        err.reason.contains("proxy_on_configure returned false"),
        "{err}"
    );
    assert!(
        err.logs.iter().any(|l| l.contains("field x is wrong")),
        "{:?}",
        err.logs
    );
}

#[test]
fn a_missing_module_is_a_start_error_not_a_panic() {
    let host = Host::new();
    let err = host
        .plugin("/nonexistent.wasm")
        .start()
        .err()
        .expect("fails");
    assert!(err.reason.contains("/nonexistent.wasm"), "{err}");
}

#[test]
fn header_maps_get_add_replace_remove() {
    let host = Host::new();
    let mut probe = probe(&host);
    let ex = probe.send(
        Request::get("/h")
            .header("x-probe-id", "h")
            .header("x-probe-dup", "first")
            .header("x-probe-dup", "second")
            .header("x-probe-empty", "")
            .header("x-probe-replace", "old")
            .header("x-probe-replace", "older")
            .header("x-probe-remove", "gone"),
    );
    let up = ex.upstream.as_ref().expect("reached upstream");
    assert_eq!(up.header("x-probe-added").as_deref(), Some("1"));
    assert_eq!(up.headers.get_all("x-probe-replace"), vec!["new"]);
    assert_eq!(up.header("x-probe-remove"), None);
    assert_eq!(ex.header("x-probe-response").as_deref(), Some("1"));

    let events = record(&host, "h");
    let headers = event(&events, "request_headers");
    assert_eq!(headers["dup_first"], "first");
    // Envoy copies nothing for an empty value (null pointer); the SDK reads that as "".
    assert_eq!(headers["empty_value"], "");
    assert_eq!(headers["missing"], Value::Null);
    assert_eq!(headers["headers_len_matches"], true);
    let names: Vec<&str> = headers["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p[0].as_str().unwrap())
        .collect();
    assert_eq!(&names[..4], &[":authority", ":path", ":method", ":scheme"]);
}

#[test]
fn properties_follow_envoys_names_and_encodings() {
    let host = Host::new();
    let mut probe = probe(&host);
    let ex = probe.send(
        Request::get("/p/q?x=1")
            .header("x-probe-id", "p")
            .route("payments")
            .source("127.0.0.1:51234"),
    );
    let events = record(&host, "p");
    let p = &event(&events, "request_headers")["properties"];
    assert_eq!(p["request.path"], "/p/q?x=1");
    assert_eq!(p["request.url_path"], "/p/q");
    assert_eq!(p["request.query"], "x=1");
    assert_eq!(p["request.method"], "GET");
    assert_eq!(p["request.headers.x-probe-id"], "p");
    assert_eq!(p["xds.route_name"], "payments");
    assert_eq!(p["plugin_name"], "probe");
    assert_eq!(p["source.address.is_loopback"], true);
    assert_eq!(p["source.port.positive"], true);
    assert_eq!(p["no.such.property"], Value::Null);
    // set_property hands data to later filters through filter state.
    assert_eq!(p["probe.state"], "set-by-probe");
    assert_eq!(p["filter_state.wasm.probe.state"], "set-by-probe");
    assert_eq!(
        ex.filter_state.get("wasm.probe.state").map(Vec::as_slice),
        Some(&b"set-by-probe"[..])
    );
    let response = event(&events, "response_headers");
    assert_eq!(response["response.code"], 200);
}

/// What the probe saw of a request: its request headers and `source.address` (host part).
fn seen(
    host: &Host,
    probe: &mut Plugin,
    id: &str,
    request: Request,
) -> (Vec<(String, String)>, Value) {
    probe.send(request.header("x-probe-id", id));
    let events = record(host, id);
    let event = event(&events, "request_headers");
    let headers = event["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p[0].as_str().unwrap().to_owned(),
                p[1].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    (headers, event["properties"].clone())
}

fn value<'a>(headers: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    headers
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

/// Envoy 1.40's connection manager, measured with the probe (client on 127.0.0.1 and on a
/// non-loopback address of the machine, 192.0.2.2 there): what a filter sees of
/// `x-forwarded-for` and `source.address`.
#[test]
fn forwarded_for_and_source_address_follow_use_remote_address() {
    let host = Host::new();
    let mut probe = probe(&host);
    let from = |peer: &str| Request::get("/xff").source(peer);

    // use_remote_address: false (Envoy's default): the last entry is the client, if an IP.
    let cases = [
        ("6.6.6.6, 198.51.100.7", "198.51.100.7", false),
        ("2001:db8::7", "[2001:db8::7]", false),
        ("::ffff:198.51.100.7", "[::ffff:198.51.100.7]", false),
        ("fe80::1%4", "[fe80::1%4]", false),
        ("garbage", "192.0.2.2", true),
        ("198.51.100.7:80", "192.0.2.2", true),
        ("1.1.1.1,", "192.0.2.2", true),
    ];
    for (i, (xff, host_part, has_port)) in cases.into_iter().enumerate() {
        let (headers, p) = seen(
            &host,
            &mut probe,
            &format!("off-{i}"),
            from("192.0.2.2:5555").header("x-forwarded-for", xff),
        );
        assert_eq!(value(&headers, "x-forwarded-for"), [xff], "untouched");
        assert_eq!(p["source.address.host"], host_part, "{xff}");
        assert_eq!(p["source.address.has_port"], has_port, "{xff}");
        assert_eq!(
            value(&headers, "x-envoy-external-address"),
            Vec::<&str>::new()
        );
    }

    // use_remote_address: true: the peer appended (`,`, no space), the source is the peer.
    let (headers, p) = seen(
        &host,
        &mut probe,
        "on-proxy",
        from("192.0.2.2:5555")
            .use_remote_address(true)
            .header("x-forwarded-for", "6.6.6.6, 198.51.100.7")
            .header("x-forwarded-proto", "https")
            .header("x-envoy-external-address", "1.1.1.1")
            .header("x-after", "1"),
    );
    assert_eq!(
        value(&headers, "x-forwarded-for"),
        ["6.6.6.6, 198.51.100.7,192.0.2.2"]
    );
    assert_eq!(p["source.address.host"], "192.0.2.2");
    assert_eq!(p["source.address.has_port"], true);
    let names: Vec<&str> = headers
        .iter()
        .map(|(n, _)| n.as_str())
        .filter(|n| *n != "x-probe-id")
        .collect();
    let at = names.iter().position(|n| *n == "x-forwarded-for").unwrap();
    assert_eq!(
        names[at..],
        [
            "x-forwarded-for",
            "x-forwarded-proto",
            "x-envoy-external-address",
            "x-after",
            "x-request-id"
        ],
        "set in place"
    );
    assert_eq!(value(&headers, "x-forwarded-proto"), ["http"]);
    assert_eq!(value(&headers, "x-envoy-external-address"), ["192.0.2.2"]);

    // A loopback peer: Envoy appends its own address instead.
    let (headers, p) = seen(
        &host,
        &mut probe,
        "on-loopback",
        from("127.0.0.1:5555")
            .use_remote_address(true)
            .envoy_address("192.0.2.2"),
    );
    let tail: Vec<(&str, &str)> = headers
        .iter()
        .rev()
        .take(4)
        .rev()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        tail[..3],
        [
            ("x-forwarded-for", "192.0.2.2"),
            ("x-forwarded-proto", "http"),
            ("x-envoy-external-address", "127.0.0.1"),
        ]
    );
    assert_eq!(tail[3].0, "x-request-id");
    assert_eq!(p["source.address.host"], "127.0.0.1");

    // IPv6 peers are appended bare, and `source.address` keeps its brackets.
    let (headers, p) = seen(
        &host,
        &mut probe,
        "on-v6",
        from("[fd00::2]:5555")
            .use_remote_address(true)
            .header("x-forwarded-for", "2001:db8::7"),
    );
    assert_eq!(value(&headers, "x-forwarded-for"), ["2001:db8::7,fd00::2"]);
    assert_eq!(p["source.address.host"], "[fd00::2]");
    let (headers, _) = seen(
        &host,
        &mut probe,
        "on-v6-loopback",
        from("[::1]:5555").use_remote_address(true),
    );
    assert_eq!(
        value(&headers, "x-forwarded-for"),
        [host_test::DEFAULT_ENVOY_ADDRESS]
    );
    let (headers, _) = seen(
        &host,
        &mut probe,
        "on-empty",
        from("192.0.2.2:5555")
            .use_remote_address(true)
            .header("x-forwarded-for", ""),
    );
    assert_eq!(value(&headers, "x-forwarded-for"), ["192.0.2.2"]);
}

#[test]
fn set_property_reaches_the_next_filter_in_the_chain() {
    let host = Host::new();
    let mut first = probe(&host);
    let mut second = host
        .plugin(fixture("probe"))
        .name("second")
        .vm_id("probe")
        .start()
        .unwrap();
    let ex = host_test::send(
        &mut [&mut first, &mut second],
        Request::get("/chain").header("x-probe-id", "chain"),
    );
    assert!(ex.reached_upstream());
    let events = record(&host, "chain");
    let seen: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"] == "request_headers")
        .collect();
    assert_eq!(seen.len(), 2);
    // The second probe sees the first one's header changes.
    let names: Vec<&str> = seen[1]["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p[0].as_str().unwrap())
        .collect();
    assert!(names.contains(&"x-probe-added"), "{names:?}");
    // Responses run back through the chain in reverse order.
    let order: Vec<String> = events
        .iter()
        .filter(|e| e["event"] == "response_headers")
        .map(|e| e["headers"].to_string())
        .collect();
    assert_eq!(order.len(), 2);
    assert!(!order[0].contains("x-probe-response") && order[1].contains("x-probe-response"));
}

#[test]
fn local_response_stops_the_request_before_the_upstream() {
    let host = Host::new();
    let mut probe = probe(&host);
    let ex = probe.send(Request::get("/probe/local").header("x-probe-id", "l"));
    assert_eq!(ex.status(), 418);
    assert!(!ex.reached_upstream());
    assert_eq!(ex.body_text(), r#"{"probe":"teapot"}"#);
    assert_eq!(ex.header("x-probe-local").as_deref(), Some("1"));
    let (sender, local) = ex.local_response.clone().unwrap();
    assert_eq!(sender, "probe");
    assert_eq!(local.status, 418);
}

#[test]
fn http_call_answers_reach_the_paused_context_which_resumes() {
    let host = Host::new();
    host.upstream("probe_upstream", |req| {
        assert_eq!(req.header(":path"), Some("/callee"));
        HttpCallReply::ok("callee says hi").header("x-from", "callee")
    });
    let mut probe = probe(&host);
    let ex = probe.send(Request::get("/probe/call").header("x-probe-id", "c"));
    assert!(ex.stalled.is_none(), "{:?}", ex.stalled);
    assert_eq!(
        ex.upstream_header("x-probe-call-status").as_deref(),
        Some("200")
    );
    let events = record(&host, "c");
    let answer = event(&events, "http_call_response");
    assert_eq!(answer["body"], "callee says hi");
}

#[test]
fn http_call_failures_timeouts_and_unknown_clusters() {
    // Unknown cluster: refused at dispatch, the probe continues.
    let host = Host::new();
    let mut probe1 = probe(&host);
    let ex = probe1.send(Request::get("/probe/call").header("x-probe-id", "u"));
    assert!(ex.reached_upstream());
    assert_eq!(event(&record(&host, "u"), "dispatch")["ok"], false);

    // A slow upstream past the 5 s timeout: the callback gets a failure at the timeout.
    let host = Host::new();
    host.upstream("probe_upstream", |_| {
        HttpCallReply::ok("late").delay(Duration::from_secs(30))
    });
    let mut probe2 = probe(&host);
    let before = host.now_nanos();
    let ex = probe2.send(Request::get("/probe/call").header("x-probe-id", "t"));
    assert_eq!(host.now_nanos() - before, 5_000_000_000);
    assert!(ex.reached_upstream());
    let answer = event(&record(&host, "t"), "http_call_response").clone();
    assert_eq!(answer["num_headers_nonzero"], false);
    assert_eq!(answer["status"], Value::Null);

    // A connection failure looks the same.
    let host = Host::new();
    host.upstream("probe_upstream", |_| HttpCallReply::failure());
    let mut probe3 = probe(&host);
    probe3.send(Request::get("/probe/call").header("x-probe-id", "f"));
    assert_eq!(
        event(&record(&host, "f"), "http_call_response")["status"],
        Value::Null
    );
}

#[test]
fn bodies_in_chunks_buffering_and_replacement() {
    let host = Host::new();
    let mut probe = probe(&host);
    let ex = probe.send(
        Request::post("/probe/buffer")
            .header("x-probe-id", "b")
            .chunks(vec![b"one,".to_vec(), b"two,".to_vec(), b"three".to_vec()]),
    );
    assert_eq!(ex.upstream.as_ref().unwrap().body, b"REPLACED");
    let events = record(&host, "b");
    let bodies: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"] == "request_body")
        .collect();
    // Envoy's HTTP/1 codec: each chunk as it comes, then an empty frame ending the stream.
    assert_eq!(bodies.len(), 4);
    assert_eq!(bodies[3]["body"], "one,two,three");
    assert_eq!(bodies[3]["end_of_stream"], true);

    // Without buffering, chunks flow as they come; the response body too.
    let ex = probe.send(
        Request::post("/echo")
            .header("x-probe-id", "b2")
            .chunks(vec![b"a".to_vec(), b"b".to_vec()])
            .trailer("x-trailer", "t")
            .respond(UpstreamResponse::new(201).chunks(vec![b"r1".to_vec(), b"r2".to_vec()])),
    );
    assert_eq!(ex.upstream.as_ref().unwrap().body, b"ab");
    assert_eq!(ex.status(), 201);
    assert_eq!(ex.response.body, b"r1r2");
    let events = record(&host, "b2");
    assert_eq!(
        event(&events, "request_trailers")["trailers"][0][0],
        "x-trailer"
    );
    assert_eq!(event(&events, "response_body")["body"], "r1r2");
}

#[test]
fn shared_data_cas_across_two_vm_instances() {
    let host = Host::new();
    let mut a = probe(&host);
    let mut b = probe(&host);
    a.send(Request::get("/x").header("x-probe-id", "cas"));
    b.send(Request::get("/x").header("x-probe-id", "cas"));
    let events = record(&host, "cas");
    // Both workers' events are in one record: the second VM read the first's write.
    assert_eq!(
        events
            .iter()
            .filter(|e| e["event"] == "request_headers")
            .count(),
        2
    );
    let checks = &event(&events, "request_headers")["shared_data"];
    assert_eq!(checks["missing"], "Ok((None, None))");
    assert_eq!(checks["write_with_cas"], "Ok(())");
    assert_eq!(checks["write_with_stale_cas"], "Err(CasMismatch)");
    assert_eq!(checks["after"], "two");
    assert_eq!(checks["cas_is_nonzero"], true);
}

#[test]
fn another_worker_writing_between_get_and_set_forces_a_cas_retry() {
    let host = Host::new();
    let mut a = probe(&host);
    let mut interfered = false;
    host.on_shared_get(move |key, writer| {
        // Once, like another worker, append an event between the probe's read and write.
        if key == "probe.record.race" && !interfered {
            interfered = true;
            let mut events: Vec<Value> =
                serde_json::from_slice(writer.get(key).unwrap_or(b"[]")).unwrap_or_default();
            events.push(serde_json::json!({"event": "other-worker"}));
            writer.set(key, &serde_json::to_vec(&events).unwrap());
        }
    });
    host.set_shared_data("probe", "probe.record.race", b"[]");
    a.send(Request::get("/x").header("x-probe-id", "race"));
    host.clear_shared_get_hook();
    let events = record(&host, "race");
    // The other worker's write survived: the probe's stale CAS was refused and it retried.
    assert!(
        events.iter().any(|e| e["event"] == "other-worker"),
        "{events:#?}"
    );
    assert!(events.iter().any(|e| e["event"] == "request_headers"));
}

#[test]
fn shared_data_holds_across_threads_racing_for_real() {
    let host = Host::new();
    // The record exists before the race. A write to a missing key ignores its CAS (Envoy's
    // rule, which the host keeps), so two workers' first appends could both land blind and
    // the second erase the first: 99 of 100 in one CI run. Only appends to an existing key
    // are what this test is about.
    host.set_shared_data("probe", "probe.record.threads", b"[]");
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let mut plugin = probe(&host);
            std::thread::spawn(move || {
                for _ in 0..25 {
                    let ex = plugin.send(Request::get("/x").header("x-probe-id", "threads"));
                    assert!(ex.crash.is_none());
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let events = record(&host, "threads");
    // 4 workers x 25 requests, no lost update.
    assert_eq!(
        events
            .iter()
            .filter(|e| e["event"] == "request_headers")
            .count(),
        100
    );
}

#[test]
fn metrics_are_shared_and_readable() {
    let host = Host::new();
    let mut a = probe(&host);
    let mut b = probe(&host);
    for _ in 0..3 {
        a.send(Request::get("/m").header("x-probe-id", "m"));
    }
    b.send(Request::get("/m").header("x-probe-id", "m"));
    assert_eq!(host.metric_value("probe_requests"), 4);
    assert_eq!(host.metric("probe_ticks").unwrap().value, 0);
}

#[test]
fn logs_are_captured_by_level() {
    let host = Host::new();
    let mut probe = probe(&host);
    probe.send(Request::get("/logged"));
    assert!(host.logged(LogLevel::Info, "probe: request /logged"));
    assert!(!host.logged(LogLevel::Warn, "probe: request /logged"));
}

#[test]
fn ticks_follow_the_test_clock() {
    let host = Host::new();
    let mut probe = host
        .plugin(fixture("probe"))
        .config("tick")
        .start()
        .unwrap();
    assert_eq!(probe.tick_period_ms(), 1000);
    probe.advance(Duration::from_millis(3500)).unwrap();
    assert_eq!(host.metric_value("probe_ticks"), 3);
    probe.advance(Duration::from_millis(500)).unwrap();
    assert_eq!(host.metric_value("probe_ticks"), 4);
}

#[test]
fn abi_and_wasi_clocks_read_the_test_clock() {
    let host = Host::new();
    host.set_unix_time(1_800_000_000);
    let mut probe = probe(&host);
    let ex = probe.send(Request::get("/probe/time"));
    assert_eq!(
        ex.upstream_header("x-probe-time").as_deref(),
        Some("1800000000")
    );
    assert_eq!(
        ex.upstream_header("x-probe-clocks-agree").as_deref(),
        Some("true")
    );
}

#[test]
fn shared_queues_wake_the_registering_root_context() {
    let host = Host::new();
    let mut probe = host
        .plugin(fixture("probe"))
        .vm_id("probe")
        .start()
        .unwrap();
    probe.send(Request::get("/probe/enqueue"));
    probe.send(Request::get("/probe/enqueue"));
    probe.run_due().unwrap();
    assert_eq!(host.metric_value("probe_queue_items"), 2);
}

#[test]
fn an_unimplemented_host_call_fails_loudly_with_its_name() {
    let host = Host::new();
    let mut probe = probe(&host);
    let ex = probe.send(Request::get("/probe/grpc-stream"));
    let crash = ex
        .crash
        .clone()
        .expect("the call must not succeed silently");
    assert!(
        crash.contains("env::proxy_grpc_stream is not implemented"),
        "{crash}"
    );
    assert_eq!(ex.status(), 503);
    assert!(!ex.reached_upstream());
}

#[test]
fn a_panic_kills_the_vm_and_later_requests_fail_closed() {
    let host = Host::new();
    let mut probe = probe(&host);
    let ex = probe.send(Request::get("/probe/panic"));
    assert!(ex.crash.is_some());
    // The panic message reached the log through WASI's stderr.
    assert!(
        host.logged(LogLevel::Error, "panicked"),
        "{:?}",
        host.logs()
    );
    let after = probe.send(Request::get("/fine"));
    assert_eq!(after.status(), 503);
    assert!(!after.reached_upstream());
}

#[test]
fn instructions_are_metered_per_callback_and_deterministic() {
    let count = || {
        let host = Host::new();
        let mut probe = probe(&host);
        let ex = probe.send(Request::get("/meter").header("x-probe-id", "meter"));
        (ex.instructions(), ex.metering.len())
    };
    let (first, callbacks) = count();
    assert!(first > 1_000, "{first}");
    assert!(callbacks >= 4, "{callbacks}");
    assert_eq!(count().0, first);
}

#[test]
fn shutdown_runs_on_done_and_on_delete() {
    let host = Host::new();
    let probe = probe(&host);
    assert!(probe.shutdown().unwrap());
}
