//! Conformance of host-test's unary gRPC calls with Envoy 1.40: the probe's `/probe/grpc`
//! (`host-test/probe`) dispatches a gRPC call and echoes how it ended in `x-probe-grpc-*`
//! response headers. The same requests through a real Envoy and through host-test must give
//! the same dispatch result and the same gRPC status: a cluster Envoy does not know, a cluster
//! with nothing listening, and one that accepts the connection and never answers (the timeout).

use std::net::TcpListener;
use std::time::Duration;

use host_test::{GrpcAnswer, Host, Request};
use portcullis_tests::client;
use portcullis_tests::config::{wasm_filter, Gateway};
use portcullis_tests::envoy::Envoy;
use portcullis_tests::paths;
use portcullis_tests::upstream::{Response, Upstream};

/// One `/probe/grpc` request: the cluster it calls and the call's timeout.
struct Scenario {
    id: &'static str,
    cluster: &'static str,
    timeout_ms: u32,
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        id: "unknown-cluster",
        cluster: "no_such_cluster",
        timeout_ms: 1000,
    },
    Scenario {
        id: "nothing-listening",
        cluster: "grpc_dead",
        timeout_ms: 2000,
    },
    Scenario {
        id: "never-answers",
        cluster: "grpc_silent",
        timeout_ms: 300,
    },
];

/// What the client saw of the call: the dispatch result, the gRPC status (if any came), and
/// for the timeout the status message (a refused connection's message names the socket error,
/// which varies by platform).
type Outcome = (u16, Option<String>, Option<String>, Option<String>);

fn outcome(s: &Scenario, header: impl Fn(&str) -> Option<String>) -> Outcome {
    let message = (s.id == "never-answers")
        .then(|| header("x-probe-grpc-message"))
        .flatten();
    (
        0,
        header("x-probe-grpc-dispatch"),
        header("x-probe-grpc-status"),
        message,
    )
}

fn through_harness() -> Vec<Outcome> {
    let host = Host::new();
    // How each Envoy cluster behaves, scripted: refused connections end UNAVAILABLE, the
    // silent one answers long after any timeout.
    host.grpc_service("grpc_dead", |_| {
        GrpcAnswer::status(
            14,
            "upstream connect error or disconnect/reset before headers",
        )
    });
    host.grpc_service("grpc_silent", |_| {
        GrpcAnswer::ok("never").delay(Duration::from_secs(3600))
    });
    let mut probe = host
        .plugin(paths::fixture("probe"))
        .vm_id("probe")
        .config("active")
        .start()
        .expect("probe starts in host-test");
    SCENARIOS
        .iter()
        .map(|s| {
            let ex = probe.send(
                Request::get("/probe/grpc")
                    .header("x-probe-grpc-cluster", s.cluster)
                    .header("x-probe-grpc-timeout-ms", &s.timeout_ms.to_string()),
            );
            assert!(ex.crash.is_none() && ex.stalled.is_none(), "{ex:?}");
            let mut seen = outcome(s, |name| ex.header(name));
            seen.0 = ex.status();
            seen
        })
        .collect()
}

fn through_envoy() -> Vec<Outcome> {
    let app = Upstream::start("app");
    app.set_response(Response::new(200).body("app"));
    // A port with nothing listening: bind, note it, close.
    let dead_port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    // Accepts connections and never answers; held open until the test ends.
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind the silent listener");
    let silent_port = silent.local_addr().expect("its port").port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in silent.incoming().flatten() {
            held.push(conn);
        }
    });
    let config = Gateway::new()
        .route_to("dead", "/never/dead", "grpc_dead", dead_port)
        .route_to("silent", "/never/silent", "grpc_silent", silent_port)
        .route("conf", "/", &app)
        .filter(wasm_filter(
            "probe",
            "probe",
            "probe",
            &paths::fixture("probe"),
            Some("active"),
        ))
        .render();
    let envoy = Envoy::builder(config).start().expect("Envoy starts");
    let port = envoy.listener_port(Gateway::LISTENER);
    let outcomes = SCENARIOS
        .iter()
        .map(|s| {
            let raw = format!(
                "GET /probe/grpc HTTP/1.1\r\nhost: localhost\r\nx-probe-grpc-cluster: {}\r\n\
                 x-probe-grpc-timeout-ms: {}\r\nconnection: close\r\n\r\n",
                s.cluster, s.timeout_ms
            );
            let reply = client::send_raw(port, raw.as_bytes());
            if std::env::var_os("CONFORMANCE_DEBUG").is_some() {
                eprintln!("ENVOY {}: {} {:?}", s.id, reply.status, reply.headers);
            }
            let mut seen = outcome(s, |name| reply.header(name).map(str::to_string));
            seen.0 = reply.status;
            seen
        })
        .collect();
    if std::env::var_os("CONFORMANCE_DEBUG").is_some() {
        eprintln!("{}", envoy.log());
    }
    outcomes
}

#[test]
fn grpc_call_outcomes_match_between_host_test_and_envoy() {
    let harness = through_harness();
    let envoy = through_envoy();
    let mut differences = Vec::new();
    for (i, s) in SCENARIOS.iter().enumerate() {
        if harness[i] != envoy[i] {
            differences.push(format!(
                "{}: host-test {:?}, Envoy {:?}",
                s.id, harness[i], envoy[i]
            ));
        }
    }
    assert!(
        differences.is_empty(),
        "host-test differs from Envoy:\n{}",
        differences.join("\n")
    );
    // What Envoy does, pinned: an unknown cluster name is refused at dispatch; a refused
    // connection and an expired timeout both end UNAVAILABLE (not DEADLINE_EXCEEDED).
    assert_eq!(envoy[0].1.as_deref(), Some("ParseFailure"));
    assert_eq!(envoy[1].2.as_deref(), Some("14"));
    assert_eq!(envoy[2].2.as_deref(), Some("14"));
}
