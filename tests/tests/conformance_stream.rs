//! Conformance of host-test's stream control with Envoy 1.40, through the probe
//! (`host-test/probe`), with Envoy's `allow_on_headers_stop_iteration` off and on:
//! - a filter that pauses request or response headers and waits for the body: held while the
//!   body still reaches it (flag on), or the whole stream stopped and hanging (flag off);
//! - a local reply sent from the response body after the response headers left: the stream is
//!   reset, the client gets no answer;
//! - a local reply sent from the response body while the headers are held: the client gets it.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use host_test::{Host, Request, UpstreamResponse};
use portcullis_tests::config::{wasm_filter, Gateway};
use portcullis_tests::envoy::Envoy;
use portcullis_tests::paths;
use portcullis_tests::upstream::{Response, Upstream};

/// The probe paths, each one request (`POST` with a small body, answered `200 app`).
const PATHS: &[&str] = &[
    "/probe/hold-request",
    "/probe/hold-response",
    "/probe/late-local",
    "/probe/held-local",
];

/// How long the client waits before calling an exchange stalled (Envoy would wait for its
/// stream idle timeout).
const STALL: Duration = Duration::from_secs(3);

/// What the client saw, plus the probe's `x-probe-held` mark (in the response, or for
/// `/probe/hold-request` in what reached the upstream).
#[derive(Debug, PartialEq)]
enum Outcome {
    Answer {
        status: u16,
        body: String,
        held: Option<String>,
    },
    /// The connection closed (or was reset) before a whole response arrived.
    Reset,
    /// Nothing complete within [`STALL`], connection still open.
    Stalled,
}

fn through_harness(allow: bool) -> Vec<Outcome> {
    let host = Host::new();
    let mut probe = host
        .plugin(paths::fixture("probe"))
        .vm_id("probe")
        .config("active")
        .allow_on_headers_stop_iteration(allow)
        .start()
        .expect("probe starts in host-test");
    PATHS
        .iter()
        .map(|path| {
            let ex = probe.send(
                Request::post(path)
                    .body("ping")
                    .respond(UpstreamResponse::new(200).body("app")),
            );
            assert!(ex.crash.is_none(), "{path}: {ex:?}");
            if ex.was_reset() {
                Outcome::Reset
            } else if ex.stalled.is_some() {
                Outcome::Stalled
            } else {
                let held = if *path == "/probe/hold-request" {
                    ex.upstream_header("x-probe-held")
                } else {
                    ex.header("x-probe-held")
                };
                Outcome::Answer {
                    status: ex.status(),
                    body: ex.body_text(),
                    held,
                }
            }
        })
        .collect()
}

fn through_envoy(allow: bool) -> Vec<Outcome> {
    let app = Upstream::start("app");
    app.set_response(Response::new(200).body("app"));
    let mut filter = wasm_filter(
        "probe",
        "probe",
        "probe",
        &paths::fixture("probe"),
        Some("active"),
    );
    if allow {
        filter = filter.replacen(
            "    config:\n",
            "    config:\n      allow_on_headers_stop_iteration: true\n",
            1,
        );
    }
    let config = Gateway::new()
        .route("conf", "/", &app)
        .filter(filter)
        .render();
    let envoy = Envoy::builder(config).start().expect("Envoy starts");
    let port = envoy.listener_port(Gateway::LISTENER);
    let outcomes = PATHS
        .iter()
        .map(|path| {
            app.clear();
            let raw = format!(
                "POST {path} HTTP/1.1\r\nhost: localhost\r\ncontent-length: 4\r\n\
                 connection: close\r\n\r\nping"
            );
            let mut outcome = exchange(port, raw.as_bytes());
            if let Outcome::Answer { held, .. } = &mut outcome {
                if *path == "/probe/hold-request" {
                    *held = app
                        .requests()
                        .last()
                        .and_then(|r| r.header("x-probe-held").map(str::to_string));
                }
            }
            if std::env::var_os("CONFORMANCE_DEBUG").is_some() {
                eprintln!("ENVOY allow={allow} {path}: {outcome:?}");
            }
            outcome
        })
        .collect();
    if std::env::var_os("CONFORMANCE_DEBUG").is_some() {
        eprintln!("{}", envoy.log());
    }
    outcomes
}

/// One raw HTTP/1.1 exchange, telling a whole answer from a reset and a stall.
fn exchange(port: u16, request: &[u8]) -> Outcome {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to Envoy");
    stream.set_read_timeout(Some(STALL)).expect("read timeout");
    stream.write_all(request).expect("send the request");
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let ended = loop {
        match stream.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                break false
            }
            Err(_) => break true,
        }
    };
    match parse(&raw) {
        Some(answer) => answer,
        None if ended => Outcome::Reset,
        None => Outcome::Stalled,
    }
}

/// A whole HTTP/1.1 response (content-length or chunked), or `None`.
fn parse(raw: &[u8]) -> Option<Outcome> {
    let text = String::from_utf8_lossy(raw);
    let (head, rest) = text.split_once("\r\n\r\n")?;
    let mut lines = head.lines();
    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let body = if let Some(length) = header("content-length") {
        let length: usize = length.parse().ok()?;
        rest.get(..length)?.to_string()
    } else if header("transfer-encoding").as_deref() == Some("chunked") {
        let mut body = String::new();
        let mut rest = rest;
        loop {
            let (size, tail) = rest.split_once("\r\n")?;
            let size = usize::from_str_radix(size.trim(), 16).ok()?;
            if size == 0 {
                break body;
            }
            body.push_str(tail.get(..size)?);
            rest = tail.get(size + 2..)?;
        }
    } else {
        rest.to_string()
    };
    Some(Outcome::Answer {
        status,
        body,
        held: header("x-probe-held"),
    })
}

fn answer(status: u16, body: &str, held: bool) -> Outcome {
    Outcome::Answer {
        status,
        body: body.into(),
        held: held.then(|| "yes".to_string()),
    }
}

fn compare(allow: bool) -> Vec<Outcome> {
    let harness = through_harness(allow);
    let envoy = through_envoy(allow);
    let differences: Vec<String> = PATHS
        .iter()
        .zip(harness.iter().zip(&envoy))
        .filter(|(_, (h, e))| h != e)
        .map(|(path, (h, e))| format!("{path}: host-test {h:?}, Envoy {e:?}"))
        .collect();
    assert!(
        differences.is_empty(),
        "allow_on_headers_stop_iteration: {allow}: host-test differs from Envoy:\n{}",
        differences.join("\n")
    );
    envoy
}

#[test]
fn without_the_flag_a_header_pause_stops_the_body_too() {
    let envoy = compare(false);
    // Pinned: the paused headers never see the body, so nothing resumes them; a local reply
    // after the headers left resets the stream.
    assert_eq!(
        envoy,
        [
            Outcome::Stalled,
            Outcome::Stalled,
            Outcome::Reset,
            Outcome::Stalled
        ]
    );
}

#[test]
fn with_the_flag_held_headers_still_get_the_body() {
    let envoy = compare(true);
    assert_eq!(
        envoy,
        [
            answer(200, "app", true),
            answer(200, "HELD", true),
            Outcome::Reset,
            answer(502, "held", false),
        ]
    );
}
