//! Why a request failed, and how Kong's Admin API answers it: one enum, one place that
//! says the status, the body and the metric label (nothing is spelled twice).
//!
//! Bodies follow `kong/db/errors.lua` and `kong/api/endpoints.lua` (Kong 3.x): a schema
//! violation is `{"code":2,"name":"schema violation","message":"schema violation (username:
//! expected a string)","fields":{"username":"expected a string"}}`; two or more read
//! `"3 schema violations (a; b; c)"`, entity-level ones first, then fields in name order.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use crate::db::DbError;

/// Field-level and entity-level schema violations, collected before anything is written.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Violations {
    /// field name → message (a string, or an object for a nested field such as `consumer`).
    pub fields: BTreeMap<String, Value>,
    /// Kong's `@entity` messages: checks across fields.
    pub entity: Vec<String>,
}

impl Violations {
    pub fn field(&mut self, name: &str, message: impl Into<String>) {
        self.fields
            .entry(name.to_owned())
            .or_insert_with(|| Value::String(message.into()));
    }

    pub fn entity(&mut self, message: impl Into<String>) {
        self.entity.push(message.into());
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty() && self.entity.is_empty()
    }

    /// `Ok(())` when nothing is wrong, else the 400 that names every problem.
    pub fn check(self) -> Result<(), Failure> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(Failure::Schema(self))
        }
    }

    /// Kong's message: `schema violation (x)` or `N schema violations (x; y)`.
    pub fn message(&self) -> String {
        let mut parts: Vec<String> = self.entity.clone();
        for (name, value) in &self.fields {
            match value {
                Value::Object(sub) => {
                    for (key, value) in sub {
                        parts.push(format!("{name}.{key}: {}", plain(value)));
                    }
                }
                other => parts.push(format!("{name}: {}", plain(other))),
            }
        }
        match parts.as_slice() {
            [one] => format!("schema violation ({one})"),
            _ => format!("{} schema violations ({})", parts.len(), parts.join("; ")),
        }
    }

    fn body(&self) -> Value {
        let mut fields: Map<String, Value> = self
            .fields
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if !self.entity.is_empty() {
            fields.insert("@entity".to_owned(), json!(self.entity));
        }
        json!({
            "code": 2,
            "name": "schema violation",
            "message": self.message(),
            "fields": fields,
        })
    }
}

fn plain(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// Why a request did not succeed.
#[derive(Clone, Debug, PartialEq)]
pub enum Failure {
    /// 400: the input breaks the schema; nothing was written.
    Schema(Violations),
    /// 409: a unique field already holds this value (`fields`: the field and its value).
    Unique(BTreeMap<String, Value>),
    /// 409 `{"message":…}`: a bound of this service (revocations in force, groups or
    /// credentials of one consumer) would be exceeded; nothing was written.
    Limit(String),
    /// 400: a `consumer` reference to a consumer that does not exist.
    ForeignKey { consumer_id: String },
    /// 400: an explicit `id` that another entity already has.
    PrimaryKey(String),
    /// 400 Kong's `invalid primary key` (code 1): a path segment that must be a UUID
    /// (`/acls/{id}`, `/revocations/{id}`) is not one.
    InvalidPrimaryKey,
    /// 404 `{"message":"Not found"}`.
    NotFound,
    /// 400 Kong's `invalid options` (code 11): the option and why.
    InvalidOptions(&'static str, String),
    /// 400 Kong's `invalid unique <field>` (code 10): the field and why.
    InvalidUnique(&'static str, String),
    /// 400 `invalid size` (`size` not a number, or not 1 to 1000).
    InvalidSize(String),
    /// 400 `invalid offset`: the offset given, and why.
    InvalidOffset(String, &'static str),
    /// 400 with this message, e.g. `Cannot parse JSON body`.
    BadRequest(String),
    /// 401: no or a wrong `Kong-Admin-Token` (or data-plane token).
    Unauthorized,
    /// 403: a request a browser may have sent on its user's behalf (a listener without a
    /// token admits only loopback `Host`s and origins); the reason.
    Forbidden(&'static str),
    /// 405 `{"message":"Method not allowed"}`.
    MethodNotAllowed,
    /// 408: the body did not arrive within `--body-timeout-ms`.
    Timeout(std::time::Duration),
    /// 413: the body is larger than `--max-body-bytes`.
    TooLarge(usize),
    /// 415: the body is neither JSON nor form data.
    UnsupportedMediaType,
    /// 503: the database cannot be reached; nothing was written. The text says why.
    Unavailable(String),
    /// 500: a bug or a database in a state the service does not know; logged, not shown.
    Internal(String),
}

impl From<DbError> for Failure {
    fn from(e: DbError) -> Failure {
        match e {
            DbError::Unavailable(why) => Failure::Unavailable(why),
            // A constraint the caller did not translate: still a conflict, if unnamed.
            DbError::Unique(constraint) => {
                Failure::Unique(BTreeMap::from([(constraint, Value::Null)]))
            }
            // What the write referred to went away meanwhile: it is not there (any more).
            DbError::ForeignKey(_) => Failure::NotFound,
            DbError::Failed(why) => Failure::Internal(why),
            DbError::Aborted => Failure::Internal("transaction aborted".to_owned()),
        }
    }
}

impl Failure {
    /// A 400 naming one field.
    pub fn field(name: &str, message: impl Into<String>) -> Failure {
        let mut violations = Violations::default();
        violations.field(name, message);
        Failure::Schema(violations)
    }

    /// A 409 on one field holding `value`.
    pub fn unique(name: &str, value: impl Into<Value>) -> Failure {
        Failure::Unique(BTreeMap::from([(name.to_owned(), value.into())]))
    }

    pub fn status(&self) -> u16 {
        match self {
            Failure::Schema(_)
            | Failure::ForeignKey { .. }
            | Failure::PrimaryKey(_)
            | Failure::InvalidPrimaryKey
            | Failure::InvalidOptions(..)
            | Failure::InvalidUnique(..)
            | Failure::InvalidSize(_)
            | Failure::InvalidOffset(..)
            | Failure::BadRequest(_) => 400,
            Failure::Unauthorized => 401,
            Failure::Forbidden(_) => 403,
            Failure::NotFound => 404,
            Failure::MethodNotAllowed => 405,
            Failure::Unique(_) | Failure::Limit(_) => 409,
            Failure::Timeout(_) => 408,
            Failure::TooLarge(_) => 413,
            Failure::UnsupportedMediaType => 415,
            Failure::Internal(_) => 500,
            Failure::Unavailable(_) => 503,
        }
    }

    /// The label of `portcullis_admin_failures_total`.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Failure::Schema(_) => "schema_violation",
            Failure::Unique(_) => "unique_violation",
            Failure::Limit(_) => "limit",
            Failure::ForeignKey { .. } => "foreign_key_violation",
            Failure::PrimaryKey(_) => "primary_key_violation",
            Failure::InvalidPrimaryKey => "invalid_primary_key",
            Failure::InvalidOptions(..) => "invalid_options",
            Failure::InvalidUnique(..) => "invalid_unique",
            Failure::NotFound => "not_found",
            Failure::InvalidSize(_) => "invalid_size",
            Failure::InvalidOffset(..) => "invalid_offset",
            Failure::BadRequest(_) => "bad_request",
            Failure::Unauthorized => "unauthorized",
            Failure::Forbidden(_) => "forbidden",
            Failure::MethodNotAllowed => "method_not_allowed",
            Failure::Timeout(_) => "timeout",
            Failure::TooLarge(_) => "too_large",
            Failure::UnsupportedMediaType => "unsupported_media_type",
            Failure::Unavailable(_) => "database_unavailable",
            Failure::Internal(_) => "internal",
        }
    }

    /// The JSON body Kong answers with.
    pub fn body(&self) -> Value {
        match self {
            Failure::Schema(violations) => violations.body(),
            Failure::Unique(fields) => json!({
                "code": 5,
                "name": "unique constraint violation",
                "message": format!("UNIQUE violation detected on '{}'", lua_table(fields)),
                "fields": fields,
            }),
            Failure::ForeignKey { consumer_id } => {
                let key = BTreeMap::from([("id".to_owned(), json!(consumer_id))]);
                json!({
                    "code": 4,
                    "name": "foreign key violation",
                    "message": format!(
                        "the foreign key '{}' does not reference an existing 'consumers' entity.",
                        lua_table(&key)
                    ),
                    "fields": { "consumer": { "id": consumer_id } },
                })
            }
            Failure::PrimaryKey(id) => json!({
                "code": 3,
                "name": "primary key violation",
                "message": format!("primary key violation on key '{{id={id:?}}}'"),
                "fields": { "id": id },
            }),
            Failure::InvalidPrimaryKey => json!({
                "code": 1,
                "name": "invalid primary key",
                "message": "invalid primary key: '{id=\"expected a valid UUID\"}'",
                "fields": { "id": "expected a valid UUID" },
            }),
            Failure::InvalidOptions(option, why) => json!({
                "code": 11,
                "name": "invalid options",
                "message": format!("invalid option ({option}: {why})"),
                "options": { *option: why },
            }),
            Failure::InvalidUnique(field, why) => json!({
                "code": 10,
                "name": format!("invalid unique {field}"),
                "message": why,
            }),
            Failure::NotFound => json!({ "message": "Not found" }),
            Failure::InvalidSize(message) => {
                json!({ "code": 9, "name": "invalid size", "message": message })
            }
            Failure::InvalidOffset(offset, why) => json!({
                "code": 7,
                "name": "invalid offset",
                "message": format!("'{offset}' is not a valid offset: {why}"),
            }),
            Failure::BadRequest(message) | Failure::Limit(message) => json!({ "message": message }),
            Failure::Unauthorized => {
                json!({ "message": "Invalid credentials. Token or User credentials required" })
            }
            Failure::Forbidden(why) => json!({
                "message": format!("Forbidden: {why}; without a token this service answers only loopback clients that are not browsers on another site's behalf")
            }),
            Failure::MethodNotAllowed => json!({ "message": "Method not allowed" }),
            Failure::Timeout(limit) => json!({
                "message": format!("Request timeout: the body did not arrive within {} ms", limit.as_millis())
            }),
            Failure::TooLarge(limit) => json!({
                "message": format!("Request body too large: at most {limit} bytes")
            }),
            Failure::UnsupportedMediaType => json!({
                "message": "Unsupported Media Type: send application/json or application/x-www-form-urlencoded"
            }),
            Failure::Unavailable(why) => json!({
                "message": format!("Service unavailable: the database cannot be reached ({why}); nothing was written")
            }),
            Failure::Internal(_) => json!({ "message": "An unexpected error occurred" }),
        }
    }
}

/// A map as Penlight's `pretty.write(t, "")` prints it in Kong's messages:
/// `{custom_id="x",username="bob"}`, nested maps alike, keys in order.
pub fn lua_table(fields: &BTreeMap<String, Value>) -> String {
    let inner: Vec<String> = fields
        .iter()
        .map(|(key, value)| format!("{key}={}", lua_value(value)))
        .collect();
    format!("{{{}}}", inner.join(","))
}

fn lua_value(value: &Value) -> String {
    match value {
        Value::String(text) => format!("{text:?}"),
        Value::Null => "null".to_owned(),
        Value::Object(map) => lua_table(&map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_violation_reads_as_kong_writes_it() {
        let mut v = Violations::default();
        v.field("username", "expected a string");
        assert_eq!(
            Failure::Schema(v).body(),
            json!({
                "code": 2,
                "name": "schema violation",
                "message": "schema violation (username: expected a string)",
                "fields": { "username": "expected a string" },
            })
        );
    }

    #[test]
    fn several_violations_put_entity_checks_first() {
        let mut v = Violations::default();
        v.field("rsa_public_key", "required field missing");
        v.entity("failed conditional validation given value of field 'algorithm'");
        assert_eq!(
            v.message(),
            "2 schema violations (failed conditional validation given value of field 'algorithm'; rsa_public_key: required field missing)"
        );
        assert_eq!(
            v.body()["fields"],
            json!({
                "rsa_public_key": "required field missing",
                "@entity": ["failed conditional validation given value of field 'algorithm'"],
            })
        );
    }

    #[test]
    fn unique_violation_names_the_value() {
        assert_eq!(
            Failure::unique("username", "bob").body(),
            json!({
                "code": 5,
                "name": "unique constraint violation",
                "message": "UNIQUE violation detected on '{username=\"bob\"}'",
                "fields": { "username": "bob" },
            })
        );
    }

    #[test]
    fn statuses_are_kongs() {
        assert_eq!(Failure::NotFound.status(), 404);
        assert_eq!(Failure::NotFound.body(), json!({ "message": "Not found" }));
        assert_eq!(Failure::MethodNotAllowed.status(), 405);
        assert_eq!(Failure::UnsupportedMediaType.status(), 415);
        assert_eq!(Failure::unique("key", "k").status(), 409);
        assert_eq!(Failure::Unavailable("x".to_owned()).status(), 503);
    }
}
