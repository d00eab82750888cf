//! PostgreSQL through the `postgres` crate (the synchronous face of `tokio-postgres`, pure
//! Rust): a bounded pool of connections, each transaction `READ COMMITTED` for writes (that
//! first lock the `meta` row, so writers run one at a time) and `REPEATABLE READ READ ONLY`
//! for reads (one snapshot). No TLS to the database: keep it on
//! a private network or a Unix socket.

use std::collections::HashMap;
use std::error::Error as _;

use postgres::error::SqlState;
use postgres::types::{to_sql_checked, IsNull, ToSql, Type};
use postgres::{Client, Config, GenericClient, IsolationLevel, NoTls, Statement};

use super::pool::{Pool, Pooled};
use super::{redact, Access, Database, DbError, Dialect, PoolOptions, Row, Tx, Value};

/// The PostgreSQL backend.
pub struct Postgres {
    config: Config,
    shown: String,
    pool: Pool<Conn>,
}

/// A connection and the statements prepared on it: each SQL text is parsed once per
/// connection, then every run is one round trip (Bind/Execute) instead of two.
struct Conn {
    client: Client,
    statements: HashMap<String, Statement>,
}

/// A connection the server closed (or lost) is not handed out again.
impl Pooled for Conn {
    fn is_closed(&self) -> bool {
        self.client.is_closed()
    }
}

/// The statement for `sql` on this connection, prepared the first time.
fn prepared(
    client: &mut impl GenericClient,
    statements: &mut HashMap<String, Statement>,
    sql: &str,
) -> Result<Statement, DbError> {
    if let Some(statement) = statements.get(sql) {
        return Ok(statement.clone());
    }
    let statement = client.prepare(sql).map_err(|e| classify(&e))?;
    statements.insert(sql.to_owned(), statement.clone());
    Ok(statement)
}

impl Postgres {
    /// The backend for `url`. Connects lazily: the service starts (and answers 503) while
    /// PostgreSQL is down, and recovers by itself when it comes back.
    pub fn new(url: &str, options: &PoolOptions) -> Result<Postgres, String> {
        let mut config: Config = url
            .parse()
            .map_err(|e| format!("--db {}: {e}", redact(url)))?;
        config.application_name("portcullis-admin");
        config.connect_timeout(options.timeout);
        // A statement (or a lock wait) past the timeout is cancelled by the server itself.
        config.options(&format!(
            "-c statement_timeout={0} -c lock_timeout={0}",
            options.timeout.as_millis()
        ));
        config.keepalives(true);
        Ok(Postgres {
            config,
            shown: redact(url),
            pool: Pool::new(options),
        })
    }

    /// A connection from the pool, a new one connected if it has room.
    fn take(&self) -> Result<Conn, DbError> {
        self.pool.take(|| {
            self.config
                .connect(NoTls)
                .map(|client| Conn {
                    client,
                    statements: HashMap::new(),
                })
                .map_err(|e| classify(&e))
        })
    }
}

impl Drop for Postgres {
    /// A `postgres::Client` closes its connection by blocking on its own runtime, which
    /// panics on a thread that drives async tasks (where the service drops this at exit):
    /// close the idle connections on a plain thread.
    fn drop(&mut self) {
        let idle = self.pool.take_idle();
        let _ = std::thread::spawn(move || drop(idle)).join();
    }
}

impl Database for Postgres {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn describe(&self) -> String {
        self.shown.clone()
    }

    fn transaction(
        &self,
        access: Access,
        work: &mut dyn FnMut(&mut dyn Tx) -> Result<(), DbError>,
    ) -> Result<(), DbError> {
        let mut conn = self.take()?;
        let Conn { client, statements } = &mut conn;
        let result = (|| {
            let mut builder = client.build_transaction();
            if access == Access::Read {
                builder = builder
                    .isolation_level(IsolationLevel::RepeatableRead)
                    .read_only(true);
            }
            let mut transaction = builder.start().map_err(|e| classify(&e))?;
            if access == Access::Write {
                // Writers one at a time, as SQLite's BEGIN IMMEDIATE: held to the commit.
                transaction
                    .execute("SELECT id FROM meta WHERE id = 1 FOR UPDATE", &[])
                    .map_err(|e| classify(&e))?;
            }
            let mut tx = PostgresTx(&mut transaction, statements);
            work(&mut tx)?;
            transaction.commit().map_err(|e| classify(&e))
            // Dropped without commit: rolled back.
        })();
        self.finish(conn, &result);
        result
    }

    fn query_once(&self, sql: &str, params: &[Value]) -> Result<Vec<Row>, DbError> {
        let mut conn = self.take()?;
        let Conn { client, statements } = &mut conn;
        let result = prepared(client, statements, sql).and_then(|statement| {
            let rows = client
                .query(&statement, &PostgresTx::params(params))
                .map_err(|e| classify(&e))?;
            rows.iter().map(row).collect()
        });
        self.finish(conn, &result);
        result
    }
}

impl Postgres {
    /// Back to the pool, unless the database went away (then the slot is freed).
    fn finish<T>(&self, conn: Conn, result: &Result<T, DbError>) {
        if matches!(result, Err(DbError::Unavailable(_))) {
            // Whatever broke, do not hand this connection to the next request.
            self.pool.discard(conn);
        } else {
            self.pool.give_back(conn);
        }
    }
}

struct PostgresTx<'a, 'b>(
    &'a mut postgres::Transaction<'b>,
    &'a mut HashMap<String, Statement>,
);

impl PostgresTx<'_, '_> {
    fn params(params: &[Value]) -> Vec<&(dyn ToSql + Sync)> {
        params.iter().map(|p| p as &(dyn ToSql + Sync)).collect()
    }
}

impl Tx for PostgresTx<'_, '_> {
    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, DbError> {
        let statement = prepared(self.0, self.1, sql)?;
        let rows = self
            .0
            .query(&statement, &Self::params(params))
            .map_err(|e| classify(&e))?;
        rows.iter().map(row).collect()
    }

    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, DbError> {
        let statement = prepared(self.0, self.1, sql)?;
        self.0
            .execute(&statement, &Self::params(params))
            .map_err(|e| classify(&e))
    }
}

fn row(row: &postgres::Row) -> Result<Row, DbError> {
    let failed = |i: usize, e: postgres::Error| DbError::Failed(format!("column {i}: {e}"));
    let mut values = Vec::with_capacity(row.len());
    for (i, column) in row.columns().iter().enumerate() {
        let ty = column.type_();
        values.push(if *ty == Type::INT8 {
            Value::from(row.try_get::<_, Option<i64>>(i).map_err(|e| failed(i, e))?)
        } else if *ty == Type::INT4 {
            Value::from(
                row.try_get::<_, Option<i32>>(i)
                    .map_err(|e| failed(i, e))?
                    .map(i64::from),
            )
        } else if *ty == Type::INT2 {
            Value::from(
                row.try_get::<_, Option<i16>>(i)
                    .map_err(|e| failed(i, e))?
                    .map(i64::from),
            )
        } else if *ty == Type::BOOL {
            Value::from(
                row.try_get::<_, Option<bool>>(i)
                    .map_err(|e| failed(i, e))?
                    .map(i64::from),
            )
        } else if *ty == Type::TEXT || *ty == Type::VARCHAR || *ty == Type::NAME {
            Value::from(
                row.try_get::<_, Option<String>>(i)
                    .map_err(|e| failed(i, e))?,
            )
        } else {
            return Err(DbError::Failed(format!(
                "column {i} ({}): type {ty} is not one this service reads",
                column.name()
            )));
        });
    }
    Ok(Row(values))
}

impl ToSql for Value {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut postgres::types::private::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(n) if *ty == Type::INT4 => i32::try_from(*n)?.to_sql(ty, out),
            Value::Int(n) if *ty == Type::INT2 => i16::try_from(*n)?.to_sql(ty, out),
            Value::Int(n) if *ty == Type::INT8 => n.to_sql(ty, out),
            Value::Int(n) => n.to_string().as_str().to_sql(ty, out),
            Value::Text(text) => text.as_str().to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// A PostgreSQL error as the API answers it.
fn classify(e: &postgres::Error) -> DbError {
    let Some(db) = e.as_db_error() else {
        // No server error: the connection failed, closed, or timed out.
        let why = match e.source() {
            Some(source) => format!("{e}: {source}"),
            None => e.to_string(),
        };
        return DbError::Unavailable(why);
    };
    let code = db.code();
    if *code == SqlState::UNIQUE_VIOLATION {
        return DbError::Unique(db.constraint().unwrap_or("unknown").to_owned());
    }
    if *code == SqlState::FOREIGN_KEY_VIOLATION {
        return DbError::ForeignKey(db.constraint().unwrap_or("unknown").to_owned());
    }
    let class = code.code().get(..2).unwrap_or("");
    if matches!(class, "08" | "53" | "57")
        || *code == SqlState::QUERY_CANCELED
        || *code == SqlState::LOCK_NOT_AVAILABLE
        || *code == SqlState::READ_ONLY_SQL_TRANSACTION
    {
        // Connection exceptions, insufficient resources, operator intervention (shutdown,
        // cannot connect now), our statement_timeout, a standby: all "try again later".
        return DbError::Unavailable(db.message().to_owned());
    }
    DbError::Failed(format!("{}: {}", code.code(), db.message()))
}
