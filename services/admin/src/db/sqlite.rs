//! SQLite, the embedded default: one file, WAL mode (readers never wait for the writer),
//! writes serialised by `BEGIN IMMEDIATE`, foreign keys on, a busy timeout instead of
//! immediate `SQLITE_BUSY`. A small pool of connections is reused across requests.

use std::path::{Path, PathBuf};

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, ErrorCode, OpenFlags};

use super::pool::{Pool, Pooled};
use super::{numbered_for_sqlite, Access, Database, DbError, Dialect, PoolOptions, Row, Tx, Value};

/// The SQLite backend.
pub struct Sqlite {
    path: PathBuf,
    options: PoolOptions,
    pool: Pool<Connection>,
}

/// A connection to a file: nothing closes it under us.
impl Pooled for Connection {
    fn is_closed(&self) -> bool {
        false
    }
}

impl Sqlite {
    /// Opens (creating if need be) the database file at `path`, checking now that it can.
    pub fn open(path: &Path, options: &PoolOptions) -> Result<Sqlite, String> {
        let sqlite = Sqlite {
            path: path.to_owned(),
            options: *options,
            pool: Pool::new(options),
        };
        let first = sqlite
            .pool
            .take(|| sqlite.connect())
            .map_err(|e| format!("--db sqlite:{}: {e}", path.display()))?;
        sqlite.pool.give_back(first);
        Ok(sqlite)
    }

    fn connect(&self) -> Result<Connection, DbError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let connection = Connection::open_with_flags(&self.path, flags).map_err(classify)?;
        connection
            .busy_timeout(self.options.timeout)
            .map_err(classify)?;
        // WAL: readers see the last commit while a write is in progress. NORMAL sync is
        // durable against a crash of this process, not of the machine, in WAL mode.
        // LIKE case-sensitive, as PostgreSQL's: tag filters match tags exactly.
        connection
            .execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;
                 PRAGMA case_sensitive_like = ON;",
            )
            .map_err(classify)?;
        Ok(connection)
    }
}

impl Database for Sqlite {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn describe(&self) -> String {
        format!("sqlite:{}", self.path.display())
    }

    fn transaction(
        &self,
        access: Access,
        work: &mut dyn FnMut(&mut dyn Tx) -> Result<(), DbError>,
    ) -> Result<(), DbError> {
        let connection = self.pool.take(|| self.connect())?;
        let begin = match access {
            Access::Read => "BEGIN DEFERRED",
            Access::Write | Access::Maintenance => "BEGIN IMMEDIATE",
        };
        if let Err(e) = connection.execute_batch(begin) {
            // A connection that cannot even begin is not worth keeping.
            self.pool.discard(connection);
            return Err(classify(e));
        }
        let mut tx = SqliteTx(&connection);
        let result =
            work(&mut tx).and_then(|()| connection.execute_batch("COMMIT").map_err(classify));
        if result.is_err() && !connection.is_autocommit() {
            let _ = connection.execute_batch("ROLLBACK");
        }
        if connection.is_autocommit() {
            self.pool.give_back(connection);
        } else {
            self.pool.discard(connection);
        }
        result
    }
}

struct SqliteTx<'c>(&'c Connection);

impl SqliteTx<'_> {
    fn statement(&self, sql: &str) -> Result<rusqlite::CachedStatement<'_>, DbError> {
        self.0
            .prepare_cached(&numbered_for_sqlite(sql))
            .map_err(classify)
    }
}

impl Tx for SqliteTx<'_> {
    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, DbError> {
        let mut statement = self.statement(sql)?;
        let columns = statement.column_count();
        let mut rows = statement
            .query(rusqlite::params_from_iter(params.iter()))
            .map_err(classify)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(classify)? {
            let mut values = Vec::with_capacity(columns);
            for i in 0..columns {
                values.push(match row.get_ref(i).map_err(classify)? {
                    ValueRef::Null => Value::Null,
                    ValueRef::Integer(n) => Value::Int(n),
                    ValueRef::Text(bytes) => Value::Text(
                        String::from_utf8(bytes.to_vec())
                            .map_err(|_| DbError::Failed(format!("column {i}: not UTF-8")))?,
                    ),
                    ValueRef::Real(_) | ValueRef::Blob(_) => {
                        return Err(DbError::Failed(format!(
                            "column {i}: a real or a blob, which this service never stores"
                        )))
                    }
                });
            }
            out.push(Row(values));
        }
        Ok(out)
    }

    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, DbError> {
        let mut statement = self.statement(sql)?;
        let changed = statement
            .execute(rusqlite::params_from_iter(params.iter()))
            .map_err(classify)?;
        Ok(changed as u64)
    }
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Value::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Value::Int(n) => ToSqlOutput::Borrowed(ValueRef::Integer(*n)),
            Value::Text(text) => ToSqlOutput::Borrowed(ValueRef::Text(text.as_bytes())),
        })
    }
}

/// A SQLite error as the API answers it.
fn classify(e: rusqlite::Error) -> DbError {
    if let rusqlite::Error::SqliteFailure(failure, message) = &e {
        let message = message.clone().unwrap_or_else(|| failure.to_string());
        return match failure.code {
            ErrorCode::ConstraintViolation
                if failure.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                    || failure.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
            {
                // "UNIQUE constraint failed: consumers.username"
                DbError::Unique(
                    message
                        .rsplit_once(": ")
                        .map_or(message.as_str(), |(_, columns)| columns)
                        .to_owned(),
                )
            }
            ErrorCode::ConstraintViolation
                if failure.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY =>
            {
                DbError::ForeignKey(message)
            }
            ErrorCode::DatabaseBusy
            | ErrorCode::DatabaseLocked
            | ErrorCode::CannotOpen
            | ErrorCode::SystemIoFailure
            | ErrorCode::DiskFull
            | ErrorCode::ReadOnly
            | ErrorCode::NotADatabase
            | ErrorCode::DatabaseCorrupt
            | ErrorCode::PermissionDenied
            | ErrorCode::OutOfMemory => DbError::Unavailable(message),
            _ => DbError::Failed(message),
        };
    }
    DbError::Failed(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--db-pool` bounds SQLite's connections too: with one held, the next request waits
    /// the timeout, then is a 503.
    #[test]
    fn the_pool_is_capped() {
        let dir =
            std::env::temp_dir().join(format!("portcullis-admin-pool-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let options = PoolOptions {
            connections: 1,
            timeout: std::time::Duration::from_millis(200),
        };
        let db = std::sync::Arc::new(Sqlite::open(&dir.join("pool.db"), &options).unwrap());
        let (held, release) = std::sync::mpsc::channel::<()>();
        let (started, wait_started) = std::sync::mpsc::channel::<()>();
        let holder = {
            let db = std::sync::Arc::clone(&db);
            std::thread::spawn(move || {
                db.transaction(Access::Read, &mut |_| {
                    let _ = started.send(());
                    let _ = release.recv();
                    Ok(())
                })
            })
        };
        wait_started.recv().unwrap();
        let second = db.transaction(Access::Read, &mut |_| Ok(()));
        assert!(
            matches!(&second, Err(DbError::Unavailable(why)) if why == "all 1 connections busy for 200 ms"),
            "{second:?}"
        );
        held.send(()).unwrap();
        holder.join().unwrap().unwrap();
        assert_eq!(db.transaction(Access::Read, &mut |_| Ok(())), Ok(()));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
