//! Model measurements on a real database file: recorded and read back whole, found by
//! hash and by an unchanged file, refused when half a comparison is missing, and a
//! version-1 database upgraded with its data intact.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use hearth_store::{ModelEval, ModelFile, NewSession, ReferenceComparison, Store, LOCAL_USER, SCHEMA_VERSION};

fn measurement(file: &Path, reference: Option<ReferenceComparison>) -> ModelEval {
    ModelEval {
        id: 0,
        file: ModelFile::identify(file).unwrap(),
        quant_type: Some("Q8_0".into()),
        bits_per_weight: 8.5,
        ram_after_load_bytes: Some(300_000_000),
        decode_tps: Some(95.5),
        text_hash: "ab".repeat(32),
        window: 512,
        tokens_scored: 7168,
        perplexity: 22.08,
        reference,
        measured_at: 0,
    }
}

fn f16_reference() -> ReferenceComparison {
    ReferenceComparison {
        hash: "cd".repeat(32),
        name: "gemma-3-270m-F16.gguf".into(),
        perplexity: 22.04,
        kl_mean: 0.0025,
        kl_p99: 0.02,
        same_top_percent: 96.6,
    }
}

#[test]
fn a_measurement_is_recorded_whole_and_found_by_hash_and_by_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("hearth.db")).unwrap();
    let model = dir.path().join("m-Q8_0.gguf");
    std::fs::write(&model, b"GGUF not really, but bytes to hash").unwrap();

    let plain = store.record_model_eval(&measurement(&model, None)).unwrap();
    let compared = store
        .record_model_eval(&measurement(&model, Some(f16_reference())))
        .unwrap();
    assert!(plain.id > 0 && compared.id > plain.id);
    assert!(compared.measured_at > 0);
    assert_eq!(plain.file.hash.len(), 64);

    let all = store.model_evals(&plain.file.hash).unwrap();
    assert_eq!(all.len(), 2);
    assert!(
        all.contains(&plain) && all.contains(&compared),
        "read back exactly as recorded"
    );

    // The model list prefers the measurement against a reference.
    let latest = store.latest_model_eval_at(&model).unwrap().unwrap();
    assert_eq!(latest, compared);
    assert!(store.model_evals(&"00".repeat(32)).unwrap().is_empty());
}

#[test]
fn a_file_changed_since_it_was_measured_shows_no_measurement() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("hearth.db")).unwrap();
    let model = dir.path().join("m.gguf");
    std::fs::write(&model, b"first bytes").unwrap();
    store.record_model_eval(&measurement(&model, None)).unwrap();
    assert!(store.latest_model_eval_at(&model).unwrap().is_some());

    std::fs::write(&model, b"other bytes, another length").unwrap();
    assert!(store.latest_model_eval_at(&model).unwrap().is_none());
    std::fs::remove_file(&model).unwrap();
    assert!(store.latest_model_eval_at(&model).unwrap().is_none());
}

#[test]
fn half_a_comparison_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hearth.db");
    let store = Store::open(&db).unwrap();
    drop(store);
    let conn = rusqlite::Connection::open(&db).unwrap();
    let err = conn
        .execute(
            "INSERT INTO model_evals (file_hash, file_path, file_bytes, file_mtime_ms, bits_per_weight, text_hash, \
             window, tokens_scored, perplexity, reference_hash, measured_at) \
             VALUES (?1, 'm.gguf', 1, 1, 8.5, ?1, 512, 10, 20.0, ?1, 1)",
            [&"ab".repeat(32)],
        )
        .unwrap_err();
    assert!(err.to_string().contains("CHECK"), "{err}");
}

#[test]
fn a_version_1_database_is_upgraded_with_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hearth.db");
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch(include_str!("../../../../migrations/0001_init.sql"))
            .unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        conn.execute(
            "INSERT INTO sessions (id, title, created_at, updated_at) VALUES ('s-1', 'kept', 1, 1)",
            [],
        )
        .unwrap();
    }
    let store = Store::open(&db).unwrap();
    assert_eq!(store.stats().unwrap().user_version, SCHEMA_VERSION);
    let sessions = store.list_sessions(LOCAL_USER, 10).unwrap();
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].title, "kept");
    // And the upgraded database takes new data of both kinds.
    store
        .create_session(&NewSession {
            title: "new".into(),
            ..NewSession::default()
        })
        .unwrap();
    let model = dir.path().join("m.gguf");
    std::fs::write(&model, b"bytes").unwrap();
    store.record_model_eval(&measurement(&model, None)).unwrap();
}
