//! `portcullis-admin import FILE`: moves the static `consumers` of a jwt filter
//! configuration (the JSON of `envoy-config/policies/jwt.json`) into the database in one
//! transaction, so an existing deployment switches over in one step. The file is first
//! checked exactly as the filter checks it (`portcullis_core::jwt::JwtPolicySet`), then
//! every consumer, credential and group goes through the same operations as the Admin API
//! (same validation, same events: gateways following the feed see the import).
//!
//! Idempotent: a consumer that exists (by username) is updated, a credential whose key
//! exists under the same consumer is updated, a group it already has is kept. A
//! credential key held by another consumer stops the import, nothing written.
//!
//! - `id`: kept when it is a UUID; otherwise (the filter's default id is the username) a
//!   new UUID is made and a warning says so: `X-Consumer-ID` changes for that consumer.
//! - `secret_base64`: decoded; it must decode to text (Kong keeps secrets as text).
//! - `jwk` credentials and `providers` are not imported (providers stay in the filter
//!   configuration; convert a JWK to PEM to import it).

use std::path::Path;

use base64::Engine as _;
use portcullis_core::jwt::config::{RawConsumer, RawCredential};
use portcullis_core::jwt::{JwtPolicySet, RawJwtConfig};
use serde_json::{json, Map, Value as Json};

use crate::cli::Options;
use crate::db::{self, migrations, Access, Tx};
use crate::events::{self, Changes};
use crate::failure::Failure;
use crate::ops::{acls, consumers, jwts};

/// What an import did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub consumers_created: usize,
    pub consumers_updated: usize,
    pub credentials_created: usize,
    pub credentials_updated: usize,
    pub groups_created: usize,
    pub warnings: Vec<String>,
}

pub fn run(options: &Options, file: &Path) -> Result<(), String> {
    let shown = format!("import {}", file.display());
    let bytes = std::fs::read(file).map_err(|e| format!("{shown}: {e}"))?;
    JwtPolicySet::from_json(&bytes).map_err(|e| format!("{shown}: {e}"))?;
    let config = RawJwtConfig::from_json(&bytes).map_err(|e| format!("{shown}: {e}"))?;
    let db = options.db.open(&options.pool)?;
    migrations::apply(&*db)?;
    let summary = db::run(&*db, Access::Write, |tx: &mut dyn Tx| {
        let mut changes = Changes::default();
        let summary = import(tx, &mut changes, &config.consumers)?;
        events::append(tx, changes)?;
        Ok::<_, ImportFailure>(summary)
    })
    .map_err(|ImportFailure { path, failure }| {
        let message = failure.body()["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if path.is_empty() {
            format!("{shown}: {message}; nothing imported")
        } else {
            format!("{shown}: {path}: {message}; nothing imported")
        }
    })?;
    for warning in &summary.warnings {
        eprintln!("portcullis-admin: warning: {warning}");
    }
    println!(
        "imported into {}: consumers {} created, {} updated; credentials {} created, {} updated; groups {} created{}",
        db.describe(),
        summary.consumers_created,
        summary.consumers_updated,
        summary.credentials_created,
        summary.credentials_updated,
        summary.groups_created,
        if config.providers.is_empty() {
            String::new()
        } else {
            format!("; {} providers left in the filter configuration", config.providers.len())
        }
    );
    Ok(())
}

/// A failure and the path of the config element that caused it.
#[derive(Debug)]
pub struct ImportFailure {
    pub path: String,
    pub failure: Failure,
}

impl From<db::DbError> for ImportFailure {
    fn from(e: db::DbError) -> ImportFailure {
        ImportFailure {
            path: String::new(),
            failure: Failure::from(e),
        }
    }
}

fn at(path: String) -> impl Fn(Failure) -> ImportFailure {
    move |failure| ImportFailure {
        path: path.clone(),
        failure,
    }
}

/// Imports `list` inside `tx`.
pub fn import(
    tx: &mut dyn Tx,
    changes: &mut Changes,
    list: &[RawConsumer],
) -> Result<Summary, ImportFailure> {
    let mut summary = Summary::default();
    for (i, raw) in list.iter().enumerate() {
        let path = format!("consumers[{i}]");
        let mut input = Map::new();
        input.insert("username".to_owned(), json!(raw.username));
        if let Some(custom_id) = &raw.custom_id {
            input.insert("custom_id".to_owned(), json!(custom_id));
        }
        // By the field itself: a UUID-shaped username is still a username here.
        let existing = consumers::by(tx, "username", &raw.username)
            .map_err(Failure::from)
            .map_err(at(path.clone()))?;
        let consumer = match existing {
            Some(existing) => {
                summary.consumers_updated += 1;
                consumers::update(tx, changes, &existing.id, &input)
                    .map_err(at(path.clone()))?
                    .ok_or_else(|| at(path.clone())(Failure::NotFound))?
            }
            None => {
                match &raw.id {
                    Some(id) if crate::ids::is_uuid(id) => {
                        input.insert("id".to_owned(), json!(id));
                    }
                    Some(id) => summary.warnings.push(format!(
                        "{path}: id {id:?} is not a UUID; {} gets a new one (its X-Consumer-ID changes)",
                        raw.username
                    )),
                    None => summary.warnings.push(format!(
                        "{path}: no id (the filter used the username {:?}); it gets a UUID (its X-Consumer-ID changes)",
                        raw.username
                    )),
                }
                summary.consumers_created += 1;
                consumers::create(tx, changes, &input).map_err(at(path.clone()))?
            }
        };
        for (j, credential) in raw.credentials.iter().enumerate() {
            let path = format!("{path}.credentials[{j}]");
            let input = credential_input(credential).map_err(at(path.clone()))?;
            let existing = jwts::by_key(tx, &credential.key)
                .map_err(Failure::from)
                .map_err(at(path.clone()))?;
            match existing {
                Some(jwt) if jwt.consumer_id == consumer.id => {
                    jwts::update(tx, changes, Some(&consumer), &jwt.id, &input)
                        .map_err(at(path.clone()))?;
                    summary.credentials_updated += 1;
                }
                Some(_) => {
                    return Err(at(path)(Failure::unique("key", credential.key.as_str())));
                }
                None => {
                    jwts::create(tx, changes, Some(&consumer), &input).map_err(at(path.clone()))?;
                    summary.credentials_created += 1;
                }
            }
        }
        for (j, group) in raw.groups.iter().enumerate() {
            let path = format!("{path}.groups[{j}]");
            let has = acls::by_group(tx, &consumer, group)
                .map_err(Failure::from)
                .map_err(at(path.clone()))?;
            if has.is_none() {
                let mut input = Map::new();
                input.insert("group".to_owned(), json!(group));
                acls::create(tx, changes, Some(&consumer), &input).map_err(at(path.clone()))?;
                summary.groups_created += 1;
            }
        }
    }
    Ok(summary)
}

/// A filter credential as Admin API input.
fn credential_input(credential: &RawCredential) -> Result<Map<String, Json>, Failure> {
    let mut input = Map::new();
    input.insert("key".to_owned(), json!(credential.key));
    input.insert(
        "algorithm".to_owned(),
        json!(credential.algorithm.as_deref().unwrap_or("HS256")),
    );
    if let Some(secret) = &credential.secret {
        input.insert("secret".to_owned(), json!(secret));
    }
    if let Some(encoded) = &credential.secret_base64 {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim_end_matches('='))
            .or_else(|_| {
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(encoded.trim_end_matches('='))
            })
            .or_else(|_| {
                base64::engine::general_purpose::STANDARD_NO_PAD
                    .decode(encoded.trim_end_matches('='))
            })
            .map_err(|_| Failure::field("secret_base64", "not base64"))?;
        let text = String::from_utf8(bytes).map_err(|_| {
            Failure::field(
                "secret_base64",
                "decodes to bytes that are not text; Kong keeps secrets as text: use a text secret",
            )
        })?;
        input.insert("secret".to_owned(), json!(text));
    }
    if let Some(pem) = &credential.public_key {
        input.insert("rsa_public_key".to_owned(), json!(pem));
    }
    if credential.jwk.is_some() {
        return Err(Failure::field(
            "jwk",
            "JWK credentials are not imported: convert the key to PEM (rsa_public_key)",
        ));
    }
    Ok(input)
}
