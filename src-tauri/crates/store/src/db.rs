//! Opening the database: where it lives, the checks made before SQLite touches
//! the file, the pragmas, the single writer connection, the reader pool and the
//! background checkpointer. Running work on those connections is in `access`.

use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::Duration;

use rusqlite::config::DbConfig;
use rusqlite::{Connection, DatabaseName, OpenFlags};
use serde::{Deserialize, Serialize};

use crate::backup::quick_check;
use crate::checkpoint::Checkpointer;
use crate::error::{Result, StoreError};
use crate::migrate;
use crate::read_only::{self, ReadOnlyMode};

mod access;

/// File name of the database inside the data directory.
pub const DB_FILE_NAME: &str = "hearth.db";

/// Environment variable that overrides the data directory (tests, portable
/// installs, a second profile); read by `hearth_core::paths::data_dir`.
pub const DATA_DIR_ENV: &str = "HEARTH_DATA_DIR";

/// Where Hearth keeps its database: `hearth.db` in Hearth's data directory,
/// i.e. `$HEARTH_DATA_DIR/hearth.db` when that is set and not empty, otherwise
/// the platform data directory (`~/.local/share/hearth/hearth.db` on Linux,
/// `~/Library/Application Support/hearth/hearth.db` on macOS). The directory
/// rule lives in `hearth_core::paths::data_dir`, shared with the model store.
pub fn default_db_path() -> PathBuf {
    hearth_core::paths::data_dir().join(DB_FILE_NAME)
}

/// How hard SQLite works to make a commit durable (`PRAGMA synchronous`).
///
/// In WAL mode both settings keep the database consistent through crashes and
/// power loss: a transaction is either fully there or not at all. They differ in
/// what a *power loss or OS crash* (not an app crash, which loses nothing
/// committed in either mode) can take away:
///
/// * [`Synchronous::Normal`] (default) syncs the WAL only at checkpoints, so the
///   last transactions committed before the power went out can be rolled back
///   on the next open. The database is never corrupted. Commits cost no fsync,
///   which is what keeps a message append well under a millisecond.
/// * [`Synchronous::Full`] syncs the WAL on every commit: a commit that returned
///   survives power loss, at the price of one fsync (0.1–10 ms, depending on the
///   disk) per message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    #[default]
    Normal,
    Full,
}

impl Synchronous {
    fn pragma_value(self) -> &'static str {
        match self {
            Synchronous::Normal => "NORMAL",
            Synchronous::Full => "FULL",
        }
    }
}

/// Settings for [`Store::open_with`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreOptions {
    /// Durability of commits; see [`Synchronous`] for the trade-off.
    pub synchronous: Synchronous,
    /// Read connections in the pool (at least 1). Reads never wait for the
    /// writer in WAL mode; they wait only for a free connection.
    pub readers: usize,
    /// How long a statement waits for a lock held by *another process* before
    /// failing with [`StoreError::Busy`]. Within one process writes are queued
    /// on the writer connection and never see a lock.
    pub busy_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            synchronous: Synchronous::Normal,
            readers: 4,
            busy_timeout: Duration::from_secs(5),
        }
    }
}

/// Hearth's database.
///
/// One writer connection (every write is a `BEGIN IMMEDIATE` transaction, so a
/// write never fails half-way through on a lock upgrade), a pool of read
/// connections (WAL lets them read while the writer writes), and a background
/// thread that checkpoints the WAL so that writers rarely pay for it.
///
/// Cloning is cheap and shares the connections. All methods block the calling
/// thread on SQLite I/O: call them from ordinary threads or
/// `spawn_blocking`, or use [`crate::AsyncStore`] from async code.
///
/// Dropping the last clone closes the connections; the last close checkpoints
/// the WAL into the main file and removes it.
#[derive(Clone)]
pub struct Store {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.inner.path)
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

// Field order is drop order: the checkpointer stops before the readers close,
// and the writer closes last, so its close does the final checkpoint.
pub(crate) struct Inner {
    /// `None` when opened read-only.
    checkpointer: Option<Checkpointer>,
    readers: Mutex<Vec<Connection>>,
    reader_returned: Condvar,
    /// Held shared by every read transaction of the pool, exclusively while the
    /// WAL is restarted (see [`restart_wal`]).
    reader_gate: RwLock<()>,
    /// `None` when opened read-only: every write is refused.
    writer: Option<Mutex<Connection>>,
    /// How the readers reach the file when opened read-only.
    pub(crate) read_only: Option<ReadOnlyMode>,
    /// `PRAGMA user_version` once opened (after the migrations, unless read-only).
    schema_version: i64,
    pub(crate) path: PathBuf,
    pub(crate) options: StoreOptions,
}

const WRITER_CACHE_KIB: i64 = 8 * 1024;
const READER_CACHE_KIB: i64 = 4 * 1024;
/// The WAL file is truncated to this after a checkpoint resets it.
const JOURNAL_SIZE_LIMIT: i64 = 16 * 1024 * 1024;

impl Store {
    /// Opens (creating if needed) the database at [`default_db_path`].
    pub fn open_default() -> Result<Store> {
        Store::open(default_db_path())
    }

    /// Opens (creating if needed) the database at `path` with default options.
    pub fn open(path: impl AsRef<Path>) -> Result<Store> {
        Store::open_with(path, StoreOptions::default())
    }

    /// Opens (creating the file and its directory if needed) the database at
    /// `path` and brings its schema up to date.
    ///
    /// Before SQLite touches the file, its header is read: a file that is not a
    /// SQLite database, or one from a newer Hearth, is refused without being
    /// changed (SQLite would otherwise, for instance, switch it to WAL mode).
    pub fn open_with(path: impl AsRef<Path>, options: StoreOptions) -> Result<Store> {
        let path = path.as_ref().to_path_buf();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(|e| StoreError::from_io(&path, e))?;
        }
        precheck_header(&path)?;

        let mut writer = open_writer(&path, &options)?;
        migrate::migrate(&mut writer, &path)?;

        let readers = (0..options.readers.max(1))
            .map(|_| open_reader(&path, &options))
            .collect::<Result<Vec<_>>>()?;
        let checkpointer = Checkpointer::start(&path)?;

        Ok(Store {
            inner: Arc::new(Inner {
                checkpointer: Some(checkpointer),
                readers: Mutex::new(readers),
                reader_returned: Condvar::new(),
                reader_gate: RwLock::new(()),
                writer: Some(Mutex::new(writer)),
                read_only: None,
                schema_version: migrate::SCHEMA_VERSION,
                path,
                options,
            }),
        })
    }

    /// Opens the existing database at `path` read-only with default options; see
    /// [`Store::open_read_only_with`].
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<Store> {
        Store::open_read_only_with(path, StoreOptions::default())
    }

    /// Opens the existing database at `path` for reading only: for reading,
    /// exporting, checking and backing up a database whose file, directory or
    /// disk cannot be written, or that is damaged. Nothing is written: no file
    /// or directory is created (a missing file is [`StoreError::Missing`]), no
    /// migration runs (see [`Store::schema_version`]: an older schema is read as
    /// it is), no checkpoint. Every write method fails with
    /// [`StoreError::ReadOnly`]. A database from a newer Hearth is refused.
    ///
    /// The file is not checked for damage on open (that is what
    /// [`Store::integrity_check`] is for); reading a damaged part fails with
    /// [`StoreError::Corrupt`].
    pub fn open_read_only_with(path: impl AsRef<Path>, options: StoreOptions) -> Result<Store> {
        let path = path.as_ref().to_path_buf();
        let opened = read_only::open(&path, &options)?;
        Ok(Store {
            inner: Arc::new(Inner {
                checkpointer: None,
                readers: Mutex::new(opened.readers),
                reader_returned: Condvar::new(),
                reader_gate: RwLock::new(()),
                writer: None,
                read_only: Some(opened.mode),
                schema_version: opened.schema_version,
                path,
                options,
            }),
        })
    }

    /// Whether the store was opened with [`Store::open_read_only`].
    pub fn is_read_only(&self) -> bool {
        self.inner.read_only.is_some()
    }

    /// The schema version of the file as opened: [`crate::SCHEMA_VERSION`]
    /// after [`Store::open`] (it migrates), possibly older after
    /// [`Store::open_read_only`] (it does not).
    pub fn schema_version(&self) -> i64 {
        self.inner.schema_version
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The options the store was opened with.
    pub fn options(&self) -> &StoreOptions {
        &self.inner.options
    }
}

/// Reads the 100-byte SQLite header without SQLite: refuses a file that is not
/// a database, or whose `user_version` (bytes 60..64) is newer than this build,
/// before anything could modify it. A missing or empty file is a new database.
pub(crate) fn precheck_header(path: &Path) -> Result<()> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(StoreError::CannotOpen {
                path: path.to_path_buf(),
                detail: e.to_string(),
            })
        }
    };
    if file.metadata().map(|m| m.is_dir()).unwrap_or(false) {
        return Err(StoreError::CannotOpen {
            path: path.to_path_buf(),
            detail: "it is a directory".into(),
        });
    }
    let mut header = Vec::with_capacity(100);
    file.take(100)
        .read_to_end(&mut header)
        .map_err(|e| StoreError::from_io(path, e))?;
    if header.is_empty() {
        return Ok(());
    }
    if header.len() < 100 || !header.starts_with(b"SQLite format 3\0") {
        return Err(StoreError::NotADatabase {
            path: path.to_path_buf(),
        });
    }
    let user_version = i64::from(i32::from_be_bytes([header[60], header[61], header[62], header[63]]));
    migrate::check_not_newer(path, user_version)
}

fn open_writer(path: &Path, options: &StoreOptions) -> Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let setup = |conn: &Connection| -> Result<()> {
        conn.busy_timeout(options.busy_timeout)?;
        // Until the checks below pass, closing this connection must not
        // checkpoint a WAL left by someone else (a newer Hearth that crashed)
        // into the main file: a refused database stays byte for byte as it was.
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)?;
        // Reading user_version is the first access to the file: it fails here
        // (not a database, corrupt, cannot open -shm) before anything is written.
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        migrate::check_not_newer(path, version)?;
        if conn.is_readonly(DatabaseName::Main)? {
            return Err(StoreError::ReadOnly {
                path: path.to_path_buf(),
                detail: "SQLite opened the file read-only".into(),
            });
        }
        // Damage is found before anything is written: a session or a
        // performance record written beside it would be lost with it, or make
        // it worse. (Reading and backing up a damaged file: `open_read_only`.)
        quick_check(conn, path)?;
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, false)?;
        let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::CannotOpen {
                path: path.to_path_buf(),
                detail: format!("WAL mode unavailable (journal_mode stayed {mode})"),
            });
        }
        conn.pragma_update(None, "synchronous", options.synchronous.pragma_value())?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // Checkpoints run on the checkpointer thread, not inside a writer's commit.
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        conn.pragma_update(None, "journal_size_limit", JOURNAL_SIZE_LIMIT)?;
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        conn.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)?;
        Ok(())
    };
    let conn = Connection::open_with_flags(path, flags).map_err(|e| open_error(path, e.into()))?;
    setup(&conn).map_err(|e| open_error(path, e))?;
    Ok(conn)
}

fn open_reader(path: &Path, options: &StoreOptions) -> Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(|e| open_error(path, e.into()))?;
    (|| -> Result<()> {
        conn.busy_timeout(options.busy_timeout)?;
        conn.pragma_update(None, "query_only", "ON")?;
        conn.pragma_update(None, "cache_size", -READER_CACHE_KIB)?;
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        Ok(())
    })()
    .map_err(|e| open_error(path, e))?;
    Ok(conn)
}

/// Classifies an error from opening: "cannot open" on a directory we cannot
/// write into is a read-only condition, which tells the user what to fix.
pub(crate) fn open_error(path: &Path, err: StoreError) -> StoreError {
    match err.at(path) {
        StoreError::CannotOpen { path, detail } => match probe_dir_writable(&path) {
            Err(StoreError::ReadOnly { detail: why, .. }) => StoreError::ReadOnly {
                path,
                detail: format!("{detail}; {why}"),
            },
            Err(StoreError::DiskFull { path }) => StoreError::DiskFull { path },
            _ => StoreError::CannotOpen { path, detail },
        },
        other => other,
    }
}

/// Tries to create (and removes) a file next to the database: SQLite needs to
/// create the `-wal` and `-shm` files there. Root ignores permission bits, so
/// only a real attempt tells (read-only mount, immutable directory).
pub(crate) fn probe_dir_writable(db: &Path) -> Result<()> {
    let dir = match db.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let probe = dir.join(format!(
        ".hearth-write-probe-{}-{}",
        std::process::id(),
        crate::now_ms()
    ));
    match fs::OpenOptions::new().write(true).create_new(true).open(&probe) {
        Ok(_) => {
            // Best effort: a leftover empty probe file harms nothing.
            let _ = fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => Err(StoreError::from_io(db, e)),
    }
}
