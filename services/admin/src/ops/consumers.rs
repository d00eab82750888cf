//! `/consumers`: Kong's consumers (`username` and `custom_id`, at least one of them, each
//! unique). Deleting one deletes its credentials, groups and revocations, each with its
//! own event.

use crate::db::{DbError, Tx, Value};
use crate::events::{Draft, Operation};
use crate::failure::{Failure, Violations};
use crate::ids::is_uuid;
use crate::input::{Field, Input, Reader};
use crate::model::{tags_to, Consumer, CONSUMER_COLUMNS};

use super::{credential_keys, exists, new_id, page, Changes, Page, PageRequest, MAX_NAME};

const FIELDS: &[&str] = &[
    "id",
    "created_at",
    "updated_at",
    "username",
    "custom_id",
    "tags",
];
const AT_LEAST_ONE: &str =
    "at least one of these fields must be non-empty: 'custom_id', 'username'";

struct Fields {
    id: Field<String>,
    created_at: Field<i64>,
    username: Field<String>,
    custom_id: Field<String>,
    tags: Field<Vec<String>>,
}

fn read(input: &Input) -> (Fields, Violations) {
    let mut reader = Reader::new(input, FIELDS);
    let fields = Fields {
        id: reader.uuid("id"),
        created_at: reader.integer("created_at", 0, i64::from(i32::MAX)),
        username: reader.string("username", MAX_NAME),
        custom_id: reader.string("custom_id", MAX_NAME),
        tags: reader.tags(),
    };
    // `updated_at` is accepted and ignored: the service sets it.
    reader.integer("updated_at", 0, i64::from(i32::MAX));
    (fields, reader.violations)
}

/// The consumer a path segment names: a UUID is an `id`, anything else a `username`
/// (Kong's endpoint key).
pub fn find(tx: &mut dyn Tx, key: &str) -> Result<Option<Consumer>, DbError> {
    let (column, value) = if is_uuid(key) {
        ("id", key.to_ascii_lowercase())
    } else {
        ("username", key.to_owned())
    };
    by(tx, column, &value)
}

/// The consumer whose `column` (`id`, `username`, `custom_id`) is `value`.
pub fn by(tx: &mut dyn Tx, column: &str, value: &str) -> Result<Option<Consumer>, DbError> {
    let sql = match column {
        "id" => format!("SELECT {CONSUMER_COLUMNS} FROM consumers WHERE id = $1"),
        "username" => format!("SELECT {CONSUMER_COLUMNS} FROM consumers WHERE username = $1"),
        _ => format!("SELECT {CONSUMER_COLUMNS} FROM consumers WHERE custom_id = $1"),
    };
    tx.query(&sql, &[Value::from(value)])?
        .first()
        .map(Consumer::from_row)
        .transpose()
}

pub fn list(tx: &mut dyn Tx, request: &PageRequest) -> Result<Page, Failure> {
    page(
        tx,
        &format!("SELECT {CONSUMER_COLUMNS} FROM consumers WHERE id > $1"),
        Vec::new(),
        request,
        Consumer::from_row,
        Consumer::to_json,
        |c| &c.id,
    )
}

/// POST /consumers
pub fn create(tx: &mut dyn Tx, changes: &mut Changes, input: &Input) -> Result<Consumer, Failure> {
    let (fields, mut violations) = read(input);
    let now = crate::clock::now_secs();
    let consumer = Consumer {
        id: match fields.id {
            Field::Set(id) => id,
            _ => new_id()?,
        },
        created_at: fields.created_at.apply(None).unwrap_or(now),
        updated_at: now,
        username: fields.username.apply(None),
        custom_id: fields.custom_id.apply(None),
        tags: fields.tags.apply(None),
    };
    if needs_one(&consumer, &violations) {
        violations.entity(AT_LEAST_ONE);
    }
    violations.check()?;
    if by(tx, "id", &consumer.id)?.is_some() {
        return Err(Failure::PrimaryKey(consumer.id));
    }
    insert(tx, changes, &consumer)?;
    Ok(consumer)
}

/// PATCH /consumers/{username or id}: `None` if there is no such consumer.
pub fn update(
    tx: &mut dyn Tx,
    changes: &mut Changes,
    key: &str,
    input: &Input,
) -> Result<Option<Consumer>, Failure> {
    let (fields, mut violations) = read(input);
    let Some(current) = find(tx, key)? else {
        violations.check()?;
        return Ok(None);
    };
    if let Field::Set(id) = &fields.id {
        if *id != current.id {
            violations.field("id", "immutable field cannot be updated");
        }
    }
    let consumer = Consumer {
        id: current.id.clone(),
        created_at: fields
            .created_at
            .apply(Some(current.created_at))
            .unwrap_or(current.created_at),
        updated_at: crate::clock::now_secs(),
        username: fields.username.apply(current.username.clone()),
        custom_id: fields.custom_id.apply(current.custom_id.clone()),
        tags: fields.tags.apply(current.tags.clone()),
    };
    if needs_one(&consumer, &violations) {
        violations.entity(format!("when updating, {AT_LEAST_ONE}"));
    }
    violations.check()?;
    replace(tx, changes, &consumer)?;
    Ok(Some(consumer))
}

/// PUT /consumers/{username or id}: creates or replaces. A UUID in the path is the `id`;
/// anything else is the `username`, whatever the body says.
pub fn upsert(
    tx: &mut dyn Tx,
    changes: &mut Changes,
    key: &str,
    input: &Input,
) -> Result<Consumer, Failure> {
    let (mut fields, mut violations) = read(input);
    let current = find(tx, key)?;
    let now = crate::clock::now_secs();
    let id = match &current {
        Some(current) => current.id.clone(),
        None if is_uuid(key) => key.to_ascii_lowercase(),
        None => new_id()?,
    };
    // Kong's upsert_by_username: the username in the path wins over the body's, so
    // `PUT /consumers/alice {"username":"bob"}` upserts alice, never renames to bob.
    if !is_uuid(key) {
        fields.username = Field::Set(key.to_owned());
    }
    let consumer = Consumer {
        id,
        created_at: fields
            .created_at
            .apply(current.as_ref().map(|c| c.created_at))
            .unwrap_or(now),
        updated_at: now,
        username: fields.username.apply(None),
        custom_id: fields.custom_id.apply(None),
        tags: fields.tags.apply(None),
    };
    if needs_one(&consumer, &violations) {
        violations.entity(AT_LEAST_ONE);
    }
    violations.check()?;
    match current {
        Some(_) => replace(tx, changes, &consumer)?,
        None => insert(tx, changes, &consumer)?,
    }
    Ok(consumer)
}

/// DELETE /consumers/{username or id}: its credentials, groups and revocations go too.
/// Deleting a consumer that does not exist is not an error (Kong answers 204).
pub fn delete(tx: &mut dyn Tx, changes: &mut Changes, key: &str) -> Result<(), Failure> {
    let Some(consumer) = find(tx, key)? else {
        return Ok(());
    };
    let keys = credential_keys(tx, &consumer.id)?;
    let id = Value::from(consumer.id.as_str());
    let revocations = tx.query(
        "SELECT r.id, COALESCE(r.jti, r.consumer_id, r.credential_id) FROM revocations r
         LEFT JOIN jwt_secrets j ON j.id = r.credential_id
         WHERE r.consumer_id = $1 OR j.consumer_id = $1 ORDER BY r.id",
        std::slice::from_ref(&id),
    )?;
    for row in &revocations {
        changes.push(draft_child(
            "revocations",
            row.text(0)?,
            row.opt_text(1)?,
            &consumer.id,
            Vec::new(),
        ));
    }
    tx.execute(
        "DELETE FROM revocations WHERE consumer_id = $1
           OR credential_id IN (SELECT id FROM jwt_secrets WHERE consumer_id = $1)",
        std::slice::from_ref(&id),
    )?;
    for row in &tx.query(
        "SELECT id, key FROM jwt_secrets WHERE consumer_id = $1 ORDER BY id",
        std::slice::from_ref(&id),
    )? {
        let key = row.text(1)?;
        changes.push(draft_child(
            "jwt_secrets",
            row.text(0)?,
            Some(key.clone()),
            &consumer.id,
            vec![key],
        ));
    }
    tx.execute(
        "DELETE FROM jwt_secrets WHERE consumer_id = $1",
        std::slice::from_ref(&id),
    )?;
    for row in &tx.query(
        "SELECT id, grp FROM acls WHERE consumer_id = $1 ORDER BY id",
        std::slice::from_ref(&id),
    )? {
        changes.push(draft_child(
            "acls",
            row.text(0)?,
            row.opt_text(1)?,
            &consumer.id,
            Vec::new(),
        ));
    }
    tx.execute(
        "DELETE FROM acls WHERE consumer_id = $1",
        std::slice::from_ref(&id),
    )?;
    tx.execute("DELETE FROM consumers WHERE id = $1", &[id])?;
    changes.push(event(&consumer, Operation::Delete, keys));
    Ok(())
}

/// Kong's `at_least_one_of` check, skipped when either field is itself in error.
fn needs_one(consumer: &Consumer, violations: &Violations) -> bool {
    consumer.username.is_none()
        && consumer.custom_id.is_none()
        && !violations.fields.contains_key("username")
        && !violations.fields.contains_key("custom_id")
}

fn draft_child(
    entity: &'static str,
    entity_id: String,
    key: Option<String>,
    consumer_id: &str,
    credentials: Vec<String>,
) -> Draft {
    Draft {
        entity,
        entity_id,
        key,
        operation: Operation::Delete,
        consumer_id: Some(consumer_id.to_owned()),
        credentials,
    }
}

fn event(consumer: &Consumer, operation: Operation, credentials: Vec<String>) -> Draft {
    Draft {
        entity: "consumers",
        entity_id: consumer.id.clone(),
        key: Some(consumer.name().to_owned()),
        operation,
        consumer_id: Some(consumer.id.clone()),
        credentials,
    }
}

/// 409 if another consumer holds this username or custom_id.
fn check_unique(tx: &mut dyn Tx, consumer: &Consumer) -> Result<(), Failure> {
    for (column, value) in [
        ("username", &consumer.username),
        ("custom_id", &consumer.custom_id),
    ] {
        let Some(value) = value else { continue };
        let sql = if column == "username" {
            "SELECT id FROM consumers WHERE username = $1 AND id <> $2"
        } else {
            "SELECT id FROM consumers WHERE custom_id = $1 AND id <> $2"
        };
        if exists(tx, sql, &[Value::from(value), Value::from(&consumer.id)])? {
            return Err(Failure::unique(column, value.as_str()));
        }
    }
    Ok(())
}

/// A unique violation the database caught (a concurrent writer won the race after our
/// check) as the same 409 the check gives.
fn conflict(e: DbError, consumer: &Consumer) -> Failure {
    match e {
        DbError::Unique(constraint) if constraint.contains("custom_id") => {
            Failure::unique("custom_id", consumer.custom_id.clone())
        }
        DbError::Unique(constraint) if constraint.contains("username") => {
            Failure::unique("username", consumer.username.clone())
        }
        DbError::Unique(_) => Failure::PrimaryKey(consumer.id.clone()),
        other => Failure::from(other),
    }
}

fn insert(tx: &mut dyn Tx, changes: &mut Changes, consumer: &Consumer) -> Result<(), Failure> {
    check_unique(tx, consumer)?;
    tx.execute(
        "INSERT INTO consumers (id, created_at, updated_at, username, custom_id, tags)
         VALUES ($1, $2, $3, $4, $5, $6)",
        &[
            Value::from(&consumer.id),
            Value::Int(consumer.created_at),
            Value::Int(consumer.updated_at),
            Value::from(consumer.username.clone()),
            Value::from(consumer.custom_id.clone()),
            Value::from(tags_to(&consumer.tags)),
        ],
    )
    .map_err(|e| conflict(e, consumer))?;
    changes.push(event(consumer, Operation::Create, Vec::new()));
    Ok(())
}

fn replace(tx: &mut dyn Tx, changes: &mut Changes, consumer: &Consumer) -> Result<(), Failure> {
    check_unique(tx, consumer)?;
    tx.execute(
        "UPDATE consumers SET created_at = $2, updated_at = $3, username = $4, custom_id = $5, tags = $6
         WHERE id = $1",
        &[
            Value::from(&consumer.id),
            Value::Int(consumer.created_at),
            Value::Int(consumer.updated_at),
            Value::from(consumer.username.clone()),
            Value::from(consumer.custom_id.clone()),
            Value::from(tags_to(&consumer.tags)),
        ],
    )
    .map_err(|e| conflict(e, consumer))?;
    let keys = credential_keys(tx, &consumer.id)?;
    changes.push(event(consumer, Operation::Update, keys));
    Ok(())
}
