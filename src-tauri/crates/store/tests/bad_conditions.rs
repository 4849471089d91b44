//! Bad conditions on real file systems: a file that is not a database, a
//! corrupt one (refused before anything is written into it), a read-only
//! directory, a full disk. Each is a typed error naming
//! the path, none panics, and nothing committed is lost.
//!
//! Root ignores permission bits, so "read-only" is made with a read-only bind
//! mount, and "full" with a 512 KiB tmpfs; both need mount rights (root in
//! CI, and `make test`). Where mounting is impossible the test fails and says so:
//! it never fakes the condition, and never passes without checking it.
#![allow(clippy::unwrap_used)]

mod common;

use common::{cannot_mount, damage_model_evals, snapshot, Mount};
use hearth_store::{MessageId, NewMessage, NewSession, PerfRecord, Role, Store, StoreError};

#[test]
fn garbage_file_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hearth.db");
    let cases: Vec<Vec<u8>> = vec![
        b"this is a text file, not a database\n".repeat(200),
        vec![0u8; 8192],
        b"SQLite format 3\0".to_vec(), // a header cut short
        (0..=255u8).cycle().take(100_000).collect(),
    ];
    for bytes in cases {
        std::fs::write(&db, &bytes).unwrap();
        let before = snapshot(dir.path());
        let err = Store::open(&db).unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(&err, StoreError::NotADatabase { path } if *path == db),
            "{err:?}"
        );
        assert!(err.is_history_disabling());
        assert!(
            text.contains(&db.display().to_string()) && text.contains("move it aside"),
            "{text}"
        );
        assert_eq!(snapshot(dir.path()), before, "the file (or its directory) was changed");
    }
}

#[test]
fn corrupt_database_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hearth.db");
    {
        let store = Store::open(&db).unwrap();
        let s = store.create_session(&NewSession::default()).unwrap();
        for i in 0..500 {
            store
                .append_message(&s.id, &NewMessage::new(Role::User, format!("m {i}")))
                .unwrap();
        }
    }
    // Keep the 100-byte header, destroy the schema page and the next pages.
    let mut bytes = std::fs::read(&db).unwrap();
    assert!(bytes.len() > 4 * 4096);
    for (i, b) in bytes[100..4 * 4096].iter_mut().enumerate() {
        *b = (i * 7 + 13) as u8;
    }
    std::fs::write(&db, &bytes).unwrap();
    let err = Store::open(&db).unwrap_err();
    assert!(
        matches!(&err, StoreError::Corrupt { path, .. } | StoreError::NotADatabase { path } if *path == db),
        "{err:?}"
    );
    assert!(err.is_history_disabling());
}

#[test]
fn a_damaged_database_is_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hearth.db");
    let session = {
        let store = Store::open(&db).unwrap();
        let s = store.create_session(&NewSession::default()).unwrap();
        for i in 0..20 {
            store
                .append_message(&s.id, &NewMessage::new(Role::User, format!("m {i}")))
                .unwrap();
        }
        s.id
    };
    damage_model_evals(&db);
    let before = std::fs::read(&db).unwrap();
    // The main file as it was, and no change waiting in a -wal to be copied into
    // it later (SQLite may leave an empty -wal and a -shm beside it).
    let unchanged = || {
        assert_eq!(
            std::fs::read(&db).unwrap(),
            before,
            "something was written into the damaged file"
        );
        let wal = dir.path().join("hearth.db-wal");
        assert!(
            std::fs::metadata(&wal).map_or(true, |m| m.len() == 0),
            "changes wait in the -wal"
        );
    };

    // What a chat does on start: open, then save a session and a performance
    // record. Each write would succeed (the damage is elsewhere in the file).
    let opened = Store::open(&db);
    if let Ok(store) = &opened {
        let _ = store.create_session(&NewSession::default());
        let _ = store.log_perf(&PerfRecord::default());
    }
    let err = opened.map(drop).unwrap_err();
    unchanged();
    assert!(
        matches!(&err, StoreError::Corrupt { path, .. } if *path == db),
        "{err:?}"
    );
    assert!(err.is_history_disabling());
    assert!(err.to_string().contains("move the file"), "{err}");

    // Read-only, what is left can still be read and backed up, and the full
    // check finds the damage; nothing changes either.
    let store = Store::open_read_only(&db).unwrap();
    assert_eq!(store.list_messages(&session).unwrap().len(), 20);
    let report = store.integrity_check().unwrap();
    assert!(!report.ok && !report.problems.is_empty(), "{report:?}");
    let backup = dir.path().join("backup").join("hearth.db");
    store.backup_to(&backup).unwrap();
    drop(store);
    unchanged();
}

#[test]
fn read_only_directory() {
    let dir = tempfile::tempdir().unwrap();
    let existing = dir.path().join("existing");
    let fresh = dir.path().join("fresh");
    std::fs::create_dir_all(&existing).unwrap();
    std::fs::create_dir_all(&fresh).unwrap();
    let db = existing.join("hearth.db");
    let id = {
        let store = Store::open(&db).unwrap();
        let s = store.create_session(&NewSession::default()).unwrap();
        store
            .append_message(&s.id, &NewMessage::new(Role::User, "kept"))
            .unwrap()
    };

    let _ro_existing = match Mount::read_only_bind(&existing) {
        Ok(m) => m,
        Err(e) => cannot_mount("a read-only directory", &e.to_string()),
    };
    let _ro_fresh = Mount::read_only_bind(&fresh).unwrap();
    // The mount really is read-only, even for root.
    assert!(std::fs::write(existing.join("probe"), b"x").is_err());

    let before = snapshot(&existing);
    for path in [db.clone(), fresh.join("hearth.db"), fresh.join("sub/dir/hearth.db")] {
        let err = Store::open(&path).unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(&err, StoreError::ReadOnly { path: p, .. } if *p == path),
            "{err:?}"
        );
        assert!(err.is_history_disabling());
        assert!(
            text.contains(&path.display().to_string()) && text.contains("HEARTH_DATA_DIR"),
            "{text}"
        );
    }
    assert_eq!(snapshot(&existing), before);
    drop(_ro_existing);
    // Writable again: everything is still there.
    let store = Store::open(&db).unwrap();
    assert_eq!(store.get_message(id).unwrap().unwrap().content, "kept");
}

#[test]
fn full_disk() {
    let dir = tempfile::tempdir().unwrap();
    let point = dir.path().join("small");
    std::fs::create_dir_all(&point).unwrap();
    let disk = match Mount::tmpfs(&point, "512k") {
        Ok(m) => m,
        Err(e) => cannot_mount("a full disk", &e.to_string()),
    };
    let db = point.join("hearth.db");
    let store = Store::open(&db).unwrap();
    let session = store.create_session(&NewSession::default()).unwrap();
    let mut acked: Vec<MessageId> = Vec::new();
    let err = loop {
        let text = format!("{} {}", acked.len(), "x".repeat(8000));
        match store.append_message(&session.id, &NewMessage::new(Role::User, text)) {
            Ok(id) => acked.push(id),
            Err(e) => break e,
        }
        assert!(acked.len() < 1000, "a 512 KiB file system never filled up");
    };
    assert!(matches!(&err, StoreError::DiskFull { path } if *path == db), "{err:?}");
    assert!(err.is_history_disabling());
    assert!(err.to_string().contains("disk full"), "{err}");
    assert!(acked.len() > 5, "only {} messages fitted", acked.len());

    // Reads keep working, every acknowledged message is there, the failed one
    // is not, and further writes fail cleanly too.
    let listed: Vec<MessageId> = store.list_messages(&session.id).unwrap().iter().map(|m| m.id).collect();
    assert_eq!(listed, acked);
    for _ in 0..3 {
        let e = store
            .append_message(&session.id, &NewMessage::new(Role::User, "y".repeat(20_000)))
            .unwrap_err();
        assert!(matches!(e, StoreError::DiskFull { .. }), "{e:?}");
    }
    let backup = point.join("backup.db");
    let e = store.backup_to(&backup).unwrap_err();
    assert!(e.is_history_disabling(), "{e:?}");
    drop(store);

    // Opening a new database on the full disk is a DiskFull too.
    let e = Store::open(point.join("other.db")).unwrap_err();
    assert!(matches!(e, StoreError::DiskFull { .. }), "{e:?}");

    // Space freed: nothing committed was lost and writing works again.
    disk.resize("8m").unwrap();
    let store = Store::open(&db).unwrap();
    assert!(store.integrity_check().unwrap().ok);
    let listed: Vec<MessageId> = store.list_messages(&session.id).unwrap().iter().map(|m| m.id).collect();
    assert_eq!(listed, acked);
    store
        .append_message(&session.id, &NewMessage::new(Role::User, "after"))
        .unwrap();
    drop(store);
    drop(disk);
}
