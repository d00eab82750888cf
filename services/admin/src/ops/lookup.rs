//! The data plane's reads: what a gateway needs for one credential key, one revocation,
//! and the revocations in force. Each read is one statement (one snapshot) and carries
//! the feed's `epoch` and the event `head` it was read at: a gateway that has already
//! applied a later event knows the answer is stale.

use serde_json::{json, Value as Json};

use crate::db::{DbError, Row, Tx, Value};
use crate::events::Position;

/// One statement for a credential lookup: the feed's position, the credential, its
/// consumer, one row per group (or one row with no group), and the two cutoffs. The
/// `meta` row always matches, so a key that is not there still answers the position.
pub const CREDENTIAL_SQL: &str = "SELECT m.head, m.pruned_through, m.epoch,
   c.id, c.username, c.custom_id, j.id, j.key, j.algorithm, j.secret, j.rsa_public_key,
   a.grp, rc.issued_before, rc.expires_at, rj.issued_before, rj.expires_at
 FROM meta m
 LEFT JOIN jwt_secrets j ON j.key = $1
 LEFT JOIN consumers c ON c.id = j.consumer_id
 LEFT JOIN acls a ON a.consumer_id = c.id
 LEFT JOIN revocations rc ON rc.consumer_id = c.id
   AND (rc.expires_at IS NULL OR rc.expires_at > $2)
 LEFT JOIN revocations rj ON rj.credential_id = j.id AND rj.jti IS NULL
   AND (rj.expires_at IS NULL OR rj.expires_at > $2)
 WHERE m.id = 1
 ORDER BY a.grp";

/// The answer for `key` from the rows of [`CREDENTIAL_SQL`]: `{"found":true,…}` or
/// `{"found":false,…}`, with the position either way.
pub fn credential_answer(rows: &[Row], grace: i64) -> Result<(Position, Json), DbError> {
    let row = rows
        .first()
        .ok_or_else(|| DbError::Failed("the meta row is missing".to_owned()))?;
    let position = Position::from_row(row)?;
    let Some(consumer_id) = row.opt_text(3)? else {
        return Ok((
            position.clone(),
            json!({ "epoch": position.epoch, "head": position.head, "found": false }),
        ));
    };
    let algorithm = row.text(8)?;
    let mut credential = json!({
        "id": row.text(6)?,
        "key": row.text(7)?,
        "algorithm": algorithm,
    });
    if algorithm.starts_with("HS") {
        credential["secret"] = json!(row.opt_text(9)?);
    } else {
        credential["rsa_public_key"] = json!(row.opt_text(10)?);
    }
    let mut groups = Vec::new();
    for row in rows {
        if let Some(group) = row.opt_text(11)? {
            groups.push(group);
        }
    }
    let cutoff = |at: usize| -> Result<Json, DbError> {
        Ok(match row.opt_int(at)? {
            Some(issued_before) => {
                json!({ "issued_before": issued_before, "expires_at": row.opt_int(at + 1)? })
            }
            None => Json::Null,
        })
    };
    let answer = json!({
        "epoch": position.epoch,
        "head": position.head,
        "found": true,
        "grace": grace,
        "consumer": {
            "id": consumer_id,
            "username": row.opt_text(4)?,
            "custom_id": row.opt_text(5)?,
            "groups": groups,
            "cutoff": cutoff(12)?,
        },
        "credential": credential,
    });
    let mut answer = answer;
    answer["credential"]["cutoff"] = cutoff(14)?;
    Ok((position, answer))
}

/// The parameters of [`CREDENTIAL_SQL`].
pub fn credential_params(key: &str, now: i64, grace: i64) -> [Value; 2] {
    [Value::from(key), Value::Int(now - grace)]
}

/// `{"found":true,…}` for a credential key, or `{"found":false,…}`, in one statement.
pub fn credential(
    tx: &mut dyn Tx,
    key: &str,
    now: i64,
    grace: i64,
) -> Result<(Position, Json), DbError> {
    let rows = tx.query(CREDENTIAL_SQL, &credential_params(key, now, grace))?;
    credential_answer(&rows, grace)
}

/// One revocation as the data plane shows it.
fn entry(row: &Row) -> Result<Json, DbError> {
    // id, jti, consumer_id, credential_id, key, issued_before, expires_at
    let mut entry = json!({
        "id": row.text(0)?,
        "expires_at": row.opt_int(6)?,
    });
    if let Some(jti) = row.opt_text(1)? {
        entry["jti"] = json!(jti);
        // A credential's own jti: only its tokens (the key is their `iss`).
        if let Some(credential) = row.opt_text(3)? {
            entry["credential_id"] = json!(credential);
            entry["key"] = json!(row.opt_text(4)?);
        }
    } else if let Some(credential) = row.opt_text(3)? {
        entry["credential_id"] = json!(credential);
        entry["key"] = json!(row.opt_text(4)?);
        entry["issued_before"] = json!(row.opt_int(5)?);
    } else {
        entry["consumer_id"] = json!(row.opt_text(2)?);
        entry["issued_before"] = json!(row.opt_int(5)?);
    }
    Ok(entry)
}

const ENTRY_COLUMNS: &str =
    "r.id, r.jti, r.consumer_id, r.credential_id, j.key, r.issued_before, r.expires_at";

/// The revocations in force at `now` (until `expires_at + grace`): jtis, and the `iat`
/// cutoffs of consumers and credentials (a credential's with its key, as tokens name it).
pub fn revocations(tx: &mut dyn Tx, now: i64, grace: i64) -> Result<Json, DbError> {
    let position = crate::events::head(tx)?;
    let rows = tx.query(
        &format!(
            "SELECT {ENTRY_COLUMNS} FROM revocations r LEFT JOIN jwt_secrets j ON j.id = r.credential_id
             WHERE r.expires_at IS NULL OR r.expires_at > $1
             ORDER BY r.id"
        ),
        &[Value::Int(now - grace)],
    )?;
    let (mut jtis, mut consumers, mut credentials) = (Vec::new(), Vec::new(), Vec::new());
    for row in &rows {
        let entry = entry(row)?;
        if entry.get("jti").is_some() {
            jtis.push(entry);
        } else if entry.get("credential_id").is_some() {
            credentials.push(entry);
        } else {
            consumers.push(entry);
        }
    }
    Ok(json!({
        "epoch": position.epoch,
        "head": position.head,
        "grace": grace,
        "jtis": jtis,
        "consumers": consumers,
        "credentials": credentials,
    }))
}

/// One revocation by id (what a revocation event names): `{"found":true,"revocation":…}`,
/// or `{"found":false}` once it is deleted or forgotten.
pub fn revocation(tx: &mut dyn Tx, id: &str, now: i64, grace: i64) -> Result<Json, DbError> {
    let position = crate::events::head(tx)?;
    let rows = tx.query(
        &format!(
            "SELECT {ENTRY_COLUMNS} FROM revocations r LEFT JOIN jwt_secrets j ON j.id = r.credential_id
             WHERE r.id = $1 AND (r.expires_at IS NULL OR r.expires_at > $2)"
        ),
        &[Value::from(id), Value::Int(now - grace)],
    )?;
    let mut answer = json!({ "epoch": position.epoch, "head": position.head, "grace": grace });
    match rows.first() {
        Some(row) => {
            answer["found"] = json!(true);
            answer["revocation"] = entry(row)?;
        }
        None => answer["found"] = json!(false),
    }
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::jwts::MAX_KEY_TEXT;
    use crate::ops::{MAX_GROUP, MAX_GROUPS, MAX_NAME};

    /// The bound the README states for one credential answer.
    pub const LARGEST_ANSWER: usize = 96 * 1024;

    /// Every field at its longest, made of the characters JSON escapes to two bytes.
    #[test]
    fn the_largest_credential_answer_fits_the_stated_bound() {
        let worst = |n: usize| Value::Text("\"".repeat(n));
        let groups = MAX_GROUPS as usize;
        let rows: Vec<Row> = (0..groups)
            .map(|g| {
                let mut group = "\\".repeat(MAX_GROUP - 3);
                group.push_str(&format!("{g:03}"));
                Row(vec![
                    Value::Int(i64::MAX),
                    Value::Int(i64::MAX),
                    Value::Text("6e2f2a5e-3c7e-4c44-9a4e-1b2c3d4e5f80".into()),
                    Value::Text("6e2f2a5e-3c7e-4c44-9a4e-1b2c3d4e5f80".into()),
                    worst(MAX_NAME),
                    worst(MAX_NAME),
                    Value::Text("6e2f2a5e-3c7e-4c44-9a4e-1b2c3d4e5f80".into()),
                    worst(MAX_NAME),
                    Value::Text("HS512".into()),
                    Value::Text("\n".repeat(MAX_KEY_TEXT)),
                    Value::Null,
                    Value::Text(group),
                    Value::Int(i64::MAX),
                    Value::Int(i64::MAX),
                    Value::Int(i64::MAX),
                    Value::Int(i64::MAX),
                ])
            })
            .collect();
        let (_, answer) = credential_answer(&rows, i64::MAX).unwrap();
        let bytes = answer.to_string().len();
        assert_eq!(
            answer["consumer"]["groups"].as_array().unwrap().len(),
            groups
        );
        assert!(bytes <= LARGEST_ANSWER, "{bytes} bytes");
        assert!(
            bytes > LARGEST_ANSWER - 8 * 1024,
            "{bytes} bytes: tighten the bound"
        );
        println!("largest credential answer: {bytes} bytes");
    }
}
