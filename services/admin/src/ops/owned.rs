//! What `acls` and `jwts` share: rows a consumer owns (an ACL group, a JWT credential),
//! written the same way once each module has read its fields and built the row. The row's
//! consumer must exist (400 foreign key otherwise); a PUT keeps the id and the creation time
//! of the row it replaces.

use crate::db::{DbError, Tx};
use crate::failure::{Failure, Violations};
use crate::ids::is_uuid;

use super::{consumers, new_id, Changes};

/// A row a consumer owns, and how its module stores it.
pub trait Owned: Sized {
    fn id(&self) -> &str;
    fn consumer_id(&self) -> &str;
    fn created_at(&self) -> i64;
    fn set_created_at(&mut self, created_at: i64);
    /// The row with this id, whichever consumer owns it.
    fn by_id(tx: &mut dyn Tx, id: &str) -> Result<Option<Self>, DbError>;
    /// Inserts the row (checking what the database cannot) and records the event.
    fn insert(&self, tx: &mut dyn Tx, changes: &mut Changes) -> Result<(), Failure>;
    /// Replaces `old` with the row and records the event.
    fn replace(&self, tx: &mut dyn Tx, changes: &mut Changes, old: &Self) -> Result<(), Failure>;
}

/// POST: a valid request, an existing consumer, an id no row has; then the insert.
pub fn create<T: Owned>(
    tx: &mut dyn Tx,
    changes: &mut Changes,
    row: T,
    violations: Violations,
) -> Result<T, Failure> {
    violations.check()?;
    check_consumer(tx, row.consumer_id())?;
    if T::by_id(tx, row.id())?.is_some() {
        return Err(Failure::PrimaryKey(row.id().to_owned()));
    }
    row.insert(tx, changes)?;
    Ok(row)
}

/// PATCH: a valid request and an existing consumer; then `row` replaces `current`.
pub fn update<T: Owned>(
    tx: &mut dyn Tx,
    changes: &mut Changes,
    current: &T,
    row: T,
    violations: Violations,
) -> Result<T, Failure> {
    violations.check()?;
    check_consumer(tx, row.consumer_id())?;
    row.replace(tx, changes, current)?;
    Ok(row)
}

/// PUT on `key` (an id or the row's name), `current` the row it names if any: the row
/// takes `current`'s id, else the UUID `key`, else a new one; `build` makes it from the
/// request with that id; it keeps `current`'s creation time, and replaces it or is
/// inserted.
pub fn upsert<T: Owned>(
    tx: &mut dyn Tx,
    changes: &mut Changes,
    key: &str,
    current: Option<T>,
    mut violations: Violations,
    build: impl FnOnce(String, &mut Violations) -> Result<T, Failure>,
) -> Result<T, Failure> {
    let id = match &current {
        Some(current) => current.id().to_owned(),
        None if is_uuid(key) => key.to_ascii_lowercase(),
        None => new_id()?,
    };
    let mut row = build(id, &mut violations)?;
    let Some(current) = current else {
        violations.check()?;
        check_consumer(tx, row.consumer_id())?;
        row.insert(tx, changes)?;
        return Ok(row);
    };
    row.set_created_at(current.created_at());
    update(tx, changes, &current, row, violations)
}

/// 400 foreign key violation if the consumer does not exist.
fn check_consumer(tx: &mut dyn Tx, consumer_id: &str) -> Result<(), Failure> {
    if consumers::by(tx, "id", consumer_id)?.is_none() {
        return Err(Failure::ForeignKey {
            consumer_id: consumer_id.to_owned(),
        });
    }
    Ok(())
}
