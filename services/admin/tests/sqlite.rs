//! The Admin API and the data plane against the real binary on a real SQLite file: every
//! scenario of `common/scenarios.rs` on a fresh file, then what only a process shows
//! (tokens, start-up refusals, SIGTERM, two processes on one file, the pruner).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::type_complexity)]

mod common;

use std::time::Duration;

use common::{scenarios, Admin, ScratchDir};
use serde_json::json;

fn fresh() -> (ScratchDir, Admin) {
    let dir = ScratchDir::new("sqlite");
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
    data_plane
);

#[test]
fn the_admin_token_guards_every_path_but_status() {
    let dir = ScratchDir::new("token");
    let db = format!("sqlite:{}", dir.path().join("admin.db").display());
    let token = "0123456789abcdef0123456789abcdef";
    let mut admin = Admin::try_start(&db, &[], &[("PORTCULLIS_ADMIN_TOKEN", token)]).unwrap();
    for (header, status) in [
        (None, 401),
        (Some("wrong-token-wrong-token"), 401),
        (Some(token), 201),
    ] {
        let headers: Vec<(&str, &str)> = header
            .map(|h| vec![("Kong-Admin-Token", h)])
            .unwrap_or_default();
        let mut all = headers.clone();
        all.push(("Content-Type", "application/x-www-form-urlencoded"));
        let answer = admin.raw("POST", "/consumers", &all, b"username=bob");
        assert_eq!(answer.status, status, "{header:?}: {}", answer.body);
        if status == 401 {
            assert_eq!(
                answer.json(),
                json!({ "message": "Invalid credentials. Token or User credentials required" })
            );
        }
    }
    assert_eq!(admin.get("/status").status, 200, "no token for /status");
    assert_eq!(admin.get("/metrics").status, 401);
    admin.token = Some(token.to_owned());
    assert!(admin
        .get("/metrics")
        .body
        .contains("portcullis_admin_failures_total{reason=\"unauthorized\"} 3"));
    assert!(!admin.log().contains(token), "the token reached the log");
}

#[test]
fn refuses_to_start_exposed_or_misconfigured() {
    let dir = ScratchDir::new("refuse");
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
    let dir = ScratchDir::new("restart");
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
    let dir = ScratchDir::new("two");
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
    let dir = ScratchDir::new("prune");
    let db = format!("sqlite:{}", dir.path().join("admin.db").display());
    let admin = Admin::start(&db, &["--event-retention", "1"]);
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
    assert_eq!(current, json!({ "head": 2, "events": [] }));
    assert_eq!(
        admin.get("/revocations").json()["data"],
        json!([]),
        "forgotten after its exp"
    );
    let status = admin.get("/status").json();
    assert_eq!(status["database"]["pruned_through"], 2);
}
