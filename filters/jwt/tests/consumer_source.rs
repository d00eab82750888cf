//! `consumer_source`: consumers looked up in portcullis-admin's data plane at runtime — one
//! lookup per Envoy, the answer shared by every worker, changes followed through the feed
//! within the poll interval, revocations honoured on cache hits, and every failure refused
//! rather than accepted. The data plane here is a model of the admin's version-1 contract
//! (services/admin/README.md); tests/tests/consumer_source_e2e.rs runs the real one.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use host_test::HttpCallRequest;
use serde_json::{json, Value};

const SECRET: &str = "looked-up-secret-of-thirty-two-b";

#[derive(Default)]
struct Model {
    epoch: String,
    events: Vec<Value>,
    /// key → (consumer, credential)
    credentials: BTreeMap<String, (Value, Value)>,
    revocations: BTreeMap<String, Value>,
    calls: Vec<HttpCallRequest>,
    down: bool,
}

impl Model {
    fn head(&self) -> u64 {
        self.events.len() as u64
    }

    fn event(&mut self, entity: &str, entity_id: &str, keys: &[&str]) {
        let id = self.head() + 1;
        self.events.push(
            json!({"id": id, "at_ms": 0, "entity": entity, "entity_id": entity_id,
            "op": "update", "credentials": keys}),
        );
    }

    fn answer(&mut self, request: &HttpCallRequest) -> HttpCallReply {
        self.calls.push(request.clone());
        if self.down {
            return HttpCallReply::failure();
        }
        let path = request.header(":path").unwrap_or_default().to_owned();
        let (epoch, head) = (self.epoch.clone(), self.head());
        let body = if let Some(key) = path.strip_prefix("/v1/credentials/") {
            let key = percent_decode(key);
            match self.credentials.get(&key) {
                Some((consumer, credential)) => json!({"epoch": epoch, "head": head, "found": true,
                    "grace": 60, "consumer": consumer, "credential": credential}),
                None => json!({"epoch": epoch, "head": head, "found": false}),
            }
        } else if let Some(query) = path.strip_prefix("/v1/changes?after=") {
            let after: u64 = query.split('&').next().unwrap().parse().unwrap();
            let events: Vec<&Value> = self.events.iter().skip(after as usize).collect();
            json!({"epoch": epoch, "head": head, "events": events})
        } else if path == "/v1/revocations" {
            let jtis: Vec<&Value> = self.revocations.values().collect();
            json!({"epoch": epoch, "head": head, "grace": 60, "jtis": jtis, "consumers": [], "credentials": []})
        } else if let Some(id) = path.strip_prefix("/v1/revocations/") {
            match self.revocations.get(id) {
                Some(r) => {
                    json!({"epoch": epoch, "head": head, "grace": 60, "found": true, "revocation": r})
                }
                None => json!({"epoch": epoch, "head": head, "grace": 60, "found": false}),
            }
        } else {
            return HttpCallReply::new(404).body(r#"{"message":"Not found"}"#);
        };
        HttpCallReply::ok(body.to_string()).header("content-type", "application/json")
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

/// The admin's data plane behind the cluster `admin`.
#[derive(Clone)]
struct Admin(Arc<Mutex<Model>>);

impl Admin {
    fn serve(host: &Host) -> Admin {
        let admin = Admin(Arc::new(Mutex::new(Model {
            epoch: "epoch-1".into(),
            ..Model::default()
        })));
        let model = admin.0.clone();
        host.upstream("admin", move |request| {
            model.lock().unwrap().answer(request)
        });
        admin
    }

    fn create(&self, key: &str, username: &str, groups: &[&str]) {
        let mut m = self.0.lock().unwrap();
        let consumer = json!({"id": format!("id-{username}"), "username": username,
            "custom_id": null, "groups": groups, "cutoff": null});
        let credential = json!({"id": format!("cred-{key}"), "key": key, "algorithm": "HS256",
            "secret": SECRET, "cutoff": null});
        m.credentials.insert(key.to_owned(), (consumer, credential));
        m.event("jwt_secrets", key, &[key]);
    }

    fn set_groups(&self, key: &str, groups: &[&str]) {
        let mut m = self.0.lock().unwrap();
        m.credentials.get_mut(key).unwrap().0["groups"] = json!(groups);
        m.event("acls", "g", &[key]);
    }

    fn delete(&self, key: &str) {
        let mut m = self.0.lock().unwrap();
        m.credentials.remove(key);
        m.event("jwt_secrets", key, &[key]);
    }

    fn revoke(&self, id: &str, jti: &str) {
        let mut m = self.0.lock().unwrap();
        m.revocations.insert(
            id.to_owned(),
            json!({"id": id, "jti": jti, "expires_at": NOW + 3600}),
        );
        m.event("revocations", id, &[]);
    }

    fn down(&self, down: bool) {
        self.0.lock().unwrap().down = down;
    }

    fn lookups(&self) -> Vec<String> {
        let m = self.0.lock().unwrap();
        m.calls
            .iter()
            .filter_map(|c| c.header(":path"))
            .filter(|p| p.starts_with("/v1/credentials/"))
            .map(str::to_owned)
            .collect()
    }

    fn calls(&self) -> Vec<HttpCallRequest> {
        self.0.lock().unwrap().calls.clone()
    }
}

fn source_config(extra: Value) -> Value {
    let mut source = json!({"cluster": "admin", "authority": "portcullis-admin",
        "poll_interval_ms": 1000, "timeout_ms": 200, "max_lookups_per_second": 20});
    source
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    config_with(json!({"consumer_source": source}))
}

/// A worker started, and its first tick run (the source loads the revocations).
fn worker(host: &Host, config: &Value) -> Plugin {
    let mut jwt = host.start("jwt", config);
    jwt.advance(Duration::from_millis(150)).unwrap();
    jwt
}

/// A token of the looked-up credential `key`, signed with its secret.
fn token(key: &str, extra: Value) -> String {
    let mut claims = json!({"iss": key, "iat": NOW - 10, "exp": NOW + 600});
    claims
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    tokens::sign_raw(
        &json!({"alg": "HS256", "typ": "JWT"}),
        &claims,
        SECRET.as_bytes(),
    )
}

/// The stated bound: the polling worker (the first started) advances by the poll interval
/// plus a round trip (here, instant); the others only take their next request.
fn one_bound(workers: &mut [&mut Plugin]) {
    let (poller, others) = workers.split_first_mut().unwrap();
    poller.advance(Duration::from_millis(1001)).unwrap();
    for w in others {
        w.run_due().unwrap();
    }
}

fn groups(exchange: &Exchange) -> Option<String> {
    exchange.upstream_header("x-consumer-groups")
}

#[test]
fn a_credential_created_in_the_admin_is_looked_up_once_and_shared_by_every_worker() {
    let host = Host::new();
    let admin = Admin::serve(&host);
    admin.create("mobile", "mobile-app", &["admins"]);
    let config = source_config(json!({}));
    let mut first = worker(&host, &config);
    let mut second = worker(&host, &config);

    let exchange = first.send(bearer(&token("mobile", json!({}))));
    assert_accepted(&exchange, "first worker");
    assert_eq!(
        exchange.upstream_header("x-consumer-username").as_deref(),
        Some("mobile-app")
    );
    assert_eq!(
        exchange.upstream_header("x-consumer-id").as_deref(),
        Some("id-mobile-app")
    );
    assert_eq!(groups(&exchange).as_deref(), Some("admins"));
    assert_accepted(&first.send(bearer(&token("mobile", json!({})))), "again");
    assert_accepted(
        &second.send(bearer(&token("mobile", json!({})))),
        "second worker",
    );
    assert_eq!(
        admin.lookups(),
        ["/v1/credentials/mobile"],
        "one lookup per Envoy"
    );

    // Every call carries the authority; static consumers are never looked up.
    assert!(admin
        .calls()
        .iter()
        .all(|c| c.header(":authority") == Some("portcullis-admin")));
    assert_accepted(
        &first.send(bearer(&sign("HS256", json!({}), claims(&key_for("HS256"))))),
        "static",
    );
    assert_eq!(admin.lookups().len(), 1);
}

#[test]
fn changes_in_the_admin_take_effect_on_every_worker_within_the_poll_interval() {
    let host = Host::new();
    let admin = Admin::serve(&host);
    admin.create("mobile", "mobile-app", &["customers"]);
    let config = source_config(json!({}));
    let mut first = worker(&host, &config);
    let mut second = worker(&host, &config);
    let good = || bearer(&token("mobile", json!({})));
    assert_eq!(groups(&first.send(good())).as_deref(), Some("customers"));
    assert_eq!(groups(&second.send(good())).as_deref(), Some("customers"));

    admin.set_groups("mobile", &["admins", "customers"]);
    one_bound(&mut [&mut first, &mut second]);
    assert_eq!(
        groups(&first.send(good())).as_deref(),
        Some("admins, customers")
    );
    assert_eq!(
        groups(&second.send(good())).as_deref(),
        Some("admins, customers")
    );

    admin.delete("mobile");
    one_bound(&mut [&mut first, &mut second]);
    for w in [&mut first, &mut second] {
        assert_refused(
            w,
            good(),
            message("No credentials found for given 'iss'"),
            "unknown_credential",
            "deleted",
        );
    }
}

#[test]
fn an_unknown_key_is_remembered_and_a_credential_created_for_it_ends_that() {
    let host = Host::new();
    let admin = Admin::serve(&host);
    let mut jwt = worker(&host, &source_config(json!({})));
    let later = || bearer(&token("later", json!({})));
    for _ in 0..3 {
        assert_refused(
            &mut jwt,
            later(),
            message("No credentials found for given 'iss'"),
            "unknown_credential",
            "unknown",
        );
    }
    assert_eq!(admin.lookups().len(), 1, "misses are cached");
    admin.create("later", "late-app", &[]);
    one_bound(&mut [&mut jwt]);
    assert_accepted(&jwt.send(later()), "created");
}

#[test]
fn a_revoked_token_is_refused_on_cache_hits_too() {
    let host = Host::new();
    let admin = Admin::serve(&host);
    admin.create("mobile", "mobile-app", &[]);
    let mut jwt = worker(&host, &source_config(json!({})));
    let stolen = bearer(&token("mobile", json!({"jti": "t-42"})));
    assert_accepted(&jwt.send(stolen.clone()), "before");
    assert!(jwt.send(stolen.clone()).reached_upstream());
    admin.revoke("r1", "t-42");
    one_bound(&mut [&mut jwt]);
    assert_refused(
        &mut jwt,
        stolen,
        message("Token revoked"),
        "revoked",
        "revoked jti",
    );
    assert_accepted(
        &jwt.send(bearer(&token("mobile", json!({"jti": "t-43"})))),
        "another jti",
    );
}

#[test]
fn with_the_admin_away_cached_consumers_serve_for_stale_ttl_and_unknown_keys_get_503() {
    let host = Host::new();
    let admin = Admin::serve(&host);
    admin.create("mobile", "mobile-app", &[]);
    let mut jwt = worker(&host, &source_config(json!({"stale_ttl": 5})));
    let good = || bearer(&token("mobile", json!({})));
    assert_accepted(&jwt.send(good()), "before");

    admin.down(true);
    jwt.advance(Duration::from_secs(3)).unwrap();
    assert_accepted(&jwt.send(good()), "within stale_ttl");
    assert!(host.metric_value("portcullis_jwt_source_stale_served_total") >= 1);
    let unknown = jwt.send(bearer(&token("stranger", json!({}))));
    assert_eq!(unknown.status(), 503, "{}", unknown.body_text());
    assert_eq!(
        unknown.body_json(),
        message("Credential lookup unavailable")
    );
    assert_eq!(unknown.header("retry-after").as_deref(), Some("1"));
    assert_eq!(
        unknown.header("www-authenticate"),
        None,
        "nothing is said of the token"
    );
    assert!(!unknown.reached_upstream());

    jwt.advance(Duration::from_secs(5)).unwrap();
    let late = jwt.send(good());
    assert_eq!(late.status(), 503, "past stale_ttl: {}", late.body_text());
    assert!(host.metric_value("portcullis_jwt_rejected_source_unavailable_total") >= 2);

    admin.down(false);
    one_bound(&mut [&mut jwt]);
    assert_accepted(&jwt.send(good()), "recovered by itself");
}

#[test]
fn before_the_revocations_are_loaded_looked_up_tokens_get_503_and_static_ones_pass() {
    let host = Host::new();
    let admin = Admin::serve(&host);
    admin.create("mobile", "mobile-app", &[]);
    admin.down(true);
    let mut jwt = worker(&host, &source_config(json!({})));
    let refused = jwt.send(bearer(&token("mobile", json!({}))));
    assert_eq!(refused.status(), 503);
    assert!(!refused.reached_upstream());
    assert_accepted(
        &jwt.send(bearer(&sign("HS256", json!({}), claims(&key_for("HS256"))))),
        "static",
    );
    assert!(admin.lookups().is_empty(), "no lookup before loading");
}

#[test]
fn random_keys_cannot_flood_the_admin() {
    let host = Host::new();
    let admin = Admin::serve(&host);
    admin.create("mobile", "mobile-app", &[]);
    let mut jwt = worker(&host, &source_config(json!({"max_lookups_per_second": 5})));
    assert_accepted(&jwt.send(bearer(&token("mobile", json!({})))), "known");
    let mut throttled = 0;
    for i in 0..50 {
        let exchange = jwt.send(bearer(&token(&format!("random-{i}"), json!({}))));
        assert!(!exchange.reached_upstream());
        if exchange.status() == 503 {
            assert_eq!(exchange.body_json(), message("Too many credential lookups"));
            throttled += 1;
        }
    }
    assert!(
        admin.lookups().len() <= 5 + 5,
        "{} lookups",
        admin.lookups().len()
    );
    assert!(throttled >= 40, "{throttled} throttled");
    assert_eq!(
        host.metric_value("portcullis_jwt_rejected_lookup_throttled_total"),
        throttled
    );
    assert_accepted(
        &jwt.send(bearer(&token("mobile", json!({})))),
        "known consumer unaffected",
    );
}

#[test]
fn keys_are_one_percent_encoded_segment_and_the_token_is_sent() {
    let host = Host::new();
    let admin = Admin::serve(&host);
    admin.create("a/b c", "odd-app", &[]);
    let mut jwt = worker(&host, &source_config(json!({"token": "dp-secret"})));
    assert_accepted(&jwt.send(bearer(&token("a/b c", json!({})))), "odd key");
    assert_eq!(admin.lookups(), ["/v1/credentials/a%2Fb%20c"]);
    assert!(admin
        .calls()
        .iter()
        .all(|c| c.header("authorization") == Some("Bearer dp-secret")));
}

#[test]
fn a_request_waits_for_the_lookup_another_worker_claimed() {
    use portcullis_core::jwt::source::shared::{Slot, SlotState, Slots};
    let host = Host::new();
    let admin = Admin::serve(&host);
    admin.create("mobile", "mobile-app", &["admins"]);
    let mut jwt = worker(&host, &source_config(json!({})));
    // Another worker claimed the lookup (a pending slot); its answer lands two reads later.
    let slots = Slots { size: 10_000 };
    let key = slots.key_of("mobile");
    let answer = json!({"epoch": "epoch-1", "head": 1, "found": true, "grace": 60,
        "consumer": {"id": "id-mobile-app", "username": "mobile-app", "custom_id": null, "groups": ["admins"], "cutoff": null},
        "credential": {"id": "cred-mobile", "key": "mobile", "algorithm": "HS256", "secret": SECRET, "cutoff": null}});
    let now_ms = host.now_nanos() / 1_000_000;
    let slot = |state| Slot {
        generation: 0,
        at_ms: now_ms,
        head: 1,
        key: "mobile".into(),
        state,
    };
    let (pending, found) = (
        slot(SlotState::Pending).encode(),
        slot(SlotState::Found(answer.to_string().into_bytes())).encode(),
    );
    host.set_shared_data("portcullis-jwt", &key, &pending);
    let mut reads = 0;
    host.on_shared_get(move |k, writer| {
        if k == key {
            reads += 1;
            if reads == 3 {
                writer.set(k, &found);
            }
        }
    });
    let exchange = jwt.send(bearer(&token("mobile", json!({}))));
    host.clear_shared_get_hook();
    assert_accepted(&exchange, "after waiting");
    assert_eq!(groups(&exchange).as_deref(), Some("admins"));
    assert!(
        admin.lookups().is_empty(),
        "this worker did not look it up itself"
    );
}

#[test]
fn a_bad_consumer_source_refuses_to_start_naming_the_field() {
    let host = Host::new();
    let config =
        config_with(json!({"consumer_source": {"cluster": "admin", "poll_interval_ms": 5}}));
    let refused = host.filter("jwt").config_json(&config).start();
    assert!(refused.is_err());
    assert!(host
        .logs()
        .iter()
        .any(|l| l.message.contains("consumer_source.poll_interval_ms")));
}

#[test]
fn acl_and_rate_limiting_take_looked_up_consumers_like_static_ones() {
    let host = Host::new();
    let admin = Admin::serve(&host);
    admin.create("mobile", "mobile-app", &["customers"]);
    admin.create("web", "web-app", &["customers"]);
    let mut jwt = worker(&host, &source_config(json!({})));
    let mut acl = host.start("acl", &json!({"allow": ["admins"]}));
    let mut limit = host.start(
        "rate-limiting",
        &json!({"minute": 2, "limit_by": "consumer", "slots": 64}),
    );
    let mut send = |key: &str| {
        host_test::send(
            &mut [&mut jwt, &mut acl, &mut limit],
            bearer(&token(key, json!({}))),
        )
    };
    assert_eq!(send("mobile").status(), 403, "customers only");
    admin.set_groups("mobile", &["admins"]);
    admin.set_groups("web", &["admins"]);
    // The poller's next tick runs within the chain's next request.
    host.advance(Duration::from_millis(1001));
    let statuses: Vec<u16> = (0..3).map(|_| send("mobile").status()).collect();
    assert_eq!(statuses, [200, 200, 429], "counted per looked-up consumer");
    assert_eq!(send("web").status(), 200, "another consumer, its own count");
}
