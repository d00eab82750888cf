//! The read-only data-plane API the gateways call (version 1, its own listener):
//!
//! | request | answer |
//! |---|---|
//! | `GET /v1/credentials/{key}` | 200 `{"head":H,"consumer":{"id","username","custom_id","groups"},"credential":{"id","key","algorithm","secret" or "rsa_public_key"}}`; 404 `{"head":H,"message":"Not found"}` |
//! | `GET /v1/changes?after=N[&limit=M]` | 200 `{"head":H,"events":[{"id","at_ms","entity","entity_id","key","op","consumer_id","credentials"}…]}` (at most `limit`, default and most 1000, in id order); `"reset":true` when events after `N` were pruned (drop the cache, start from `head`) |
//! | `GET /v1/revocations` | 200 `{"head":H,"jtis":[{"jti","exp"}],"consumers":[{"id","issued_before","expires_at"}],"credentials":[{"id","key","issued_before","expires_at"}]}` |
//!
//! Every answer is compact JSON and carries the event head it was read at: a gateway that
//! has applied a later event than an answer's head discards the answer. A database that
//! cannot be reached is a 503 (`{"message":…}`): a gateway keeps what it has.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::response::Response;
use serde_json::{json, Value as Json};

use crate::events::MAX_FEED;
use crate::failure::Failure;
use crate::http::{finish, Reply, Request};
use crate::ops::lookup;
use crate::App;

/// The axum handler of the data-plane listener.
pub async fn handle(State(app): State<Arc<App>>, request: axum::extract::Request) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let outcome = match Request::new(request, 0) {
        Ok(request) => route(&app, request).await,
        Err(failure) => Err(failure),
    };
    finish(
        "data_plane",
        &app.store.metrics,
        &method,
        &path,
        started,
        outcome,
    )
}

async fn route(app: &Arc<App>, request: Request) -> Result<Reply, Failure> {
    if app.data_plane_token.is_none() {
        if let Some(why) = crate::http::browser_refusal(&request.headers) {
            return Err(Failure::Forbidden(why));
        }
    }
    if !request.authorised(app.data_plane_token.as_ref(), "authorization", true) {
        return Err(Failure::Unauthorized);
    }
    let segments: Vec<&str> = request.segments.iter().map(String::as_str).collect();
    let get = request.method == axum::http::Method::GET;
    match segments.as_slice() {
        ["v1", "credentials", key] if get => {
            let key = key.to_string();
            let (head, answer) = app
                .store
                .read(move |tx| Ok(lookup::credential(tx, &key)?))
                .await?;
            app.store.metrics.lookup(answer.is_some());
            app.store.metrics.head_seen(head);
            Ok(match answer {
                Some(answer) => Reply::Json(200, answer),
                None => Reply::Json(404, json!({ "head": head, "message": "Not found" })),
            })
        }
        ["v1", "changes"] if get => {
            let after = number(&request, "after", 0)?;
            let limit = number(&request, "limit", MAX_FEED)?;
            let feed = app
                .store
                .read(move |tx| Ok(crate::events::feed(tx, after, limit)?))
                .await?;
            Ok(Reply::Json(200, feed))
        }
        ["v1", "revocations"] if get => {
            let now = crate::clock::now_secs();
            let list = app
                .store
                .read(move |tx| Ok(lookup::revocations(tx, now)?))
                .await?;
            Ok(Reply::Json(200, list))
        }
        ["v1", "credentials", _] | ["v1", "changes"] | ["v1", "revocations"] => {
            Err(Failure::MethodNotAllowed)
        }
        _ => Err(Failure::NotFound),
    }
}

/// A non-negative integer query parameter.
fn number(request: &Request, name: &str, default: i64) -> Result<i64, Failure> {
    match request.query.get(name) {
        None | Some(Json::Null) => Ok(default),
        Some(Json::String(text)) => text.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
            Failure::BadRequest(format!("{name} must be a whole number, 0 or more"))
        }),
        Some(_) => Err(Failure::BadRequest(format!("{name} given more than once"))),
    }
}
