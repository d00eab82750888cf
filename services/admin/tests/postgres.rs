//! The same scenarios on a real PostgreSQL (a cluster of the tests' own, `initdb` on a
//! free port), then what only PostgreSQL can show: two admin replicas racing on one
//! database, the database stopped mid-run (503, nothing written, recovery), and
//! concurrent writers whose events come out gapless in commit order.

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
use portcullis_tests::postgres::Postgres;
use serde_json::json;

#[test]
fn every_scenario_on_postgres() {
    let pg = Postgres::start().unwrap();
    let all: [(&str, fn(&Admin)); 10] = [
        ("seed_flow", scenarios::seed_flow),
        ("consumers", scenarios::consumers),
        ("paging", scenarios::paging),
        ("jwt_credentials", scenarios::jwt_credentials),
        ("acls", scenarios::acls),
        ("cascade", scenarios::cascade),
        ("hostile_input", scenarios::hostile_input),
        ("revocations", scenarios::revocations),
        ("data_plane", scenarios::data_plane),
        ("tags", scenarios::tags),
    ];
    for (name, scenario) in all {
        let admin = Admin::start(&pg.database(name).unwrap(), &[]);
        scenario(&admin);
    }
}

/// The shared harness on PostgreSQL, as real-Envoy tests start it: the binary found beside
/// the test; a SIGKILLed service starts again on the same ports and database.
#[test]
fn the_shared_harness_writes_and_restarts_on_postgres() {
    let pg = Postgres::start().unwrap();
    let mut service = AdminService::start(&pg.database("harness").unwrap()).unwrap();
    common::harness_writes_and_survives_a_kill(&mut service);
}

#[test]
fn two_replicas_on_one_postgres_keep_keys_unique() {
    let pg = Postgres::start().unwrap();
    let db = pg.database("race").unwrap();
    let a = Admin::start(&db, &[]);
    let b = Admin::start(&db, &[]);
    common::scenarios_race(&a, &b, 30);
}

#[test]
fn concurrent_writes_make_one_event_each_in_commit_order() {
    let pg = Postgres::start().unwrap();
    let admin = Admin::start(&pg.database("events").unwrap(), &[]);
    common::concurrent_events(&admin, 60);
}

#[test]
fn database_stopped_mid_run_is_a_503_then_recovers() {
    let pg = Postgres::start().unwrap();
    let admin = Admin::start(
        &pg.database("outage").unwrap(),
        &["--db-timeout-ms", "1000"],
    );
    assert_eq!(
        admin
            .form("POST", "/consumers", &[("username", "before")])
            .status,
        201
    );

    pg.stop().unwrap();
    let write = admin.form("POST", "/consumers", &[("username", "during")]);
    assert_eq!(write.status, 503, "{}", write.body);
    let message = write.json()["message"].as_str().unwrap().to_owned();
    assert!(
        message.starts_with("Service unavailable: the database cannot be reached ("),
        "{message}"
    );
    assert!(message.ends_with("nothing was written"), "{message}");
    assert_eq!(admin.get("/consumers/before").status, 503);
    assert_eq!(admin.data("/v1/credentials/x").status, 503);
    let status = admin.get("/status");
    assert_eq!(status.status, 503);
    assert_eq!(status.json()["database"]["reachable"], false);
    assert!(admin
        .get("/metrics")
        .body
        .contains("portcullis_admin_database_up 0"));

    pg.start_again().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut answer = admin.form("POST", "/consumers", &[("username", "after")]);
    while answer.status == 503 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        answer = admin.form("POST", "/consumers", &[("username", "after")]);
    }
    assert_eq!(answer.status, 201, "{}", answer.body);
    assert_eq!(admin.get("/status").json()["database"]["reachable"], true);
    assert_eq!(
        admin.get("/consumers/during").status,
        404,
        "the failed write left nothing"
    );
    let events = admin.data("/v1/changes?after=0").json();
    assert_eq!(events["head"], 2, "{events}");
    assert_eq!(
        admin.get("/consumers").json()["data"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        admin
            .json("POST", "/consumers", &json!({ "username": "after" }))
            .status,
        409
    );
}

#[test]
fn a_replica_starting_on_a_migrated_database_applies_nothing() {
    let pg = Postgres::start().unwrap();
    let db = pg.database("migrate").unwrap();
    let first = Admin::start(&db, &[]);
    assert!(
        first.log().contains("migrations_applied=[1, 2, 3]"),
        "{}",
        first.log()
    );
    let second = Admin::start(&db, &[]);
    assert!(
        second.log().contains("migrations_applied=[]"),
        "{}",
        second.log()
    );
}

#[test]
fn removals_racing_credential_creates_list_every_key() {
    let pg = Postgres::start().unwrap();
    let admin = Admin::start(&pg.database("stale").unwrap(), &[]);
    common::removals_race_credential_creates(&admin, 10, 8);
}

/// Concurrent POSTs of one consumer's cutoff: one creates it (201), the others move it
/// (200); never a malformed 409 or a 500.
#[test]
fn concurrent_cutoffs_of_one_consumer_make_one_revocation() {
    let pg = Postgres::start().unwrap();
    let admin = Admin::start(&pg.database("cutoffs").unwrap(), &[]);
    // Several rounds: the race it pins (check, then insert) is not lost every time.
    for round in 0..6 {
        let name = format!("bob-{round}");
        admin.form("POST", "/consumers", &[("username", &name)]);
        let barrier = std::sync::Barrier::new(8);
        let mut statuses: Vec<u16> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    let (admin, barrier, name) = (&admin, &barrier, &name);
                    s.spawn(move || {
                        barrier.wait();
                        let answer =
                            admin.json("POST", "/revocations", &json!({ "consumer": name }));
                        assert!(matches!(answer.status, 200 | 201), "{}", answer.body);
                        answer.status
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        statuses.sort();
        assert_eq!(statuses, [200, 200, 200, 200, 200, 200, 200, 201]);
    }
    assert_eq!(
        admin.get("/revocations").json()["data"]
            .as_array()
            .unwrap()
            .len(),
        6
    );
}

/// A statement that fails halfway through a cascade (a trigger refuses the groups'
/// delete, after the revocations and credentials are gone within the transaction) leaves
/// nothing half-written: the consumer, its credentials, groups, revocation and the event
/// head are as before.
#[test]
fn a_write_failing_halfway_leaves_nothing_written() {
    let pg = Postgres::start().unwrap();
    let url = pg.database("halfway").unwrap();
    let admin = Admin::start(&url, &[]);
    admin.form("POST", "/consumers", &[("username", "bob")]);
    for i in 0..20 {
        let key = format!("bob-{i}");
        assert_eq!(
            admin
                .form("POST", "/consumers/bob/jwt", &[("key", &key)])
                .status,
            201
        );
    }
    admin.form("POST", "/consumers/bob/acls", &[("group", "admins")]);
    admin.json("POST", "/revocations", &json!({ "consumer": "bob" }));
    let head = admin.data("/v1/changes?after=0").json()["head"].clone();

    let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    client
        .batch_execute(
            "CREATE FUNCTION refuse() RETURNS trigger AS $$
               BEGIN RAISE EXCEPTION 'refused by the test'; END $$ LANGUAGE plpgsql;
             CREATE TRIGGER refuse_acl_delete BEFORE DELETE ON acls
               FOR EACH ROW EXECUTE FUNCTION refuse();",
        )
        .unwrap();
    let failed = admin.delete("/consumers/bob");
    assert_eq!(failed.status, 500, "{}", failed.body);
    assert_eq!(
        failed.json(),
        json!({ "message": "An unexpected error occurred" })
    );
    assert_eq!(admin.get("/consumers/bob").status, 200);
    assert_eq!(
        admin.get("/consumers/bob/jwt").json()["data"]
            .as_array()
            .unwrap()
            .len(),
        20
    );
    assert_eq!(
        admin.get("/revocations").json()["data"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(admin.data("/v1/credentials/bob-7").json()["found"], true);
    assert_eq!(admin.data("/v1/changes?after=0").json()["head"], head);

    client
        .batch_execute("DROP TRIGGER refuse_acl_delete ON acls")
        .unwrap();
    assert_eq!(admin.delete("/consumers/bob").status, 204);
    assert_eq!(admin.data("/v1/credentials/bob-7").json()["found"], false);
}

#[test]
fn concurrent_mixed_writes_make_gapless_events() {
    let pg = Postgres::start().unwrap();
    let admin = Admin::start(&pg.database("mixed").unwrap(), &[]);
    common::concurrent_mixed_events(&admin, 30);
}
