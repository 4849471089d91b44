//! The public API end to end on real database files.
#![allow(clippy::unwrap_used)]

use hearth_store::{
    AsyncStore, MessageId, MessageMetadata, NewMessage, NewSession, PerfMetrics, PerfRecord, Role, SessionId, Store,
    StoreError, StoreOptions, Synchronous, TimeWindow, LOCAL_USER, SCHEMA_VERSION, SNIPPET_END, SNIPPET_START,
};
use serde_json::json;

fn open(dir: &tempfile::TempDir) -> Store {
    Store::open(dir.path().join("hearth.db")).unwrap()
}

fn session(store: &Store, title: &str) -> SessionId {
    store
        .create_session(&NewSession {
            title: title.into(),
            ..NewSession::default()
        })
        .unwrap()
        .id
}

#[test]
fn sessions_create_rename_list_delete() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let a = session(&store, "first");
    let b = session(&store, "second");
    assert_eq!(uuid::Uuid::parse_str(a.as_str()).unwrap().get_version_num(), 7);

    let renamed = store.rename_session(&a, "renamed").unwrap();
    assert_eq!(renamed.title, "renamed");
    // Renaming counts as activity: `a` is now the most recent.
    let listed = store.list_sessions(LOCAL_USER, 10).unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().any(|s| s.id == b));
    assert!(listed[0].updated_at >= listed[1].updated_at);

    let missing = SessionId::from("no-such-session");
    assert!(matches!(
        store.rename_session(&missing, "x"),
        Err(StoreError::NotFound { what: "session", .. })
    ));
    assert!(matches!(
        store.append_message(&missing, &NewMessage::new(Role::User, "hi")),
        Err(StoreError::NotFound { .. })
    ));

    store
        .append_message(&a, &NewMessage::new(Role::User, "cascade me"))
        .unwrap();
    assert_eq!(store.search_messages("cascade", None, 10).unwrap().len(), 1);
    assert!(store.delete_session(&a).unwrap());
    assert!(!store.delete_session(&a).unwrap());
    assert!(store.get_session(&a).unwrap().is_none());
    // ON DELETE CASCADE removed the message, and the trigger its index entry.
    assert!(store.search_messages("cascade", None, 10).unwrap().is_empty());
    assert_eq!(store.stats().unwrap().messages, 0);
    assert!(store.integrity_check().unwrap().ok);

    let updated = store.update_session_data(&b, &json!({"model": "m"})).unwrap();
    assert_eq!(updated.data, json!({"model": "m"}));
    assert!(matches!(
        store.update_session_data(&b, &json!([1])),
        Err(StoreError::InvalidInput(_))
    ));
}

#[test]
fn messages_append_list_incomplete_tail() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let s = session(&store, "chat");
    let meta = MessageMetadata {
        backend: Some("llama.cpp".into()),
        model: Some("qwen2.5-0.5b".into()),
        metrics: Some(json!({"decode_tps": 41.5, "ttft_ms": 120.0})),
        ..MessageMetadata::default()
    };
    let m1 = store
        .append_message(&s, &NewMessage::new(Role::System, "be brief"))
        .unwrap();
    let m2 = store.append_message(&s, &NewMessage::new(Role::User, "hello")).unwrap();
    let m3 = store
        .append_message(
            &s,
            &NewMessage::new(Role::Assistant, "hi there").with_metadata(meta.clone()),
        )
        .unwrap();
    assert!(m1 < m2 && m2 < m3);

    let all = store.list_messages(&s).unwrap();
    assert_eq!(all.iter().map(|m| m.id).collect::<Vec<_>>(), vec![m1, m2, m3]);
    assert_eq!(all[2].metadata, meta);
    assert!(!all[2].metadata.incomplete);

    store.mark_incomplete(m3).unwrap();
    let m = store.get_message(m3).unwrap().unwrap();
    assert!(m.metadata.incomplete);
    assert_eq!(m.metadata.backend.as_deref(), Some("llama.cpp"));
    assert!(matches!(
        store.mark_incomplete(MessageId(999_999)),
        Err(StoreError::NotFound { what: "message", .. })
    ));

    let after = store.messages_after(&s, Some(m1), 10).unwrap();
    assert_eq!(after.iter().map(|m| m.id).collect::<Vec<_>>(), vec![m2, m3]);
    let recent = store.recent_messages(&s, 2).unwrap();
    assert_eq!(recent.iter().map(|m| m.id).collect::<Vec<_>>(), vec![m2, m3]);
    assert_eq!(store.get_session(&s).unwrap().unwrap().message_count, 3);
}

#[test]
fn store_and_retrieve_whole_session() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let mut original = store
        .create_session(&NewSession {
            title: "imported".into(),
            user_id: Some("someone".into()),
            data: Some(json!({"system_prompt": "x"})),
        })
        .unwrap();
    original.created_at = 1_000;
    original.updated_at = 2_000;
    let messages: Vec<NewMessage> = (0..5)
        .map(|i| NewMessage {
            timestamp: Some(1_000 + i),
            ..NewMessage::new(if i % 2 == 0 { Role::User } else { Role::Assistant }, format!("m{i}"))
        })
        .collect();
    let stored = store.store_session(&original, &messages).unwrap();
    let back = store.retrieve_session(&original.id).unwrap().unwrap();
    assert_eq!(stored, back);
    assert_eq!(back.session.created_at, 1_000);
    assert_eq!(back.session.updated_at, 2_000);
    assert_eq!(back.session.user_id, "someone");
    assert_eq!(back.session.message_count, 5);
    let round: Vec<NewMessage> = back.messages.iter().map(NewMessage::from).collect();
    assert_eq!(round, messages);

    // Storing again replaces the message list.
    let again = store.store_session(&original, &messages[..2]).unwrap();
    assert_eq!(again.messages.len(), 2);
    assert_eq!(again.session.message_count, 2);
    assert_eq!(store.list_sessions("someone", 10).unwrap().len(), 1);
    assert!(store.retrieve_session(&SessionId::new()).unwrap().is_none());
}

#[test]
fn search_ranks_and_filters() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let a = session(&store, "a");
    let b = session(&store, "b");
    store
        .append_message(&a, &NewMessage::new(Role::User, "the quick brown fox"))
        .unwrap();
    store
        .append_message(&a, &NewMessage::new(Role::Assistant, "fox fox fox jumps"))
        .unwrap();
    store
        .append_message(&b, &NewMessage::new(Role::User, "a lazy dog and a fox"))
        .unwrap();
    store
        .append_message(&b, &NewMessage::new(Role::User, "Café crème"))
        .unwrap();

    let hits = store.search_messages("fox", None, 10).unwrap();
    assert_eq!(hits.len(), 3);
    assert!(hits.windows(2).all(|w| w[0].rank <= w[1].rank));
    assert!(hits[0].snippet.contains(&format!("{SNIPPET_START}fox{SNIPPET_END}")));
    assert_eq!(store.search_messages("fox", Some(&b), 10).unwrap().len(), 1);
    assert_eq!(store.search_messages("quick fox", None, 10).unwrap().len(), 1);
    // remove_diacritics: "cafe" finds "Café".
    assert_eq!(store.search_messages("cafe", None, 10).unwrap().len(), 1);
    assert!(store.search_messages("   ", None, 10).unwrap().is_empty());
}

#[test]
fn perf_log_and_summary_per_backend_model() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let now = hearth_store::now_ms();
    for i in 1..=100 {
        store
            .log_perf(&PerfRecord {
                operation: "generate".into(),
                latency_ms: f64::from(i) * 10.0,
                tokens_processed: Some(i64::from(i)),
                backend: "llama.cpp".into(),
                model: "a".into(),
                timestamp: Some(now - 1000),
                metrics: PerfMetrics {
                    decode_tps: Some(f64::from(i)),
                    ttft_ms: Some(f64::from(200 - i)),
                    ..PerfMetrics::default()
                },
            })
            .unwrap();
    }
    // Another model, a record outside the window, a record with no metrics,
    // and a bogus non-numeric metric that must be ignored, not fail the query.
    let mut other = PerfRecord {
        operation: "generate".into(),
        latency_ms: 5.0,
        backend: "llama.cpp".into(),
        model: "b".into(),
        timestamp: Some(now - 1000),
        ..PerfRecord::default()
    };
    store.log_perf(&other).unwrap();
    other.metrics.extra.insert("note".into(), json!("x"));
    other.metrics.decode_tps = Some(7.0);
    store.log_perf(&other).unwrap();
    other.timestamp = Some(now - 10_000_000);
    store.log_perf(&other).unwrap();
    let s = dir.path().join("hearth.db");
    {
        let raw = rusqlite::Connection::open(&s).unwrap();
        raw.execute(
            "INSERT INTO performance_logs
               (operation, latency_ms, timestamp, metrics, backend, model, decode_tps)
             VALUES ('generate', 1.0, ?1, '{\"decode_tps\": \"fast\"}', 'llama.cpp', 'b', 'fast')",
            [now - 1000],
        )
        .unwrap();
    }

    let window = TimeWindow {
        since_ms: now - 60_000,
        until_ms: now + 1,
    };
    let summary = store.perf_summary(window, Some("generate")).unwrap();
    assert_eq!(summary.len(), 2);
    let a = &summary[0];
    assert_eq!((a.backend.as_str(), a.model.as_str(), a.count), ("llama.cpp", "a", 100));
    assert_eq!(a.decode_tps_p50, Some(50.0));
    assert_eq!(a.decode_tps_p95, Some(95.0));
    assert_eq!(a.decode_tps_p5, Some(5.0));
    assert_eq!(a.ttft_ms_p50, Some(149.0)); // nearest rank over 100..=199
    assert_eq!(a.ttft_ms_p95, Some(194.0));
    assert_eq!(a.latency_ms_p95, Some(950.0));
    let b = &summary[1];
    assert_eq!((b.model.as_str(), b.count), ("b", 3));
    assert_eq!(b.decode_tps_p50, Some(7.0));
    assert_eq!(b.ttft_ms_p50, None);
    assert!(store.perf_summary(window, Some("load_model")).unwrap().is_empty());
    assert_eq!(store.perf_summary(TimeWindow::all(), None).unwrap()[1].count, 4);

    // The window query is answered from an index, not a table scan.
    let raw = rusqlite::Connection::open(&s).unwrap();
    let plan: Vec<String> = raw
        .prepare(
            "EXPLAIN QUERY PLAN SELECT backend, model, decode_tps, ttft_ms, latency_ms
             FROM performance_logs WHERE timestamp >= 1 AND timestamp < 2 AND operation = 'x'
             ORDER BY backend, model",
        )
        .unwrap()
        .query_map([], |r| r.get::<_, String>(3))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(plan.iter().any(|l| l.contains("COVERING INDEX")), "{plan:?}");
}

#[test]
fn append_with_perf_links_both_rows() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let s = session(&store, "x");
    let (id, perf_id) = store
        .append_message_with_perf(
            &s,
            &NewMessage::new(Role::Assistant, "reply"),
            &PerfRecord {
                operation: "generate".into(),
                latency_ms: 12.0,
                ..PerfRecord::default()
            },
        )
        .unwrap();
    let raw = rusqlite::Connection::open(dir.path().join("hearth.db")).unwrap();
    let linked: i64 = raw
        .query_row(
            "SELECT message_id FROM performance_logs WHERE id = ?1",
            [perf_id],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(linked, id.0);
    // A failing append (unknown session) stores neither row.
    let before = store.stats().unwrap();
    assert!(store
        .append_message_with_perf(
            &SessionId::new(),
            &NewMessage::new(Role::Assistant, "lost"),
            &PerfRecord {
                operation: "generate".into(),
                latency_ms: 1.0,
                ..PerfRecord::default()
            },
        )
        .is_err());
    let after = store.stats().unwrap();
    assert_eq!((before.messages, before.perf_logs), (after.messages, after.perf_logs));
    assert!(store
        .log_perf(&PerfRecord {
            latency_ms: f64::NAN,
            ..PerfRecord::default()
        })
        .is_err());
}

#[test]
fn backup_integrity_stats() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(
        dir.path().join("hearth.db"),
        StoreOptions {
            synchronous: Synchronous::Full,
            ..StoreOptions::default()
        },
    )
    .unwrap();
    let s = session(&store, "backed up");
    for i in 0..200 {
        store
            .append_message(&s, &NewMessage::new(Role::User, format!("message {i}")))
            .unwrap();
    }
    let stats = store.stats().unwrap();
    assert_eq!(stats.sessions, 1);
    assert_eq!(stats.messages, 200);
    assert_eq!(stats.user_version, SCHEMA_VERSION);
    assert_eq!(stats.journal_mode, "wal");
    assert_eq!(stats.synchronous, Synchronous::Full);
    assert!(stats.foreign_keys);
    let default = open(&tempfile::tempdir().unwrap()).stats().unwrap();
    assert_eq!(default.synchronous, Synchronous::Normal);
    assert!(stats.page_size >= 512 && stats.file_size_bytes > 0);

    let dest = dir.path().join("backups").join("copy.db");
    let report = store.backup_to(&dest).unwrap();
    assert!(report.bytes > 0 && report.pages > 0);
    // Writes continue after the backup; the copy is the snapshot.
    store
        .append_message(&s, &NewMessage::new(Role::User, "after backup"))
        .unwrap();
    let copy = Store::open(&dest).unwrap();
    assert!(copy.integrity_check().unwrap().ok);
    assert_eq!(copy.list_messages(&s).unwrap().len(), 200);
    assert_eq!(copy.search_messages("message", None, 500).unwrap().len(), 200);
    assert!(matches!(
        store.backup_to(store.path()),
        Err(StoreError::InvalidInput(_))
    ));
    let leftovers: Vec<_> = std::fs::read_dir(dest.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().contains("partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn integrity_check_finds_a_damaged_search_index() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hearth.db");
    let store = Store::open(&path).unwrap();
    let s = session(&store, "x");
    store
        .append_message(&s, &NewMessage::new(Role::User, "indexed words"))
        .unwrap();
    assert!(store.integrity_check().unwrap().ok);
    {
        // Change the content behind the triggers' back.
        let raw = rusqlite::Connection::open(&path).unwrap();
        raw.execute_batch("DROP TRIGGER chat_history_au; UPDATE chat_history SET content = 'other text';")
            .unwrap();
    }
    let report = store.integrity_check().unwrap();
    assert!(!report.ok);
    assert!(report.problems.iter().any(|p| p.contains("search index")), "{report:?}");
}

#[test]
fn default_path_honours_env() {
    // Only this test touches the variable in this binary.
    std::env::set_var(hearth_store::DATA_DIR_ENV, "/tmp/hearth-env-test");
    assert_eq!(
        hearth_store::default_db_path(),
        std::path::PathBuf::from("/tmp/hearth-env-test/hearth.db")
    );
    std::env::remove_var(hearth_store::DATA_DIR_ENV);
    let p = hearth_store::default_db_path();
    assert!(p.ends_with("hearth/hearth.db"), "{}", p.display());
}

#[test]
fn async_store_runs_off_the_runtime() {
    let dir = tempfile::tempdir().unwrap();
    // A current-thread runtime: a blocking call on the runtime thread would
    // deadlock nothing here, but a store call that blocked would stall the timer.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = AsyncStore::open(dir.path().join("hearth.db"), StoreOptions::default())
            .await
            .unwrap();
        let s = store.create_session(NewSession::default()).await.unwrap();
        let id = store
            .append_message(s.id.clone(), NewMessage::new(Role::User, "async hello"))
            .await
            .unwrap();
        store.mark_incomplete(id).await.unwrap();
        let msgs = store.list_messages(s.id.clone()).await.unwrap();
        assert_eq!(msgs.len(), 1);
        assert!(msgs[0].metadata.incomplete);
        let hits = store.search_messages("hello".into(), None, 5).await.unwrap();
        assert_eq!(hits.len(), 1);
        assert_eq!(store.stats().await.unwrap().messages, 1);
        let got = store.retrieve_session(s.id.clone()).await.unwrap().unwrap();
        assert_eq!(got.messages.len(), 1);
    });
}

#[test]
fn integrity_check_is_not_fooled_by_a_reader_that_searched_earlier() {
    // One pooled reader, so the search and the check would share a connection.
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(
        dir.path().join("hearth.db"),
        StoreOptions {
            readers: 1,
            ..StoreOptions::default()
        },
    )
    .unwrap();
    let s = session(&store, "x");
    for round in 0..5 {
        assert!(store.search_messages("word", None, 5).is_ok());
        // Enough single-message transactions for FTS5 to merge (and delete)
        // the segments the reader cached.
        for i in 0..100 {
            store
                .append_message(&s, &NewMessage::new(Role::User, format!("word {round} {i}")))
                .unwrap();
        }
        let report = store.integrity_check().unwrap();
        assert!(report.ok, "round {round}: {report:?}");
        assert_eq!(
            store.search_messages("word", None, 1000).unwrap().len(),
            (round + 1) * 100
        );
    }
}

#[test]
fn delete_messages_from_cuts_the_tail_of_one_session() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let s = session(&store, "chat");
    let other = session(&store, "other");
    let u1 = store
        .append_message(&s, &NewMessage::new(Role::User, "first question"))
        .unwrap();
    let a1 = store
        .append_message(&s, &NewMessage::new(Role::Assistant, "first answer"))
        .unwrap();
    let keep = store
        .append_message(&other, &NewMessage::new(Role::User, "elsewhere"))
        .unwrap();
    let u2 = store
        .append_message(&s, &NewMessage::new(Role::User, "second question"))
        .unwrap();
    let record = PerfRecord {
        operation: "generate".into(),
        latency_ms: 5.0,
        backend: "embedded".into(),
        model: "m".into(),
        ..PerfRecord::default()
    };
    let (a2, _) = store
        .append_message_with_perf(&s, &NewMessage::new(Role::Assistant, "zebra answer"), &record)
        .unwrap();

    // Regenerate: the last reply goes; earlier turns and the other session stay.
    assert_eq!(store.delete_messages_from(&s, a2).unwrap(), 1);
    let ids: Vec<_> = store.list_messages(&s).unwrap().iter().map(|m| m.id).collect();
    assert_eq!(ids, vec![u1, a1, u2]);
    assert!(store.search_messages("zebra", None, 10).unwrap().is_empty());
    // Its performance record stays, unlinked.
    assert_eq!(store.recent_perf(Some("generate"), 10).unwrap().len(), 1);

    // Edit and resend: the edited message and everything after it go.
    assert_eq!(store.delete_messages_from(&s, a1).unwrap(), 2);
    assert_eq!(store.list_messages(&s).unwrap().len(), 1);
    assert_eq!(store.get_session(&s).unwrap().unwrap().message_count, 1);
    assert!(store.get_message(keep).unwrap().is_some());

    // A message of another session (or none) is refused, and nothing is deleted.
    assert!(matches!(
        store.delete_messages_from(&s, keep),
        Err(StoreError::NotFound { what: "message", .. })
    ));
    assert!(store.get_message(keep).unwrap().is_some());
}

#[test]
fn recent_perf_newest_first_with_filter() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    for (i, operation) in ["generate", "load_model", "generate"].into_iter().enumerate() {
        let record = PerfRecord {
            operation: operation.into(),
            latency_ms: 10.0,
            backend: "embedded".into(),
            model: format!("m{i}"),
            timestamp: Some(1_000 + i as i64),
            metrics: PerfMetrics {
                decode_tps: Some(40.0 + i as f64),
                ..PerfMetrics::default()
            },
            ..PerfRecord::default()
        };
        store.log_perf(&record).unwrap();
    }
    let all = store.recent_perf(None, 10).unwrap();
    assert_eq!(
        all.iter().map(|r| r.model.as_str()).collect::<Vec<_>>(),
        vec!["m2", "m1", "m0"]
    );
    assert_eq!(all[0].timestamp, Some(1_002));
    assert_eq!(all[0].metrics.decode_tps, Some(42.0));
    let generations = store.recent_perf(Some("generate"), 1).unwrap();
    assert_eq!(generations.len(), 1);
    assert_eq!(generations[0].model, "m2");
}
