//! `/consumers/{c}/acls` and `/acls`: Kong's ACL groups, one row per consumer and group.
//! A group name reaches the gateway in `X-Consumer-Groups`, comma-separated, so beyond
//! Kong it may not hold a comma or a control character.

use crate::db::{DbError, Tx, Value};
use crate::events::{Draft, Operation};
use crate::failure::{Failure, Violations};
use crate::ids::is_uuid;
use crate::input::{Field, Input, Reader};
use crate::model::{tags_to, Acl, Consumer, ACL_COLUMNS};

use super::owned::{self, Owned};
use super::{
    check_room, credential_keys, exists, new_id, page, Changes, Page, PageRequest, MAX_GROUP,
    MAX_GROUPS,
};

const FIELDS: &[&str] = &["id", "created_at", "consumer", "group", "tags"];

struct Fields {
    id: Field<String>,
    created_at: Field<i64>,
    consumer: Field<String>,
    group: Field<String>,
    tags: Field<Vec<String>>,
}

fn read(input: &Input) -> (Fields, Violations) {
    let mut reader = Reader::new(input, FIELDS);
    let fields = Fields {
        id: reader.uuid("id"),
        created_at: reader.integer("created_at", 0, i64::from(i32::MAX)),
        consumer: reader.consumer(),
        group: reader.string("group", MAX_GROUP),
        tags: reader.tags(),
    };
    if let Field::Set(group) = &fields.group {
        if group.contains(',') {
            reader.violations.field(
                "group",
                "invalid value: ',' is not allowed (X-Consumer-Groups is comma-separated)",
            );
        }
    }
    (fields, reader.violations)
}

pub fn by_id(tx: &mut dyn Tx, id: &str) -> Result<Option<Acl>, DbError> {
    tx.query(
        &format!("SELECT {ACL_COLUMNS} FROM acls WHERE id = $1"),
        &[Value::from(id.to_ascii_lowercase())],
    )?
    .first()
    .map(Acl::from_row)
    .transpose()
}

/// The group of `consumer` that `key` names: a UUID is an `id`, anything else a group.
pub fn find_of(tx: &mut dyn Tx, consumer: &Consumer, key: &str) -> Result<Option<Acl>, DbError> {
    if is_uuid(key) {
        return Ok(by_id(tx, key)?.filter(|acl| acl.consumer_id == consumer.id));
    }
    by_group(tx, consumer, key)
}

/// The group of `consumer` named `group` (never by id, whatever its shape).
pub fn by_group(tx: &mut dyn Tx, consumer: &Consumer, key: &str) -> Result<Option<Acl>, DbError> {
    tx.query(
        &format!("SELECT {ACL_COLUMNS} FROM acls WHERE consumer_id = $1 AND grp = $2"),
        &[Value::from(&consumer.id), Value::from(key)],
    )?
    .first()
    .map(Acl::from_row)
    .transpose()
}

/// GET /acls, or a consumer's with `consumer` set.
pub fn list(
    tx: &mut dyn Tx,
    consumer: Option<&Consumer>,
    request: &PageRequest,
) -> Result<Page, Failure> {
    let (sql, params) = match consumer {
        Some(c) => (
            format!("SELECT {ACL_COLUMNS} FROM acls WHERE consumer_id = $1 AND id > $2"),
            vec![Value::from(&c.id)],
        ),
        None => (
            format!("SELECT {ACL_COLUMNS} FROM acls WHERE id > $1"),
            Vec::new(),
        ),
    };
    page(
        tx,
        &sql,
        params,
        request,
        Acl::from_row,
        Acl::to_json,
        |a| &a.id,
    )
}

/// The groups of a consumer, in name order.
pub fn groups(tx: &mut dyn Tx, consumer_id: &str) -> Result<Vec<String>, DbError> {
    tx.query(
        "SELECT grp FROM acls WHERE consumer_id = $1 ORDER BY grp",
        &[Value::from(consumer_id)],
    )?
    .iter()
    .map(|row| row.text(0))
    .collect()
}

/// POST /consumers/{c}/acls or POST /acls.
pub fn create(
    tx: &mut dyn Tx,
    changes: &mut Changes,
    consumer: Option<&Consumer>,
    input: &Input,
) -> Result<Acl, Failure> {
    let (fields, mut violations) = read(input);
    let acl = build(fields, None, consumer, &mut violations)?;
    owned::create(tx, changes, acl, violations)
}

/// PATCH …/acls/{id or group}: `None` if there is no such group (of that consumer).
pub fn update(
    tx: &mut dyn Tx,
    changes: &mut Changes,
    consumer: Option<&Consumer>,
    key: &str,
    input: &Input,
) -> Result<Option<Acl>, Failure> {
    let (fields, mut violations) = read(input);
    let current = match consumer {
        Some(c) => find_of(tx, c, key)?,
        None => by_id(tx, key)?,
    };
    let Some(current) = current else {
        violations.check()?;
        return Ok(None);
    };
    let acl = build(fields, Some(&current), consumer, &mut violations)?;
    owned::update(tx, changes, &current, acl, violations).map(Some)
}

/// PUT …/acls/{id or group}: creates or replaces; a group in the path is the `group`,
/// whatever the body says.
pub fn upsert(
    tx: &mut dyn Tx,
    changes: &mut Changes,
    consumer: Option<&Consumer>,
    key: &str,
    input: &Input,
) -> Result<Acl, Failure> {
    let (mut fields, violations) = read(input);
    let current = match consumer {
        Some(c) => find_of(tx, c, key)?,
        None => by_id(tx, key)?,
    };
    // The group in the path wins over the body's (as Kong's upsert by endpoint key).
    if !is_uuid(key) {
        fields.group = Field::Set(key.to_owned());
    }
    owned::upsert(tx, changes, key, current, violations, |id, violations| {
        fields.id = Field::Set(id);
        build(fields, None, consumer, violations)
    })
}

/// DELETE …/acls/{id or group}. `Ok(false)` if there was no such group.
pub fn delete(
    tx: &mut dyn Tx,
    changes: &mut Changes,
    consumer: Option<&Consumer>,
    key: &str,
) -> Result<bool, Failure> {
    let found = match consumer {
        Some(c) => find_of(tx, c, key)?,
        None => by_id(tx, key)?,
    };
    let Some(acl) = found else {
        return Ok(false);
    };
    tx.execute("DELETE FROM acls WHERE id = $1", &[Value::from(&acl.id)])?;
    let keys = credential_keys(tx, &acl.consumer_id)?;
    changes.push(event(&acl, Operation::Delete, keys));
    Ok(true)
}

fn build(
    fields: Fields,
    current: Option<&Acl>,
    consumer: Option<&Consumer>,
    violations: &mut Violations,
) -> Result<Acl, Failure> {
    let consumer_id = match (consumer, &fields.consumer, current) {
        (Some(c), Field::Absent, _) => Some(c.id.clone()),
        (_, Field::Set(id), _) => Some(id.clone()),
        (None, Field::Absent, Some(current)) => Some(current.consumer_id.clone()),
        (Some(c), Field::Null, _) if current.is_none() => Some(c.id.clone()),
        _ => {
            if !violations.fields.contains_key("consumer") {
                violations.field("consumer", "required field missing");
            }
            None
        }
    };
    let group = fields.group.apply(current.map(|c| c.group.clone()));
    if group.is_none() && !violations.fields.contains_key("group") {
        violations.field("group", "required field missing");
    }
    Ok(Acl {
        id: match (fields.id, current) {
            (_, Some(current)) => current.id.clone(),
            (Field::Set(id), None) => id,
            _ => new_id()?,
        },
        created_at: fields
            .created_at
            .apply(current.map(|c| c.created_at))
            .unwrap_or_else(crate::clock::now_secs),
        consumer_id: consumer_id.unwrap_or_default(),
        group: group.unwrap_or_default(),
        tags: fields.tags.apply(current.and_then(|c| c.tags.clone())),
    })
}

fn unique_failure(acl: &Acl) -> Failure {
    let mut fields = std::collections::BTreeMap::new();
    fields.insert(
        "consumer".to_owned(),
        serde_json::json!({ "id": acl.consumer_id }),
    );
    fields.insert("group".to_owned(), serde_json::json!(acl.group));
    Failure::Unique(fields)
}

fn check_unique(tx: &mut dyn Tx, acl: &Acl) -> Result<(), Failure> {
    if exists(
        tx,
        "SELECT id FROM acls WHERE consumer_id = $1 AND grp = $2 AND id <> $3",
        &[
            Value::from(&acl.consumer_id),
            Value::from(&acl.group),
            Value::from(&acl.id),
        ],
    )? {
        return Err(unique_failure(acl));
    }
    Ok(())
}

fn conflict(e: DbError, acl: &Acl) -> Failure {
    match e {
        DbError::Unique(constraint)
            if constraint.contains("grp") || constraint.contains("group") =>
        {
            unique_failure(acl)
        }
        DbError::Unique(_) => Failure::PrimaryKey(acl.id.clone()),
        DbError::ForeignKey(_) => Failure::ForeignKey {
            consumer_id: acl.consumer_id.clone(),
        },
        other => Failure::from(other),
    }
}

fn insert(tx: &mut dyn Tx, changes: &mut Changes, acl: &Acl) -> Result<(), Failure> {
    check_unique(tx, acl)?;
    check_room(tx, "acls", &acl.consumer_id, MAX_GROUPS, "groups")?;
    tx.execute(
        "INSERT INTO acls (id, created_at, consumer_id, grp, tags) VALUES ($1, $2, $3, $4, $5)",
        &[
            Value::from(&acl.id),
            Value::Int(acl.created_at),
            Value::from(&acl.consumer_id),
            Value::from(&acl.group),
            Value::from(tags_to(&acl.tags)),
        ],
    )
    .map_err(|e| conflict(e, acl))?;
    let keys = credential_keys(tx, &acl.consumer_id)?;
    changes.push(event(acl, Operation::Create, keys));
    Ok(())
}

fn replace(tx: &mut dyn Tx, changes: &mut Changes, old: &Acl, acl: &Acl) -> Result<(), Failure> {
    check_unique(tx, acl)?;
    if old.consumer_id != acl.consumer_id {
        check_room(tx, "acls", &acl.consumer_id, MAX_GROUPS, "groups")?;
    }
    tx.execute(
        "UPDATE acls SET created_at = $2, consumer_id = $3, grp = $4, tags = $5 WHERE id = $1",
        &[
            Value::from(&acl.id),
            Value::Int(acl.created_at),
            Value::from(&acl.consumer_id),
            Value::from(&acl.group),
            Value::from(tags_to(&acl.tags)),
        ],
    )
    .map_err(|e| conflict(e, acl))?;
    let mut keys = credential_keys(tx, &acl.consumer_id)?;
    if old.consumer_id != acl.consumer_id {
        keys.extend(credential_keys(tx, &old.consumer_id)?);
    }
    changes.push(event(acl, Operation::Update, keys));
    Ok(())
}

impl Owned for Acl {
    fn id(&self) -> &str {
        &self.id
    }
    fn consumer_id(&self) -> &str {
        &self.consumer_id
    }
    fn created_at(&self) -> i64 {
        self.created_at
    }
    fn set_created_at(&mut self, created_at: i64) {
        self.created_at = created_at;
    }
    fn by_id(tx: &mut dyn Tx, id: &str) -> Result<Option<Acl>, DbError> {
        by_id(tx, id)
    }
    fn insert(&self, tx: &mut dyn Tx, changes: &mut Changes) -> Result<(), Failure> {
        insert(tx, changes, self)
    }
    fn replace(&self, tx: &mut dyn Tx, changes: &mut Changes, old: &Acl) -> Result<(), Failure> {
        replace(tx, changes, old, self)
    }
}

fn event(acl: &Acl, operation: Operation, credentials: Vec<String>) -> Draft {
    Draft {
        entity: "acls",
        entity_id: acl.id.clone(),
        key: Some(acl.group.clone()),
        operation,
        consumer_id: Some(acl.consumer_id.clone()),
        credentials,
    }
}
