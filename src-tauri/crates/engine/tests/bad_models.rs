//! Every kind of bad model file gets its own clear error naming the file; none
//! reaches llama.cpp (which would abort the process on some of them).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;

use hearth_engine::{Engine, EngineConfig, EngineError};
use hearth_gguf::GgufError;

fn load_err(path: &std::path::Path) -> (GgufError, String) {
    match Engine::load(EngineConfig::new(path)) {
        Err(EngineError::InvalidModel(e)) => {
            let msg = e.to_string();
            assert!(
                msg.contains(&path.display().to_string()),
                "message does not name the file: {msg}"
            );
            (e, msg)
        }
        Err(other) => panic!("{}: expected InvalidModel, got {other:?}", path.display()),
        Ok(_) => panic!("{} loaded", path.display()),
    }
}

#[test]
fn each_bad_file_gets_its_own_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.gguf");
    assert!(matches!(load_err(&missing).0, GgufError::NotFound { .. }));

    assert!(matches!(load_err(dir.path()).0, GgufError::IsDirectory { .. }));

    let empty = dir.path().join("empty.gguf");
    std::fs::File::create(&empty).unwrap();
    assert!(matches!(load_err(&empty).0, GgufError::Empty { .. }));

    let text = dir.path().join("notes.gguf");
    std::fs::write(&text, "These are my notes, not a model.\n").unwrap();
    assert!(matches!(load_err(&text).0, GgufError::NotGguf { .. }));

    let random = dir.path().join("random.gguf");
    let mut bytes = vec![0u8; 4096];
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    for b in &mut bytes {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    std::fs::write(&random, &bytes).unwrap();
    assert!(matches!(load_err(&random).0, GgufError::NotGguf { .. }));

    // A real model cut short, once inside the header and once inside the weights.
    let real = std::fs::read(common::smollm()).unwrap();
    for (name, len) in [("cut-header.gguf", 64 * 1024), ("cut-weights.gguf", real.len() / 2)] {
        let cut = dir.path().join(name);
        std::fs::File::create(&cut).unwrap().write_all(&real[..len]).unwrap();
        let (err, msg) = load_err(&cut);
        assert!(matches!(err, GgufError::Truncated { .. }), "{name}: {err:?}");
        assert!(
            msg.to_lowercase().contains("again") || msg.contains("download"),
            "{name}: no advice in {msg}"
        );
    }
}
