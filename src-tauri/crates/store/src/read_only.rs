//! Opening the database read-only, for the commands that only read (list, show,
//! export, stats, check, backup): they must work when the file or its disk cannot
//! be written, which is when a user most needs a backup, and they change nothing:
//! no migration, no switch to WAL mode, no checkpoint.
//!
//! SQLite reads a WAL database through its `-shm` index. A read-only connection
//! creates `-wal` and `-shm` where it can, and reads through an existing `-shm`
//! it cannot write (rebuilding the index in memory from the `-wal`). What it
//! cannot do is create them in a directory it cannot write: a database closed
//! cleanly (no `-wal`, no `-shm`) on a read-only disk does not open. Then, and
//! only when no `-wal` holds changes, the file is opened `immutable`: without
//! locks or `-shm`, which is safe because nobody can be writing it (a writer
//! would need the `-wal` that cannot be created there either).

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};

use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags};

use crate::db::{precheck_header, probe_dir_writable, StoreOptions};
use crate::error::{Result, StoreError};
use crate::migrate;

/// How read-only connections reach the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadOnlyMode {
    /// Read-only with SQLite's usual locking and `-shm`: sees what another
    /// process (the app) commits meanwhile, and never a half-copied page.
    Shared,
    /// `immutable=1`: no locks, no `-shm`. Only on a directory that cannot be
    /// written and with no changes waiting in a `-wal` (see the module docs).
    Immutable,
}

/// The connections of a read-only store and what they found.
pub(crate) struct ReadOnlyOpen {
    pub(crate) readers: Vec<Connection>,
    pub(crate) mode: ReadOnlyMode,
    /// `PRAGMA user_version`: the schema version of the file as it is.
    pub(crate) schema_version: i64,
}

/// Opens `options.readers` read-only connections to the existing database at
/// `path`. Refuses (without changing anything) a missing or empty file, a file
/// that is not a database, and one from a newer Hearth.
pub(crate) fn open(path: &Path, options: &StoreOptions) -> Result<ReadOnlyOpen> {
    match fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(StoreError::Missing {
                path: path.to_path_buf(),
            })
        }
        Err(e) => return Err(StoreError::from_io(path, e)),
        Ok(m) if m.len() == 0 && m.is_file() => {
            return Err(StoreError::CannotOpen {
                path: path.to_path_buf(),
                detail: "the file is empty: nothing has been saved in it yet".into(),
            })
        }
        Ok(_) => {}
    }
    precheck_header(path)?;
    let (first, mode, schema_version) = match connect(path, ReadOnlyMode::Shared, options) {
        Ok((conn, version)) => (conn, ReadOnlyMode::Shared, version),
        Err(e @ (StoreError::CannotOpen { .. } | StoreError::ReadOnly { .. })) => {
            // The -wal/-shm could not be made. Immutable is safe only where no
            // writer can exist and nothing waits in a -wal.
            if probe_dir_writable(path).is_ok() {
                return Err(e);
            }
            if wal_has_changes(path) {
                return Err(StoreError::ReadOnly {
                    path: path.to_path_buf(),
                    detail: format!(
                        "its last changes are still in {}, and reading them needs a -shm file that \
                         cannot be created in this read-only directory; copy the database with its \
                         -wal file to a writable directory and run the command on the copy",
                        sibling(path, "-wal").display()
                    ),
                });
            }
            let (conn, version) = connect(path, ReadOnlyMode::Immutable, options)?;
            (conn, ReadOnlyMode::Immutable, version)
        }
        Err(e) => return Err(e),
    };
    if schema_version == 0 {
        return Err(StoreError::CannotOpen {
            path: path.to_path_buf(),
            detail: "it has no Hearth tables yet (schema version 0)".into(),
        });
    }
    let mut readers = vec![first];
    for _ in 1..options.readers.max(1) {
        readers.push(connect(path, mode, options)?.0);
    }
    Ok(ReadOnlyOpen {
        readers,
        mode,
        schema_version,
    })
}

/// One read-only connection, set up and checked: returns it with the file's
/// `user_version`. Reading that is the first access to the file, so a file
/// SQLite cannot open or read fails here.
pub(crate) fn connect(path: &Path, mode: ReadOnlyMode, options: &StoreOptions) -> Result<(Connection, i64)> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = match mode {
        ReadOnlyMode::Shared => Connection::open_with_flags(path, flags),
        ReadOnlyMode::Immutable => Connection::open_with_flags(immutable_uri(path), flags | OpenFlags::SQLITE_OPEN_URI),
    }
    .map_err(|e| StoreError::from_sqlite(path, e))?;
    let version = (|| -> Result<i64> {
        // A read-only connection never gets the lock a checkpoint needs; this
        // says so outright, so closing it can never write the main file.
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)?;
        conn.busy_timeout(options.busy_timeout)?;
        conn.pragma_update(None, "query_only", "ON")?;
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        migrate::check_not_newer(path, version)?;
        Ok(version)
    })()
    .map_err(|e| e.at(path))?;
    Ok((conn, version))
}

/// Whether `PATH-wal` exists and is not empty: committed changes that may not
/// be in the main file yet.
fn wal_has_changes(path: &Path) -> bool {
    match fs::metadata(sibling(path, "-wal")) {
        Ok(m) => m.len() > 0,
        Err(e) => e.kind() != std::io::ErrorKind::NotFound,
    }
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut s = OsString::from(path.as_os_str());
    s.push(suffix);
    PathBuf::from(s)
}

/// `file:PATH?immutable=1`, the path percent-encoded (SQLite decodes `%XX` in
/// URI file names, and `?`, `#` or `%` in a directory name would otherwise cut
/// the path short).
fn immutable_uri(path: &Path) -> String {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    #[cfg(unix)]
    let bytes = std::os::unix::ffi::OsStrExt::as_bytes(absolute.as_os_str()).to_vec();
    #[cfg(not(unix))]
    let bytes = absolute.to_string_lossy().replace('\\', "/").into_bytes();
    let mut uri = String::from("file:");
    if bytes.first() != Some(&b'/') {
        uri.push('/'); // a Windows drive letter: file:/C:/...
    }
    for b in bytes {
        if b.is_ascii_alphanumeric() || b"/-._~:".contains(&b) {
            uri.push(char::from(b));
        } else {
            uri.push_str(&format!("%{b:02X}"));
        }
    }
    uri.push_str("?immutable=1");
    uri
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(unix)]
    fn immutable_uris_keep_odd_paths_whole() {
        assert_eq!(
            immutable_uri(Path::new("/data/a b?c#d%e/hearth.db")),
            "file:/data/a%20b%3Fc%23d%25e/hearth.db?immutable=1"
        );
    }
}
