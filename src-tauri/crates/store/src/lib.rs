//! Hearth's local database: chat sessions and their messages (with full-text
//! search), the document cache, performance logs and model measurements, in one SQLite file
//! (`hearth.db` in the platform data directory, see [`default_db_path`]).
//!
//! # Design
//!
//! * **SQLite via rusqlite 0.32, bundled.** Its `libsqlite3-sys` 0.30 is the one
//!   sqlx 0.8 (tauri-plugin-sql) links; Cargo allows one `sqlite3` link per build.
//! * **WAL, one writer, a pool of readers.** Readers never wait for the writer.
//!   All writes go through one connection, each a `BEGIN IMMEDIATE`
//!   transaction, so a write never fails half-way on a lock upgrade, and within
//!   the process writers queue on a mutex instead of spinning on `SQLITE_BUSY`.
//!   `busy_timeout` covers other processes. WAL checkpoints run on a background
//!   thread so no writer pays for them.
//! * **Durability.** `synchronous=NORMAL` by default, `FULL` optional; the
//!   trade-off is documented on [`Synchronous`].
//! * **No SQL outside this crate.** Callers use typed, serde-serializable
//!   structs. [`Store`] is the blocking API (use it from ordinary threads);
//!   [`AsyncStore`] runs the same calls on tokio's blocking pool.
//! * **Migrations** are the numbered files of the repository's `migrations/`
//!   directory, compiled in, applied in order on open and tracked by
//!   `PRAGMA user_version`; a newer database is refused untouched.
//! * **Ids.** Sessions: UUID v7 strings (app-created, stable across
//!   export/import, time-ordered for index locality). Messages: INTEGER
//!   (AUTOINCREMENT), because FTS5 indexes by rowid and only an INTEGER PRIMARY
//!   KEY rowid survives VACUUM; ids grow in commit order and are never reused.
//!
//! # Failure
//!
//! Every failure is a [`StoreError`] naming the file and what to do. None loses
//! committed data: writes are whole transactions, and a failed open never
//! modifies the file. A damaged file is refused on open, before anything is
//! written into it. When [`StoreError::is_history_disabling`] is true the app
//! should keep running with chat history turned off and show the message.
//! [`Store::open_read_only`] reads, checks and backs up a database that cannot
//! be written, or is damaged, without changing it.

mod async_store;
mod backup;
mod bench;
mod checkpoint;
mod db;
mod error;
mod export;
mod messages;
mod migrate;
mod model_evals;
mod perf;
mod read_only;
mod sessions;

pub use async_store::AsyncStore;
pub use backup::{BackupReport, IntegrityReport, StoreStats};
pub use bench::{bench, bench_with, BenchOptions, StoreBenchReport, READ_P99_TARGET_MS, WRITE_P99_TARGET_MS};
pub use db::{default_db_path, Store, StoreOptions, Synchronous, DATA_DIR_ENV, DB_FILE_NAME};
pub use error::{Result, StoreError};
pub use export::{export_session, ExportFormat};
pub use hearth_core::Role;
pub use messages::{
    fts5_query, Message, MessageId, MessageMetadata, NewMessage, SearchHit, SNIPPET_END, SNIPPET_START,
};
pub use migrate::{migration_names, SCHEMA_VERSION};
pub use model_evals::{size_and_mtime, text_sha256, ModelEval, ModelFile, ReferenceComparison};
pub use perf::{PerfMetrics, PerfRecord, PerfSummary, TimeWindow};
pub use sessions::{NewSession, Session, SessionId, SessionWithMessages, LOCAL_USER};

/// Now, in Unix milliseconds (the unit of every timestamp in the database).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Reads a JSON text column into `T`; a decoding failure is a column
/// conversion error naming the column.
pub(crate) fn json_col<T: serde::de::DeserializeOwned>(row: &rusqlite::Row<'_>, idx: usize) -> rusqlite::Result<T> {
    let text: String = row.get(idx)?;
    serde_json::from_str(&text)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, Box::new(e)))
}
