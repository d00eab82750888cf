//! Kong's Admin API for consumers, JWT credentials and ACL groups (Kong 3.x paths, fields,
//! status codes and answers), plus `/revocations`, `/status` and `/metrics`.
//!
//! Conventions, all Kong's: a path segment that is a UUID names an entity by `id`, anything
//! else by its endpoint key (a consumer's `username`, a credential's `key`, a group's
//! name); a trailing `/` is ignored; lists answer `{"data":[…],"next":null}` (with
//! `offset` and a `next` link when more follow); DELETE answers 204 (top-level ones even
//! for nothing there); bodies are JSON or form data.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::http::Method;
use axum::response::Response;
use serde_json::{json, Value as Json};

use crate::failure::Failure;
use crate::http::{finish, Reply, Request};
use crate::ids::is_uuid;
use crate::model::Consumer;
use crate::ops::{acls, consumers, jwts, revocations, Page, PageRequest};
use crate::App;

type Outcome = Result<Reply, Failure>;

/// The axum handler of the Admin API listener.
pub async fn handle(State(app): State<Arc<App>>, request: axum::extract::Request) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let outcome = match Request::new(request, app.max_body, app.limits.body_timeout) {
        Ok(request) => route(&app, request).await,
        Err(failure) => Err(failure),
    };
    finish(
        "admin",
        &app.store.metrics,
        &method,
        &path,
        started,
        outcome,
    )
}

async fn route(app: &Arc<App>, mut request: Request) -> Outcome {
    if let Some(why) = app.browser_refusal(app.admin_token.as_ref(), &request.headers) {
        return Err(Failure::Forbidden(why));
    }
    let authorised = request.authorised(app.admin_token.as_ref(), "kong-admin-token", false);
    // `/status` answers without the token: a health check carries none, and it tells
    // nothing but whether the database is reachable (why not, only with the token).
    if request.segments.len() == 1 && request.segments.first().is_some_and(|s| s == "status") {
        only(&request, &[Method::GET])?;
        return Ok(status(app, authorised).await);
    }
    if !authorised {
        return Err(Failure::Unauthorized);
    }
    let method = request.method.clone();
    let m = method.as_str();
    let owned: Vec<String> = request.segments.clone();
    let s: Vec<&str> = owned.iter().map(String::as_str).collect();
    let store = &app.store;
    match (m, s.as_slice()) {
        ("GET", []) => Ok(Reply::Json(
            200,
            json!({
                "tagline": "Welcome to portcullis-admin",
                "version": env!("CARGO_PKG_VERSION"),
                "database": app.database,
            }),
        )),
        ("GET", ["metrics"]) => Ok(Reply::Text(
            200,
            "text/plain; version=0.0.4; charset=utf-8",
            store.metrics.render(),
        )),

        // /consumers
        ("GET", ["consumers"]) => list_consumers(app, &request).await,
        ("POST", ["consumers"]) => {
            let input = request.body().await?;
            let (c, _) = store
                .write(move |tx, ch| consumers::create(tx, ch, &input))
                .await?;
            Ok(Reply::Json(201, c.to_json()))
        }
        ("GET", ["consumers", c]) => {
            let c = c.to_string();
            found(
                store.read(move |tx| Ok(consumers::find(tx, &c)?)).await?,
                Consumer::to_json,
            )
        }
        ("PATCH", ["consumers", c]) => {
            let (c, input) = (c.to_string(), request.body().await?);
            let (updated, _) = store
                .write(move |tx, ch| consumers::update(tx, ch, &c, &input))
                .await?;
            found(updated, Consumer::to_json)
        }
        ("PUT", ["consumers", c]) => {
            let (c, input) = (c.to_string(), request.body().await?);
            let (c, _) = store
                .write(move |tx, ch| consumers::upsert(tx, ch, &c, &input))
                .await?;
            Ok(Reply::Json(200, c.to_json()))
        }
        ("DELETE", ["consumers", c]) => {
            let c = c.to_string();
            store
                .write(move |tx, ch| consumers::delete(tx, ch, &c))
                .await?;
            Ok(Reply::NoContent)
        }

        // /consumers/{c}/jwt
        ("GET", ["consumers", c, "jwt"]) => {
            let (c, page) = (c.to_string(), PageRequest::from_query(&request.query)?);
            let listed = store
                .read(move |tx| {
                    let Some(consumer) = consumers::find(tx, &c)? else {
                        return Ok(None);
                    };
                    jwts::list(tx, Some(&consumer), &page).map(Some)
                })
                .await?;
            listing(
                listed.ok_or(Failure::NotFound)?,
                &nested_base(&request),
                &request,
            )
        }
        ("POST", ["consumers", c, "jwt"]) => {
            let (c, input) = (c.to_string(), request.body().await?);
            let (jwt, _) = store
                .write(move |tx, ch| {
                    let consumer = consumers::find(tx, &c)?.ok_or(Failure::NotFound)?;
                    jwts::create(tx, ch, Some(&consumer), &input)
                })
                .await?;
            Ok(Reply::Json(201, jwt.to_json()))
        }
        ("GET", ["consumers", c, "jwt", j]) => {
            let (c, j) = (c.to_string(), j.to_string());
            let jwt = store
                .read(move |tx| {
                    let consumer = consumers::find(tx, &c)?.ok_or(Failure::NotFound)?;
                    Ok(jwts::find_of(tx, &consumer, &j)?)
                })
                .await?;
            found(jwt, |j| j.to_json())
        }
        ("PATCH", ["consumers", c, "jwt", j]) => {
            let (c, j, input) = (c.to_string(), j.to_string(), request.body().await?);
            let (jwt, _) = store
                .write(move |tx, ch| {
                    let consumer = consumers::find(tx, &c)?.ok_or(Failure::NotFound)?;
                    jwts::update(tx, ch, Some(&consumer), &j, &input)
                })
                .await?;
            found(jwt, |j| j.to_json())
        }
        ("PUT", ["consumers", c, "jwt", j]) => {
            let (c, j, input) = (c.to_string(), j.to_string(), request.body().await?);
            let (jwt, _) = store
                .write(move |tx, ch| {
                    let consumer = consumers::find(tx, &c)?.ok_or(Failure::NotFound)?;
                    jwts::upsert(tx, ch, Some(&consumer), &j, &input)
                })
                .await?;
            Ok(Reply::Json(200, jwt.to_json()))
        }
        ("DELETE", ["consumers", c, "jwt", j]) => {
            let (c, j) = (c.to_string(), j.to_string());
            let (deleted, _) = store
                .write(move |tx, ch| {
                    let consumer = consumers::find(tx, &c)?.ok_or(Failure::NotFound)?;
                    jwts::delete(tx, ch, Some(&consumer), &j)
                })
                .await?;
            if deleted {
                Ok(Reply::NoContent)
            } else {
                Err(Failure::NotFound)
            }
        }

        // /jwts
        ("GET", ["jwts"]) => {
            let page = PageRequest::from_query(&request.query)?;
            let listed = store.read(move |tx| jwts::list(tx, None, &page)).await?;
            listing(listed, "/jwts", &request)
        }
        ("POST", ["jwts"]) => {
            let input = request.body().await?;
            let (jwt, _) = store
                .write(move |tx, ch| jwts::create(tx, ch, None, &input))
                .await?;
            Ok(Reply::Json(201, jwt.to_json()))
        }
        ("GET", ["jwts", j]) => {
            let j = j.to_string();
            found(store.read(move |tx| Ok(jwts::find(tx, &j)?)).await?, |j| {
                j.to_json()
            })
        }
        ("GET", ["jwts", j, "consumer"]) => {
            let j = j.to_string();
            let consumer = store
                .read(move |tx| match jwts::find(tx, &j)? {
                    Some(jwt) => Ok(consumers::by(tx, "id", &jwt.consumer_id)?),
                    None => Ok(None),
                })
                .await?;
            found(consumer, Consumer::to_json)
        }
        ("PATCH", ["jwts", j]) => {
            let (j, input) = (j.to_string(), request.body().await?);
            let (jwt, _) = store
                .write(move |tx, ch| jwts::update(tx, ch, None, &j, &input))
                .await?;
            found(jwt, |j| j.to_json())
        }
        ("PUT", ["jwts", j]) => {
            let (j, input) = (j.to_string(), request.body().await?);
            let (jwt, _) = store
                .write(move |tx, ch| jwts::upsert(tx, ch, None, &j, &input))
                .await?;
            Ok(Reply::Json(200, jwt.to_json()))
        }
        ("DELETE", ["jwts", j]) => {
            let j = j.to_string();
            store
                .write(move |tx, ch| jwts::delete(tx, ch, None, &j))
                .await?;
            Ok(Reply::NoContent)
        }

        // /consumers/{c}/acls
        ("GET", ["consumers", c, "acls"]) => {
            let (c, page) = (c.to_string(), PageRequest::from_query(&request.query)?);
            let listed = store
                .read(move |tx| {
                    let Some(consumer) = consumers::find(tx, &c)? else {
                        return Ok(None);
                    };
                    acls::list(tx, Some(&consumer), &page).map(Some)
                })
                .await?;
            listing(
                listed.ok_or(Failure::NotFound)?,
                &nested_base(&request),
                &request,
            )
        }
        ("POST", ["consumers", c, "acls"]) => {
            let (c, input) = (c.to_string(), request.body().await?);
            let (acl, _) = store
                .write(move |tx, ch| {
                    let consumer = consumers::find(tx, &c)?.ok_or(Failure::NotFound)?;
                    acls::create(tx, ch, Some(&consumer), &input)
                })
                .await?;
            Ok(Reply::Json(201, acl.to_json()))
        }
        ("GET", ["consumers", c, "acls", a]) => {
            let (c, a) = (c.to_string(), a.to_string());
            let acl = store
                .read(move |tx| {
                    let consumer = consumers::find(tx, &c)?.ok_or(Failure::NotFound)?;
                    Ok(acls::find_of(tx, &consumer, &a)?)
                })
                .await?;
            found(acl, |a| a.to_json())
        }
        ("PATCH", ["consumers", c, "acls", a]) => {
            let (c, a, input) = (c.to_string(), a.to_string(), request.body().await?);
            let (acl, _) = store
                .write(move |tx, ch| {
                    let consumer = consumers::find(tx, &c)?.ok_or(Failure::NotFound)?;
                    acls::update(tx, ch, Some(&consumer), &a, &input)
                })
                .await?;
            found(acl, |a| a.to_json())
        }
        ("PUT", ["consumers", c, "acls", a]) => {
            let (c, a, input) = (c.to_string(), a.to_string(), request.body().await?);
            let (acl, _) = store
                .write(move |tx, ch| {
                    let consumer = consumers::find(tx, &c)?.ok_or(Failure::NotFound)?;
                    acls::upsert(tx, ch, Some(&consumer), &a, &input)
                })
                .await?;
            Ok(Reply::Json(200, acl.to_json()))
        }
        ("DELETE", ["consumers", c, "acls", a]) => {
            let (c, a) = (c.to_string(), a.to_string());
            let (deleted, _) = store
                .write(move |tx, ch| {
                    let consumer = consumers::find(tx, &c)?.ok_or(Failure::NotFound)?;
                    acls::delete(tx, ch, Some(&consumer), &a)
                })
                .await?;
            if deleted {
                Ok(Reply::NoContent)
            } else {
                Err(Failure::NotFound)
            }
        }

        // /acls (ids only: an ACL has no endpoint key of its own)
        ("GET", ["acls"]) => {
            let page = PageRequest::from_query(&request.query)?;
            let listed = store.read(move |tx| acls::list(tx, None, &page)).await?;
            listing(listed, "/acls", &request)
        }
        ("POST", ["acls"]) => {
            let input = request.body().await?;
            let (acl, _) = store
                .write(move |tx, ch| acls::create(tx, ch, None, &input))
                .await?;
            Ok(Reply::Json(201, acl.to_json()))
        }
        ("GET", ["acls", a]) => {
            let a = uuid_only(a)?;
            found(store.read(move |tx| Ok(acls::by_id(tx, &a)?)).await?, |a| {
                a.to_json()
            })
        }
        ("GET", ["acls", a, "consumer"]) => {
            let a = uuid_only(a)?;
            let consumer = store
                .read(move |tx| match acls::by_id(tx, &a)? {
                    Some(acl) => Ok(consumers::by(tx, "id", &acl.consumer_id)?),
                    None => Ok(None),
                })
                .await?;
            found(consumer, Consumer::to_json)
        }
        ("PATCH", ["acls", a]) => {
            let (a, input) = (uuid_only(a)?, request.body().await?);
            let (acl, _) = store
                .write(move |tx, ch| acls::update(tx, ch, None, &a, &input))
                .await?;
            found(acl, |a| a.to_json())
        }
        ("PUT", ["acls", a]) => {
            let (a, input) = (uuid_only(a)?, request.body().await?);
            let (acl, _) = store
                .write(move |tx, ch| acls::upsert(tx, ch, None, &a, &input))
                .await?;
            Ok(Reply::Json(200, acl.to_json()))
        }
        ("DELETE", ["acls", a]) => {
            let a = uuid_only(a)?;
            store
                .write(move |tx, ch| acls::delete(tx, ch, None, &a))
                .await?;
            Ok(Reply::NoContent)
        }

        // /revocations
        ("GET", ["revocations"]) => {
            let page = PageRequest::from_query(&request.query)?;
            let listed = store.read(move |tx| revocations::list(tx, &page)).await?;
            listing(listed, "/revocations", &request)
        }
        ("POST", ["revocations"]) => {
            let (input, policy) = (request.body().await?, app.revocations);
            let ((revocation, created), _) = store
                .write(move |tx, ch| revocations::create(tx, ch, &input, policy))
                .await?;
            Ok(Reply::Json(
                if created { 201 } else { 200 },
                revocation.to_json(),
            ))
        }
        ("GET", ["revocations", r]) => {
            let r = uuid_only(r)?;
            found(
                store
                    .read(move |tx| Ok(revocations::by_id(tx, &r)?))
                    .await?,
                |r| r.to_json(),
            )
        }
        ("DELETE", ["revocations", r]) => {
            let r = uuid_only(r)?;
            let (deleted, _) = store
                .write(move |tx, ch| revocations::delete(tx, ch, &r))
                .await?;
            if deleted {
                Ok(Reply::NoContent)
            } else {
                Err(Failure::NotFound)
            }
        }

        (_, path) if known(path) => Err(Failure::MethodNotAllowed),
        _ => Err(Failure::NotFound),
    }
}

/// Whether a path exists (for 405 rather than 404).
fn known(path: &[&str]) -> bool {
    matches!(
        path,
        [] | ["metrics"]
            | ["consumers"]
            | ["consumers", _]
            | ["consumers", _, "jwt" | "acls"]
            | ["consumers", _, "jwt" | "acls", _]
            | ["jwts" | "acls" | "revocations"]
            | ["jwts" | "acls" | "revocations", _]
            | ["jwts" | "acls", _, "consumer"]
    )
}

fn only(request: &Request, methods: &[Method]) -> Result<(), Failure> {
    if methods.contains(&request.method) {
        Ok(())
    } else {
        Err(Failure::MethodNotAllowed)
    }
}

/// An `/acls/{x}` or `/revocations/{x}` segment: these have no endpoint key, so anything
/// but a UUID is Kong's `invalid primary key` (the DAO's `select({id = x})` refuses it).
fn uuid_only(segment: &str) -> Result<String, Failure> {
    if is_uuid(segment) {
        Ok(segment.to_ascii_lowercase())
    } else {
        Err(Failure::InvalidPrimaryKey)
    }
}

fn found<T>(entity: Option<T>, to_json: impl Fn(&T) -> Json) -> Outcome {
    match entity {
        Some(entity) => Ok(Reply::Json(200, to_json(&entity))),
        None => Err(Failure::NotFound),
    }
}

/// `/consumers/{c as given}/jwt`: the base of a nested list's `next` link.
fn nested_base(request: &Request) -> String {
    format!("/{}", request.raw_segments.join("/"))
}

/// `{"data":[…],"next":null}`, or with `offset` and `next` when more follow.
fn listing(page: Page, base: &str, request: &Request) -> Outcome {
    let mut body = json!({ "data": page.data, "next": null });
    if let Some(offset) = page.offset {
        let size = match request.query.get("size") {
            Some(Json::String(size)) => format!("&size={size}"),
            _ => String::new(),
        };
        // Kong's next link keeps the tag filter, escaped.
        let tags = match PageRequest::from_query(&request.query)
            .ok()
            .and_then(|p| p.tags)
        {
            Some(filter) => format!(
                "&tags={}",
                form_urlencoded::byte_serialize(filter.given.as_bytes()).collect::<String>()
            ),
            None => String::new(),
        };
        body["next"] = json!(format!("{base}?offset={offset}{tags}{size}"));
        body["offset"] = json!(offset);
    }
    Ok(Reply::Json(200, body))
}

async fn list_consumers(app: &Arc<App>, request: &Request) -> Outcome {
    if let Some(custom_id) = request.query.get("custom_id") {
        // Kong: `/consumers?custom_id=x` finds one consumer, answered as a list.
        // Kong: select_by_custom_id(""), which its schema refuses (code 10).
        let Json::String(custom_id) = custom_id.clone() else {
            return Err(Failure::InvalidUnique(
                "custom_id",
                "length must be at least 1".to_owned(),
            ));
        };
        let consumer = app
            .store
            .read(move |tx| Ok(consumers::by(tx, "custom_id", &custom_id)?))
            .await?;
        let data: Vec<Json> = consumer.iter().map(Consumer::to_json).collect();
        return Ok(Reply::Json(200, json!({ "data": data, "next": null })));
    }
    let page = PageRequest::from_query(&request.query)?;
    let listed = app.store.read(move |tx| consumers::list(tx, &page)).await?;
    listing(listed, "/consumers", request)
}

/// Kong's `/status`: `{"database":{"reachable":…},"server":{…}}`; 503 when the database
/// cannot be reached (a load balancer's health check reads the status alone).
async fn status(app: &Arc<App>, detailed: bool) -> Reply {
    let reachable = app.store.read(|tx| Ok(crate::events::head(tx)?)).await;
    let (code, database) = match &reachable {
        Ok(position) => {
            app.store.metrics.head_seen(position.head);
            app.store.metrics.reachable(true);
            (
                200,
                json!({
                    "reachable": true,
                    "head": position.head,
                    "pruned_through": position.pruned_through,
                    "epoch": position.epoch,
                }),
            )
        }
        Err(failure) => {
            app.store.metrics.reachable(false);
            let why = match failure {
                _ if !detailed => {
                    "the database cannot be reached (the reason is shown with the admin token)"
                        .to_owned()
                }
                Failure::Unavailable(why) | Failure::Internal(why) => why.clone(),
                other => other.body().to_string(),
            };
            (503, json!({ "reachable": false, "error": why }))
        }
    };
    Reply::Json(
        code,
        json!({
            "database": database,
            "server": { "uptime_seconds": app.started.elapsed().as_secs() },
        }),
    )
}
