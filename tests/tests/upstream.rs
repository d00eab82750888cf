//! The recording upstream and the client on their own, without Envoy: what the tests built
//! on them rely on.

use std::time::Duration;

use portcullis_tests::{client, Response, Upstream};

#[test]
fn records_each_request_as_sent_and_echoes_identity_headers() {
    let upstream = Upstream::start("users");
    let url = format!("http://127.0.0.1:{}/users/1?x=y", upstream.port());
    let reply = client::send(
        "PUT",
        &url,
        &[
            ("X-Consumer-Username", "alice"),
            ("x-tag", "a"),
            ("x-tag", "b"),
        ],
        Some(b"payload"),
    );

    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("X-Upstream"), Some("users"));
    let echo = reply.json();
    assert_eq!(echo["upstream"], "users");
    assert_eq!(echo["path"], "/users/1?x=y");
    assert_eq!(echo["headers"]["x-consumer-username"], "alice");
    assert_eq!(echo["headers"].get("x-tag"), None);

    let seen = upstream.requests();
    assert_eq!(seen.len(), 1);
    let request = &seen[0];
    assert_eq!(
        (request.method.as_str(), request.path.as_str()),
        ("PUT", "/users/1?x=y")
    );
    assert_eq!(request.header("x-consumer-username"), Some("alice"));
    assert_eq!(request.header_all("X-TAG"), ["a", "b"]);
    assert_eq!(request.body, b"payload");
    let names: Vec<&str> = request.headers.iter().map(|(n, _)| n.as_str()).collect();
    let position = |name| names.iter().position(|n| *n == name);
    assert!(
        position("x-consumer-username") < position("x-tag"),
        "{names:?}"
    );
}

#[test]
fn answers_with_the_chosen_response_until_reset_and_forgets_on_clear() {
    let upstream = Upstream::start("orders");
    let url = format!("http://127.0.0.1:{}/orders", upstream.port());
    upstream.set_response(Response::new(503).header("retry-after", "7").body("busy"));

    let reply = client::get(&url, &[]);
    assert_eq!((reply.status, reply.text().as_str()), (503, "busy"));
    assert_eq!(reply.header("Retry-After"), Some("7"));
    assert_eq!(upstream.count(), 1);

    upstream.clear();
    assert_eq!(upstream.count(), 0);
    upstream.reset_response();
    let reply = client::get(&url, &[]);
    assert_eq!(reply.status, 200);
    assert_eq!(
        upstream.wait_for(1, Duration::from_secs(1))[0].path,
        "/orders"
    );
}

#[test]
#[should_panic(expected = "upstream idle: 0 of 1 requests arrived within")]
fn wait_for_names_the_shortfall_when_requests_do_not_arrive() {
    Upstream::start("idle").wait_for(1, Duration::from_millis(100));
}

#[test]
fn send_raw_repeats_any_header_and_reads_a_chunked_reply() {
    let upstream = Upstream::start("raw");
    upstream.set_response(Response::new(401).body(vec![b'x'; 40_000]).chunked());
    let reply = client::send_raw(
        upstream.port(),
        b"GET /raw HTTP/1.1\r\nhost: here\r\nauthorization: one\r\nauthorization: two\r\n\
          connection: close\r\n\r\n",
    );
    assert_eq!(reply.status, 401);
    assert_eq!(reply.header("transfer-encoding"), Some("chunked"));
    assert_eq!(reply.body, vec![b'x'; 40_000]);
    assert_eq!(
        upstream.requests()[0].header_all("authorization"),
        ["one", "two"]
    );
}

#[test]
fn many_keep_alive_connections_are_served_at_once() {
    use std::io::{Read, Write};
    let upstream = Upstream::start("busy");
    let port = upstream.port();
    // 64 connections open at once, each sending several requests on the same connection:
    // none may wait on another.
    let clients: Vec<_> = (0..64)
        .map(|c| {
            std::thread::spawn(move || {
                let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_secs(10)))
                    .unwrap();
                for i in 0..5 {
                    let body = format!("{c}-{i}");
                    write!(
                        stream,
                        "POST /k/{c}/{i} HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    )
                    .unwrap();
                    // Read exactly one response: head, then content-length bytes.
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") {
                        stream.read_exact(&mut byte).unwrap();
                        head.push(byte[0]);
                    }
                    let head = String::from_utf8(head).unwrap();
                    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
                    let length: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length: "))
                        .unwrap()
                        .trim()
                        .parse()
                        .unwrap();
                    let mut body = vec![0; length];
                    stream.read_exact(&mut body).unwrap();
                }
            })
        })
        .collect();
    for client in clients {
        client.join().unwrap();
    }
    let requests = upstream.wait_for(320, Duration::from_secs(5));
    assert_eq!(requests.len(), 320);
    assert!(requests
        .iter()
        .any(|r| r.path == "/k/63/4" && r.body_text() == "63-4"));
}
