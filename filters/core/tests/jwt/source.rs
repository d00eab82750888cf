//! `consumer_source` through `authenticate`: a looked-up consumer is accepted with its
//! groups, a static credential shadows the source's, revocations refuse cache hits too,
//! and every state the source can be in has its answer.

use portcullis_core::jose::InModule;
use portcullis_core::jwt::source::{Directory, Poller};
use portcullis_core::jwt::{
    authenticate, Accepted, JwtPolicySet, KeyStore, Rejection, RoutePolicy, TokenCache,
    TokenSources, Verifier,
};
use portcullis_core::shared::MemoryStore;
use serde_json::{json, Value};

use crate::common::{bearer, hs256_raw, NOW};

const SECRET: &str = "looked-up-secret-of-thirty-two-bytes!!";
const STATIC_SECRET: &str = "static-secret-of-at-least-32-bytes!!!!";

fn set() -> JwtPolicySet {
    let config = json!({
        "consumers": [{"username": "static-app", "credentials": [{"key": "static-key", "secret": STATIC_SECRET}]}],
        "consumer_source": {"cluster": "admin"}
    });
    JwtPolicySet::from_json(config.to_string().as_bytes()).unwrap()
}

/// A poller that loaded `revocations` and a worker that looked up `mobile`.
fn directory(set: &JwtPolicySet, revocations: Value, cutoff: Value) -> (MemoryStore, Directory) {
    let source = set.consumer_source().unwrap().clone();
    let store = MemoryStore::default();
    let now_ms = NOW.secs() * 1000;
    let mut poller = Poller::new(source.clone(), 1);
    let calls = poller.tick(&store, now_ms).unwrap();
    let body = json!({"epoch": "e", "head": 1, "grace": 60, "jtis": revocations, "consumers": [], "credentials": []});
    poller
        .answered(
            &store,
            &calls[0],
            Some("200"),
            body.to_string().as_bytes(),
            now_ms,
        )
        .unwrap();
    let mut directory = Directory::new(source);
    directory.sync(&store).unwrap();
    directory.resolve(&store, "mobile", now_ms).unwrap();
    let answer = json!({
        "epoch": "e", "head": 1, "found": true, "grace": 60,
        "consumer": {"id": "c-1", "username": null, "custom_id": "m-1", "groups": ["admins"], "cutoff": cutoff},
        "credential": {"id": "k-1", "key": "mobile", "algorithm": "HS256", "secret": SECRET, "cutoff": null}
    });
    directory
        .answered(
            &store,
            "mobile",
            Some("200"),
            answer.to_string().as_bytes(),
            now_ms,
        )
        .unwrap();
    (store, directory)
}

fn run(
    set: &JwtPolicySet,
    directory: &Directory,
    cache: Option<&mut TokenCache>,
    token: &str,
) -> Result<Accepted, Rejection> {
    let RoutePolicy::Protected(policy) = set.for_route(None) else {
        panic!("protected")
    };
    let header = bearer(token);
    let headers = [("authorization", header.as_str())];
    let sources = TokenSources::from_headers(policy.locations(), headers.iter().copied());
    let keys = KeyStore::new();
    let mut verifier = Verifier {
        backend: &InModule,
        remote_keys: &keys,
        cache,
        source: Some(directory),
    };
    authenticate(&sources, policy, NOW, &mut verifier)
}

fn token(iss: &str, secret: &str, extra: Value) -> String {
    let mut claims = json!({"iss": iss, "iat": NOW.0 - 10, "exp": NOW.0 + 600});
    claims
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    hs256_raw(
        r#"{"alg":"HS256","typ":"JWT"}"#,
        &claims.to_string(),
        secret.as_bytes(),
    )
}

#[test]
fn a_looked_up_consumer_is_accepted_with_its_groups_and_no_username() {
    let set = set();
    let (_, directory) = directory(&set, json!([]), Value::Null);
    let accepted = run(&set, &directory, None, &token("mobile", SECRET, json!({}))).unwrap();
    let identity = accepted.identity();
    assert_eq!(identity.consumer_id.as_deref(), Some("c-1"));
    assert_eq!(
        identity.username, None,
        "no X-Consumer-Username without one"
    );
    assert_eq!(identity.groups, ["admins"]);
    assert!(accepted
        .upstream_headers()
        .contains(&("x-credential-identifier".into(), "mobile".into())));
    let forged = run(
        &set,
        &directory,
        None,
        &token("mobile", STATIC_SECRET, json!({})),
    );
    assert_eq!(forged.unwrap_err(), Rejection::BadSignature);
}

#[test]
fn static_credentials_are_not_looked_up_and_unknown_keys_are() {
    let set = set();
    let (_, directory) = directory(&set, json!([]), Value::Null);
    let accepted = run(
        &set,
        &directory,
        None,
        &token("static-key", STATIC_SECRET, json!({})),
    );
    assert_eq!(
        accepted.unwrap().identity().username.as_deref(),
        Some("static-app")
    );
    let unknown = run(
        &set,
        &directory,
        None,
        &token("never-seen", SECRET, json!({})),
    );
    assert_eq!(
        unknown.unwrap_err(),
        Rejection::NotCached {
            key: "never-seen".into()
        }
    );
}

#[test]
fn revoked_tokens_are_refused_cache_hits_included() {
    let set = set();
    let revoked = json!([{"id": "r1", "jti": "stolen", "expires_at": NOW.0 + 600}]);
    let (_, directory) = directory(&set, revoked, Value::Null);
    let mut cache = TokenCache::new(16);
    let good = token("mobile", SECRET, json!({"jti": "fine"}));
    assert!(run(&set, &directory, Some(&mut cache), &good).is_ok());
    assert!(
        run(&set, &directory, Some(&mut cache), &good)
            .unwrap()
            .cache_hit
    );
    let stolen = token("mobile", SECRET, json!({"jti": "stolen"}));
    assert_eq!(
        run(&set, &directory, None, &stolen).unwrap_err(),
        Rejection::Revoked
    );
    assert_eq!(
        Rejection::Revoked.kong_body(),
        r#"{"message":"Token revoked"}"#
    );
    assert_eq!(Rejection::Revoked.status(), 401);
}

#[test]
fn a_consumer_cutoff_revokes_earlier_tokens_and_tokens_without_iat() {
    let set = set();
    let cutoff = json!({"issued_before": NOW.0 - 5, "expires_at": null});
    let (_, directory) = directory(&set, json!([]), cutoff);
    let before = token("mobile", SECRET, json!({}));
    assert_eq!(
        run(&set, &directory, None, &before).unwrap_err(),
        Rejection::Revoked
    );
    let after = token("mobile", SECRET, json!({"iat": NOW.0 - 1}));
    assert!(run(&set, &directory, None, &after).is_ok());
    let claims = json!({"iss": "mobile", "exp": NOW.0 + 600}).to_string();
    let no_iat = hs256_raw(r#"{"alg":"HS256"}"#, &claims, SECRET.as_bytes());
    assert_eq!(
        run(&set, &directory, None, &no_iat).unwrap_err(),
        Rejection::Revoked
    );
}

#[test]
fn an_unloaded_source_answers_503_and_never_accepts() {
    let set = set();
    let directory = Directory::new(set.consumer_source().unwrap().clone());
    let refused = run(&set, &directory, None, &token("mobile", SECRET, json!({}))).unwrap_err();
    assert_eq!(refused, Rejection::SourceUnavailable);
    assert_eq!(refused.status(), 503);
    assert_eq!(
        refused.kong_body(),
        r#"{"message":"Credential lookup unavailable"}"#
    );
    // Static consumers do not depend on the admin.
    assert!(run(
        &set,
        &directory,
        None,
        &token("static-key", STATIC_SECRET, json!({}))
    )
    .is_ok());
}
