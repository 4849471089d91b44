//! Maintenance: online backup (SQLite's backup API), integrity check, stats.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, ErrorCode};
use serde::{Deserialize, Serialize};

use crate::db::Synchronous;
use crate::error::{Result, StoreError};
use crate::migrate::SCHEMA_VERSION;
use crate::Store;

/// What [`Store::backup_to`] wrote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupReport {
    pub path: PathBuf,
    pub bytes: u64,
    pub pages: i64,
    pub duration_ms: f64,
}

/// Result of [`Store::integrity_check`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntegrityReport {
    pub ok: bool,
    /// Empty when `ok`.
    pub problems: Vec<String>,
    /// Checks that could not run (on a database opened read-only), and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<String>,
}

/// Size and shape of the database ([`Store::stats`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoreStats {
    pub path: PathBuf,
    /// Opened with [`Store::open_read_only`]: `synchronous` and `foreign_keys`
    /// are then the settings a writer would use, not read from one.
    #[serde(default)]
    pub read_only: bool,
    pub file_size_bytes: u64,
    /// The `-wal` file; 0 when absent.
    pub wal_size_bytes: u64,
    pub page_size: i64,
    pub page_count: i64,
    pub freelist_count: i64,
    pub user_version: i64,
    /// The schema version this build writes.
    pub supported_version: i64,
    pub journal_mode: String,
    /// As set on the writer connection (`PRAGMA synchronous`).
    pub synchronous: Synchronous,
    /// As set on the writer connection (`PRAGMA foreign_keys`).
    pub foreign_keys: bool,
    pub sqlite_version: String,
    pub sessions: i64,
    pub messages: i64,
    pub perf_logs: i64,
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut s = OsString::from(path.as_os_str());
    s.push(suffix);
    PathBuf::from(s)
}

fn file_size(path: &Path) -> u64 {
    fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

impl Store {
    /// Copies the database, while it stays in use, into a new self-contained
    /// file at `dest` (replacing it). The copy is one consistent snapshot: it is
    /// made in a single backup step under one read transaction, which in WAL
    /// mode does not block the writer. It is written to a temporary file next to
    /// `dest`, synced, then renamed, so `dest` is never a half-written backup.
    pub fn backup_to(&self, dest: &Path) -> Result<BackupReport> {
        let started = Instant::now();
        if dest.exists() && fs::canonicalize(dest).ok() == fs::canonicalize(self.path()).ok() {
            return Err(StoreError::InvalidInput(
                "backup destination is the database itself".into(),
            ));
        }
        if let Some(dir) = dest.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(|e| StoreError::from_io(dest, e))?;
        }
        let file_name = dest
            .file_name()
            .ok_or_else(|| StoreError::InvalidInput("backup destination has no file name".into()))?;
        let mut tmp_name = OsString::from(".");
        tmp_name.push(file_name);
        tmp_name.push(format!(".partial-{}", std::process::id()));
        let tmp = dest.with_file_name(tmp_name);

        let result = self.backup_into(&tmp);
        let pages = match result {
            Ok(pages) => pages,
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                return Err(e);
            }
        };
        let finish = || -> std::io::Result<()> {
            fs::File::open(&tmp)?.sync_all()?;
            fs::rename(&tmp, dest)?;
            if let Some(dir) = dest.parent().filter(|d| !d.as_os_str().is_empty()) {
                // Makes the rename durable; not possible on every platform.
                if let Ok(d) = fs::File::open(dir) {
                    let _ = d.sync_all();
                }
            }
            Ok(())
        };
        finish().map_err(|e| {
            let _ = fs::remove_file(&tmp);
            StoreError::from_io(dest, e)
        })?;
        Ok(BackupReport {
            path: dest.to_path_buf(),
            bytes: file_size(dest),
            pages,
            duration_ms: started.elapsed().as_secs_f64() * 1e3,
        })
    }

    fn backup_into(&self, tmp: &Path) -> Result<i64> {
        let _ = fs::remove_file(tmp);
        let mut out = Connection::open(tmp).map_err(|e| StoreError::from_sqlite(tmp, e))?;
        let pages = self.with_reader(|src| {
            let backup = Backup::new(src, &mut out)?;
            let mut attempts = 0;
            loop {
                // -1: every page in one step, i.e. one snapshot.
                match backup.step(-1)? {
                    StepResult::Done => break,
                    StepResult::More => {}
                    StepResult::Busy | StepResult::Locked if attempts < 50 => {
                        attempts += 1;
                        std::thread::sleep(std::time::Duration::from_millis(20));
                    }
                    _ => {
                        return Err(StoreError::Busy {
                            path: self.path().to_path_buf(),
                        })
                    }
                }
            }
            Ok(i64::from(backup.progress().pagecount))
        });
        let pages = pages.map_err(|e| match e {
            // Errors writing the copy concern the copy's path.
            StoreError::DiskFull { .. } => StoreError::DiskFull {
                path: tmp.to_path_buf(),
            },
            other => other,
        })?;
        out.close().map_err(|(_, e)| StoreError::from_sqlite(tmp, e))?;
        Ok(pages)
    }

    /// Runs SQLite's `integrity_check`, the foreign-key check, and FTS5's check
    /// that the search index matches the messages. Corruption is reported in the
    /// result, not as an error.
    ///
    /// The PRAGMAs run on a fresh connection, not a pooled reader: SQLite
    /// 3.46's FTS5 integrity hook trusts the index structure a connection cached
    /// on an earlier read without checking whether another connection has
    /// written since, and reports a healthy index as "malformed" (searches do
    /// check, so pooled readers are fine for them).
    ///
    /// On a store opened read-only the search index's own structure is checked
    /// (by `integrity_check`), but its comparison with the messages is a write
    /// statement that SQLite refuses there: the report lists it as skipped.
    pub fn integrity_check(&self) -> Result<IntegrityReport> {
        let checker = self.open_checker()?;
        let mut problems = match sqlite_checks(&checker) {
            Ok(problems) => problems,
            Err(e) if e.sqlite_error_code() == Some(ErrorCode::DatabaseCorrupt) => {
                vec![e.to_string()]
            }
            Err(e) => return Err(StoreError::from_sqlite(self.path(), e)),
        };
        drop(checker);
        if self.is_read_only() {
            return Ok(IntegrityReport {
                ok: problems.is_empty(),
                problems,
                skipped: vec![
                    "the search index was not compared with the messages: that check needs a writable database".into(),
                ],
            });
        }
        // A write statement (it writes nothing), hence the writer connection.
        let fts = self.write(|tx| {
            match tx.execute(
                "INSERT INTO chat_fts (chat_fts, rank) VALUES ('integrity-check', 1)",
                [],
            ) {
                Ok(_) => Ok(None),
                Err(e) if e.sqlite_error_code() == Some(ErrorCode::DatabaseCorrupt) => {
                    Ok(Some(format!("search index: {e}")))
                }
                Err(e) => Err(e.into()),
            }
        })?;
        problems.extend(fts);
        Ok(IntegrityReport {
            ok: problems.is_empty(),
            problems,
            skipped: Vec::new(),
        })
    }

    fn open_checker(&self) -> Result<Connection> {
        if let Some(mode) = self.inner.read_only {
            return Ok(crate::read_only::connect(self.path(), mode, self.options())?.0);
        }
        let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn =
            Connection::open_with_flags(self.path(), flags).map_err(|e| StoreError::from_sqlite(self.path(), e))?;
        conn.busy_timeout(self.options().busy_timeout)
            .and_then(|()| conn.pragma_update(None, "query_only", "ON"))
            .map_err(|e| StoreError::from_sqlite(self.path(), e))?;
        Ok(conn)
    }

    /// File sizes, page counts, schema version and row counts.
    pub fn stats(&self) -> Result<StoreStats> {
        let path = self.path().to_path_buf();
        let synchronous = match self.writer_pragma("synchronous")? {
            Some(2 | 3) => Synchronous::Full, // FULL, EXTRA
            Some(_) => Synchronous::Normal,
            None => self.options().synchronous,
        };
        let foreign_keys = self.writer_pragma("foreign_keys")?.is_none_or(|on| on == 1);
        self.read(|conn| {
            let pragma = |name: &str| -> rusqlite::Result<i64> { conn.pragma_query_value(None, name, |r| r.get(0)) };
            let count = |table: &str| -> rusqlite::Result<i64> {
                conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            };
            Ok(StoreStats {
                path: path.clone(),
                read_only: self.is_read_only(),
                file_size_bytes: file_size(&path),
                wal_size_bytes: file_size(&sibling(&path, "-wal")),
                page_size: pragma("page_size")?,
                page_count: pragma("page_count")?,
                freelist_count: pragma("freelist_count")?,
                user_version: pragma("user_version")?,
                supported_version: SCHEMA_VERSION,
                journal_mode: conn.pragma_query_value(None, "journal_mode", |r| r.get(0))?,
                synchronous,
                foreign_keys,
                sqlite_version: rusqlite::version().to_owned(),
                sessions: count("sessions")?,
                messages: count("chat_history")?,
                perf_logs: count("performance_logs")?,
            })
        })
    }
}

/// `PRAGMA integrity_check` and `PRAGMA foreign_key_check`: the problems found.
fn sqlite_checks(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut problems = Vec::new();
    let mut stmt = conn.prepare("PRAGMA integrity_check")?;
    for line in stmt.query_map([], |r| r.get::<_, String>(0))? {
        let line = line?;
        if line != "ok" {
            problems.push(line);
        }
    }
    let mut stmt = conn.prepare("PRAGMA foreign_key_check")?;
    let rows = stmt.query_map([], |r| {
        Ok(format!(
            "foreign key: {} row {} references missing {}",
            r.get::<_, String>(0)?,
            r.get::<_, Option<i64>>(1)?.unwrap_or(-1),
            r.get::<_, String>(2)?
        ))
    })?;
    for row in rows {
        problems.push(row?);
    }
    Ok(problems)
}

/// `PRAGMA quick_check`: the structure of every page (not whether indexes match
/// their tables, which `integrity_check` adds). It reads the whole file once:
/// about 0.1 s for 200 MB in the page cache, paid on each writable open.
/// `Corrupt` naming the first problems when it finds any.
pub(crate) fn quick_check(conn: &Connection, path: &Path) -> Result<()> {
    let mut problems = Vec::new();
    let scan = (|| -> rusqlite::Result<()> {
        let mut stmt = conn.prepare("PRAGMA quick_check(3)")?;
        for line in stmt.query_map([], |r| r.get::<_, String>(0))? {
            let line = line?;
            if line != "ok" {
                problems.push(line);
            }
        }
        Ok(())
    })();
    match scan {
        Ok(()) => {}
        // Some damage stops the scan itself.
        Err(e) if e.sqlite_error_code() == Some(ErrorCode::DatabaseCorrupt) => problems.push(e.to_string()),
        Err(e) => return Err(StoreError::from_sqlite(path, e)),
    }
    if problems.is_empty() {
        return Ok(());
    }
    Err(StoreError::Corrupt {
        path: path.to_path_buf(),
        detail: problems.join("; "),
    })
}
