//! [`StoreError`]: every way the store can fail, each with the path involved and
//! what the user can do about it, plus the classification the app needs to keep
//! running with chat history disabled.

use std::path::{Path, PathBuf};

use rusqlite::ErrorCode;

/// Shorthand for results of this crate.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Why a store operation failed.
///
/// The `Display` text of the variants that concern the database file names the
/// file and says what to do; it is written to be shown to the user as is.
///
/// No variant means committed data was lost: a failed write is a rolled-back
/// transaction, and the database file is never altered by a failed open.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The file exists but is not a SQLite database (or its header is destroyed).
    #[error(
        "database {path} is not a SQLite database (file is corrupt or something else): \
         move it aside and Hearth will create a new one; your other data is untouched"
    )]
    NotADatabase { path: PathBuf },

    /// SQLite found the database malformed while reading it.
    #[error(
        "database {path} is corrupt ({detail}): quit Hearth and move the file (with any \
         -wal and -shm files next to it) aside; Hearth will create a new one, and \
         `sqlite3 <old file> .recover` can salvage what is left of the old one"
    )]
    Corrupt { path: PathBuf, detail: String },

    /// The file or its directory cannot be written (read-only mount, immutable
    /// file, permissions).
    #[error(
        "database {path} cannot be written ({detail}): make its directory writable, or \
         set HEARTH_DATA_DIR to a writable directory; chat history is off until then"
    )]
    ReadOnly { path: PathBuf, detail: String },

    /// The disk (or quota) is full. The write that hit it was rolled back;
    /// everything committed before it is intact.
    #[error(
        "disk full while writing database {path}: free some space; what was saved \
         before is intact, the change that hit the limit was not saved"
    )]
    DiskFull { path: PathBuf },

    /// The database was written by a newer Hearth. It has not been changed.
    #[error(
        "database {path} is from a newer Hearth (schema version {found}, this version \
         knows up to {supported}): update Hearth, or set HEARTH_DATA_DIR to another \
         directory; the file was not changed"
    )]
    TooNew { path: PathBuf, found: i64, supported: i64 },

    /// There is no database file (only a read-only open, which never creates
    /// one, says so; [`crate::Store::open`] creates it).
    #[error(
        "there is no database at {path} yet: nothing has been saved there (HEARTH_DATA_DIR \
         sets the directory Hearth keeps it in)"
    )]
    Missing { path: PathBuf },

    /// SQLite could not open the file for another reason (missing directory
    /// component, too many open files, ...).
    #[error("database {path} cannot be opened ({detail}): check that the path is usable")]
    CannotOpen { path: PathBuf, detail: String },

    /// Another program held the database locked for longer than the busy timeout.
    /// Transient: retrying later may succeed.
    #[error(
        "database {path} stayed locked by another program: close other programs using \
         it (a second Hearth, a database browser) and try again"
    )]
    Busy { path: PathBuf },

    /// SQLite reported an I/O error other than a full disk.
    #[error("I/O error on database {path} ({detail}): check the disk")]
    DiskIo { path: PathBuf, detail: String },

    /// A session, message or document the caller named does not exist.
    #[error("{what} {id} not found")]
    NotFound { what: &'static str, id: String },

    /// The caller passed something the store cannot accept.
    #[error("invalid input: {0}")]
    InvalidInput(String),

    /// Any other SQLite error. Usually a bug in Hearth.
    #[error("SQLite error on database {path}: {source}")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },

    /// A file system operation around the database failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A JSON value could not be encoded or a stored one decoded.
    #[error("JSON error in database {path}: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },

    /// The background task running a call died (panicked or was cancelled).
    #[error("store task failed: {0}")]
    Task(String),
}

impl StoreError {
    /// Whether the app should carry on with chat history turned off (and tell the
    /// user, with this error's message) instead of retrying or failing the action.
    ///
    /// True for conditions of the database file or its disk that persist until
    /// the user acts: not a database, corrupt, read-only, disk full, too new,
    /// cannot open, I/O error. False for per-call problems (not found, invalid
    /// input, a transient lock, a bad JSON value, a failed task), for a missing
    /// file (a read-only open found nothing to read) and for generic SQLite
    /// errors, which are bugs to report.
    pub fn is_history_disabling(&self) -> bool {
        matches!(
            self,
            StoreError::NotADatabase { .. }
                | StoreError::Corrupt { .. }
                | StoreError::ReadOnly { .. }
                | StoreError::DiskFull { .. }
                | StoreError::TooNew { .. }
                | StoreError::CannotOpen { .. }
                | StoreError::DiskIo { .. }
                | StoreError::Io { .. }
        )
    }

    /// Whether the same call may succeed if simply retried later.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Busy { .. })
    }

    /// The file the error is about, where there is one.
    pub fn path(&self) -> Option<&Path> {
        match self {
            StoreError::NotADatabase { path }
            | StoreError::Corrupt { path, .. }
            | StoreError::ReadOnly { path, .. }
            | StoreError::DiskFull { path }
            | StoreError::TooNew { path, .. }
            | StoreError::CannotOpen { path, .. }
            | StoreError::Missing { path }
            | StoreError::Busy { path }
            | StoreError::DiskIo { path, .. }
            | StoreError::Sqlite { path, .. }
            | StoreError::Io { path, .. }
            | StoreError::Json { path, .. } => Some(path),
            StoreError::NotFound { .. } | StoreError::InvalidInput(_) | StoreError::Task(_) => None,
        }
    }

    /// Classifies a SQLite error that happened on the database at `path`.
    pub(crate) fn from_sqlite(path: &Path, err: rusqlite::Error) -> StoreError {
        let path = path.to_path_buf();
        let Some(code) = err.sqlite_error_code() else {
            return StoreError::Sqlite { path, source: err };
        };
        let detail = err.to_string();
        match code {
            ErrorCode::NotADatabase => StoreError::NotADatabase { path },
            ErrorCode::DatabaseCorrupt => StoreError::Corrupt { path, detail },
            ErrorCode::ReadOnly | ErrorCode::PermissionDenied => StoreError::ReadOnly { path, detail },
            ErrorCode::DiskFull => StoreError::DiskFull { path },
            ErrorCode::CannotOpen => StoreError::CannotOpen { path, detail },
            ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => StoreError::Busy { path },
            ErrorCode::SystemIoFailure => StoreError::DiskIo { path, detail },
            _ => StoreError::Sqlite { path, source: err },
        }
    }

    /// Classifies an I/O error on `path` (creating the directory, probing it,
    /// copying a backup) the way SQLite's codes are classified.
    pub(crate) fn from_io(path: &Path, err: std::io::Error) -> StoreError {
        let path = path.to_path_buf();
        match io_class(&err) {
            IoClass::Full => StoreError::DiskFull { path },
            IoClass::ReadOnly => StoreError::ReadOnly {
                path,
                detail: err.to_string(),
            },
            IoClass::Other => StoreError::Io { path, source: err },
        }
    }

    /// Fills in the database path of an error raised without one (by `?` on a
    /// `rusqlite::Error` or `serde_json::Error` inside a store operation) and
    /// classifies SQLite errors into the typed variants.
    pub(crate) fn at(self, db: &Path) -> StoreError {
        match self {
            StoreError::Sqlite { path, source } if path.as_os_str().is_empty() => StoreError::from_sqlite(db, source),
            StoreError::Json { path, source } if path.as_os_str().is_empty() => StoreError::Json {
                path: db.to_path_buf(),
                source,
            },
            other => other,
        }
    }

    /// True for `SQLITE_BUSY` / `SQLITE_LOCKED` (before or after classification).
    pub(crate) fn is_busy(&self) -> bool {
        match self {
            StoreError::Busy { .. } => true,
            StoreError::Sqlite { source, .. } => matches!(
                source.sqlite_error_code(),
                Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
            ),
            _ => false,
        }
    }
}

/// Lets store code use `?` on rusqlite calls; the path is filled in by
/// `StoreError::at` at the public boundary.
impl From<rusqlite::Error> for StoreError {
    fn from(source: rusqlite::Error) -> Self {
        StoreError::Sqlite {
            path: PathBuf::new(),
            source,
        }
    }
}

/// Lets store code use `?` on serde_json calls; see `StoreError::at`.
impl From<serde_json::Error> for StoreError {
    fn from(source: serde_json::Error) -> Self {
        StoreError::Json {
            path: PathBuf::new(),
            source,
        }
    }
}

enum IoClass {
    Full,
    ReadOnly,
    Other,
}

/// `io::ErrorKind::{StorageFull, ReadOnlyFilesystem}` need Rust 1.83 and the
/// workspace supports 1.80, so the errno is read directly.
fn io_class(err: &std::io::Error) -> IoClass {
    if err.kind() == std::io::ErrorKind::PermissionDenied {
        return IoClass::ReadOnly;
    }
    #[cfg(unix)]
    if let Some(errno) = err.raw_os_error() {
        if errno == libc::ENOSPC || errno == libc::EDQUOT {
            return IoClass::Full;
        }
        if errno == libc::EROFS || errno == libc::EPERM || errno == libc::EACCES {
            return IoClass::ReadOnly;
        }
    }
    IoClass::Other
}
