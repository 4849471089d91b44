//! Running work on the connections: every write a `BEGIN IMMEDIATE`
//! transaction on the single writer, every read a snapshot on a connection
//! borrowed from the reader pool, with retries on `SQLITE_BUSY`.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rusqlite::{Connection, Transaction, TransactionBehavior};

use super::{Inner, Store};
use crate::checkpoint::{restart_wal, Checkpointer};
use crate::error::{Result, StoreError};

/// How often a call that hit `SQLITE_BUSY` is retried. SQLite's busy handler
/// already waited `busy_timeout`; these retries cover the busy codes that skip
/// the handler (WAL recovery by another connection).
const BUSY_RETRIES: u32 = 3;

impl Store {
    /// Runs `f` in a `BEGIN IMMEDIATE` transaction on the writer connection and
    /// commits. Any error rolls the whole transaction back. Writers queue on a
    /// mutex, so within this process no write ever sees `SQLITE_BUSY`.
    pub(crate) fn write<T>(&self, mut f: impl FnMut(&Transaction<'_>) -> Result<T>) -> Result<T> {
        let inner = &self.inner;
        let Some(writer) = &inner.writer else {
            return Err(StoreError::ReadOnly {
                path: inner.path.clone(),
                detail: "it was opened read-only, for reading".into(),
            });
        };
        let mut conn = lock(writer);
        let mut attempt = 0;
        loop {
            let result = (|| -> Result<T> {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let value = f(&tx)?;
                tx.commit()?;
                Ok(value)
            })();
            match result {
                Ok(value) => {
                    if inner.checkpointer.as_ref().is_some_and(Checkpointer::committed) {
                        restart_wal(&conn, &inner.reader_gate, inner.options.busy_timeout);
                    }
                    return Ok(value);
                }
                Err(e) if e.is_busy() && attempt < BUSY_RETRIES => {
                    attempt += 1;
                    std::thread::sleep(Duration::from_millis(10 << attempt));
                }
                Err(e) => return Err(e.at(&inner.path)),
            }
        }
    }

    /// Runs `f` inside one read transaction (a consistent snapshot) on a pooled
    /// read connection. Read connections are `query_only`.
    pub(crate) fn read<T>(&self, mut f: impl FnMut(&Connection) -> Result<T>) -> Result<T> {
        let inner = &self.inner;
        let conn = inner.checkout();
        let mut attempt = 0;
        loop {
            let result = (|| -> Result<T> {
                let _gate = inner.reader_gate.read().unwrap_or_else(PoisonError::into_inner);
                let tx = conn.unchecked_transaction()?;
                let value = f(&tx)?;
                tx.commit()?;
                Ok(value)
            })();
            match result {
                Ok(value) => return Ok(value),
                Err(e) if e.is_busy() && attempt < BUSY_RETRIES => {
                    attempt += 1;
                    std::thread::sleep(Duration::from_millis(10 << attempt));
                }
                Err(e) => return Err(e.at(&inner.path)),
            }
        }
    }

    /// Reads an integer PRAGMA of the writer connection (settings such as
    /// `synchronous` are per connection; the writer's are the ones that matter);
    /// `None` when opened read-only.
    pub(crate) fn writer_pragma(&self, name: &str) -> Result<Option<i64>> {
        let Some(writer) = &self.inner.writer else {
            return Ok(None);
        };
        let conn = lock(writer);
        conn.pragma_query_value(None, name, |r| r.get(0))
            .map(Some)
            .map_err(|e| StoreError::from_sqlite(&self.inner.path, e))
    }

    /// Runs `f` on a pooled read connection outside any transaction (the
    /// backup API manages its own).
    pub(crate) fn with_reader<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let conn = self.inner.checkout();
        f(&conn).map_err(|e| e.at(&self.inner.path))
    }
}

impl Inner {
    fn checkout(&self) -> PooledReader<'_> {
        let mut pool = lock(&self.readers);
        loop {
            if let Some(conn) = pool.pop() {
                return PooledReader {
                    conn: Some(conn),
                    inner: self,
                };
            }
            pool = self.reader_returned.wait(pool).unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// A read connection borrowed from the pool; returned on drop.
struct PooledReader<'a> {
    conn: Option<Connection>,
    inner: &'a Inner,
}

impl std::ops::Deref for PooledReader<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        self.conn
            .as_ref()
            .expect("a pooled reader holds its connection until dropped")
    }
}

impl Drop for PooledReader<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            lock(&self.inner.readers).push(conn);
            self.inner.reader_returned.notify_one();
        }
    }
}

/// Locks a mutex, ignoring poisoning: a panic inside a store call unwinds
/// through `Transaction`'s drop, which rolls back, so the connection behind a
/// poisoned lock is in a clean state.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
