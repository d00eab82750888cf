//! The data plane's reads: what a gateway needs for one credential key, and the
//! revocations in force. Each read is one snapshot, and carries the event `head` it was
//! read at: a gateway that has already applied a later event knows the answer is stale.

use serde_json::{json, Value as Json};

use crate::db::{DbError, Tx, Value};
use crate::events;

use super::acls;

/// `{"head":H,"consumer":{…,"groups":[…]},"credential":{…}}`, or `None` with the head
/// when no credential has this key.
pub fn credential(tx: &mut dyn Tx, key: &str) -> Result<(i64, Option<Json>), DbError> {
    let (head, _) = events::head(tx)?;
    let rows = tx.query(
        "SELECT c.id, c.username, c.custom_id, j.id, j.key, j.algorithm, j.secret, j.rsa_public_key
         FROM jwt_secrets j JOIN consumers c ON c.id = j.consumer_id WHERE j.key = $1",
        &[Value::from(key)],
    )?;
    let Some(row) = rows.first() else {
        return Ok((head, None));
    };
    let consumer_id = row.text(0)?;
    let algorithm = row.text(5)?;
    let groups = acls::groups(tx, &consumer_id)?;
    let mut credential = json!({
        "id": row.text(3)?,
        "key": row.text(4)?,
        "algorithm": algorithm,
    });
    if algorithm.starts_with("HS") {
        credential["secret"] = json!(row.opt_text(6)?);
    } else {
        credential["rsa_public_key"] = json!(row.opt_text(7)?);
    }
    Ok((
        head,
        Some(json!({
            "head": head,
            "consumer": {
                "id": consumer_id,
                "username": row.opt_text(1)?,
                "custom_id": row.opt_text(2)?,
                "groups": groups,
            },
            "credential": credential,
        })),
    ))
}

/// The revocations in force at `now`: jtis with their `exp`, and the `iat` cutoffs of
/// consumers and credentials (a credential's with its key, as tokens name it).
pub fn revocations(tx: &mut dyn Tx, now: i64) -> Result<Json, DbError> {
    let (head, _) = events::head(tx)?;
    let rows = tx.query(
        "SELECT r.jti, r.consumer_id, r.credential_id, j.key, r.issued_before, r.expires_at
         FROM revocations r LEFT JOIN jwt_secrets j ON j.id = r.credential_id
         WHERE r.expires_at IS NULL OR r.expires_at > $1
         ORDER BY r.id",
        &[Value::Int(now)],
    )?;
    let (mut jtis, mut consumers, mut credentials) = (Vec::new(), Vec::new(), Vec::new());
    for row in &rows {
        let expires_at = row.opt_int(5)?;
        if let Some(jti) = row.opt_text(0)? {
            jtis.push(json!({ "jti": jti, "exp": expires_at }));
        } else if let Some(consumer) = row.opt_text(1)? {
            consumers.push(json!({
                "id": consumer,
                "issued_before": row.opt_int(4)?,
                "expires_at": expires_at,
            }));
        } else if let Some(credential) = row.opt_text(2)? {
            credentials.push(json!({
                "id": credential,
                "key": row.opt_text(3)?,
                "issued_before": row.opt_int(4)?,
                "expires_at": expires_at,
            }));
        }
    }
    Ok(json!({
        "head": head,
        "jtis": jtis,
        "consumers": consumers,
        "credentials": credentials,
    }))
}
