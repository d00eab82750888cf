//! The four entities as stored and as the Admin API shows them (Kong 3.x field names; the
//! answer always carries every field, `null` where unset, as Kong's `nulls = true`).

use serde_json::{json, Value as Json};

use crate::db::{DbError, Row};

/// Kong's consumer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Consumer {
    pub id: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub username: Option<String>,
    pub custom_id: Option<String>,
    pub tags: Option<Vec<String>>,
}

/// The columns [`Consumer::from_row`] reads, in order.
pub const CONSUMER_COLUMNS: &str = "id, created_at, updated_at, username, custom_id, tags";

impl Consumer {
    pub fn from_row(row: &Row) -> Result<Consumer, DbError> {
        Ok(Consumer {
            id: row.text(0)?,
            created_at: row.int(1)?,
            updated_at: row.int(2)?,
            username: row.opt_text(3)?,
            custom_id: row.opt_text(4)?,
            tags: tags_from(row.opt_text(5)?)?,
        })
    }

    pub fn to_json(&self) -> Json {
        json!({
            "id": self.id,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "username": self.username,
            "custom_id": self.custom_id,
            "tags": self.tags,
        })
    }

    /// What the event log and the log lines call it: the username, else the custom_id.
    pub fn name(&self) -> &str {
        self.username
            .as_deref()
            .or(self.custom_id.as_deref())
            .unwrap_or(&self.id)
    }
}

/// Kong's `jwt_secrets` row: one JWT credential of one consumer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JwtSecret {
    pub id: String,
    pub created_at: i64,
    pub consumer_id: String,
    pub key: String,
    pub secret: Option<String>,
    pub rsa_public_key: Option<String>,
    pub algorithm: String,
    pub tags: Option<Vec<String>>,
}

/// The columns [`JwtSecret::from_row`] reads, in order.
pub const JWT_COLUMNS: &str =
    "id, created_at, consumer_id, key, secret, rsa_public_key, algorithm, tags";

impl JwtSecret {
    pub fn from_row(row: &Row) -> Result<JwtSecret, DbError> {
        Ok(JwtSecret {
            id: row.text(0)?,
            created_at: row.int(1)?,
            consumer_id: row.text(2)?,
            key: row.text(3)?,
            secret: row.opt_text(4)?,
            rsa_public_key: row.opt_text(5)?,
            algorithm: row.text(6)?,
            tags: tags_from(row.opt_text(7)?)?,
        })
    }

    /// As Kong answers: the secret included (the Admin API is where it is read back).
    pub fn to_json(&self) -> Json {
        json!({
            "id": self.id,
            "created_at": self.created_at,
            "consumer": { "id": self.consumer_id },
            "key": self.key,
            "secret": self.secret,
            "rsa_public_key": self.rsa_public_key,
            "algorithm": self.algorithm,
            "tags": self.tags,
        })
    }
}

/// Kong's `acls` row: one group of one consumer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acl {
    pub id: String,
    pub created_at: i64,
    pub consumer_id: String,
    pub group: String,
    pub tags: Option<Vec<String>>,
}

/// The columns [`Acl::from_row`] reads, in order.
pub const ACL_COLUMNS: &str = "id, created_at, consumer_id, grp, tags";

impl Acl {
    pub fn from_row(row: &Row) -> Result<Acl, DbError> {
        Ok(Acl {
            id: row.text(0)?,
            created_at: row.int(1)?,
            consumer_id: row.text(2)?,
            group: row.text(3)?,
            tags: tags_from(row.opt_text(4)?)?,
        })
    }

    pub fn to_json(&self) -> Json {
        json!({
            "id": self.id,
            "created_at": self.created_at,
            "consumer": { "id": self.consumer_id },
            "group": self.group,
            "tags": self.tags,
        })
    }
}

/// A revocation: one token by `jti` until `expires_at` (its `exp`), or every token of a
/// consumer or of a credential issued before `issued_before`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Revocation {
    pub id: String,
    pub created_at: i64,
    pub jti: Option<String>,
    pub consumer_id: Option<String>,
    pub credential_id: Option<String>,
    pub issued_before: Option<i64>,
    pub expires_at: Option<i64>,
    pub tags: Option<Vec<String>>,
}

/// The columns [`Revocation::from_row`] reads, in order.
pub const REVOCATION_COLUMNS: &str =
    "id, created_at, jti, consumer_id, credential_id, issued_before, expires_at, tags";

impl Revocation {
    pub fn from_row(row: &Row) -> Result<Revocation, DbError> {
        Ok(Revocation {
            id: row.text(0)?,
            created_at: row.int(1)?,
            jti: row.opt_text(2)?,
            consumer_id: row.opt_text(3)?,
            credential_id: row.opt_text(4)?,
            issued_before: row.opt_int(5)?,
            expires_at: row.opt_int(6)?,
            tags: tags_from(row.opt_text(7)?)?,
        })
    }

    pub fn to_json(&self) -> Json {
        json!({
            "id": self.id,
            "created_at": self.created_at,
            "jti": self.jti,
            "consumer": self.consumer_id.as_ref().map(|id| json!({ "id": id })),
            "credential": self.credential_id.as_ref().map(|id| json!({ "id": id })),
            "issued_before": self.issued_before,
            "expires_at": self.expires_at,
            "tags": self.tags,
        })
    }
}

/// Tags as stored: a JSON array in a text column, or NULL.
pub fn tags_to(tags: &Option<Vec<String>>) -> Option<String> {
    tags.as_ref()
        .map(|tags| serde_json::to_string(tags).unwrap_or_else(|_| "[]".to_owned()))
}

fn tags_from(text: Option<String>) -> Result<Option<Vec<String>>, DbError> {
    text.map(|text| {
        serde_json::from_str(&text).map_err(|e| DbError::Failed(format!("stored tags: {e}")))
    })
    .transpose()
}
