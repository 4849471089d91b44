//! Hostile strings round-trip unchanged everywhere text is stored, and no user
//! text makes full-text search fail.
#![allow(clippy::unwrap_used)]

use hearth_store::{fts5_query, MessageMetadata, NewMessage, NewSession, PerfRecord, Role, Store};
use serde_json::{json, Value};

fn hostile() -> Vec<String> {
    let mut v: Vec<String> = [
        "",
        " ",
        "'",
        "''",
        "\"",
        "\"\"\"",
        "\"unbalanced",
        "'); DROP TABLE sessions; --",
        "\"; DELETE FROM chat_history WHERE 1=1; --",
        "Robert'); DROP TABLE chat_fts;--",
        "a\0b",
        "\0",
        "\0leading and trailing\0",
        "\\ \\\\ \\0 \\n",
        "%_%",
        "😀👍🏽👨‍👩‍👧‍👦🏳️‍🌈",
        "مرحبا بالعالم \u{202e}reversed\u{202c}",
        "e\u{301}\u{301}\u{301} ̈",
        "\u{feff}bom \u{fffd} \u{ffff} \u{10ffff}",
        "tab\there\r\nnewline\n\n",
        "AND OR NOT",
        "NEAR(a b, 3)",
        "foo*",
        "*",
        "^start",
        "-minus +plus",
        "content:x",
        "{content}: x",
        "(a OR b) AND (c",
        ")(",
        "a:b:c",
        "{\"json\": [1, 2, {\"k\": null}]}",
        "SELECT * FROM sessions",
        "x' OR '1'='1",
        "$.incomplete",
        "<script>alert(1)</script>",
        "\u{2}snippet markers\u{3}",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.push("word".repeat(2_500)); // one 10 kB token
    v.push(format!("{} needle-in-a-megabyte", "lorem ipsum dolor ".repeat(58_255)));
    v
}

#[test]
fn hostile_strings_round_trip_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("hearth.db")).unwrap();
    let strings = hostile();
    assert!(strings.last().unwrap().len() >= 1_000_000);

    for (i, s) in strings.iter().enumerate() {
        let mut extra = serde_json::Map::new();
        extra.insert(s.clone(), Value::String(s.clone()));
        let session = store
            .create_session(&NewSession {
                title: s.clone(),
                user_id: Some(format!("user {s}")),
                data: Some(json!({ "value": s, "nested": [s] })),
            })
            .unwrap();
        let back = store.get_session(&session.id).unwrap().unwrap();
        assert_eq!(back, session, "session #{i}");
        let renamed = store.rename_session(&session.id, s).unwrap();
        assert_eq!(renamed.title, *s);

        let message = NewMessage {
            role: Role::User,
            content: s.clone(),
            metadata: MessageMetadata {
                backend: Some(s.clone()),
                model: Some(s.clone()),
                metrics: Some(json!({ "note": s })),
                incomplete: false,
                extra: extra.clone(),
            },
            timestamp: Some(1),
        };
        let id = store.append_message(&session.id, &message).unwrap();
        store.mark_incomplete(id).unwrap();
        let got = store.get_message(id).unwrap().unwrap();
        assert_eq!(got.content, *s, "content #{i}");
        assert_eq!(got.metadata.backend.as_deref(), Some(s.as_str()));
        assert_eq!(got.metadata.extra, extra);
        assert!(got.metadata.incomplete);

        let whole = store.retrieve_session(&session.id).unwrap().unwrap();
        assert_eq!(whole.messages[0].content, *s);
        let stored = store
            .store_session(&whole.session, &[NewMessage::from(&whole.messages[0])])
            .unwrap();
        assert_eq!(stored.messages[0].content, *s);
        assert_eq!(stored.messages[0].metadata, got.metadata);

        store
            .log_perf(&PerfRecord {
                operation: s.clone(),
                latency_ms: 1.0,
                backend: s.clone(),
                model: s.clone(),
                ..PerfRecord::default()
            })
            .unwrap();
    }
    let report = store.integrity_check().unwrap();
    assert!(report.ok, "{report:?}");
}

#[test]
fn hostile_search_input_never_errors() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("hearth.db")).unwrap();
    let session = store.create_session(&NewSession::default()).unwrap();
    let strings = hostile();
    for s in &strings {
        store
            .append_message(&session.id, &NewMessage::new(Role::User, s.clone()))
            .unwrap();
    }
    store
        .append_message(
            &session.id,
            &NewMessage::new(Role::User, "O'Brien said \"NEAR(x y)\" AND -rm * done"),
        )
        .unwrap();
    // FTS5's snippet() is quadratic in the matches within one message: the
    // megabyte message must not turn a search into minutes of CPU. What shows it
    // was not used (rather than a stopwatch, which a busy machine fools): FTS5
    // marks every match in its snippet, the linear fallback only the first one,
    // within about 200 bytes.
    let hits = store.search_messages("lorem ipsum", None, 5).unwrap();
    assert_eq!(hits.len(), 1);
    let snippet = &hits[0].snippet;
    assert!(snippet.starts_with("\u{2}lorem\u{3} ipsum"), "{snippet:?}");
    assert_eq!(snippet.matches('\u{2}').count(), 1, "FTS5's snippet() ran: {snippet:?}");
    assert!(snippet.len() < 300, "{snippet:?}");
    for s in &strings {
        store.search_messages(s, None, 5).unwrap();
        store.search_messages(s, Some(&session.id), 5).unwrap();
        let truncated: String = s.chars().take(100).collect();
        store.search_messages(&truncated, None, 5).unwrap();
    }
    // Quoting keeps operators literal: these find the text, not a syntax error.
    for q in ["O'Brien", "\"NEAR(x", "AND", "-rm", "NEAR(x y)"] {
        let hits = store.search_messages(q, None, 10).unwrap();
        assert!(!hits.is_empty(), "no hit for {q:?}");
    }
    let hits = store.search_messages("needle-in-a-megabyte", None, 10).unwrap();
    assert_eq!(hits.len(), 1);
    assert!(hits[0].snippet.contains("needle"));
    assert_eq!(fts5_query("a \"b\" c"), Some("\"a\" \"\"\"b\"\"\" \"c\"".into()));
    assert_eq!(fts5_query("\0 \t\n"), None);
}
