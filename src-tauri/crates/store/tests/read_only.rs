//! `Store::open_read_only` on real read-only directories (read-only bind mounts:
//! root ignores permission bits, so a chmod would prove nothing): a database closed
//! cleanly, one whose last commits are still in its `-wal`, one whose `-shm` is gone,
//! one with an older schema, and a missing one. Reading, the check and the backup
//! work where they can; nothing is ever written, and every write is refused.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};

use common::{snapshot, Mount};
use hearth_store::{
    NewMessage, NewSession, PerfRecord, Role, SessionId, Store, StoreError, LOCAL_USER, SCHEMA_VERSION,
};
use rusqlite::config::DbConfig;

fn wal(db: &Path) -> PathBuf {
    db.with_file_name("hearth.db-wal")
}

/// A database in `dir/data` with one conversation of three messages and one
/// performance record, closed cleanly (no `-wal`, no `-shm` left).
fn saved(dir: &Path) -> (PathBuf, SessionId) {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let db = data.join("hearth.db");
    let store = Store::open(&db).unwrap();
    let session = store.create_session(&NewSession::default()).unwrap().id;
    for text in ["one", "two", "three"] {
        store
            .append_message(&session, &NewMessage::new(Role::User, text))
            .unwrap();
    }
    store.log_perf(&PerfRecord::default()).unwrap();
    drop(store);
    assert!(!wal(&db).exists());
    (db, session)
}

/// Commits a session that stays in the `-wal` only, as a crash (or a running
/// app) leaves it: the connection closes without checkpointing.
fn commit_to_wal_only(db: &Path, id: &str) {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)
        .unwrap();
    conn.execute(
        "INSERT INTO sessions (id, title, created_at, updated_at) VALUES (?1, 'in the wal', 1, 1)",
        [id],
    )
    .unwrap();
    drop(conn);
    assert!(std::fs::metadata(wal(db)).unwrap().len() > 0);
}

fn titles(store: &Store) -> Vec<String> {
    let mut titles: Vec<String> = store
        .list_sessions(LOCAL_USER, 100)
        .unwrap()
        .into_iter()
        .map(|s| s.title)
        .collect();
    titles.sort();
    titles
}

/// Reads, checks and backs up `db` read-only into `backup`, and checks that
/// every write is refused.
fn read_check_back_up(db: &Path, session: &SessionId, backup: &Path) -> Store {
    let store = Store::open_read_only(db).unwrap();
    assert!(store.is_read_only());
    assert_eq!(store.schema_version(), SCHEMA_VERSION);
    let texts: Vec<String> = store
        .list_messages(session)
        .unwrap()
        .into_iter()
        .map(|m| m.content)
        .collect();
    assert_eq!(texts, ["one", "two", "three"]);
    let stats = store.stats().unwrap();
    assert!(stats.read_only);
    assert_eq!((stats.messages, stats.perf_logs), (3, 1), "{stats:?}");
    let report = store.integrity_check().unwrap();
    assert!(report.ok, "{report:?}");
    assert!(report.skipped.iter().any(|s| s.contains("search index")), "{report:?}");
    store.backup_to(backup).unwrap();
    let err = store.create_session(&NewSession::default()).unwrap_err();
    assert!(
        matches!(&err, StoreError::ReadOnly { path, .. } if path == db),
        "{err:?}"
    );
    let err = store.log_perf(&PerfRecord::default()).unwrap_err();
    assert!(matches!(err, StoreError::ReadOnly { .. }), "{err:?}");
    store
}

#[test]
fn a_database_closed_cleanly_on_a_read_only_directory() {
    let dir = tempfile::tempdir().unwrap();
    let (db, session) = saved(dir.path());
    let _ro = Mount::read_only(db.parent().unwrap());
    let before = snapshot(db.parent().unwrap());
    // A writable open cannot work here: it says so.
    assert!(matches!(Store::open(&db), Err(StoreError::ReadOnly { .. })));

    let backup = dir.path().join("backup.db");
    let store = read_check_back_up(&db, &session, &backup);
    assert_eq!(titles(&store), [""]);
    drop(store);
    assert_eq!(snapshot(db.parent().unwrap()), before);
    // The backup is a whole database, writable where it is.
    let copy = Store::open(&backup).unwrap();
    assert_eq!(copy.list_messages(&session).unwrap().len(), 3);
    copy.create_session(&NewSession::default()).unwrap();
}

#[test]
fn commits_still_in_the_wal_are_read_and_backed_up() {
    let dir = tempfile::tempdir().unwrap();
    let (db, session) = saved(dir.path());
    commit_to_wal_only(&db, "wal-only");
    let _ro = Mount::read_only(db.parent().unwrap());
    let before = snapshot(db.parent().unwrap());

    let backup = dir.path().join("backup.db");
    let store = read_check_back_up(&db, &session, &backup);
    assert_eq!(titles(&store), ["", "in the wal"]);
    drop(store);
    assert_eq!(snapshot(db.parent().unwrap()), before);
    let copy = Store::open(&backup).unwrap();
    assert_eq!(titles(&copy), ["", "in the wal"]);
}

#[test]
fn commits_in_a_wal_without_its_shm_are_not_silently_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let (db, _) = saved(dir.path());
    commit_to_wal_only(&db, "wal-only");
    std::fs::remove_file(db.with_file_name("hearth.db-shm")).unwrap();
    let _ro = Mount::read_only(db.parent().unwrap());
    let before = snapshot(db.parent().unwrap());

    // Reading the main file alone would miss the session in the -wal.
    let err = Store::open_read_only(&db).unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(&err, StoreError::ReadOnly { path, .. } if *path == db),
        "{err:?}"
    );
    assert!(
        text.contains(&wal(&db).display().to_string()) && text.contains("copy the database"),
        "{text}"
    );
    assert_eq!(snapshot(db.parent().unwrap()), before);
}

#[test]
fn an_older_schema_is_read_as_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let db = data.join("hearth.db");
    {
        // Version 1, as the first Hearth left it.
        let conn = rusqlite::Connection::open(&db).unwrap();
        let init = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../migrations/0001_init.sql");
        conn.execute_batch(&std::fs::read_to_string(init).unwrap()).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        conn.execute(
            "INSERT INTO sessions (id, title, created_at, updated_at) VALUES ('old', 'from version 1', 1, 1)",
            [],
        )
        .unwrap();
    }
    let before = snapshot(&data);
    let store = Store::open_read_only(&db).unwrap();
    assert_eq!(store.schema_version(), 1);
    assert_eq!(titles(&store), ["from version 1"]);
    assert_eq!(store.stats().unwrap().user_version, 1);
    drop(store);
    // Not upgraded: the directory was writable, but reading writes nothing
    // (SQLite may add an empty -wal and its -shm beside the file).
    let after = snapshot(&data);
    assert_eq!(after["hearth.db"], before["hearth.db"]);
    assert!(after.get("hearth.db-wal").is_none_or(Vec::is_empty));
}

#[test]
fn a_missing_database_is_not_created() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sub").join("hearth.db");
    let err = Store::open_read_only(&db).unwrap_err();
    assert!(matches!(&err, StoreError::Missing { path } if *path == db), "{err:?}");
    assert!(err.to_string().contains("HEARTH_DATA_DIR"), "{err}");
    assert!(!dir.path().join("sub").exists());
    let empty = dir.path().join("empty.db");
    std::fs::write(&empty, b"").unwrap();
    let err = Store::open_read_only(&empty).unwrap_err();
    assert!(matches!(err, StoreError::CannotOpen { .. }), "{err:?}");
    assert_eq!(std::fs::read(&empty).unwrap(), b"");
}
