//! The schema, as numbered migrations applied in order at start, each in the transaction
//! that records it in `schema_migrations`. Replicas starting together on one PostgreSQL
//! take an advisory lock first, so exactly one applies each migration. A database whose
//! schema is newer than this binary is refused: an old binary must not write to it.
//!
//! Tables, in both dialects (text and 64-bit integers only; times in Unix seconds, event
//! times in milliseconds):
//!
//! | table | holds |
//! |---|---|
//! | `meta` | one row: `head`, the last event id, `pruned_through`, the last pruned one, and `epoch`, a UUID naming this database's feed |
//! | `consumers` | Kong's consumers |
//! | `jwt_secrets` | Kong's JWT credentials, each of one consumer |
//! | `acls` | Kong's ACL groups, each of one consumer |
//! | `revocations` | a `jti` (global, or of one credential) until its `exp`, or a consumer's or credential's `iat` cutoff |
//! | `events` | the change log the gateways follow |

use super::{run, Access, Database, DbError, Dialect, Tx, Value};

/// One step of the schema.
pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    /// Statements for both dialects, separated by `;` at the end of a line.
    pub sql: &'static str,
    /// SQLite's statements instead, where the dialects differ (SQLite cannot drop a
    /// constraint: it rebuilds the table).
    pub sqlite: Option<&'static str>,
}

/// Every migration, oldest first. Append; never edit one that has shipped.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "consumers, jwt_secrets, acls, revocations, events",
        sqlite: None,
        sql: "
CREATE TABLE meta (
  id BIGINT PRIMARY KEY,
  head BIGINT NOT NULL,
  pruned_through BIGINT NOT NULL
);
INSERT INTO meta (id, head, pruned_through) VALUES (1, 0, 0);
CREATE TABLE consumers (
  id TEXT PRIMARY KEY,
  created_at BIGINT NOT NULL,
  updated_at BIGINT NOT NULL,
  username TEXT,
  custom_id TEXT,
  tags TEXT,
  CONSTRAINT consumers_username_key UNIQUE (username),
  CONSTRAINT consumers_custom_id_key UNIQUE (custom_id)
);
CREATE TABLE jwt_secrets (
  id TEXT PRIMARY KEY,
  created_at BIGINT NOT NULL,
  consumer_id TEXT NOT NULL REFERENCES consumers (id) ON DELETE CASCADE,
  key TEXT NOT NULL,
  secret TEXT,
  rsa_public_key TEXT,
  algorithm TEXT NOT NULL,
  tags TEXT,
  CONSTRAINT jwt_secrets_key_key UNIQUE (key)
);
CREATE INDEX jwt_secrets_consumer_idx ON jwt_secrets (consumer_id);
CREATE TABLE acls (
  id TEXT PRIMARY KEY,
  created_at BIGINT NOT NULL,
  consumer_id TEXT NOT NULL REFERENCES consumers (id) ON DELETE CASCADE,
  grp TEXT NOT NULL,
  tags TEXT,
  CONSTRAINT acls_consumer_group_key UNIQUE (consumer_id, grp)
);
CREATE TABLE revocations (
  id TEXT PRIMARY KEY,
  created_at BIGINT NOT NULL,
  jti TEXT,
  consumer_id TEXT REFERENCES consumers (id) ON DELETE CASCADE,
  credential_id TEXT REFERENCES jwt_secrets (id) ON DELETE CASCADE,
  issued_before BIGINT,
  expires_at BIGINT,
  tags TEXT,
  CONSTRAINT revocations_jti_key UNIQUE (jti),
  CONSTRAINT revocations_consumer_key UNIQUE (consumer_id),
  CONSTRAINT revocations_credential_key UNIQUE (credential_id)
);
CREATE INDEX revocations_expires_idx ON revocations (expires_at);
CREATE TABLE events (
  id BIGINT PRIMARY KEY,
  at_ms BIGINT NOT NULL,
  entity TEXT NOT NULL,
  entity_id TEXT NOT NULL,
  key TEXT,
  operation TEXT NOT NULL,
  consumer_id TEXT,
  credentials TEXT NOT NULL
);
CREATE INDEX events_at_idx ON events (at_ms);
",
    },
    Migration {
        version: 2,
        name: "meta.epoch: the feed's identity",
        sql: "
ALTER TABLE meta ADD COLUMN epoch TEXT;
",
        sqlite: None,
    },
    Migration {
        version: 3,
        name: "revocations: a jti unique per credential, or globally",
        sql: "
ALTER TABLE revocations DROP CONSTRAINT revocations_jti_key;
ALTER TABLE revocations DROP CONSTRAINT revocations_credential_key;
CREATE UNIQUE INDEX revocations_jti_key ON revocations (jti) WHERE jti IS NOT NULL AND credential_id IS NULL;
CREATE UNIQUE INDEX revocations_credential_jti_key ON revocations (credential_id, jti) WHERE jti IS NOT NULL;
CREATE UNIQUE INDEX revocations_credential_key ON revocations (credential_id) WHERE jti IS NULL;
",
        sqlite: Some("
CREATE TABLE revocations_v3 (
  id TEXT PRIMARY KEY,
  created_at BIGINT NOT NULL,
  jti TEXT,
  consumer_id TEXT REFERENCES consumers (id) ON DELETE CASCADE,
  credential_id TEXT REFERENCES jwt_secrets (id) ON DELETE CASCADE,
  issued_before BIGINT,
  expires_at BIGINT,
  tags TEXT,
  CONSTRAINT revocations_consumer_key UNIQUE (consumer_id)
);
INSERT INTO revocations_v3 SELECT id, created_at, jti, consumer_id, credential_id, issued_before, expires_at, tags FROM revocations;
DROP TABLE revocations;
ALTER TABLE revocations_v3 RENAME TO revocations;
CREATE INDEX revocations_expires_idx ON revocations (expires_at);
CREATE UNIQUE INDEX revocations_jti_key ON revocations (jti) WHERE jti IS NOT NULL AND credential_id IS NULL;
CREATE UNIQUE INDEX revocations_credential_jti_key ON revocations (credential_id, jti) WHERE jti IS NOT NULL;
CREATE UNIQUE INDEX revocations_credential_key ON revocations (credential_id) WHERE jti IS NULL;
"),
    },
];

/// The newest schema version this binary knows.
pub fn latest() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// Brings the schema up to [`latest`]; returns the versions it applied. Refuses a
/// database whose schema is newer than this binary.
pub fn apply(db: &dyn Database) -> Result<Vec<i64>, String> {
    apply_these(db, MIGRATIONS)
}

/// Applies those of `migrations` not yet applied (all of [`MIGRATIONS`], or its first few
/// in a test that upgrades an old schema).
fn apply_these(db: &dyn Database, migrations: &[Migration]) -> Result<Vec<i64>, String> {
    let dialect = db.dialect();
    run(db, Access::Maintenance, |tx: &mut dyn Tx| -> Result<Vec<i64>, DbError> {
        if dialect == Dialect::Postgres {
            // Any constant: replicas starting together queue here, one migrates.
            tx.execute("SELECT pg_advisory_xact_lock(7303214420011)", &[])?;
        }
        tx.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
               version BIGINT PRIMARY KEY,
               name TEXT NOT NULL,
               applied_at BIGINT NOT NULL
             )",
            &[],
        )?;
        let current = tx
            .query("SELECT MAX(version) FROM schema_migrations", &[])?
            .first()
            .map(|row| row.opt_int(0))
            .transpose()?
            .flatten()
            .unwrap_or(0);
        if current > latest() {
            return Err(DbError::Failed(format!(
                "the database's schema is version {current}, newer than this binary's {}: run a newer portcullis-admin",
                latest()
            )));
        }
        let mut applied = Vec::new();
        for migration in migrations.iter().filter(|m| m.version > current) {
            let sql = match (dialect, migration.sqlite) {
                (Dialect::Sqlite, Some(sqlite)) => sqlite,
                _ => migration.sql,
            };
            for statement in statements(sql) {
                tx.execute(statement, &[])?;
            }
            tx.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
                &[
                    Value::Int(migration.version),
                    Value::from(migration.name),
                    Value::Int(crate::clock::now_secs()),
                ],
            )?;
            applied.push(migration.version);
        }
        // A database gets its epoch once, on the migration that adds the column: a
        // gateway that sees another one follows another (or a restored) database.
        if applied.contains(&2) {
            let epoch = crate::ids::new_uuid().map_err(DbError::Failed)?;
            tx.execute(
                "UPDATE meta SET epoch = $1 WHERE id = 1 AND epoch IS NULL",
                &[Value::from(epoch)],
            )?;
        }
        Ok(applied)
    })
    .map_err(|e| format!("migrating {}: {e}", db.describe()))
}

/// The statements of a migration: split at `;` ending a line.
fn statements(sql: &str) -> impl Iterator<Item = &str> {
    sql.split(";\n").map(str::trim).filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_increase_from_one() {
        for (i, migration) in MIGRATIONS.iter().enumerate() {
            assert_eq!(migration.version, i as i64 + 1, "{}", migration.name);
        }
    }

    /// A version-1 database with revocations of every kind is upgraded in place: SQLite
    /// rebuilds the table (it cannot drop a constraint) and keeps every row.
    #[test]
    fn upgrades_a_version_1_sqlite_database_keeping_its_revocations() {
        let dir =
            std::env::temp_dir().join(format!("portcullis-admin-migrate-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("v1.db");
        let _ = std::fs::remove_file(&path);
        let db =
            crate::db::sqlite::Sqlite::open(&path, &crate::db::PoolOptions::default()).unwrap();
        assert_eq!(apply_these(&db, &MIGRATIONS[..1]), Ok(vec![1]));
        run(&db, Access::Write, |tx: &mut dyn Tx| -> Result<(), DbError> {
            for sql in [
                "INSERT INTO consumers (id, created_at, updated_at, username) VALUES ('c', 1, 1, 'bob')",
                "INSERT INTO jwt_secrets (id, created_at, consumer_id, key, algorithm) VALUES ('j', 1, 'c', 'k', 'HS256')",
                "INSERT INTO revocations (id, created_at, jti, expires_at) VALUES ('r1', 1, 't', 9)",
                "INSERT INTO revocations (id, created_at, consumer_id, issued_before) VALUES ('r2', 1, 'c', 5)",
                "INSERT INTO revocations (id, created_at, credential_id, issued_before) VALUES ('r3', 1, 'j', 5)",
            ] {
                tx.execute(sql, &[])?;
            }
            Ok(())
        })
        .unwrap();
        assert_eq!(apply(&db), Ok(vec![2, 3]));
        let count = |sql: &str| {
            run(&db, Access::Read, |tx: &mut dyn Tx| tx.query(sql, &[]))
                .unwrap()
                .len()
        };
        assert_eq!(count("SELECT id FROM revocations"), 3);
        assert_eq!(count("SELECT epoch FROM meta WHERE epoch IS NOT NULL"), 1);
        // The credential's jti now fits beside the global one and the cutoff.
        let scoped = run(&db, Access::Write, |tx: &mut dyn Tx| {
            tx.execute(
                "INSERT INTO revocations (id, created_at, jti, credential_id, expires_at) VALUES ('r4', 1, 't', 'j', 9)",
                &[],
            )
        });
        assert_eq!(scoped, Ok(1));
        let twice = run(&db, Access::Write, |tx: &mut dyn Tx| {
            tx.execute(
                "INSERT INTO revocations (id, created_at, jti, expires_at) VALUES ('r5', 1, 't', 9)",
                &[],
            )
        });
        assert!(matches!(twice, Err(DbError::Unique(_))), "{twice:?}");
        drop(db);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn splits_statements_at_line_ends() {
        let parts: Vec<&str> =
            statements("CREATE TABLE a (x TEXT);\nINSERT INTO a VALUES ('b;c');\n").collect();
        assert_eq!(
            parts,
            ["CREATE TABLE a (x TEXT)", "INSERT INTO a VALUES ('b;c')"]
        );
    }
}
