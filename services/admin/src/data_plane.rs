//! The read-only data-plane API the gateways call (version 1, its own listener):
//!
//! | request | answer |
//! |---|---|
//! | `GET /v1/credentials/{key}` | 200 `{"epoch","head","found":true,"grace","consumer":{"id","username","custom_id","groups","cutoff"},"credential":{"id","key","algorithm","secret" or "rsa_public_key","cutoff"}}`; 200 `{"epoch","head","found":false}` when no credential has this key |
//! | `GET /v1/changes?after=N[&limit=M]` | 200 `{"epoch","head","events":[{"id","at_ms","entity","entity_id","key","op","consumer_id","credentials"}…]}` (at most `limit`, default and most 1000, in id order); `"reset":true` when events after `N` were pruned or `N` is beyond the head (drop the cache, start from `head`) |
//! | `GET /v1/revocations` | 200 `{"epoch","head","grace","jtis":[{"id","jti","expires_at"[,"credential_id","key"]}],"consumers":[{"id","consumer_id","issued_before","expires_at"}],"credentials":[{"id","credential_id","key","issued_before","expires_at"}]}` |
//! | `GET /v1/revocations/{id}` | 200 `{"epoch","head","grace","found":true,"revocation":{…as in the list}}` or `{"epoch","head","grace","found":false}` |
//!
//! Every answer is compact JSON and carries the feed's `epoch` and the event `head` it was
//! read at: a gateway that has applied a later event than an answer's head discards the
//! answer, and one that sees another epoch drops everything. Only a 200 with `found` is
//! an answer about a key: any other status (a 404 of a wrong path or version, a 503) is
//! not, and must not be cached. A database that cannot be reached is a 503
//! (`{"message":…}`): a gateway keeps what it has.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::response::Response;
use serde_json::Value as Json;

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
    let outcome = match Request::new(request, 0, app.limits.body_timeout) {
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
    if let Some(why) = app.browser_refusal(app.data_plane_token.as_ref(), &request.headers) {
        return Err(Failure::Forbidden(why));
    }
    if !request.authorised(app.data_plane_token.as_ref(), "authorization", true) {
        return Err(Failure::Unauthorized);
    }
    let segments: Vec<&str> = request.segments.iter().map(String::as_str).collect();
    let get = request.method == axum::http::Method::GET;
    let grace = app.revocations.grace;
    match segments.as_slice() {
        ["v1", "credentials", key] if get => {
            let now = crate::clock::now_secs();
            // One statement, no transaction: one round trip on PostgreSQL.
            let rows = app
                .store
                .query_once(
                    lookup::CREDENTIAL_SQL,
                    lookup::credential_params(key, now, grace).to_vec(),
                )
                .await?;
            let (position, answer) = lookup::credential_answer(&rows, grace)?;
            app.store.metrics.lookup(answer["found"] == true);
            app.store.metrics.head_seen(position.head);
            Ok(Reply::Json(200, answer))
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
                .read(move |tx| Ok(lookup::revocations(tx, now, grace)?))
                .await?;
            Ok(Reply::Json(200, list))
        }
        ["v1", "revocations", id] if get => {
            let (id, now) = (id.to_ascii_lowercase(), crate::clock::now_secs());
            let one = app
                .store
                .read(move |tx| Ok(lookup::revocation(tx, &id, now, grace)?))
                .await?;
            Ok(Reply::Json(200, one))
        }
        ["v1", "credentials", _]
        | ["v1", "changes"]
        | ["v1", "revocations"]
        | ["v1", "revocations", _] => Err(Failure::MethodNotAllowed),
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
