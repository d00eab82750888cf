//! `/consumers/{c}/jwt` and `/jwts`: Kong's `jwt_secrets`. Every key is checked at write
//! time with the jwt filter's own parser (`portcullis_core::jwt::PreparedKey`), so what
//! the Admin API accepts is exactly what a gateway can verify with.

use portcullis_core::jose::crypto::Family;
use portcullis_core::jose::{Algorithm, PreparedKey};

use crate::db::{DbError, Tx, Value};
use crate::events::{Draft, Operation};
use crate::failure::{Failure, Violations};
use crate::ids::{is_uuid, random_hex};
use crate::input::{Field, Input, Reader};
use crate::model::{tags_to, Consumer, JwtSecret, JWT_COLUMNS};

use super::owned::{self, Owned};
use super::{
    check_room, exists, new_id, page, Changes, Page, PageRequest, MAX_CREDENTIALS, MAX_NAME,
};

const FIELDS: &[&str] = &[
    "id",
    "created_at",
    "consumer",
    "key",
    "secret",
    "rsa_public_key",
    "algorithm",
    "tags",
];

/// Kong's list, in Kong's order (`kong/plugins/jwt/daos.lua`).
pub const KONG_ALGORITHMS: &[&str] = &[
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256",
    "PS384", "PS512", "EdDSA",
];

/// The longest secret or PEM accepted.
pub const MAX_KEY_TEXT: usize = 16 * 1024;
const CONDITIONAL: &str = "failed conditional validation given value of field 'algorithm'";

struct Fields {
    id: Field<String>,
    created_at: Field<i64>,
    consumer: Field<String>,
    key: Field<String>,
    secret: Field<String>,
    rsa_public_key: Field<String>,
    algorithm: Field<String>,
    tags: Field<Vec<String>>,
}

fn read(input: &Input) -> (Fields, Violations) {
    let mut reader = Reader::new(input, FIELDS);
    let fields = Fields {
        id: reader.uuid("id"),
        created_at: reader.integer("created_at", 0, i64::from(i32::MAX)),
        consumer: reader.consumer(),
        key: reader.string("key", MAX_NAME),
        secret: reader.text("secret", MAX_KEY_TEXT),
        rsa_public_key: reader.text("rsa_public_key", MAX_KEY_TEXT),
        algorithm: reader.string("algorithm", 16),
        tags: reader.tags(),
    };
    (fields, reader.violations)
}

/// The credential a path segment names: a UUID is an `id`, anything else a `key`.
pub fn find(tx: &mut dyn Tx, key: &str) -> Result<Option<JwtSecret>, DbError> {
    let sql = if is_uuid(key) {
        format!("SELECT {JWT_COLUMNS} FROM jwt_secrets WHERE id = $1")
    } else {
        format!("SELECT {JWT_COLUMNS} FROM jwt_secrets WHERE key = $1")
    };
    let value = if is_uuid(key) {
        key.to_ascii_lowercase()
    } else {
        key.to_owned()
    };
    tx.query(&sql, &[Value::from(value)])?
        .first()
        .map(JwtSecret::from_row)
        .transpose()
}

/// The credential whose `key` is `key` (never by id, whatever its shape).
pub fn by_key(tx: &mut dyn Tx, key: &str) -> Result<Option<JwtSecret>, DbError> {
    tx.query(
        &format!("SELECT {JWT_COLUMNS} FROM jwt_secrets WHERE key = $1"),
        &[Value::from(key)],
    )?
    .first()
    .map(JwtSecret::from_row)
    .transpose()
}

/// The credential `key` names, if it belongs to `consumer`.
pub fn find_of(
    tx: &mut dyn Tx,
    consumer: &Consumer,
    key: &str,
) -> Result<Option<JwtSecret>, DbError> {
    Ok(find(tx, key)?.filter(|jwt| jwt.consumer_id == consumer.id))
}

/// GET /jwts, or a consumer's with `consumer` set.
pub fn list(
    tx: &mut dyn Tx,
    consumer: Option<&Consumer>,
    request: &PageRequest,
) -> Result<Page, Failure> {
    let (sql, params) = match consumer {
        Some(c) => (
            format!("SELECT {JWT_COLUMNS} FROM jwt_secrets WHERE consumer_id = $1 AND id > $2"),
            vec![Value::from(&c.id)],
        ),
        None => (
            format!("SELECT {JWT_COLUMNS} FROM jwt_secrets WHERE id > $1"),
            Vec::new(),
        ),
    };
    page(
        tx,
        &sql,
        params,
        request,
        JwtSecret::from_row,
        JwtSecret::to_json,
        |j| &j.id,
    )
}

/// POST /consumers/{c}/jwt (`consumer` given: the path's, whatever the body says) or
/// POST /jwts (`consumer` from the body, required).
pub fn create(
    tx: &mut dyn Tx,
    changes: &mut Changes,
    consumer: Option<&Consumer>,
    input: &Input,
) -> Result<JwtSecret, Failure> {
    let (fields, mut violations) = read(input);
    let consumer_id = owner(consumer, &fields.consumer, &mut violations);
    let jwt = build(fields, None, consumer_id, &mut violations)?;
    owned::create(tx, changes, jwt, violations)
}

/// PATCH …/jwt/{id or key}: `None` if there is no such credential (of that consumer).
pub fn update(
    tx: &mut dyn Tx,
    changes: &mut Changes,
    consumer: Option<&Consumer>,
    key: &str,
    input: &Input,
) -> Result<Option<JwtSecret>, Failure> {
    let (fields, mut violations) = read(input);
    let current = match consumer {
        Some(c) => find_of(tx, c, key)?,
        None => find(tx, key)?,
    };
    let Some(current) = current else {
        violations.check()?;
        return Ok(None);
    };
    if let Field::Set(id) = &fields.id {
        if *id != current.id {
            violations.field("id", "immutable field cannot be updated");
        }
    }
    let consumer_id = match &fields.consumer {
        Field::Set(id) => Some(id.clone()),
        Field::Null => {
            violations.field("consumer", "required field missing");
            None
        }
        Field::Absent => Some(current.consumer_id.clone()),
    };
    let jwt = build(fields, Some(&current), consumer_id, &mut violations)?;
    owned::update(tx, changes, &current, jwt, violations).map(Some)
}

/// PUT …/jwt/{id or key}: creates or replaces; a UUID in the path is the `id`, anything
/// else the `key` (unless the body gives one).
pub fn upsert(
    tx: &mut dyn Tx,
    changes: &mut Changes,
    consumer: Option<&Consumer>,
    key: &str,
    input: &Input,
) -> Result<JwtSecret, Failure> {
    let (mut fields, violations) = read(input);
    // Kong's nested PUT (kong/plugins/jwt/api.lua) sets the path's consumer and upserts
    // by key without checking the owner: another consumer's credential moves to this one.
    let current = find(tx, key)?;
    // Kong's upsert_by_key: the key in the path wins over the body's.
    if !is_uuid(key) {
        fields.key = Field::Set(key.to_owned());
    }
    owned::upsert(tx, changes, key, current, violations, |id, violations| {
        let consumer_id = owner(consumer, &fields.consumer, violations);
        fields.id = Field::Set(id);
        build(fields, None, consumer_id, violations)
    })
}

/// DELETE …/jwt/{id or key}. `Ok(false)` if there was no such credential.
pub fn delete(
    tx: &mut dyn Tx,
    changes: &mut Changes,
    consumer: Option<&Consumer>,
    key: &str,
) -> Result<bool, Failure> {
    let found = match consumer {
        Some(c) => find_of(tx, c, key)?,
        None => find(tx, key)?,
    };
    let Some(jwt) = found else {
        return Ok(false);
    };
    for row in &tx.query(
        "SELECT id FROM revocations WHERE credential_id = $1",
        &[Value::from(&jwt.id)],
    )? {
        changes.push(Draft {
            entity: "revocations",
            entity_id: row.text(0)?,
            key: Some(jwt.id.clone()),
            operation: Operation::Delete,
            consumer_id: Some(jwt.consumer_id.clone()),
            credentials: vec![jwt.key.clone()],
        });
    }
    tx.execute(
        "DELETE FROM revocations WHERE credential_id = $1",
        &[Value::from(&jwt.id)],
    )?;
    tx.execute(
        "DELETE FROM jwt_secrets WHERE id = $1",
        &[Value::from(&jwt.id)],
    )?;
    changes.push(event(&jwt, Operation::Delete, vec![jwt.key.clone()]));
    Ok(true)
}

/// Whose credential this is: the path's consumer, else the body's (required).
fn owner(
    consumer: Option<&Consumer>,
    field: &Field<String>,
    violations: &mut Violations,
) -> Option<String> {
    match (consumer, field) {
        (Some(c), _) => Some(c.id.clone()),
        (None, Field::Set(id)) => Some(id.clone()),
        (None, _) => {
            if !violations.fields.contains_key("consumer") {
                violations.field("consumer", "required field missing");
            }
            None
        }
    }
}

/// The credential the fields describe, over `current` for a PATCH. Every check that needs
/// no database: the algorithm, the secret's strength, the public key.
fn build(
    fields: Fields,
    current: Option<&JwtSecret>,
    consumer_id: Option<String>,
    violations: &mut Violations,
) -> Result<JwtSecret, Failure> {
    let algorithm = fields
        .algorithm
        .apply(current.map(|c| c.algorithm.clone()))
        .unwrap_or_else(|| "HS256".to_owned());
    let parsed = if KONG_ALGORITHMS.contains(&algorithm.as_str()) {
        let parsed = Algorithm::from_name(&algorithm);
        if parsed.is_none() {
            violations.field(
                "algorithm",
                format!("{algorithm} is not supported by the Portcullis jwt filter"),
            );
        }
        parsed
    } else {
        if !violations.fields.contains_key("algorithm") {
            violations.field(
                "algorithm",
                format!("expected one of: {}", KONG_ALGORITHMS.join(", ")),
            );
        }
        None
    };
    let key = match fields.key.apply(current.map(|c| c.key.clone())) {
        Some(key) => key,
        None => random_hex(32).map_err(Failure::Internal)?,
    };
    let mut secret = fields.secret.apply(current.and_then(|c| c.secret.clone()));
    let rsa_public_key = fields
        .rsa_public_key
        .apply(current.and_then(|c| c.rsa_public_key.clone()));
    if let Some(alg) = parsed {
        if alg.family() == Family::Hmac {
            match &secret {
                Some(given) => {
                    if let Err(e) = PreparedKey::hmac(alg, given.as_bytes()) {
                        violations.field("secret", format!("too weak: {e}"));
                    }
                }
                // Generated: as many random bytes as the hash is long (Kong's 32 for HS256).
                None => {
                    secret = Some(random_hex(alg.hash_len().max(32)).map_err(Failure::Internal)?)
                }
            }
        } else {
            match &rsa_public_key {
                None => {
                    if !violations.fields.contains_key("rsa_public_key") {
                        violations.field("rsa_public_key", "required field missing");
                    }
                    violations.entity(CONDITIONAL);
                }
                Some(pem) => {
                    if let Err(e) = PreparedKey::from_pem(alg, pem) {
                        violations.field("rsa_public_key", format!("invalid key: {e}"));
                        violations.entity(CONDITIONAL);
                    }
                }
            }
            if secret.is_none() {
                // Kong generates a secret for every credential; unused by these algorithms.
                secret = Some(random_hex(32).map_err(Failure::Internal)?);
            }
        }
    }
    Ok(JwtSecret {
        id: match (fields.id, current) {
            (Field::Set(id), None) => id,
            (_, Some(current)) => current.id.clone(),
            _ => new_id()?,
        },
        created_at: fields
            .created_at
            .apply(current.map(|c| c.created_at))
            .unwrap_or_else(crate::clock::now_secs),
        consumer_id: consumer_id.unwrap_or_default(),
        key,
        secret,
        rsa_public_key,
        algorithm,
        tags: fields.tags.apply(current.and_then(|c| c.tags.clone())),
    })
}

fn check_unique(tx: &mut dyn Tx, jwt: &JwtSecret) -> Result<(), Failure> {
    if exists(
        tx,
        "SELECT id FROM jwt_secrets WHERE key = $1 AND id <> $2",
        &[Value::from(&jwt.key), Value::from(&jwt.id)],
    )? {
        return Err(Failure::unique("key", jwt.key.as_str()));
    }
    Ok(())
}

fn conflict(e: DbError, jwt: &JwtSecret) -> Failure {
    match e {
        // SQLite names the columns, PostgreSQL the constraint (not `jwt_secrets_pkey`).
        DbError::Unique(constraint)
            if constraint == "jwt_secrets.key" || constraint == "jwt_secrets_key_key" =>
        {
            Failure::unique("key", jwt.key.as_str())
        }
        DbError::Unique(_) => Failure::PrimaryKey(jwt.id.clone()),
        DbError::ForeignKey(_) => Failure::ForeignKey {
            consumer_id: jwt.consumer_id.clone(),
        },
        other => Failure::from(other),
    }
}

fn params(jwt: &JwtSecret) -> Vec<Value> {
    vec![
        Value::from(&jwt.id),
        Value::Int(jwt.created_at),
        Value::from(&jwt.consumer_id),
        Value::from(&jwt.key),
        Value::from(jwt.secret.clone()),
        Value::from(jwt.rsa_public_key.clone()),
        Value::from(&jwt.algorithm),
        Value::from(tags_to(&jwt.tags)),
    ]
}

fn insert(tx: &mut dyn Tx, changes: &mut Changes, jwt: &JwtSecret) -> Result<(), Failure> {
    check_unique(tx, jwt)?;
    check_room(
        tx,
        "jwt_secrets",
        &jwt.consumer_id,
        MAX_CREDENTIALS,
        "credentials",
    )?;
    tx.execute(
        "INSERT INTO jwt_secrets (id, created_at, consumer_id, key, secret, rsa_public_key, algorithm, tags)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        &params(jwt),
    )
    .map_err(|e| conflict(e, jwt))?;
    changes.push(event(jwt, Operation::Create, vec![jwt.key.clone()]));
    Ok(())
}

fn replace(
    tx: &mut dyn Tx,
    changes: &mut Changes,
    old: &JwtSecret,
    jwt: &JwtSecret,
) -> Result<(), Failure> {
    check_unique(tx, jwt)?;
    if old.consumer_id != jwt.consumer_id {
        check_room(
            tx,
            "jwt_secrets",
            &jwt.consumer_id,
            MAX_CREDENTIALS,
            "credentials",
        )?;
    }
    tx.execute(
        "UPDATE jwt_secrets SET created_at = $2, consumer_id = $3, key = $4, secret = $5,
           rsa_public_key = $6, algorithm = $7, tags = $8
         WHERE id = $1",
        &params(jwt),
    )
    .map_err(|e| conflict(e, jwt))?;
    let mut keys = vec![old.key.clone()];
    if jwt.key != old.key {
        keys.push(jwt.key.clone());
    }
    changes.push(event(jwt, Operation::Update, keys));
    Ok(())
}

impl Owned for JwtSecret {
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
    fn by_id(tx: &mut dyn Tx, id: &str) -> Result<Option<JwtSecret>, DbError> {
        find(tx, id)
    }
    fn insert(&self, tx: &mut dyn Tx, changes: &mut Changes) -> Result<(), Failure> {
        insert(tx, changes, self)
    }
    fn replace(
        &self,
        tx: &mut dyn Tx,
        changes: &mut Changes,
        old: &JwtSecret,
    ) -> Result<(), Failure> {
        replace(tx, changes, old, self)
    }
}

fn event(jwt: &JwtSecret, operation: Operation, credentials: Vec<String>) -> Draft {
    Draft {
        entity: "jwt_secrets",
        entity_id: jwt.id.clone(),
        key: Some(jwt.key.clone()),
        operation,
        consumer_id: Some(jwt.consumer_id.clone()),
        credentials,
    }
}
