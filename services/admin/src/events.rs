//! The change log the gateways follow, as Kong's nodes follow `cluster_events`: every
//! write appends its events in the same transaction, so an event exists exactly when its
//! change is committed.
//!
//! **Ids are gapless and in commit order.** The next id comes from `UPDATE meta SET head =
//! head + 1`, the last statement of every write: on PostgreSQL that row lock is held to
//! the commit, so a second writer gets the next id only after the first has committed
//! (SQLite serialises writers anyway). A reader that has seen id *n* has therefore seen
//! every id below it, and "everything after *n*" never skips a late commit.
//!
//! **Pruning.** Events older than the retention are deleted and `meta.pruned_through`
//! remembers the last deleted id: a reader asking for events after an id below it has
//! missed some and is told to drop its whole cache (`reset`).

use serde_json::{json, Value as Json};

use crate::clock;
use crate::db::{DbError, Tx, Value};

/// What a change did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    Create,
    Update,
    Delete,
}

impl Operation {
    pub fn name(self) -> &'static str {
        match self {
            Operation::Create => "create",
            Operation::Update => "update",
            Operation::Delete => "delete",
        }
    }
}

/// One change, before it has an id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Draft {
    /// `consumers`, `jwt_secrets`, `acls` or `revocations` (Kong's table names).
    pub entity: &'static str,
    pub entity_id: String,
    /// The entity's natural key: username (else custom_id), credential key, group, jti.
    pub key: Option<String>,
    pub operation: Operation,
    /// The consumer the change belongs to.
    pub consumer_id: Option<String>,
    /// Every credential key whose data-plane answer this change alters: what a gateway
    /// must drop or refetch (both keys when a credential's key changed).
    pub credentials: Vec<String>,
}

/// The changes of one write transaction, appended together at its end.
#[derive(Debug, Default)]
pub struct Changes(pub Vec<Draft>);

impl Changes {
    pub fn push(&mut self, draft: Draft) {
        self.0.push(draft);
    }
}

/// Appends `changes` (in order) and returns the new head, or the current one if there
/// were none. Call last in the transaction: it takes the row lock that orders commits.
pub fn append(tx: &mut dyn Tx, changes: Changes) -> Result<i64, DbError> {
    if changes.0.is_empty() {
        return head(tx).map(|position| position.head);
    }
    let count = i64::try_from(changes.0.len()).unwrap_or(i64::MAX);
    let rows = tx.query(
        "UPDATE meta SET head = head + $1 WHERE id = 1 RETURNING head",
        &[Value::Int(count)],
    )?;
    let last = rows
        .first()
        .ok_or_else(|| DbError::Failed("the meta row is missing".to_owned()))?
        .int(0)?;
    let at = clock::now_ms();
    for (i, draft) in changes.0.into_iter().enumerate() {
        let id = last - count + 1 + i64::try_from(i).unwrap_or(0);
        tx.execute(
            "INSERT INTO events (id, at_ms, entity, entity_id, key, operation, consumer_id, credentials)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            &[
                Value::Int(id),
                Value::Int(at),
                Value::from(draft.entity),
                Value::from(draft.entity_id),
                Value::from(draft.key),
                Value::from(draft.operation.name()),
                Value::from(draft.consumer_id),
                Value::from(serde_json::to_string(&draft.credentials).unwrap_or_else(|_| "[]".to_owned())),
            ],
        )?;
    }
    Ok(last)
}

/// Where the feed stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Position {
    /// The last event id.
    pub head: i64,
    /// The last pruned event id.
    pub pruned_through: i64,
    /// The feed's identity: a UUID made when the schema was created. A gateway that sees
    /// it change follows another (or a restored) database and drops everything.
    pub epoch: String,
}

/// The columns [`Position::from_row`] reads, in order, from `meta`.
pub const POSITION_COLUMNS: &str = "m.head, m.pruned_through, m.epoch";

impl Position {
    /// From the first three columns of `row`.
    pub fn from_row(row: &crate::db::Row) -> Result<Position, DbError> {
        Ok(Position {
            head: row.int(0)?,
            pruned_through: row.int(1)?,
            epoch: row.opt_text(2)?.unwrap_or_default(),
        })
    }
}

/// Where the feed stands now.
pub fn head(tx: &mut dyn Tx) -> Result<Position, DbError> {
    let rows = tx.query(
        &format!("SELECT {POSITION_COLUMNS} FROM meta m WHERE m.id = 1"),
        &[],
    )?;
    let row = rows
        .first()
        .ok_or_else(|| DbError::Failed("the meta row is missing".to_owned()))?;
    Position::from_row(row)
}

/// The most events one feed answer carries.
pub const MAX_FEED: i64 = 1000;

/// The feed after event `after`: `{"head":H,"events":[…]}`, or `{"head":H,"reset":true,
/// "events":[]}` when the reader missed pruned events (or asks from beyond the head, i.e.
/// followed another database).
pub fn feed(tx: &mut dyn Tx, after: i64, limit: i64) -> Result<Json, DbError> {
    let Position {
        head,
        pruned_through,
        epoch,
    } = head(tx)?;
    if after < pruned_through || after > head {
        return Ok(json!({ "epoch": epoch, "head": head, "reset": true, "events": [] }));
    }
    let rows = tx.query(
        "SELECT id, at_ms, entity, entity_id, key, operation, consumer_id, credentials
         FROM events WHERE id > $1 ORDER BY id LIMIT $2",
        &[Value::Int(after), Value::Int(limit.clamp(1, MAX_FEED))],
    )?;
    let mut events = Vec::with_capacity(rows.len());
    for row in &rows {
        let credentials: Json = serde_json::from_str(&row.text(7)?)
            .map_err(|e| DbError::Failed(format!("stored event credentials: {e}")))?;
        events.push(json!({
            "id": row.int(0)?,
            "at_ms": row.int(1)?,
            "entity": row.text(2)?,
            "entity_id": row.text(3)?,
            "key": row.opt_text(4)?,
            "op": row.text(5)?,
            "consumer_id": row.opt_text(6)?,
            "credentials": credentials,
        }));
    }
    Ok(json!({ "epoch": epoch, "head": head, "events": events }))
}

/// Marks events older than `older_than_ms` as pruned: raises `pruned_through` to the last
/// of them and returns it (`None` if there are none). Readers asking from below it are
/// told to reset from now on, so the events can then be deleted at leisure
/// ([`delete_pruned`]) without a reader ever seeing a gap. A short write: the only one
/// of the pruner that holds the writers' lock.
pub fn mark_pruned(tx: &mut dyn Tx, older_than_ms: i64) -> Result<Option<i64>, DbError> {
    let rows = tx.query(
        "SELECT MAX(id) FROM events WHERE at_ms < $1",
        &[Value::Int(older_than_ms)],
    )?;
    let Some(through) = rows
        .first()
        .map(|row| row.opt_int(0))
        .transpose()?
        .flatten()
    else {
        return Ok(None);
    };
    tx.execute(
        "UPDATE meta SET pruned_through = $1 WHERE id = 1 AND pruned_through < $1",
        &[Value::Int(through)],
    )?;
    Ok(Some(through))
}

/// Deletes up to `batch` events at or below `through` (already marked pruned); returns how
/// many. Run it until it returns 0, each batch its own short transaction.
pub fn delete_pruned(tx: &mut dyn Tx, through: i64, batch: i64) -> Result<u64, DbError> {
    tx.execute(
        "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE id <= $1 ORDER BY id LIMIT $2)",
        &[Value::Int(through), Value::Int(batch)],
    )
}
