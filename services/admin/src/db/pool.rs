//! The pool of connections both backends keep: at most `--db-pool` open, idle ones reused,
//! and a request that finds them all busy waits up to `--db-timeout-ms` for one (then 503).

use std::sync::{Condvar, Mutex};
use std::time::Instant;

use super::{DbError, PoolOptions};

/// A pooled connection: whether it is closed (a closed one is never handed out again).
pub trait Pooled {
    fn is_closed(&self) -> bool;
}

/// Connections of type `C`, bounded by `options.connections`.
pub struct Pool<C> {
    options: PoolOptions,
    slots: Mutex<Slots<C>>,
    freed: Condvar,
}

struct Slots<C> {
    idle: Vec<C>,
    /// Connections handed out or idle: never above `options.connections` (`--db-pool`).
    open: usize,
}

impl<C: Pooled> Pool<C> {
    pub fn new(options: &PoolOptions) -> Pool<C> {
        Pool {
            options: *options,
            slots: Mutex::new(Slots {
                idle: Vec::new(),
                open: 0,
            }),
            freed: Condvar::new(),
        }
    }

    /// A connection: an idle one, a new one from `connect` if fewer than `--db-pool` are
    /// open, else the first one freed within the timeout (then 503).
    pub fn take(&self, connect: impl FnOnce() -> Result<C, DbError>) -> Result<C, DbError> {
        let deadline = Instant::now() + self.options.timeout;
        let poisoned = || DbError::Failed("connection pool lock poisoned".to_owned());
        let mut slots = self.slots.lock().map_err(|_| poisoned())?;
        loop {
            while let Some(connection) = slots.idle.pop() {
                if !connection.is_closed() {
                    return Ok(connection);
                }
                slots.open = slots.open.saturating_sub(1);
            }
            if slots.open < self.options.connections {
                slots.open += 1;
                drop(slots);
                return connect().inspect_err(|_| self.release_slot());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(DbError::Unavailable(format!(
                    "all {} connections busy for {} ms",
                    self.options.connections,
                    self.options.timeout.as_millis()
                )));
            }
            slots = self
                .freed
                .wait_timeout(slots, left)
                .map_err(|_| poisoned())?
                .0;
        }
    }

    /// Back to the idle ones; a closed connection only frees its slot.
    pub fn give_back(&self, connection: C) {
        if connection.is_closed() {
            drop(connection);
            self.release_slot();
            return;
        }
        if let Ok(mut slots) = self.slots.lock() {
            slots.idle.push(connection);
        }
        self.freed.notify_one();
    }

    /// Drops a connection not worth keeping (broken, or left in a transaction) and frees
    /// its slot.
    pub fn discard(&self, connection: C) {
        drop(connection);
        self.release_slot();
    }

    fn release_slot(&self) {
        if let Ok(mut slots) = self.slots.lock() {
            slots.open = slots.open.saturating_sub(1);
        }
        self.freed.notify_one();
    }

    /// The idle connections, taken out to be closed where the backend must close them.
    pub fn take_idle(&mut self) -> Vec<C> {
        match self.slots.get_mut() {
            Ok(slots) => std::mem::take(&mut slots.idle),
            Err(_) => Vec::new(),
        }
    }
}
