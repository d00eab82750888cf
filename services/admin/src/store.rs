//! The bridge from the async HTTP handlers to the blocking database: every operation runs
//! on a blocking thread in one transaction, and a write appends its events last, in the
//! same transaction (see [`crate::events`]).

use std::sync::Arc;

use crate::db::{self, Access, Database, Tx};
use crate::events::{self, Changes};
use crate::failure::Failure;
use crate::metrics::Metrics;

/// The database and what the service counts about it.
#[derive(Clone)]
pub struct Store {
    db: Arc<dyn Database>,
    pub metrics: Arc<Metrics>,
}

impl Store {
    pub fn new(db: Arc<dyn Database>, metrics: Arc<Metrics>) -> Store {
        Store { db, metrics }
    }

    pub fn database(&self) -> &Arc<dyn Database> {
        &self.db
    }

    /// Runs `work` in one write transaction, then appends the events it recorded;
    /// returns its result and the event head after the commit.
    pub async fn write<T, F>(&self, work: F) -> Result<(T, i64), Failure>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn Tx, &mut Changes) -> Result<T, Failure> + Send + 'static,
    {
        let db = Arc::clone(&self.db);
        let result = blocking(move || {
            db::run(&*db, Access::Write, |tx: &mut dyn Tx| {
                let mut changes = Changes::default();
                let out = work(tx, &mut changes)?;
                let count = changes.0.len();
                let head = events::append(tx, changes)?;
                Ok::<_, Failure>((out, head, count))
            })
        })
        .await;
        // A failure is counted once, where the request is answered (`http::finish`).
        let (out, head, count) = result?;
        self.metrics.committed(count, head);
        Ok((out, head))
    }

    /// Runs `work` in one read-only snapshot.
    pub async fn read<T, F>(&self, work: F) -> Result<T, Failure>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn Tx) -> Result<T, Failure> + Send + 'static,
    {
        let db = Arc::clone(&self.db);
        blocking(move || db::run(&*db, Access::Read, work)).await
    }
}

impl Store {
    /// Runs one read-only statement as its own snapshot (the data plane's hot path).
    pub async fn query_once(
        &self,
        sql: &'static str,
        params: Vec<crate::db::Value>,
    ) -> Result<Vec<crate::db::Row>, Failure> {
        let db = Arc::clone(&self.db);
        blocking(move || Ok(db.query_once(sql, &params)?)).await
    }
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, Failure> + Send + 'static,
) -> Result<T, Failure> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Failure::Internal(format!("database worker: {e}")))?
}
