//! Test scaffolding of the admin suites: the real `portcullis-admin` binary, started by the
//! shared test crate's [`AdminService`] (free loopback ports, its ready line read, its log
//! kept; `portcullis_tests::postgres` runs PostgreSQL); here, a plain HTTP/1.1 client that
//! sends exactly the bytes a test gives it, the Admin API and data plane through it, and the
//! scenarios that need more than one process or thread.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod scenarios;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use portcullis_tests::admin_service::AdminService;
use serde_json::{json, Value};

pub fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_portcullis-admin"))
}

// ---------------------------------------------------------------------------------------
// HTTP

/// An answer: status, headers (lowercase names), body.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?} (status {})", self.body, self.status))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends one request (`Connection: close`) and reads the whole answer.
pub fn send(
    address: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Answer {
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    // `Host: 127.0.0.1:port` unless the test gives its own.
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        head.push_str(&format!("Host: {address}\r\n"));
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH") {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    // The server may answer (413) and close before reading it all: ignore write errors.
    let _ = stream.write_all(body);
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    parse_answer(&raw)
}

pub fn parse_answer(raw: &[u8]) -> Answer {
    let text = String::from_utf8_lossy(raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP answer: {text:?}"));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {head:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Answer {
        status,
        headers,
        body,
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

// ---------------------------------------------------------------------------------------
// The service

/// A running `portcullis-admin` and the raw client pointed at it; stopped with SIGTERM on
/// drop, its log printed if the test is failing.
pub struct Admin {
    pub service: AdminService,
    pub admin: SocketAddr,
    pub data_plane: SocketAddr,
    /// Sent as `Kong-Admin-Token` when set.
    pub token: Option<String>,
    /// Sent as `Authorization: Bearer …` to the data plane when set.
    pub data_token: Option<String>,
}

impl Admin {
    /// Starts the binary with `--db db` on free loopback ports and `args`.
    pub fn start(db: &str, args: &[&str]) -> Admin {
        Admin::try_start(db, args, &[]).unwrap_or_else(|log| panic!("did not start:\n{log}"))
    }

    /// Starts it, or returns why not (its log) if it exited or printed no ready line in 20 s.
    pub fn try_start(db: &str, args: &[&str], env: &[(&str, &str)]) -> Result<Admin, String> {
        let service =
            AdminService::start_with(binary(), db, args, env).map_err(|e| format!("{e:#}"))?;
        Ok(Admin {
            admin: service.admin_address(),
            data_plane: service.data_plane_address(),
            service,
            token: None,
            data_token: None,
        })
    }

    pub fn log(&self) -> String {
        self.service.log()
    }

    fn with_token<'a>(&'a self, headers: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
        let mut all = headers.to_vec();
        if let Some(token) = &self.token {
            all.push(("Kong-Admin-Token", token.as_str()));
        }
        all
    }

    /// An Admin API request with raw headers and body.
    pub fn raw(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Answer {
        send(self.admin, method, path, &self.with_token(headers), body)
    }

    pub fn get(&self, path: &str) -> Answer {
        self.raw("GET", path, &[], b"")
    }

    pub fn delete(&self, path: &str) -> Answer {
        self.raw("DELETE", path, &[], b"")
    }

    /// A JSON body.
    pub fn json(&self, method: &str, path: &str, body: &Value) -> Answer {
        self.raw(
            method,
            path,
            &[("Content-Type", "application/json")],
            body.to_string().as_bytes(),
        )
    }

    /// Form data, as `curl --data a=b --data c=d` sends it.
    pub fn form(&self, method: &str, path: &str, pairs: &[(&str, &str)]) -> Answer {
        let body: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish();
        self.raw(
            method,
            path,
            &[("Content-Type", "application/x-www-form-urlencoded")],
            body.as_bytes(),
        )
    }

    /// A data-plane request (with the data-plane token, if set).
    pub fn data(&self, path: &str) -> Answer {
        let bearer = self.data_token.as_ref().map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = bearer
            .as_deref()
            .map(|b| vec![("Authorization", b)])
            .unwrap_or_default();
        send(self.data_plane, "GET", path, &headers, b"")
    }

    /// Sends SIGTERM; whether it exited 0 within 5 s.
    pub fn stop(&mut self) -> bool {
        self.service.stop()
    }
}

// ---------------------------------------------------------------------------------------
// Scenarios that need more than one process or thread

/// Now, in Unix seconds.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// What real-Envoy tests lean on in the shared harness, on any database: its Kong-style
/// helpers write what a gateway then reads from the data plane (with the tokens it was
/// started with, if any), and a SIGKILLed service starts again on the same ports and
/// database with everything it had, its log kept across both runs.
pub fn harness_writes_and_survives_a_kill(service: &mut AdminService) {
    let secret = "0123456789abcdef0123456789abcdef";
    let consumer = service.create_consumer("mobile-app", Some("mobile-123"));
    let jwt = service.create_jwt("mobile-app", "mobile-key", secret);
    assert_eq!(
        (&jwt["key"], &jwt["secret"], &jwt["algorithm"]),
        (&json!("mobile-key"), &json!(secret), &json!("HS256"))
    );
    service.add_group("mobile-app", "customers");
    service.add_group("mobile-app", "admins");
    let credential = |service: &AdminService| {
        let answer = service.data("/v1/credentials/mobile-key");
        assert_eq!(answer.status, 200, "{}", answer.text());
        answer.json()
    };
    let found = credential(service);
    assert_eq!(found["found"], true, "{found}");
    assert_eq!(found["consumer"]["id"], consumer["id"]);
    assert_eq!(found["consumer"]["username"], "mobile-app");
    assert_eq!(found["consumer"]["custom_id"], "mobile-123");
    let mut groups = found["consumer"]["groups"].as_array().unwrap().clone();
    groups.sort_by_key(|g| g.to_string());
    assert_eq!(groups, [json!("admins"), json!("customers")]);
    assert_eq!(found["credential"]["secret"], secret);

    let (admin, data_plane) = (service.admin_address(), service.data_plane_address());
    service.kill();
    assert!(!service.is_running());
    for address in [admin, data_plane] {
        assert!(TcpStream::connect(address).is_err(), "{address} answers");
    }
    service.start_again().unwrap();
    assert!(service.is_running());
    assert_eq!(
        (service.admin_address(), service.data_plane_address()),
        (admin, data_plane)
    );
    let again = credential(service);
    assert_eq!(again["consumer"], found["consumer"]);
    assert_eq!(again["credential"], found["credential"]);
    assert_eq!(service.log().matches("migrations_applied=").count(), 2);

    let expires_at = portcullis_tests::tokens::now() + 3600;
    assert_eq!(service.revoke_jti("token-1", expires_at)["jti"], "token-1");
    let cutoff = service.revoke_consumer("mobile-app", Some(expires_at - 3600));
    assert_eq!(cutoff["consumer"]["id"], consumer["id"], "{cutoff}");
    let revocations = service.data("/v1/revocations").json();
    assert_eq!(revocations["jtis"][0]["jti"], "token-1", "{revocations}");
    assert_eq!(revocations["jtis"][0]["expires_at"], expires_at);
    assert_eq!(
        revocations["consumers"][0]["consumer_id"], consumer["id"],
        "{revocations}"
    );
    service.remove_group("mobile-app", "customers");
    assert_eq!(credential(service)["consumer"]["groups"], json!(["admins"]));
    service.delete_jwt("mobile-app", "mobile-key");
    assert_eq!(credential(service)["found"], false);
    service.delete_consumer("mobile-app");
    assert_eq!(
        service.request("GET", "/consumers/mobile-app", &[]).status,
        404
    );
}

/// Two admin processes on one database create the same usernames and credential keys at
/// the same instant: for each, exactly one 201 and one 409, never a 500.
pub fn scenarios_race(a: &Admin, b: &Admin, rounds: usize) {
    use std::sync::Barrier;
    a.form("POST", "/consumers", &[("username", "owner")]);
    for round in 0..rounds {
        let barrier = Barrier::new(2);
        let username = format!("racer-{round}");
        let key = format!("key-{round}");
        let statuses: Vec<(u16, u16)> = std::thread::scope(|s| {
            let handles: Vec<_> = [a, b]
                .into_iter()
                .map(|admin| {
                    let (barrier, username, key) = (&barrier, &username, &key);
                    s.spawn(move || {
                        barrier.wait();
                        let user = admin.form("POST", "/consumers", &[("username", username)]);
                        let jwt = admin.form("POST", "/consumers/owner/jwt", &[("key", key)]);
                        assert!(matches!(user.status, 201 | 409), "{}", user.body);
                        assert!(matches!(jwt.status, 201 | 409), "{}", jwt.body);
                        if user.status == 409 {
                            assert_eq!(
                                user.json()["message"],
                                format!(
                                    "UNIQUE violation detected on '{{username=\"{username}\"}}'"
                                )
                            );
                        }
                        (user.status, jwt.status)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut users: Vec<u16> = statuses.iter().map(|s| s.0).collect();
        let mut jwts: Vec<u16> = statuses.iter().map(|s| s.1).collect();
        users.sort();
        jwts.sort();
        assert_eq!(users, [201, 409], "round {round}");
        assert_eq!(jwts, [201, 409], "round {round}");
    }
    assert_eq!(
        a.get("/consumers?size=1000").json()["data"]
            .as_array()
            .unwrap()
            .len(),
        rounds + 1
    );
    assert_eq!(
        b.get("/jwts?size=1000").json()["data"]
            .as_array()
            .unwrap()
            .len(),
        rounds
    );
}

/// `writers` threads each create a consumer at once; a reader follows the feed meanwhile.
/// Exactly `writers` create events, ids consecutive, each seen once, each naming a
/// consumer that exists, in commit order (a reader never sees id n+1 before n).
pub fn concurrent_events(admin: &Admin, writers: usize) {
    use std::sync::atomic::{AtomicBool, Ordering};
    let start = admin.data("/v1/changes?after=0").json()["head"]
        .as_i64()
        .unwrap();
    let done = AtomicBool::new(false);
    let seen: Vec<serde_json::Value> = std::thread::scope(|s| {
        let reader = s.spawn(|| {
            let mut after = start;
            let mut seen = Vec::new();
            loop {
                let finished = done.load(Ordering::SeqCst);
                let feed = admin.data(&format!("/v1/changes?after={after}")).json();
                for event in feed["events"].as_array().unwrap() {
                    let id = event["id"].as_i64().unwrap();
                    assert_eq!(id, after + 1, "the feed skipped or repeated an id");
                    after = id;
                    seen.push(event.clone());
                }
                if finished && after == feed["head"].as_i64().unwrap() {
                    break seen;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        let handles: Vec<_> = (0..writers)
            .map(|i| {
                s.spawn(move || {
                    let answer =
                        admin.form("POST", "/consumers", &[("username", &format!("w-{i}"))]);
                    assert_eq!(answer.status, 201, "{}", answer.body);
                })
            })
            .collect();
        for handle in handles {
            handle.join().unwrap();
        }
        done.store(true, Ordering::SeqCst);
        reader.join().unwrap()
    });
    assert_eq!(seen.len(), writers);
    let mut names: Vec<String> = seen
        .iter()
        .map(|e| e["key"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), writers, "each write once");
    for event in &seen {
        assert_eq!(event["op"], "create");
        let name = event["key"].as_str().unwrap();
        assert_eq!(
            admin.get(&format!("/consumers/{name}")).json()["id"],
            event["entity_id"]
        );
    }
}

/// Every event after `after`, following the feed to its head.
pub fn all_events(admin: &Admin, mut after: i64) -> Vec<Value> {
    let mut events = Vec::new();
    loop {
        let feed = admin.data(&format!("/v1/changes?after={after}")).json();
        let page = feed["events"].as_array().unwrap().clone();
        if page.is_empty() {
            return events;
        }
        after = page.last().unwrap()["id"].as_i64().unwrap();
        events.extend(page);
    }
}

/// A group removal, then a consumer delete, each racing `writers` credential creates for
/// the same consumer: every credential key created must appear in an event at or after
/// the last write that touched it (else a gateway keeps a stale answer for it forever).
pub fn removals_race_credential_creates(admin: &Admin, rounds: usize, writers: usize) {
    use std::sync::Barrier;
    for round in 0..rounds {
        for removal in ["group", "consumer"] {
            let name = format!("race-{removal}-{round}");
            let start = admin.data("/v1/changes?after=0").json()["head"]
                .as_i64()
                .unwrap();
            assert_eq!(
                admin
                    .form("POST", "/consumers", &[("username", &name)])
                    .status,
                201
            );
            assert_eq!(
                admin
                    .form(
                        "POST",
                        &format!("/consumers/{name}/acls"),
                        &[("group", "g")]
                    )
                    .status,
                201
            );
            let barrier = Barrier::new(writers + 1);
            let created: Vec<String> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..writers)
                    .map(|i| {
                        let (barrier, name) = (&barrier, &name);
                        s.spawn(move || {
                            let key = format!("{name}-k{i}");
                            barrier.wait();
                            let answer = admin.form(
                                "POST",
                                &format!("/consumers/{name}/jwt"),
                                &[("key", &key)],
                            );
                            assert!(
                                matches!(answer.status, 201 | 404 | 400),
                                "{}: {}",
                                answer.status,
                                answer.body
                            );
                            (answer.status == 201).then_some(key)
                        })
                    })
                    .collect();
                barrier.wait();
                std::thread::sleep(Duration::from_millis(2));
                let answer = if removal == "group" {
                    admin.delete(&format!("/consumers/{name}/acls/g"))
                } else {
                    admin.delete(&format!("/consumers/{name}"))
                };
                assert_eq!(answer.status, 204, "{}", answer.body);
                handles
                    .into_iter()
                    .filter_map(|h| h.join().unwrap())
                    .collect()
            });
            let events = all_events(admin, start);
            let removed_at = events
                .iter()
                .find(|e| {
                    e["op"] == "delete"
                        && e["entity"]
                            == if removal == "group" {
                                "acls"
                            } else {
                                "consumers"
                            }
                })
                .unwrap()["id"]
                .as_i64()
                .unwrap();
            for key in &created {
                let mentions: Vec<i64> = events
                    .iter()
                    .filter(|e| {
                        e["credentials"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .any(|k| k == key.as_str())
                    })
                    .map(|e| e["id"].as_i64().unwrap())
                    .collect();
                let last = *mentions.iter().max().unwrap_or(&0);
                assert!(
                    last >= removed_at,
                    "{removal} removal (event {removed_at}) does not list {key}, created in event {mentions:?}"
                );
            }
        }
    }
}

/// `writers` threads at once, each doing one of: update a consumer, add a credential,
/// delete a consumer with two credentials and a group (four events in one transaction).
/// A reader following the feed meanwhile sees every id once, in order; a delete's
/// events are consecutive; the total is what the writes made.
pub fn concurrent_mixed_events(admin: &Admin, writers: usize) {
    use std::sync::atomic::{AtomicBool, Ordering};
    for i in 0..writers {
        let name = format!("m-{i}");
        admin.form("POST", "/consumers", &[("username", &name)]);
        for k in 0..2 {
            let key = format!("{name}-k{k}");
            admin.form("POST", &format!("/consumers/{name}/jwt"), &[("key", &key)]);
        }
        admin.form(
            "POST",
            &format!("/consumers/{name}/acls"),
            &[("group", "g")],
        );
    }
    let start = admin.data("/v1/changes?after=0").json()["head"]
        .as_i64()
        .unwrap();
    let done = AtomicBool::new(false);
    let seen: Vec<Value> = std::thread::scope(|s| {
        let reader = s.spawn(|| {
            let mut after = start;
            let mut seen = Vec::new();
            loop {
                let finished = done.load(Ordering::SeqCst);
                let feed = admin.data(&format!("/v1/changes?after={after}")).json();
                for event in feed["events"].as_array().unwrap() {
                    let id = event["id"].as_i64().unwrap();
                    assert_eq!(id, after + 1, "the feed skipped or repeated an id");
                    after = id;
                    seen.push(event.clone());
                }
                if finished && after == feed["head"].as_i64().unwrap() {
                    break seen;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        let handles: Vec<_> = (0..writers)
            .map(|i| {
                s.spawn(move || {
                    let name = format!("m-{i}");
                    let answer = match i % 3 {
                        0 => admin.json(
                            "PATCH",
                            &format!("/consumers/{name}"),
                            &serde_json::json!({ "custom_id": format!("c-{i}") }),
                        ),
                        1 => admin.form(
                            "POST",
                            &format!("/consumers/{name}/jwt"),
                            &[("key", &format!("{name}-new"))],
                        ),
                        _ => admin.delete(&format!("/consumers/{name}")),
                    };
                    assert!(matches!(answer.status, 200 | 201 | 204), "{}", answer.body);
                })
            })
            .collect();
        for handle in handles {
            handle.join().unwrap();
        }
        done.store(true, Ordering::SeqCst);
        reader.join().unwrap()
    });
    let deletes = (0..writers).filter(|i| i % 3 == 2).count();
    assert_eq!(seen.len(), writers - deletes + deletes * 4);
    for (i, event) in seen.iter().enumerate() {
        if event["entity"] == "consumers" && event["op"] == "delete" {
            // The cascade's three events come right before, for the same consumer.
            for back in 1..=3 {
                let child = &seen[i - back];
                assert_eq!(child["op"], "delete", "{child}");
                assert_eq!(child["consumer_id"], event["entity_id"], "{child}");
            }
        }
    }
}
