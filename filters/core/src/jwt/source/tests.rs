//! The source's whole protocol over one [`MemoryStore`]: a poller and two workers' views,
//! answered as portcullis-admin answers (services/admin/README.md).

use serde_json::{json, Value};

use super::directory::{Answered, Directory, Lookup, Resolve};
use super::poller::{Call, Outcome, Poller};
use super::settings::{ConsumerSource, RawConsumerSource};
use crate::shared::MemoryStore;

const SECRET: &str = "a-secret-of-at-least-thirty-two-bytes!";

fn source() -> ConsumerSource {
    let raw: RawConsumerSource =
        serde_json::from_value(json!({"cluster": "admin", "max_lookups_per_second": 5})).unwrap();
    ConsumerSource::compile("consumer_source", &raw).unwrap()
}

fn body(v: Value) -> Vec<u8> {
    v.to_string().into_bytes()
}

fn credential(key: &str, head: u64, groups: &[&str]) -> Vec<u8> {
    body(json!({
        "epoch": "e1", "head": head, "found": true, "grace": 100,
        "consumer": {"id": "c-1", "username": "mobile-app", "custom_id": null, "groups": groups, "cutoff": null},
        "credential": {"id": "k-1", "key": key, "algorithm": "HS256", "secret": SECRET, "cutoff": null}
    }))
}

fn revocations(head: u64, jtis: Value) -> Vec<u8> {
    body(
        json!({"epoch": "e1", "head": head, "grace": 100, "jtis": jtis, "consumers": [], "credentials": []}),
    )
}

fn changes(head: u64, events: Value) -> Vec<u8> {
    body(json!({"epoch": "e1", "head": head, "events": events}))
}

/// The admin's answer to a call: `:status` (none: no answer) and body.
type Admin = dyn Fn(&Call) -> (Option<&'static str>, Vec<u8>);

struct World {
    store: MemoryStore,
    poller: Poller,
    a: Directory,
    b: Directory,
    now: u64,
}

impl World {
    fn new() -> World {
        World {
            store: MemoryStore::default(),
            poller: Poller::new(source(), 1),
            a: Directory::new(source()),
            b: Directory::new(source()),
            now: 1_000_000,
        }
    }

    /// One poll: tick, then every call answered by `admin`, follow-ups included.
    fn poll(&mut self, admin: &Admin) -> Vec<Outcome> {
        self.now += 1_000;
        let mut calls = self.poller.tick(&self.store, self.now).unwrap();
        let mut outcomes = Vec::new();
        while let Some(call) = calls.pop() {
            let (status, body) = admin(&call);
            let (more, outcome) = self
                .poller
                .answered(&self.store, &call, status, &body, self.now)
                .unwrap();
            calls.extend(more);
            outcomes.push(outcome);
        }
        outcomes
    }

    /// Worker `a` syncs, claims the lookup of `key` and stores the admin's answer (read at
    /// event `head`), as the glue does for a request with that key.
    fn look_up_a(&mut self, key: &str, head: u64) {
        self.a.sync(&self.store).unwrap();
        assert_eq!(
            self.a.resolve(&self.store, key, self.now).unwrap(),
            Resolve::Claimed
        );
        let stored = self
            .a
            .answered(
                &self.store,
                key,
                Some("200"),
                &credential(key, head, &[]),
                self.now,
            )
            .unwrap();
        assert_eq!(stored, Answered::Stored);
    }

    fn find(&mut self, which: char, key: &str) -> Lookup {
        let d = if which == 'a' {
            &mut self.a
        } else {
            &mut self.b
        };
        d.sync(&self.store).unwrap();
        d.find(key, self.now)
    }
}

fn empty_admin(call: &Call) -> (Option<&'static str>, Vec<u8>) {
    match call {
        Call::Revocations => (Some("200"), revocations(3, json!([]))),
        Call::Changes { .. } => (Some("200"), changes(3, json!([]))),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn nothing_is_admitted_before_the_revocations_are_loaded() {
    let mut w = World::new();
    assert!(matches!(w.find('a', "k"), Lookup::Unavailable));
    let failed = w.poll(&|_| (Some("503"), b"{}".to_vec()));
    assert!(matches!(failed[..], [Outcome::Failed(_)]), "{failed:?}");
    assert!(matches!(w.find('a', "k"), Lookup::Unavailable));
    assert_eq!(w.poll(&empty_admin), [Outcome::Loaded { revocations: 0 }]);
    assert!(matches!(w.find('a', "k"), Lookup::NotCached));
    assert_eq!(w.poll(&empty_admin), [Outcome::Applied { events: 0 }]);
}

#[test]
fn one_lookup_serves_every_worker_and_the_feed_drops_it() {
    let mut w = World::new();
    w.poll(&empty_admin);
    let now = w.now;
    assert!(matches!(w.find('a', "mobile"), Lookup::NotCached));
    assert_eq!(
        w.a.resolve(&w.store, "mobile", now).unwrap(),
        Resolve::Claimed
    );
    assert!(matches!(w.find('b', "mobile"), Lookup::NotCached));
    assert_eq!(
        w.b.resolve(&w.store, "mobile", now).unwrap(),
        Resolve::Wait,
        "one lookup per Envoy"
    );
    let stored =
        w.a.answered(
            &w.store,
            "mobile",
            Some("200"),
            &credential("mobile", 3, &["admins"]),
            now,
        )
        .unwrap();
    assert_eq!(stored, Answered::Stored);
    assert_eq!(
        w.b.resolve(&w.store, "mobile", now).unwrap(),
        Resolve::Ready
    );
    let Lookup::Found(found) = w.find('b', "mobile") else {
        panic!("b has the answer")
    };
    assert_eq!(found.credential.handoff.identity.groups, ["admins"]);

    // The admin changes the consumer's groups: event 4 names the key.
    let admin = |call: &Call| match call {
        Call::Changes { after: 3 } => (
            Some("200"),
            changes(
                4,
                json!([{"id": 4, "entity": "acls", "entity_id": "g", "op": "delete", "credentials": ["mobile"]}]),
            ),
        ),
        other => panic!("unexpected {other:?}"),
    };
    assert_eq!(w.poll(&admin), [Outcome::Applied { events: 1 }]);
    assert!(matches!(w.find('a', "mobile"), Lookup::NotCached));
    assert!(matches!(w.find('b', "mobile"), Lookup::NotCached));
    // An answer read before the change is stale: discarded, never cached.
    let now = w.now;
    assert_eq!(
        w.a.resolve(&w.store, "mobile", now).unwrap(),
        Resolve::Claimed
    );
    let stale =
        w.a.answered(
            &w.store,
            "mobile",
            Some("200"),
            &credential("mobile", 3, &["admins"]),
            now,
        )
        .unwrap();
    assert_eq!(stale, Answered::Discarded);
    assert!(matches!(w.find('a', "mobile"), Lookup::NotCached));
}

#[test]
fn unknown_keys_are_cached_for_negative_ttl_and_lookups_are_capped() {
    let mut w = World::new();
    w.poll(&empty_admin);
    let now = w.now;
    w.a.sync(&w.store).unwrap();
    assert_eq!(
        w.a.resolve(&w.store, "nobody", now).unwrap(),
        Resolve::Claimed
    );
    let missing = body(json!({"epoch": "e1", "head": 3, "found": false}));
    assert_eq!(
        w.a.answered(&w.store, "nobody", Some("200"), &missing, now)
            .unwrap(),
        Answered::Stored
    );
    assert!(matches!(w.a.find("nobody", now), Lookup::Missing));
    assert!(matches!(
        w.a.find("nobody", now + 30_001),
        Lookup::NotCached
    ));
    // A 404 (a wrong path or version) is no answer: nothing cached; the key is refused
    // without a new lookup for a second, then looked up again.
    assert_eq!(
        w.a.resolve(&w.store, "other", now).unwrap(),
        Resolve::Claimed
    );
    let failed =
        w.a.answered(&w.store, "other", Some("404"), b"{}", now)
            .unwrap();
    assert!(matches!(failed, Answered::Failed(_)));
    assert!(matches!(w.a.find("other", now), Lookup::NotCached));
    w.b.sync(&w.store).unwrap();
    assert_eq!(
        w.b.resolve(&w.store, "other", now + 999).unwrap(),
        Resolve::Failed
    );
    assert_eq!(
        w.b.resolve(&w.store, "other", now + 1000).unwrap(),
        Resolve::Claimed
    );
    // Five lookups per second at most.
    let later = now + 5_000;
    let claimed = (0..10)
        .map(|i| {
            w.a.resolve(&w.store, &format!("random-{i}"), later)
                .unwrap()
        })
        .filter(|r| *r == Resolve::Claimed)
        .count();
    assert_eq!(claimed, 5);
    assert_eq!(
        w.a.resolve(&w.store, "random-x", later).unwrap(),
        Resolve::Throttled
    );
    let (_, missing, _) = w.a.sizes();
    assert!(missing <= source().cache_size);
}

#[test]
fn revocations_follow_by_delta_and_a_reset_drops_everything() {
    let mut w = World::new();
    w.poll(&|call| match call {
        Call::Revocations => (
            Some("200"),
            revocations(
                3,
                json!([{"id": "r1", "jti": "old", "expires_at": 2_000_000_000}]),
            ),
        ),
        other => panic!("unexpected {other:?}"),
    });
    let now = w.now;
    w.look_up_a("mobile", 3);
    let Lookup::Found(found) = w.find('a', "mobile") else {
        panic!()
    };
    let secs = now / 1000;
    assert!(w.a.revoked(&found, Some("old"), Some(1.0), secs));
    assert!(!w.a.revoked(&found, Some("new"), Some(1.0), secs));

    // Event 4 revokes jti "new"; event 5 deletes r1.
    let admin = |call: &Call| match call {
        Call::Changes { after: 3 } => (
            Some("200"),
            changes(
                5,
                json!([
                    {"id": 4, "entity": "revocations", "entity_id": "r2", "op": "create", "credentials": []},
                    {"id": 5, "entity": "revocations", "entity_id": "r1", "op": "delete", "credentials": []}
                ]),
            ),
        ),
        Call::Revocation { id } if id == "r2" => (
            Some("200"),
            body(
                json!({"epoch": "e1", "head": 5, "grace": 100, "found": true,
                "revocation": {"id": "r2", "jti": "new", "expires_at": 2_000_000_000}}),
            ),
        ),
        Call::Revocation { id } if id == "r1" => (
            Some("200"),
            body(json!({"epoch": "e1", "head": 5, "grace": 100, "found": false})),
        ),
        other => panic!("unexpected {other:?}"),
    };
    let outcomes = w.poll(&admin);
    assert_eq!(
        outcomes.last(),
        Some(&Outcome::Applied { events: 2 }),
        "{outcomes:?}"
    );
    let Lookup::Found(found) = w.find('a', "mobile") else {
        panic!()
    };
    assert!(w.a.revoked(&found, Some("new"), Some(1.0), secs));
    assert!(!w.a.revoked(&found, Some("old"), Some(1.0), secs));
    // A worker starting now loads the same from the snapshot and the log.
    let Lookup::NotCached = w.find('b', "mobile") else {
        panic!()
    };
    assert_eq!(w.b.sizes().2, 1);

    // The database was replaced: another epoch. Everything goes, then reloads.
    let outcomes = w.poll(&|call| match call {
        Call::Changes { .. } => (Some("200"), body(json!({"epoch": "e2", "head": 1, "events": []}))),
        Call::Revocations => (
            Some("200"),
            body(json!({"epoch": "e2", "head": 1, "grace": 100, "jtis": [], "consumers": [], "credentials": []})),
        ),
        other => panic!("unexpected {other:?}"),
    });
    assert_eq!(
        outcomes,
        [Outcome::Reset, Outcome::Loaded { revocations: 0 }]
    );
    assert!(matches!(w.find('a', "mobile"), Lookup::NotCached));
    assert_eq!(w.a.sizes(), (0, 0, 0));
}

#[test]
fn cached_entries_serve_for_stale_ttl_while_the_admin_is_away() {
    let mut w = World::new();
    w.poll(&empty_admin);
    let now = w.now;
    w.look_up_a("mobile", 3);
    for _ in 0..10 {
        w.poll(&|_| (None, Vec::new()));
    }
    assert!(
        matches!(w.find('a', "mobile"), Lookup::Found(_)),
        "within stale_ttl"
    );
    let s = source();
    let past = now + s.poll_interval_ms + s.timeout_ms + s.stale_ttl_ms + 1;
    assert!(matches!(w.a.find("mobile", past), Lookup::Unavailable));
    w.now = past;
    assert_eq!(
        w.poll(&empty_admin),
        [Outcome::Applied { events: 0 }],
        "recovers by itself"
    );
    assert!(matches!(w.find('a', "mobile"), Lookup::Found(_)));
}

#[test]
fn a_second_poller_waits_for_the_lease_and_takes_over() {
    let mut w = World::new();
    w.poll(&empty_admin);
    let mut other = Poller::new(source(), 2);
    assert!(
        other.tick(&w.store, w.now + 1_000).unwrap().is_empty(),
        "lease held"
    );
    let later = w.now + 10_000;
    let calls = other.tick(&w.store, later).unwrap();
    assert_eq!(
        calls,
        [Call::Changes { after: 3 }],
        "continues from the shared head"
    );
}

#[test]
fn a_key_whose_slot_holds_a_credential_is_looked_up_alone_and_evicts_nothing() {
    let mut w = World::new();
    w.poll(&empty_admin);
    let now = w.now;
    w.look_up_a("mobile", 3);
    // A key that lands in the same slot (the table has 10000; find one).
    let slots = super::shared::Slots {
        size: source().cache_size,
    };
    let twin = (0..)
        .map(|i| format!("random-{i}"))
        .find(|k| slots.index(k) == slots.index("mobile"))
        .unwrap();
    w.b.sync(&w.store).unwrap();
    assert_eq!(w.b.resolve(&w.store, &twin, now).unwrap(), Resolve::Claimed);
    assert_eq!(
        w.b.resolve(&w.store, &twin, now).unwrap(),
        Resolve::Wait,
        "one at a time"
    );
    let missing = body(json!({"epoch": "e1", "head": 3, "found": false}));
    assert_eq!(
        w.b.answered(&w.store, &twin, Some("200"), &missing, now)
            .unwrap(),
        Answered::Stored
    );
    assert!(matches!(w.b.find(&twin, now), Lookup::Missing));
    // The credential's slot still serves a worker that never saw it.
    assert_eq!(
        w.b.resolve(&w.store, "mobile", now).unwrap(),
        Resolve::Ready
    );
    // A failed lone lookup is not retried for a second.
    let other_twin = (0..)
        .map(|i| format!("other-{i}"))
        .find(|k| slots.index(k) == slots.index("mobile"))
        .unwrap();
    assert_eq!(
        w.b.resolve(&w.store, &other_twin, now).unwrap(),
        Resolve::Claimed
    );
    w.b.answered(&w.store, &other_twin, None, b"", now).unwrap();
    assert_eq!(
        w.b.resolve(&w.store, &other_twin, now + 10).unwrap(),
        Resolve::Failed
    );
}

#[test]
fn an_answer_read_after_a_change_survives_the_feed_catching_up_with_it() {
    let mut w = World::new();
    w.poll(&empty_admin);
    // The credential was created at event 4; the lookup (head 4) lands before the poll.
    w.look_up_a("mobile", 4);
    let admin = |call: &Call| match call {
        Call::Changes { after: 3 } => (
            Some("200"),
            changes(
                4,
                json!([{"id": 4, "entity": "jwt_secrets", "entity_id": "k-1", "op": "create", "credentials": ["mobile"]}]),
            ),
        ),
        other => panic!("unexpected {other:?}"),
    };
    assert_eq!(w.poll(&admin), [Outcome::Applied { events: 1 }]);
    assert!(
        matches!(w.find('a', "mobile"), Lookup::Found(_)),
        "kept locally"
    );
    let now = w.now;
    w.b.sync(&w.store).unwrap();
    assert_eq!(
        w.b.resolve(&w.store, "mobile", now).unwrap(),
        Resolve::Ready,
        "kept in its slot"
    );
}
