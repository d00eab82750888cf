//! Conformance of host-test with Envoy: the probe filter (`host-test/probe`) records what the
//! host shows it — headers, properties, shared data, bodies, local responses, `http_call`
//! answers, callback order — and the same requests run through host-test and through a real
//! Envoy 1.40 must leave the same records. A difference is a host-test bug, or a documented
//! difference in host-test's README (normalised below, with the reason).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use host_test::{Host, HttpCallReply, Request, UpstreamResponse};
use portcullis_tests::client;
use portcullis_tests::config::{wasm_filter, Gateway};
use portcullis_tests::envoy::Envoy;
use portcullis_tests::paths;
use portcullis_tests::upstream::{Response, Upstream};
use serde_json::Value;

/// One request, sent identically to both hosts.
struct Scenario {
    id: &'static str,
    method: &'static str,
    path: &'static str,
    headers: &'static [(&'static str, &'static str)],
    body: Option<&'static str>,
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        id: "plain",
        method: "GET",
        path: "/conf/plain?a=1&b=two",
        headers: &[
            ("x-probe-dup", "first"),
            ("x-probe-dup", "second"),
            ("x-probe-empty", ""),
            ("x-probe-replace", "old"),
            ("x-probe-remove", "gone"),
            ("authorization", "Bearer one"),
            ("authorization", "Bearer two"),
            ("user-agent", "a"),
            ("user-agent", "b"),
            ("cookie", "a=1"),
            ("cookie", "b=2"),
            ("x-forwarded-for", "10.0.0.1"),
            ("x-forwarded-for", "10.0.0.2"),
        ],
        body: None,
    },
    Scenario {
        id: "body",
        method: "POST",
        path: "/conf/body",
        headers: &[("content-type", "text/plain")],
        body: Some("hello body"),
    },
    Scenario {
        id: "local",
        method: "GET",
        path: "/probe/local",
        headers: &[],
        body: None,
    },
    Scenario {
        id: "call",
        method: "GET",
        path: "/probe/call",
        headers: &[],
        body: None,
    },
    Scenario {
        id: "buffer",
        method: "PUT",
        path: "/probe/buffer",
        headers: &[],
        body: Some("buffer me"),
    },
];

/// Requests for a connection manager with `use_remote_address: true`, which rewrites
/// `x-forwarded-for`, `x-forwarded-proto` and `x-envoy-external-address` before any filter.
const REMOTE_ADDRESS_SCENARIOS: &[Scenario] = &[
    Scenario {
        id: "ura-none",
        method: "GET",
        path: "/conf/ura-none",
        headers: &[],
        body: None,
    },
    Scenario {
        id: "ura-forwarded",
        method: "GET",
        path: "/conf/ura-forwarded",
        headers: &[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-for", "198.51.100.7, 2001:db8::7"),
            ("x-envoy-external-address", "1.1.1.1"),
            ("x-after", "1"),
        ],
        body: None,
    },
    Scenario {
        id: "ura-empty",
        method: "GET",
        path: "/conf/ura-empty",
        headers: &[("x-forwarded-for", "")],
        body: None,
    },
];

const UPSTREAM_BODY: &str = "hello from upstream";
const CALLEE_BODY: &str = "callee says hi";

/// Values that differ by nature between two runs (ids, times), and what each host's own
/// transport adds to an upstream response, replaced by a marker.
fn normalise(events: &mut [Value]) {
    for event in events.iter_mut() {
        for list in ["headers"] {
            if let Some(pairs) = event.get_mut(list).and_then(Value::as_array_mut) {
                pairs.retain(|p| !matches!(p[0].as_str(), Some("date" | "server")));
                for pair in pairs.iter_mut() {
                    if matches!(
                        pair[0].as_str(),
                        Some("x-request-id" | "x-envoy-upstream-service-time")
                    ) {
                        pair[1] = Value::from("<volatile>");
                    }
                }
            }
        }
    }
}

fn request_bytes(s: &Scenario) -> Vec<u8> {
    let mut raw = format!("{} {} HTTP/1.1\r\nhost: localhost\r\n", s.method, s.path);
    raw.push_str(&format!("x-probe-id: {}\r\n", s.id));
    for (k, v) in s.headers {
        raw.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(body) = s.body {
        raw.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    raw.push_str("connection: close\r\n\r\n");
    raw.push_str(s.body.unwrap_or(""));
    raw.into_bytes()
}

/// `envoy_address`: with `use_remote_address`, what Envoy appends for a loopback peer.
fn harness_request(s: &Scenario, envoy_address: Option<&str>) -> Request {
    let mut request = Request::new(s.method, s.path)
        .header("x-probe-id", s.id)
        .route("conf");
    if let Some(address) = envoy_address {
        request = request.use_remote_address(true).envoy_address(address);
    }
    for (k, v) in s.headers {
        request = request.header(k, v);
    }
    if let Some(body) = s.body {
        request = request.body(body);
    }
    request.respond(
        UpstreamResponse::new(200)
            // What the recording upstream adds to every answer.
            .header("x-upstream", "app")
            .header("content-type", "text/plain")
            .body(UPSTREAM_BODY),
    )
}

type Records = BTreeMap<&'static str, (Vec<Value>, u16, String)>;

/// The probe events per scenario, and what each client got, through host-test; with
/// `envoy_address`, as a connection manager with `use_remote_address: true`.
fn through_harness(scenarios: &[Scenario], envoy_address: Option<&str>) -> Records {
    let host = Host::new();
    host.upstream("probe_upstream", |_| HttpCallReply::ok(CALLEE_BODY));
    let start = |name: &str, config: &str| {
        host.plugin(paths::fixture("probe"))
            .name(name)
            .root_id(name)
            .vm_id("probe")
            .config(config)
            .start()
            .expect("probe starts in host-test")
    };
    let (mut a, mut b) = (start("probe-a", "passive"), start("probe-b", "active"));
    let mut records = BTreeMap::new();
    for s in scenarios {
        let ex = host_test::send(&mut [&mut a, &mut b], harness_request(s, envoy_address));
        assert!(ex.crash.is_none() && ex.stalled.is_none(), "{ex:?}");
        let (bytes, _) = host
            .shared_data("probe", &format!("probe.record.{}", s.id))
            .unwrap_or_default();
        let mut events: Vec<Value> = serde_json::from_slice(&bytes).unwrap_or_default();
        normalise(&mut events);
        records.insert(s.id, (events, ex.status(), ex.body_text()));
    }
    records
}

/// The same through a real Envoy, with real upstreams on loopback.
fn through_envoy(scenarios: &[Scenario], use_remote_address: bool) -> Records {
    let app = Upstream::start("app");
    app.set_response(
        Response::new(200)
            .header("content-type", "text/plain")
            .body(UPSTREAM_BODY),
    );
    let callee = Upstream::start("probe_upstream");
    callee.set_response(Response::new(200).body(CALLEE_BODY));
    let probe = paths::fixture("probe");
    let config = Gateway::new()
        .use_remote_address(use_remote_address)
        .route("callee", "/callee", &callee)
        .route("conf", "/", &app)
        .filter(wasm_filter(
            "probe-a",
            "probe",
            "probe-a",
            &probe,
            Some("passive"),
        ))
        .filter(wasm_filter(
            "probe-b",
            "probe",
            "probe-b",
            &probe,
            Some("active"),
        ))
        .render();
    let envoy = Envoy::builder(config).start().expect("Envoy starts");
    let port = envoy.listener_port(Gateway::LISTENER);
    let mut records = BTreeMap::new();
    for s in scenarios {
        let reply = client::send_raw(port, &request_bytes(s));
        // on_log runs after the reply is sent: wait until both probes logged.
        let deadline = Instant::now() + Duration::from_secs(5);
        let events = loop {
            let dump = client::get(&envoy.url(&format!("/probe/dump?id={}", s.id)), &[]);
            let events: Vec<Value> = serde_json::from_slice(&dump.body).unwrap_or_default();
            let logged = events.iter().filter(|e| e["event"] == "log").count();
            if logged >= 2 || Instant::now() > deadline {
                break events;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut events = events;
        if std::env::var_os("CONFORMANCE_DEBUG").is_some() {
            eprintln!(
                "ENVOY {} {}: {}",
                s.id,
                reply.status,
                serde_json::to_string_pretty(&events).unwrap_or_default()
            );
        }
        normalise(&mut events);
        records.insert(s.id, (events, reply.status, reply.text()));
    }
    // The probe's counter is an Envoy stat too (custom metrics live under `wasmcustom`).
    let stats = envoy.stats_prometheus();
    assert!(
        stats.contains("probe_requests"),
        "probe_requests not in Envoy's stats"
    );
    records
}

/// Every difference between the two hosts' records, scenario by scenario.
fn differences(scenarios: &[Scenario], harness: &Records, envoy: &Records) -> Vec<String> {
    let mut differences = Vec::new();
    for s in scenarios {
        let (h, e) = (&harness[s.id], &envoy[s.id]);
        if (h.1, &h.2) != (e.1, &e.2) {
            differences.push(format!(
                "{}: client got {} {:?} from host-test, {} {:?} from Envoy",
                s.id, h.1, h.2, e.1, e.2
            ));
        }
        let longest = h.0.len().max(e.0.len());
        for i in 0..longest {
            let (he, ee) = (h.0.get(i), e.0.get(i));
            if he != ee {
                differences.push(format!(
                    "{} event {i}:\n  host-test: {}\n  envoy:     {}",
                    s.id,
                    he.map(Value::to_string).unwrap_or("(none)".into()),
                    ee.map(Value::to_string).unwrap_or("(none)".into()),
                ));
            }
        }
    }
    differences
}

#[test]
fn probe_records_match_between_host_test_and_envoy() {
    let harness = through_harness(SCENARIOS, None);
    let envoy = through_envoy(SCENARIOS, false);
    let differences = differences(SCENARIOS, &harness, &envoy);
    assert!(
        differences.is_empty(),
        "host-test differs from Envoy:\n{}",
        differences.join("\n")
    );
}

/// The value of `name` in the first request headers a probe recorded.
fn recorded_header(events: &[Value], name: &str) -> Option<String> {
    let event = events.iter().find(|e| e["event"] == "request_headers")?;
    event["headers"]
        .as_array()?
        .iter()
        .find(|pair| pair[0] == name)
        .and_then(|pair| pair[1].as_str())
        .map(str::to_owned)
}

#[test]
fn probe_records_match_with_use_remote_address() {
    let envoy = through_envoy(REMOTE_ADDRESS_SCENARIOS, true);
    // For its loopback peer Envoy appends its own address: the machine's first
    // non-loopback IPv4 address (127.0.0.1 on a machine with none). That is a fact about
    // the machine, read from Envoy's record of a request without the header; everything
    // else (where it goes, how it is joined, the other headers, `source.address`) is
    // compared.
    let envoy_address = recorded_header(&envoy["ura-none"].0, "x-forwarded-for")
        .unwrap_or_else(|| panic!("Envoy added no x-forwarded-for: {:?}", envoy["ura-none"]));
    let harness = through_harness(REMOTE_ADDRESS_SCENARIOS, Some(&envoy_address));
    let differences = differences(REMOTE_ADDRESS_SCENARIOS, &harness, &envoy);
    assert!(
        differences.is_empty(),
        "host-test differs from Envoy (its address {envoy_address}):\n{}",
        differences.join("\n")
    );
    let forwarded = recorded_header(&envoy["ura-forwarded"].0, "x-forwarded-for");
    assert_eq!(
        forwarded,
        Some(format!("6.6.6.6,198.51.100.7, 2001:db8::7,{envoy_address}"))
    );
}
