//! The Admin API and the data plane against the real binary on a real SQLite file: every
//! scenario of `common/scenarios.rs` on a fresh file, then what only a process shows
//! (tokens, start-up refusals, SIGTERM, two processes on one file, the pruner).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::type_complexity
)]

mod common;

use std::time::Duration;

use common::{scenarios, Admin};
use portcullis_tests::admin_service::AdminService;
use portcullis_tests::paths::ScratchDir;
use serde_json::json;

fn fresh() -> (ScratchDir, Admin) {
    let dir = ScratchDir::new("sqlite").unwrap();
    let db = format!("sqlite:{}", dir.path().join("admin.db").display());
    let admin = Admin::start(&db, &[]);
    (dir, admin)
}

macro_rules! scenario {
    ($($name:ident),*) => {$(
        #[test]
        fn $name() {
            let (_dir, admin) = fresh();
            scenarios::$name(&admin);
        }
    )*};
}

scenario!(
    seed_flow,
    consumers,
    paging,
    jwt_credentials,
    acls,
    cascade,
    hostile_input,
    revocations,
    data_plane,
    tags
);

/// The shared harness (`portcullis_tests::admin_service`) on its own SQLite file, with both
/// tokens: its helpers send them, and it survives a SIGKILL on the same ports.
#[test]
fn the_shared_harness_writes_and_restarts_on_sqlite() {
    let dir = ScratchDir::new("harness").unwrap();
    let db = format!("sqlite:{}", dir.path().join("admin.db").display());
    let env = [
        ("PORTCULLIS_ADMIN_TOKEN", "0123456789abcdef0123456789abcdef"),
        (
            "PORTCULLIS_ADMIN_DATA_PLANE_TOKEN",
            "fedcba9876543210fedcba9876543210",
        ),
    ];
    let mut service = AdminService::start_with(common::binary(), &db, &[], &env).unwrap();
    common::harness_writes_and_survives_a_kill(&mut service);
    // And as a real-Envoy test starts it: the binary found beside the test, a file of its own.
    let mut own = AdminService::sqlite().unwrap();
    assert!(own.db().starts_with("sqlite:"), "{}", own.db());
    common::harness_writes_and_survives_a_kill(&mut own);
}

/// Every Admin API path, known or not, in every method, answers 401 without the admin
/// token and with a wrong one; only `/status` answers without it.
#[test]
fn the_admin_token_guards_every_path_but_status() {
    let dir = ScratchDir::new("token").unwrap();
    let db = format!("sqlite:{}", dir.path().join("admin.db").display());
    let token = "0123456789abcdef0123456789abcdef";
    let mut admin = Admin::try_start(&db, &[], &[("PORTCULLIS_ADMIN_TOKEN", token)]).unwrap();
    let id = "6e2f2a5e-3c7e-4c44-9a4e-1b2c3d4e5f80";
    let paths = [
        "/".to_owned(),
        "/metrics".to_owned(),
        "/consumers".to_owned(),
        "/consumers/bob".to_owned(),
        format!("/consumers/{id}"),
        "/consumers/bob/jwt".to_owned(),
        "/consumers/bob/jwt/k".to_owned(),
        "/consumers/bob/acls".to_owned(),
        "/consumers/bob/acls/admins".to_owned(),
        "/jwts".to_owned(),
        "/jwts/k".to_owned(),
        "/jwts/k/consumer".to_owned(),
        "/acls".to_owned(),
        format!("/acls/{id}"),
        format!("/acls/{id}/consumer"),
        "/revocations".to_owned(),
        format!("/revocations/{id}"),
        "/nowhere".to_owned(),
        "/v1/credentials/k".to_owned(),
    ];
    let mut refused = 0;
    for path in &paths {
        for method in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
            for header in [None, Some("wrong-token-wrong-token-wrong-tok")] {
                let mut headers = vec![("Content-Type", "application/x-www-form-urlencoded")];
                if let Some(h) = header {
                    headers.push(("Kong-Admin-Token", h));
                }
                let answer = admin.raw(method, path, &headers, b"username=bob");
                assert_eq!(
                    answer.status, 401,
                    "{method} {path} {header:?}: {}",
                    answer.body
                );
                assert_eq!(
                    answer.json(),
                    json!({ "message": "Invalid credentials. Token or User credentials required" })
                );
                refused += 1;
            }
        }
    }
    let created = admin.raw(
        "POST",
        "/consumers",
        &[
            ("Kong-Admin-Token", token),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        b"username=bob",
    );
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(admin.get("/status").status, 200, "no token for /status");
    admin.token = Some(token.to_owned());
    let metrics = admin.get("/metrics").body;
    assert!(
        metrics.contains(&format!(
            "portcullis_admin_failures_total{{reason=\"unauthorized\"}} {refused}\n"
        )),
        "{metrics}"
    );
    assert_eq!(
        admin.get("/consumers?size=1000").json()["data"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert!(!admin.log().contains(token), "the token reached the log");
}

/// Every data-plane path answers 401 without the data-plane token, with a wrong one or
/// another scheme, and 200 with `Authorization: Bearer <token>` (any case of `bearer`).
#[test]
fn the_data_plane_token_guards_every_data_plane_path() {
    let dir = ScratchDir::new("data-token").unwrap();
    let db = format!("sqlite:{}", dir.path().join("admin.db").display());
    let data_token = "fedcba9876543210fedcba9876543210";
    let mut admin = Admin::try_start(
        &db,
        &[],
        &[("PORTCULLIS_ADMIN_DATA_PLANE_TOKEN", data_token)],
    )
    .unwrap();
    admin.form("POST", "/consumers", &[("username", "bob")]);
    admin.form("POST", "/consumers/bob/jwt", &[("key", "bob-key")]);
    let id = "6e2f2a5e-3c7e-4c44-9a4e-1b2c3d4e5f80";
    let paths = [
        "/v1/credentials/bob-key".to_owned(),
        "/v1/credentials/nope".to_owned(),
        "/v1/changes?after=0".to_owned(),
        "/v1/revocations".to_owned(),
        format!("/v1/revocations/{id}"),
        "/v1/nowhere".to_owned(),
        "/".to_owned(),
    ];
    let wrong = [
        None,
        Some("Bearer wrong-token-wrong-token-wrong"),
        Some("Basic ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA="),
        Some(data_token),
        Some("Bearer"),
    ];
    for path in &paths {
        for header in wrong {
            let headers: Vec<(&str, &str)> = header
                .map(|h| vec![("Authorization", h)])
                .unwrap_or_default();
            let answer = common::send(admin.data_plane, "GET", path, &headers, b"");
            assert_eq!(answer.status, 401, "{path} {header:?}: {}", answer.body);
        }
    }
    for scheme in ["Bearer", "bearer"] {
        let bearer = format!("{scheme} {data_token}");
        for path in &paths[..5] {
            let answer = common::send(
                admin.data_plane,
                "GET",
                path,
                &[("Authorization", &bearer)],
                b"",
            );
            assert_eq!(answer.status, 200, "{path}: {}", answer.body);
        }
    }
    admin.data_token = Some(data_token.to_owned());
    assert_eq!(admin.data("/v1/credentials/bob-key").json()["found"], true);
    assert!(
        !admin.log().contains(data_token),
        "the token reached the log"
    );
}

/// A secret sent to the API, read back through both APIs, never reaches the log.
#[test]
fn a_credential_secret_never_reaches_the_log() {
    let (_dir, admin) = fresh();
    let secret = "never-log-this-secret-0123456789abcdef";
    admin.form("POST", "/consumers", &[("username", "bob")]);
    let created = admin.form(
        "POST",
        "/consumers/bob/jwt",
        &[("key", "bob-key"), ("secret", secret)],
    );
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(admin.get("/jwts/bob-key").json()["secret"], secret);
    assert_eq!(
        admin.data("/v1/credentials/bob-key").json()["credential"]["secret"],
        secret
    );
    let patched = admin.json(
        "PATCH",
        &format!("/jwts/bob-key?secret={secret}"),
        &json!({ "secret": format!("{secret}-2") }),
    );
    assert_eq!(patched.status, 200, "{}", patched.body);
    // A refused one too (a weak secret is named in the answer, never in the log).
    let weak = admin.form(
        "POST",
        "/consumers/bob/jwt",
        &[("secret", "weak-secret-xyz")],
    );
    assert_eq!(weak.status, 400);
    let log = admin.log();
    assert!(log.contains("path=\"/jwts/bob-key\""), "{log}");
    for needle in [secret, "weak-secret-xyz"] {
        assert!(!log.contains(needle), "{needle} reached the log:\n{log}");
    }
}

#[test]
fn refuses_to_start_exposed_or_misconfigured() {
    let dir = ScratchDir::new("refuse").unwrap();
    let db = format!("sqlite:{}", dir.path().join("admin.db").display());
    let rows: Vec<(Vec<&str>, Vec<(&str, &str)>, &str)> = vec![
        (vec!["--listen", "0.0.0.0:0"], vec![], "--listen 0.0.0.0:0: beyond loopback, and requests are not authenticated: set --admin-token-file FILE"),
        (vec!["--data-plane-listen", "0.0.0.0:0"], vec![], "--data-plane-listen 0.0.0.0:0: beyond loopback"),
        (vec![], vec![("PORTCULLIS_ADMIN_TOKEN", "short")], "PORTCULLIS_ADMIN_TOKEN: the token is 5 bytes, at least 16 wanted"),
        (vec!["--admin-token-file", "/nonexistent/token"], vec![], "--admin-token-file /nonexistent/token: No such file"),
        (vec!["--max-body-bytes", "12"], vec![], "--max-body-bytes 12: want a whole number from 1024 to 16777216"),
    ];
    for (args, env, message) in rows {
        let log = Admin::try_start(&db, &args, &env)
            .err()
            .unwrap_or_else(|| panic!("{args:?} started"));
        assert!(log.contains(message), "{args:?}: {log}");
    }
    let log = Admin::try_start("sqlite:/nonexistent/dir/admin.db", &[], &[])
        .err()
        .unwrap();
    assert!(
        log.contains("--db sqlite:/nonexistent/dir/admin.db"),
        "{log}"
    );
    // Beyond loopback with a token: starts.
    let token = dir.path().join("token");
    std::fs::write(&token, "0123456789abcdef0123456789abcdef\n").unwrap();
    let admin = Admin::try_start(
        &db,
        &[
            "--listen",
            "0.0.0.0:0",
            "--admin-token-file",
            token.to_str().unwrap(),
        ],
        &[],
    );
    assert!(admin.is_ok(), "{:?}", admin.err());
}

#[test]
fn stops_gracefully_on_sigterm_and_keeps_its_data() {
    let dir = ScratchDir::new("restart").unwrap();
    let db = format!("sqlite:{}", dir.path().join("admin.db").display());
    let mut admin = Admin::start(&db, &[]);
    assert_eq!(
        admin
            .form("POST", "/consumers", &[("username", "bob")])
            .status,
        201
    );
    assert!(admin.stop(), "exit 0 on SIGTERM");
    assert!(admin.log().contains("SIGTERM, stopping"));
    let admin = Admin::start(&db, &[]);
    assert_eq!(admin.get("/consumers/bob").status, 200);
    assert!(
        admin.log().contains("migrations_applied=[]"),
        "{}",
        admin.log()
    );
}

#[test]
fn two_processes_on_one_file_keep_usernames_unique() {
    let dir = ScratchDir::new("two").unwrap();
    let db = format!("sqlite:{}", dir.path().join("admin.db").display());
    let a = Admin::start(&db, &[]);
    let b = Admin::start(&db, &[]);
    common::scenarios_race(&a, &b, 20);
}

#[test]
fn concurrent_writes_make_one_event_each_in_commit_order() {
    let (_dir, admin) = fresh();
    common::concurrent_events(&admin, 40);
}

#[test]
fn prunes_old_events_and_tells_late_readers_to_reset() {
    let dir = ScratchDir::new("prune").unwrap();
    let db = format!("sqlite:{}", dir.path().join("admin.db").display());
    let admin = Admin::start(&db, &["--event-retention", "1", "--revocation-grace", "0"]);
    admin.form("POST", "/consumers", &[("username", "bob")]);
    let soon = common::now() + 2;
    admin.json(
        "POST",
        "/revocations",
        &json!({ "jti": "short-lived", "expires_at": soon }),
    );
    std::thread::sleep(Duration::from_millis(3500));
    let late = admin.data("/v1/changes?after=0").json();
    assert_eq!(late["reset"], true, "{late}");
    assert_eq!(late["head"], 2);
    let current = admin.data("/v1/changes?after=2").json();
    assert_eq!(
        current,
        json!({ "epoch": late["epoch"], "head": 2, "events": [] })
    );
    // Beyond the head: another (or a restored) database; reset too.
    let beyond = admin.data("/v1/changes?after=3").json();
    assert_eq!(beyond["reset"], true, "{beyond}");
    assert_eq!(beyond["head"], 2);
    assert_eq!(
        admin.get("/revocations").json()["data"],
        json!([]),
        "forgotten after its exp"
    );
    let status = admin.get("/status").json();
    assert_eq!(status["database"]["pruned_through"], 2);
}

#[test]
fn imports_a_jwt_filter_configuration_in_one_step() {
    let dir = ScratchDir::new("import").unwrap();
    let db = format!("sqlite:{}", dir.path().join("admin.db").display());
    let config = dir.path().join("jwt.json");
    let id = "6e2f2a5e-3c7e-4c44-9a4e-1b2c3d4e5f80";
    std::fs::write(
        &config,
        json!({
            "consumers": [
                { "username": "mobile-app", "id": id, "custom_id": "123", "groups": ["admins", "ops"],
                  "credentials": [
                      { "key": "mobile-app", "secret": "demo-only-mobile-app-secret-0123456789abcdef" },
                      { "key": "mobile-b64", "algorithm": "HS256",
                        "secret_base64": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=" } ] },
                { "username": "svc", "credentials": [
                      { "key": "svc-rs", "algorithm": "RS256", "public_key": scenarios::RSA2048 } ] }
            ],
            "routes": { "login": { "public": true } }
        })
        .to_string(),
    )
    .unwrap();
    let import = |file: &std::path::Path| {
        std::process::Command::new(common::binary())
            .args(["import", "--db", &db])
            .arg(file)
            .output()
            .unwrap()
    };
    let out = import(&config);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("imported into {db}: consumers 2 created, 0 updated; credentials 3 created, 0 updated; groups 2 created")
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("consumers[1]: no id"));
    // Twice: updates, creates nothing.
    let again = import(&config);
    assert!(String::from_utf8_lossy(&again.stdout).contains(
        "consumers 0 created, 2 updated; credentials 0 created, 3 updated; groups 0 created"
    ));

    // A broken file: refused as the filter refuses it, or by the Admin API's rules; nothing written.
    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"{"consumers":[{"username":"new","credentials":[{"key":"x","secret":"short"}]}]}"#,
    )
    .unwrap();
    let refused = import(&bad);
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr)
        .contains("consumers[0].credentials[0].secret: 5 bytes, HS256 needs at least 32"));
    let jwk = dir.path().join("jwk.json");
    std::fs::write(&jwk, r#"{"consumers":[{"username":"new","credentials":[{"key":"x","jwk":{"kty":"oct","k":"MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY"}}]}]}"#).unwrap();
    let refused = import(&jwk);
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains(
            "consumers[0].credentials[0]: schema violation (jwk: JWK credentials are not imported"
        ),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    let admin = Admin::start(&db, &[]);
    assert_eq!(
        admin.get("/consumers/new").status,
        404,
        "nothing half-imported"
    );
    let found = admin.data("/v1/credentials/mobile-b64").json();
    assert_eq!(found["consumer"]["id"], id);
    assert_eq!(found["consumer"]["custom_id"], "123");
    assert_eq!(found["consumer"]["groups"], json!(["admins", "ops"]));
    assert_eq!(
        found["credential"]["secret"],
        "0123456789abcdef0123456789abcdef"
    );
    assert_eq!(
        admin.data("/v1/credentials/svc-rs").json()["credential"]["rsa_public_key"],
        scenarios::RSA2048
    );
    assert_eq!(admin.data("/v1/changes?after=0").json()["head"], 7 + 5);
}

#[test]
fn removals_racing_credential_creates_list_every_key() {
    let (_dir, admin) = fresh();
    common::removals_race_credential_creates(&admin, 5, 8);
}

/// Without a token, loopback is the only guard, and a browser on this machine the one way
/// past it: a page elsewhere may POST cross-site (writes) or rebind its name to 127.0.0.1
/// (reads). Both listeners answer 403 to a foreign `Host`, `Origin` or `Sec-Fetch-Site`.
#[test]
fn browsers_on_another_site_reach_neither_listener_without_a_token() {
    let (_dir, admin) = fresh();
    let refused: [&[(&str, &str)]; 5] = [
        &[("Host", "evil.example:8001")],
        &[("Host", "127.0.0.1.evil.example")],
        &[("Origin", "http://evil.example")],
        &[("Origin", "null")],
        &[("Sec-Fetch-Site", "cross-site")],
    ];
    for headers in refused {
        let mut with_form = headers.to_vec();
        with_form.push(("Content-Type", "application/x-www-form-urlencoded"));
        let write = admin.raw("POST", "/consumers", &with_form, b"username=victim");
        assert_eq!(write.status, 403, "{headers:?}: {}", write.body);
        assert!(
            write.json()["message"]
                .as_str()
                .unwrap()
                .starts_with("Forbidden: "),
            "{}",
            write.body
        );
        assert_eq!(admin.raw("GET", "/status", headers, b"").status, 403);
        let read = common::send(admin.data_plane, "GET", "/v1/revocations", headers, b"");
        assert_eq!(read.status, 403, "{headers:?}: {}", read.body);
    }
    assert_eq!(
        admin.get("/consumers/victim").status,
        404,
        "nothing written"
    );
    for headers in [
        &[
            ("Host", "localhost:8001"),
            ("Origin", "http://localhost:3000"),
        ][..],
        &[("Host", "[::1]"), ("Sec-Fetch-Site", "same-origin")],
    ] {
        assert_eq!(admin.raw("GET", "/consumers", headers, b"").status, 200);
        let read = common::send(admin.data_plane, "GET", "/v1/revocations", headers, b"");
        assert_eq!(read.status, 200, "{}", read.body);
    }

    // With tokens, the token is the guard: a name other than loopback is fine.
    let dir = ScratchDir::new("tokens-host").unwrap();
    let db = format!("sqlite:{}", dir.path().join("admin.db").display());
    let (token, data_token) = (
        "0123456789abcdef0123456789abcdef",
        "fedcba9876543210fedcba9876543210",
    );
    let admin = Admin::try_start(
        &db,
        &[],
        &[
            ("PORTCULLIS_ADMIN_TOKEN", token),
            ("PORTCULLIS_ADMIN_DATA_PLANE_TOKEN", data_token),
        ],
    )
    .unwrap();
    let answer = admin.raw(
        "GET",
        "/consumers",
        &[("Host", "admin.internal"), ("Kong-Admin-Token", token)],
        b"",
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
    let bearer = format!("Bearer {data_token}");
    let read = common::send(
        admin.data_plane,
        "GET",
        "/v1/revocations",
        &[("Host", "admin.internal"), ("Authorization", &bearer)],
        b"",
    );
    assert_eq!(read.status, 200, "{}", read.body);
}

/// A request refused or failed is counted once, whatever the reason; methods beyond the
/// five the API answers share one label.
#[test]
fn failures_are_counted_once_and_methods_bounded() {
    let (_dir, admin) = fresh();
    admin.form("POST", "/consumers", &[("username", "bob")]);
    assert_eq!(
        admin
            .form("POST", "/consumers", &[("username", "bob")])
            .status,
        409
    );
    for n in 0..5 {
        admin.raw(&format!("FOO{n}"), "/consumers", &[], b"");
    }
    let metrics = admin.get("/metrics").body;
    assert!(
        metrics.contains("portcullis_admin_failures_total{reason=\"unique_violation\"} 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "portcullis_admin_requests_total{api=\"admin\",method=\"other\",status=\"405\"} 5\n"
        ),
        "{metrics}"
    );
    assert!(!metrics.contains("FOO"), "{metrics}");
}

/// A client that sends its head or body too slowly is cut off, and at most
/// `--max-connections` connections are served at once: slow clients cannot hold the
/// service.
#[test]
fn slow_clients_are_cut_off_and_connections_capped() {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::Instant;
    let dir = ScratchDir::new("limits").unwrap();
    let db = format!("sqlite:{}", dir.path().join("admin.db").display());
    let admin = Admin::start(
        &db,
        &[
            "--header-timeout-ms",
            "300",
            "--body-timeout-ms",
            "300",
            "--max-connections",
            "2",
        ],
    );
    let open = |address| {
        let stream = TcpStream::connect(address).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        stream
    };
    // A head that never ends: closed after the header timeout.
    let started = Instant::now();
    let mut slow = open(admin.admin);
    slow.write_all(b"GET /consumers HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .unwrap();
    let mut rest = Vec::new();
    let _ = slow.read_to_end(&mut rest);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the connection stayed open {:?}",
        started.elapsed()
    );
    // A body that never arrives: 408.
    let mut slow = open(admin.admin);
    slow.write_all(b"POST /consumers HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 20\r\n\r\n{\"us")
        .unwrap();
    let mut answer = Vec::new();
    let _ = slow.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("Request timeout"), "{answer}");

    // Two connections held (each mid-head): a third waits until one is cut off.
    let data = admin.data_plane;
    let mut held: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut s = open(data);
            s.write_all(b"GET /v1/revocations HTTP/1.1\r\n").unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(50));
    let started = Instant::now();
    let third = common::send(data, "GET", "/v1/revocations", &[], b"");
    assert_eq!(third.status, 200);
    assert!(
        started.elapsed() >= Duration::from_millis(150),
        "served at once: {:?}",
        started.elapsed()
    );
    held.clear();
}

/// At most `--max-revocations` in force: the next is a 409 that says so, and moving an
/// existing cutoff is still fine.
#[test]
fn revocations_in_force_are_capped() {
    let dir = ScratchDir::new("cap").unwrap();
    let db = format!("sqlite:{}", dir.path().join("admin.db").display());
    let admin = Admin::start(&db, &["--max-revocations", "2"]);
    admin.form("POST", "/consumers", &[("username", "bob")]);
    let future = 4_000_000_000i64;
    for jti in ["a", "b"] {
        let answer = admin.json(
            "POST",
            "/revocations",
            &json!({ "jti": jti, "expires_at": future }),
        );
        assert_eq!(answer.status, 201, "{}", answer.body);
    }
    let refused = admin.json("POST", "/revocations", &json!({ "consumer": "bob" }));
    assert_eq!(refused.status, 409, "{}", refused.body);
    assert_eq!(
        refused.json(),
        json!({ "message": "too many revocations in force: at most 2 (--max-revocations); delete some, or rotate the credential instead" })
    );
    let id = admin.get("/revocations").json()["data"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(admin.delete(&format!("/revocations/{id}")).status, 204);
    assert_eq!(
        admin
            .json("POST", "/revocations", &json!({ "consumer": "bob" }))
            .status,
        201
    );
    assert_eq!(
        admin
            .json("POST", "/revocations", &json!({ "consumer": "bob" }))
            .status,
        200,
        "moving a cutoff adds nothing"
    );
}

/// A credential answer must fit one `http_call`: at most 100 groups and 100 credentials
/// per consumer (409 past either), a group at most 256 bytes.
#[test]
fn a_consumer_has_at_most_100_groups_and_100_credentials() {
    let (_dir, admin) = fresh();
    admin.form("POST", "/consumers", &[("username", "bob")]);
    for i in 0..100 {
        let group = format!("g{i}");
        assert_eq!(
            admin
                .form("POST", "/consumers/bob/acls", &[("group", &group)])
                .status,
            201
        );
        let key = format!("k{i}");
        assert_eq!(
            admin
                .form("POST", "/consumers/bob/jwt", &[("key", &key)])
                .status,
            201
        );
    }
    let group = admin.form("POST", "/consumers/bob/acls", &[("group", "one-more")]);
    assert_eq!(group.status, 409, "{}", group.body);
    assert!(group.json()["message"]
        .as_str()
        .unwrap()
        .starts_with("a consumer has at most 100 groups"));
    let jwt = admin.form("POST", "/consumers/bob/jwt", &[("key", "one-more")]);
    assert_eq!(jwt.status, 409, "{}", jwt.body);
    assert!(jwt.json()["message"]
        .as_str()
        .unwrap()
        .starts_with("a consumer has at most 100 credentials"));
    admin.form("POST", "/consumers", &[("username", "eve")]);
    let long = admin.form(
        "POST",
        "/consumers/eve/acls",
        &[("group", &"g".repeat(257))],
    );
    assert_eq!(long.status, 400);
    assert_eq!(long.json()["fields"]["group"], "length must be at most 256");
    assert_eq!(
        admin.data("/v1/credentials/k0").json()["consumer"]["groups"]
            .as_array()
            .unwrap()
            .len(),
        100
    );
}

/// Names shaped like UUIDs are still names: importing twice updates, never duplicates or
/// fails on the second run.
#[test]
fn import_is_idempotent_for_uuid_shaped_names() {
    let dir = ScratchDir::new("import-uuid").unwrap();
    let db = format!("sqlite:{}", dir.path().join("admin.db").display());
    let config = dir.path().join("jwt.json");
    let name = "0b4e3c2a-1111-4222-8333-944455556666";
    std::fs::write(
        &config,
        json!({ "consumers": [ { "username": name, "groups": [name],
            "credentials": [ { "key": name, "secret": "demo-only-uuid-named-secret-0123456789abcdef" } ] } ] })
        .to_string(),
    )
    .unwrap();
    let import = || {
        std::process::Command::new(common::binary())
            .args(["import", "--db", &db])
            .arg(&config)
            .output()
            .unwrap()
    };
    let first = import();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let again = import();
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert!(
        String::from_utf8_lossy(&again.stdout).contains(
            "consumers 0 created, 1 updated; credentials 0 created, 1 updated; groups 0 created"
        ),
        "{}",
        String::from_utf8_lossy(&again.stdout)
    );
}

#[test]
fn concurrent_mixed_writes_make_gapless_events() {
    let (_dir, admin) = fresh();
    common::concurrent_mixed_events(&admin, 30);
}
