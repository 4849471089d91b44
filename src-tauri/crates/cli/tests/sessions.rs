//! `hearth sessions` on a real database file: list, show by a unique id prefix, export
//! to Markdown (the figures of each reply, a stopped one marked) and to JSON that
//! reads back as exactly what is stored; unknown and ambiguous ids and a wrong format
//! are refused with what to do. On a read-only database (a read-only mount: root
//! ignores permission bits) the sessions and `hearth db stats/check/backup` still work.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::{Command, Output};

use hearth_store::{MessageMetadata, NewMessage, NewSession, Role, SessionId, SessionWithMessages, Store};
use serde_json::json;

fn sessions(data: &std::path::Path, args: &[&str]) -> Output {
    let mut all = vec!["sessions"];
    all.extend_from_slice(args);
    hearth(data, &all)
}

fn hearth(data: &std::path::Path, args: &[&str]) -> Output {
    Command::new(common::hearth())
        .env("HEARTH_DATA_DIR", data)
        .args(args)
        .output()
        .unwrap()
}

fn ok(out: &Output) -> String {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn conversation(store: &Store, title: &str) -> SessionId {
    let id = store
        .create_session(&NewSession {
            title: title.into(),
            ..NewSession::default()
        })
        .unwrap()
        .id;
    store
        .append_message(&id, &NewMessage::new(Role::User, "Name three colours."))
        .unwrap();
    let done = MessageMetadata {
        model: Some("SmolLM2-135M-Instruct-Q4_1".into()),
        metrics: Some(json!({ "completion_tokens": 9, "decode_tps": 101.25 })),
        ..MessageMetadata::default()
    };
    store
        .append_message(
            &id,
            &NewMessage::new(Role::Assistant, "Red, green and blue.").with_metadata(done),
        )
        .unwrap();
    store
        .append_message(&id, &NewMessage::new(Role::User, "Now a long story."))
        .unwrap();
    let stopped = MessageMetadata {
        model: Some("SmolLM2-135M-Instruct-Q4_1".into()),
        metrics: Some(json!({ "completion_tokens": 80, "decode_tps": 95.0 })),
        incomplete: true,
        ..MessageMetadata::default()
    };
    store
        .append_message(
            &id,
            &NewMessage::new(Role::Assistant, "Once upon a time").with_metadata(stopped),
        )
        .unwrap();
    id
}

#[test]
fn list_show_and_export_a_conversation() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("hearth.db")).unwrap();
    let empty = ok(&sessions(dir.path(), &[]));
    assert!(empty.contains("No saved conversations"), "{empty}");
    let id = conversation(&store, "Colours");
    let other = conversation(&store, "Another");

    let table = ok(&sessions(dir.path(), &["list"]));
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(
        lines[1].starts_with(other.as_str()) && lines[1].ends_with("Another"),
        "most recent first: {table}"
    );
    assert!(lines[2].contains(" 4 ") && lines[2].ends_with("Colours"), "{table}");
    let json_lines = ok(&sessions(dir.path(), &["list", "--json"]));
    assert_eq!(json_lines.lines().count(), 2);

    // Shown by the shortest unique start of its id (UUID v7s made in the same
    // millisecond share their first 13 characters; the random part differs).
    let prefix = (8..=id.as_str().len())
        .map(|n| &id.as_str()[..n])
        .find(|p| !other.as_str().starts_with(p))
        .unwrap();
    let markdown = ok(&sessions(dir.path(), &["show", prefix]));
    assert!(markdown.starts_with("# Colours\n"), "{markdown}");
    for part in [
        "## You\n\nName three colours.",
        "## Assistant\n\nRed, green and blue.",
        "_SmolLM2-135M-Instruct-Q4_1 · 9 tokens · 101.2 tok/s_",
        "_SmolLM2-135M-Instruct-Q4_1 · 80 tokens · 95.0 tok/s · stopped before the end_",
    ] {
        assert!(markdown.contains(part), "{part:?} missing from\n{markdown}");
    }

    let file = dir.path().join("colours.json");
    ok(&sessions(
        dir.path(),
        &["export", id.as_str(), "--format", "json", "-o", file.to_str().unwrap()],
    ));
    let exported: SessionWithMessages = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(exported, store.retrieve_session(&id).unwrap().unwrap());
    let md_file = dir.path().join("colours.md");
    ok(&sessions(
        dir.path(),
        &["export", id.as_str(), "-o", md_file.to_str().unwrap()],
    ));
    assert_eq!(std::fs::read_to_string(&md_file).unwrap(), markdown);

    let fails = |args: &[&str], words: &str| {
        let out = sessions(dir.path(), args);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(words), "{args:?}: {err}");
    };
    fails(&["show", "nope"], "hearth sessions list");
    fails(&["show", &id.as_str()[..4]], "give more of the id");
    fails(&["export", id.as_str(), "--format", "pdf"], "use md or json");
}

#[test]
fn a_read_only_database_can_be_listed_shown_exported_checked_and_backed_up() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let id = conversation(&Store::open(data.join("hearth.db")).unwrap(), "Colours");
    let _ro = common::ReadOnlyDir::new(&data);
    let snapshot = || {
        let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&data)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().to_string_lossy().into_owned(),
                    std::fs::read(e.path()).unwrap(),
                )
            })
            .collect();
        files.sort();
        files
    };
    let before = snapshot();

    let table = ok(&sessions(&data, &["list"]));
    assert!(table.contains(id.as_str()) && table.contains("Colours"), "{table}");
    let markdown = ok(&sessions(&data, &["show", id.as_str()]));
    assert!(markdown.starts_with("# Colours\n"), "{markdown}");
    let exported = dir.path().join("colours.json");
    ok(&sessions(
        &data,
        &[
            "export",
            id.as_str(),
            "--format",
            "json",
            "-o",
            exported.to_str().unwrap(),
        ],
    ));
    let whole: SessionWithMessages = serde_json::from_str(&std::fs::read_to_string(&exported).unwrap()).unwrap();
    assert_eq!(whole.messages.len(), 4);

    let stats: serde_json::Value = serde_json::from_str(&ok(&hearth(&data, &["db", "stats"]))).unwrap();
    assert_eq!(
        (stats["read_only"].as_bool(), stats["messages"].as_i64()),
        (Some(true), Some(4)),
        "{stats}"
    );
    let check = hearth(&data, &["db", "check"]);
    let report: serde_json::Value = serde_json::from_str(&ok(&check)).unwrap();
    assert_eq!(report["ok"], true, "{report}");
    let notes = String::from_utf8_lossy(&check.stderr);
    assert!(
        notes.contains("checking read-only") && notes.contains("not checked"),
        "{notes}"
    );
    let backup = dir.path().join("backup.db");
    ok(&hearth(&data, &["db", "backup", backup.to_str().unwrap()]));
    let copy = Store::open(&backup).unwrap();
    assert_eq!(copy.retrieve_session(&id).unwrap().unwrap(), whole);

    assert_eq!(snapshot(), before, "a read-only command changed the data directory");
}

#[test]
fn listing_without_a_database_creates_none() {
    let dir = tempfile::tempdir().unwrap();
    let empty = ok(&sessions(dir.path(), &["list"]));
    assert!(empty.contains("No saved conversations"), "{empty}");
    assert_eq!(ok(&sessions(dir.path(), &["list", "--json"])), "");
    let out = hearth(dir.path(), &["db", "stats"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no database at") && err.contains("HEARTH_DATA_DIR"),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "a file was created");
}
