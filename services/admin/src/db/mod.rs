//! The database behind the service: one small trait, [`Database`], that SQLite and
//! PostgreSQL both implement, and everything else written once on top of it.
//!
//! | module | holds |
//! |---|---|
//! | [`sqlite`] | the embedded default: a file, WAL mode, writes serialised by `BEGIN IMMEDIATE` |
//! | [`postgres`] | PostgreSQL through the pure-Rust client, a bounded pool of connections |
//! | [`migrations`] | the one schema, as numbered migrations applied at start |
//! | [`pool`] | the bounded pool of connections both backends keep |
//!
//! SQL is written once with `$1`, `$2`… placeholders (PostgreSQL's spelling; the SQLite
//! backend rewrites them to `?1`, `?2`…) and every value is bound as a parameter: no input
//! is ever spliced into a statement.

pub mod migrations;
mod pool;
pub mod postgres;
pub mod sqlite;

use std::fmt;
use std::path::PathBuf;

/// A value bound to a statement or read from a row: the service stores text and integers only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Null,
    Int(i64),
    Text(String),
}

impl From<&str> for Value {
    fn from(text: &str) -> Value {
        Value::Text(text.to_owned())
    }
}

impl From<String> for Value {
    fn from(text: String) -> Value {
        Value::Text(text)
    }
}

impl From<&String> for Value {
    fn from(text: &String) -> Value {
        Value::Text(text.clone())
    }
}

impl From<i64> for Value {
    fn from(n: i64) -> Value {
        Value::Int(n)
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(value: Option<T>) -> Value {
        value.map_or(Value::Null, Into::into)
    }
}

/// One row of a result, its columns in `SELECT` order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Row(pub Vec<Value>);

impl Row {
    fn column(&self, i: usize) -> Result<&Value, DbError> {
        self.0
            .get(i)
            .ok_or_else(|| DbError::Failed(format!("no column {i} in a row of {}", self.0.len())))
    }

    /// Column `i` as text; NULL or an integer is an error.
    pub fn text(&self, i: usize) -> Result<String, DbError> {
        match self.column(i)? {
            Value::Text(text) => Ok(text.clone()),
            other => Err(DbError::Failed(format!(
                "column {i}: expected text, found {other:?}"
            ))),
        }
    }

    /// Column `i` as text, or `None` for NULL.
    pub fn opt_text(&self, i: usize) -> Result<Option<String>, DbError> {
        match self.column(i)? {
            Value::Null => Ok(None),
            Value::Text(text) => Ok(Some(text.clone())),
            other => Err(DbError::Failed(format!(
                "column {i}: expected text, found {other:?}"
            ))),
        }
    }

    /// Column `i` as an integer; NULL or text is an error.
    pub fn int(&self, i: usize) -> Result<i64, DbError> {
        match self.column(i)? {
            Value::Int(n) => Ok(*n),
            other => Err(DbError::Failed(format!(
                "column {i}: expected an integer, found {other:?}"
            ))),
        }
    }

    /// Column `i` as an integer, or `None` for NULL.
    pub fn opt_int(&self, i: usize) -> Result<Option<i64>, DbError> {
        match self.column(i)? {
            Value::Null => Ok(None),
            Value::Int(n) => Ok(Some(*n)),
            other => Err(DbError::Failed(format!(
                "column {i}: expected an integer, found {other:?}"
            ))),
        }
    }
}

/// Why a statement or a transaction failed, in the three kinds the API answers differently.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DbError {
    /// The database cannot be reached, went away, or did not answer in time (HTTP 503).
    /// The text says why, never with a password.
    Unavailable(String),
    /// A unique constraint refused the write: a concurrent writer got there first (HTTP
    /// 409). The text names the constraint (`consumers.username`, `consumers_username_key`).
    Unique(String),
    /// A foreign key refused the write: the entity referred to is gone (the constraint's name).
    ForeignKey(String),
    /// Anything else: a bug or a schema the service does not know (HTTP 500).
    Failed(String),
    /// The transaction's body asked for a rollback (it found a problem in the input).
    Aborted,
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DbError::Unavailable(why) => write!(f, "database unavailable: {why}"),
            DbError::Unique(constraint) => write!(f, "unique constraint {constraint} violated"),
            DbError::ForeignKey(constraint) => {
                write!(f, "foreign key constraint {constraint} violated")
            }
            DbError::Failed(why) => write!(f, "database error: {why}"),
            DbError::Aborted => f.write_str("transaction rolled back"),
        }
    }
}

/// Statements inside one open transaction.
pub trait Tx {
    /// Runs a statement and returns its rows.
    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, DbError>;
    /// Runs a statement and returns how many rows it changed.
    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, DbError>;
}

/// What a transaction may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Reads only, from one consistent snapshot.
    Read,
    /// Reads and writes, serialised with every other `Write`: SQLite's `BEGIN IMMEDIATE`,
    /// PostgreSQL's `SELECT … FROM meta WHERE id = 1 FOR UPDATE` as the first statement.
    /// Every statement then sees every write committed before it (READ COMMITTED), so what
    /// a write reads to list in its events (a consumer's credential keys) cannot miss a
    /// concurrent one.
    Write,
    /// Reads and writes that need no order with other writes and append no event (the
    /// migrations, which run before `meta` exists; the pruner's batched deletes): not
    /// serialised on PostgreSQL, so they never hold up the writers.
    Maintenance,
}

/// A database the service can keep its data in.
pub trait Database: Send + Sync {
    /// `sqlite` or `postgres`: which SQL dialect the migrations use.
    fn dialect(&self) -> Dialect;
    /// Where the data is, for the log (never a password).
    fn describe(&self) -> String;
    /// Runs `work` in one transaction: committed if it returns `Ok`, rolled back otherwise.
    /// Blocks: call it from a blocking thread (`tokio::task::spawn_blocking`).
    fn transaction(
        &self,
        access: Access,
        work: &mut dyn FnMut(&mut dyn Tx) -> Result<(), DbError>,
    ) -> Result<(), DbError>;
    /// Runs one read-only statement, its own snapshot, without an explicit transaction
    /// (PostgreSQL: one round trip on a statement prepared once per connection, where a
    /// transaction adds BEGIN and COMMIT). Blocks, as [`Database::transaction`].
    fn query_once(&self, sql: &str, params: &[Value]) -> Result<Vec<Row>, DbError> {
        let mut rows = Vec::new();
        self.transaction(Access::Read, &mut |tx| {
            rows = tx.query(sql, params)?;
            Ok(())
        })?;
        Ok(rows)
    }
}

/// The SQL dialect of a backend, where the two differ (only in the migrations).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// Where `--db` points.
#[derive(Clone, PartialEq, Eq)]
pub enum Target {
    /// `sqlite:PATH`
    Sqlite(PathBuf),
    /// `postgres://…` or `postgresql://…`, as given.
    Postgres(String),
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

impl Target {
    /// Reads `--db`: `sqlite:PATH` or a `postgres://` / `postgresql://` URL.
    pub fn parse(text: &str) -> Result<Target, String> {
        if let Some(path) = text.strip_prefix("sqlite:") {
            let path = path.strip_prefix("//").unwrap_or(path);
            if path.is_empty() {
                return Err("--db sqlite:: want sqlite:PATH, e.g. sqlite:admin.db".to_owned());
            }
            return Ok(Target::Sqlite(PathBuf::from(path)));
        }
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            text.parse::<::postgres::Config>()
                .map_err(|e| format!("--db {}: {e}", redact(text)))?;
            return Ok(Target::Postgres(text.to_owned()));
        }
        Err(format!(
            "--db {}: want sqlite:PATH or postgres://USER@HOST:PORT/DB",
            redact(text)
        ))
    }

    /// The target for a log line: a PostgreSQL password replaced by `***`.
    pub fn describe(&self) -> String {
        match self {
            Target::Sqlite(path) => format!("sqlite:{}", path.display()),
            Target::Postgres(url) => redact(url),
        }
    }

    /// Opens the database (without touching the schema).
    pub fn open(&self, options: &PoolOptions) -> Result<Box<dyn Database>, String> {
        match self {
            Target::Sqlite(path) => {
                Ok(Box::new(sqlite::Sqlite::open(path, options)?) as Box<dyn Database>)
            }
            Target::Postgres(url) => Ok(Box::new(postgres::Postgres::new(url, options)?)),
        }
    }
}

/// How many connections a backend keeps and how long it waits for the database.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolOptions {
    /// The most connections open at once (`--db-pool`).
    pub connections: usize,
    /// The most a connection attempt, a lock wait or a statement may take (`--db-timeout-ms`).
    pub timeout: std::time::Duration,
}

impl Default for PoolOptions {
    fn default() -> PoolOptions {
        PoolOptions {
            connections: 16,
            timeout: std::time::Duration::from_secs(5),
        }
    }
}

/// `url` with the password (between `user:` and `@`) replaced by `***`.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, tail) = match rest.find(['/', '?']) {
        Some(at) => rest.split_at(at),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_owned(),
        },
        None => {
            // A password can also ride in the query string (`?password=…`).
            if tail.contains("password=") {
                format!("{scheme}://{authority}?***")
            } else {
                url.to_owned()
            }
        }
    }
}

/// Runs `work` in one transaction of `db` and hands back what it returned. An `Err` from
/// `work` rolls the transaction back and comes back as it was; a database failure comes
/// back through `E::from`.
pub fn run<T, E: From<DbError>>(
    db: &dyn Database,
    access: Access,
    work: impl FnOnce(&mut dyn Tx) -> Result<T, E>,
) -> Result<T, E> {
    let mut work = Some(work);
    let mut out: Option<Result<T, E>> = None;
    let result = db.transaction(access, &mut |tx| {
        let Some(work) = work.take() else {
            return Err(DbError::Failed("a transaction body ran twice".to_owned()));
        };
        match work(tx) {
            Ok(value) => {
                out = Some(Ok(value));
                Ok(())
            }
            Err(e) => {
                out = Some(Err(e));
                Err(DbError::Aborted)
            }
        }
    });
    match (result, out) {
        (Ok(()), Some(out)) => out,
        (Err(DbError::Aborted), Some(Err(e))) => Err(e),
        (Err(e), _) => Err(E::from(e)),
        (Ok(()), None) => Err(E::from(DbError::Failed(
            "a transaction committed without running its body".to_owned(),
        ))),
    }
}

/// `$1`, `$2`… in `sql` rewritten as `?1`, `?2`… (SQLite's numbered parameters). No
/// statement of this service has a `$` anywhere else.
pub fn numbered_for_sqlite(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('?');
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords_in_urls() {
        let rows = [
            (
                "postgres://admin:s3cret@db:5432/portcullis",
                "postgres://admin:***@db:5432/portcullis",
            ),
            (
                "postgres://admin@db:5432/portcullis",
                "postgres://admin@db:5432/portcullis",
            ),
            (
                "postgresql://db/portcullis?user=a&password=b",
                "postgresql://db?***",
            ),
            ("postgres://db", "postgres://db"),
        ];
        for (url, shown) in rows {
            assert_eq!(redact(url), shown, "{url}");
        }
    }

    #[test]
    fn reads_both_kinds_of_target() {
        assert_eq!(
            Target::parse("sqlite:/tmp/a.db"),
            Ok(Target::Sqlite(PathBuf::from("/tmp/a.db")))
        );
        assert_eq!(
            Target::parse("sqlite:///tmp/a.db"),
            Ok(Target::Sqlite(PathBuf::from("/tmp/a.db")))
        );
        assert!(matches!(
            Target::parse("postgres://u@127.0.0.1:5432/db"),
            Ok(Target::Postgres(_))
        ));
        assert_eq!(
            Target::parse("mysql://u:pw@h/db"),
            Err(
                "--db mysql://u:***@h/db: want sqlite:PATH or postgres://USER@HOST:PORT/DB"
                    .to_owned()
            )
        );
        assert!(Target::parse("sqlite:").is_err());
    }

    #[test]
    fn rewrites_placeholders_for_sqlite() {
        assert_eq!(
            numbered_for_sqlite("SELECT a FROM t WHERE b = $1 AND c > $12"),
            "SELECT a FROM t WHERE b = ?1 AND c > ?12"
        );
    }
}
