//! `/revocations`, beyond Kong (whose answer to "token blacklists" is none): one token
//! by `jti` until its `exp` (`expires_at`), or every token of a consumer or of a
//! credential issued at or before a time (`issued_before`, an `iat` cutoff; default now).
//!
//! **The rule the gateways apply (issue 22).** A token is revoked when its `jti` is
//! listed, or when its consumer or credential has a cutoff and the token's `iat` is at or
//! before `issued_before` (a token without `iat` under a cutoff is revoked). An entry is
//! in force until `expires_at + grace` (`--revocation-grace`, default 86400 s, the jwt
//! filter's largest leeway): the filter accepts a token until `exp + leeway`, so its
//! revocation must outlive `exp` by at least as long.
//!
//! A consumer or a credential has at most one cutoff: posting another moves it, never
//! back (`issued_before` and `expires_at` become the later of the two, a null
//! `expires_at` being "never"; answered 200, 201 when created). To loosen one, delete it
//! and post anew. A `jti` is revoked once (409 the second time). At most
//! `--max-revocations` are in force (409 past it). Entries past `expires_at + grace` are
//! forgotten by the pruner.

use serde_json::Value as Json;

use crate::db::{DbError, Tx, Value};
use crate::events::{Draft, Operation};
use crate::failure::{Failure, Violations};
use crate::input::{Field, Input, Reader};
use crate::model::{tags_to, Revocation, REVOCATION_COLUMNS};

use super::{consumers, credential_keys, jwts, new_id, page, Changes, Page, PageRequest, MAX_NAME};

const FIELDS: &[&str] = &[
    "id",
    "created_at",
    "jti",
    "consumer",
    "credential",
    "issued_before",
    "expires_at",
    "tags",
];
const EXACTLY_ONE: &str =
    "exactly one of these fields must be non-empty: 'consumer', 'credential', 'jti' (or 'jti' with 'credential')";
/// 9999-12-31T23:59:59Z: no later time is accepted.
const MAX_TIME: i64 = 253_402_300_799;
/// The longest `jti` accepted: the revocation list carries every one in force.
pub const MAX_JTI: usize = 256;

/// How long revocations outlive their `expires_at`, and how many may be in force.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RevocationPolicy {
    /// Seconds an entry is kept and served past its `expires_at` (`--revocation-grace`).
    /// At least the jwt filter's `leeway`, else a revoked token is accepted again between
    /// `exp` and `exp + leeway`.
    pub grace: i64,
    /// The most revocations in force (`--max-revocations`): bounds `/v1/revocations`.
    pub max_in_force: u64,
}

impl Default for RevocationPolicy {
    fn default() -> RevocationPolicy {
        RevocationPolicy {
            // The filter's leeway is at most 86400 s (filters/core/src/jwt/config.rs).
            grace: 86_400,
            max_in_force: 10_000,
        }
    }
}

/// How many revocations are in force at `now`.
pub fn in_force(tx: &mut dyn Tx, now: i64, grace: i64) -> Result<u64, DbError> {
    let rows = tx.query(
        "SELECT COUNT(*) FROM revocations WHERE expires_at IS NULL OR expires_at > $1",
        &[Value::Int(now - grace)],
    )?;
    Ok(rows
        .first()
        .map(|row| row.int(0))
        .transpose()?
        .and_then(|n| u64::try_from(n).ok())
        .unwrap_or(0))
}

pub fn by_id(tx: &mut dyn Tx, id: &str) -> Result<Option<Revocation>, DbError> {
    tx.query(
        &format!("SELECT {REVOCATION_COLUMNS} FROM revocations WHERE id = $1"),
        &[Value::from(id.to_ascii_lowercase())],
    )?
    .first()
    .map(Revocation::from_row)
    .transpose()
}

pub fn list(tx: &mut dyn Tx, request: &PageRequest) -> Result<Page, Failure> {
    page(
        tx,
        &format!("SELECT {REVOCATION_COLUMNS} FROM revocations WHERE id > $1"),
        Vec::new(),
        request,
        Revocation::from_row,
        Revocation::to_json,
        |r| &r.id,
    )
}

/// A `consumer` or `credential` reference: `{"id": "…"}` (Kong's form) or a plain
/// string (a username or id; a credential key or id).
fn reference(input: &Input, name: &str, violations: &mut Violations) -> Option<String> {
    match input.get(name) {
        None | Some(Json::Null) => None,
        Some(Json::String(text)) if crate::input::text_problem(text, MAX_NAME).is_none() => {
            Some(text.clone())
        }
        Some(Json::Object(map)) => match map.get("id") {
            Some(Json::String(id)) if crate::ids::is_uuid(id) => Some(id.to_ascii_lowercase()),
            _ => {
                violations.field(name, "expected a record with a valid UUID `id`, or a name");
                None
            }
        },
        Some(_) => {
            violations.field(name, "expected a record with a valid UUID `id`, or a name");
            None
        }
    }
}

/// POST /revocations: `(revocation, created)`.
pub fn create(
    tx: &mut dyn Tx,
    changes: &mut Changes,
    input: &Input,
    policy: RevocationPolicy,
) -> Result<(Revocation, bool), Failure> {
    let mut reader = Reader::new(input, FIELDS);
    let id = reader.uuid("id");
    let jti = reader.string("jti", MAX_JTI);
    let expires_at = reader.integer("expires_at", 0, MAX_TIME);
    let issued_before = reader.integer("issued_before", 0, MAX_TIME);
    let tags = reader.tags();
    reader.integer("created_at", 0, MAX_TIME);
    let mut violations = reader.violations;
    let consumer = reference(input, "consumer", &mut violations);
    let credential = reference(input, "credential", &mut violations);
    let now = crate::clock::now_secs();

    let jti = jti.apply(None);
    let expires_at = expires_at.apply(None);
    // A jti with a credential is that credential's token (RFC 7519: a jti is unique per
    // issuer, and a credential's key is the issuer); alone, it is any token's.
    let chosen = usize::from(jti.is_some())
        + usize::from(consumer.is_some())
        + usize::from(credential.is_some() && jti.is_none());
    if chosen != 1
        && !violations.fields.contains_key("jti")
        && !violations.fields.contains_key("consumer")
        && !violations.fields.contains_key("credential")
    {
        violations.entity(EXACTLY_ONE);
    }
    if jti.is_some() {
        if expires_at.is_none() && !violations.fields.contains_key("expires_at") {
            violations.field("expires_at", "required field missing (the token's exp)");
        }
        if !issued_before.is_absent() {
            violations.field("issued_before", "only for a consumer or a credential");
        }
    }
    if let Some(at) = expires_at {
        if at.saturating_add(policy.grace) <= now {
            violations.field(
                "expires_at",
                format!("must be later than now - {} s (the revocation grace): the token has expired already", policy.grace),
            );
        }
    }
    violations.check()?;

    // References resolved only once the input is known good.
    let (consumer_id, credential_id, keys) = match (&consumer, &credential) {
        (Some(name), _) => {
            let found = consumers::find(tx, name)?.ok_or_else(|| {
                Failure::field(
                    "consumer",
                    format!("no consumer with username or id '{name}'"),
                )
            })?;
            let keys = credential_keys(tx, &found.id)?;
            (Some(found.id), None, keys)
        }
        (_, Some(name)) => {
            let found = jwts::find(tx, name)?.ok_or_else(|| {
                Failure::field(
                    "credential",
                    format!("no JWT credential with key or id '{name}'"),
                )
            })?;
            (Some(found.consumer_id), Some(found.id), vec![found.key])
        }
        _ => (None, None, Vec::new()),
    };
    let mut revocation = Revocation {
        id: match id {
            Field::Set(id) => id,
            _ => new_id()?,
        },
        created_at: now,
        jti: jti.clone(),
        // A credential cutoff is keyed by the credential alone.
        consumer_id: if credential_id.is_some() {
            None
        } else {
            consumer_id.clone()
        },
        credential_id: credential_id.clone(),
        issued_before: if jti.is_some() {
            None
        } else {
            Some(issued_before.apply(None).unwrap_or(now))
        },
        expires_at,
        tags: tags.apply(None),
    };

    let existing = match (
        &revocation.jti,
        &revocation.consumer_id,
        &revocation.credential_id,
    ) {
        (Some(jti), _, None) => {
            if !tx
                .query(
                    "SELECT id FROM revocations WHERE jti = $1 AND credential_id IS NULL",
                    &[Value::from(jti)],
                )?
                .is_empty()
            {
                return Err(Failure::unique("jti", jti.as_str()));
            }
            None
        }
        (Some(jti), _, Some(credential)) => {
            if !tx
                .query(
                    "SELECT id FROM revocations WHERE jti = $1 AND credential_id = $2",
                    &[Value::from(jti), Value::from(credential)],
                )?
                .is_empty()
            {
                return Err(scoped_conflict(credential, jti));
            }
            None
        }
        (_, Some(consumer), _) => tx
            .query(
                &format!("SELECT {REVOCATION_COLUMNS} FROM revocations WHERE consumer_id = $1"),
                &[Value::from(consumer)],
            )?
            .first()
            .map(Revocation::from_row)
            .transpose()?,
        (_, _, Some(credential)) => tx
            .query(
                &format!("SELECT {REVOCATION_COLUMNS} FROM revocations WHERE credential_id = $1 AND jti IS NULL"),
                &[Value::from(credential)],
            )?
            .first()
            .map(Revocation::from_row)
            .transpose()?,
        _ => None,
    };
    let created = existing.is_none();
    if let Some(existing) = existing {
        revocation.id = existing.id;
        revocation.created_at = existing.created_at;
        // Never back: a repost cannot un-revoke tokens the cutoff already covers.
        revocation.issued_before = revocation.issued_before.max(existing.issued_before);
        revocation.expires_at = match (revocation.expires_at, existing.expires_at) {
            (Some(new), Some(old)) => Some(new.max(old)),
            _ => None,
        };
        tx.execute(
            "UPDATE revocations SET issued_before = $2, expires_at = $3, tags = $4 WHERE id = $1",
            &[
                Value::from(&revocation.id),
                Value::from(revocation.issued_before),
                Value::from(revocation.expires_at),
                Value::from(tags_to(&revocation.tags)),
            ],
        )?;
    } else {
        if by_id(tx, &revocation.id)?.is_some() {
            return Err(Failure::PrimaryKey(revocation.id));
        }
        if in_force(tx, now, policy.grace)? >= policy.max_in_force {
            return Err(Failure::Limit(format!(
                "too many revocations in force: at most {} (--max-revocations); delete some, or rotate the credential instead",
                policy.max_in_force
            )));
        }
        tx.execute(
            "INSERT INTO revocations (id, created_at, jti, consumer_id, credential_id, issued_before, expires_at, tags)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            &[
                Value::from(&revocation.id),
                Value::Int(revocation.created_at),
                Value::from(revocation.jti.clone()),
                Value::from(revocation.consumer_id.clone()),
                Value::from(revocation.credential_id.clone()),
                Value::from(revocation.issued_before),
                Value::from(revocation.expires_at),
                Value::from(tags_to(&revocation.tags)),
            ],
        )
        .map_err(|e| match (e, &revocation.jti, &revocation.credential_id) {
            (DbError::Unique(_), Some(jti), Some(credential)) => scoped_conflict(credential, jti),
            (DbError::Unique(_), Some(jti), None) => Failure::unique("jti", jti.as_str()),
            (other, _, _) => Failure::from(other),
        })?;
    }
    changes.push(event(
        &revocation,
        consumer_id,
        if created {
            Operation::Create
        } else {
            Operation::Update
        },
        keys,
    ));
    Ok((revocation, created))
}

/// 409 on a jti already revoked for this credential.
fn scoped_conflict(credential_id: &str, jti: &str) -> Failure {
    Failure::Unique(std::collections::BTreeMap::from([
        (
            "credential".to_owned(),
            serde_json::json!({ "id": credential_id }),
        ),
        ("jti".to_owned(), serde_json::json!(jti)),
    ]))
}

/// DELETE /revocations/{id}. `Ok(false)` if there was none.
pub fn delete(tx: &mut dyn Tx, changes: &mut Changes, id: &str) -> Result<bool, Failure> {
    let Some(revocation) = by_id(tx, id)? else {
        return Ok(false);
    };
    let (consumer_id, keys) = affected(tx, &revocation)?;
    tx.execute(
        "DELETE FROM revocations WHERE id = $1",
        &[Value::from(&revocation.id)],
    )?;
    changes.push(event(&revocation, consumer_id, Operation::Delete, keys));
    Ok(true)
}

/// The consumer and credential keys a revocation covers.
fn affected(
    tx: &mut dyn Tx,
    revocation: &Revocation,
) -> Result<(Option<String>, Vec<String>), DbError> {
    if let Some(consumer) = &revocation.consumer_id {
        return Ok((Some(consumer.clone()), credential_keys(tx, consumer)?));
    }
    if let Some(credential) = &revocation.credential_id {
        if let Some(jwt) = jwts::find(tx, credential)? {
            return Ok((Some(jwt.consumer_id), vec![jwt.key]));
        }
    }
    Ok((None, Vec::new()))
}

/// Forgets up to `batch` revocations past `expires_at + grace`; returns how many. No
/// event: every gateway drops them at the same instant by the same rule.
pub fn forget_expired(tx: &mut dyn Tx, now: i64, grace: i64, batch: i64) -> Result<u64, DbError> {
    tx.execute(
        "DELETE FROM revocations WHERE id IN (SELECT id FROM revocations
           WHERE expires_at IS NOT NULL AND expires_at <= $1 LIMIT $2)",
        &[Value::Int(now - grace), Value::Int(batch)],
    )
}

fn event(
    revocation: &Revocation,
    consumer_id: Option<String>,
    operation: Operation,
    credentials: Vec<String>,
) -> Draft {
    Draft {
        entity: "revocations",
        entity_id: revocation.id.clone(),
        key: revocation
            .jti
            .clone()
            .or_else(|| revocation.credential_id.clone())
            .or_else(|| revocation.consumer_id.clone()),
        operation,
        consumer_id,
        credentials,
    }
}
