//! Shared helpers for the real-model tests: the models `make models` installs.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, OnceLock};

use hearth_engine::{Engine, EngineConfig};

pub fn model_path(file: &str) -> PathBuf {
    let path = hearth_core::paths::models_dir().join(file);
    assert!(
        path.exists(),
        "{} is missing: run `make models` (tests use the real default models)",
        path.display()
    );
    path
}

pub fn smollm() -> PathBuf {
    model_path(hearth_core::paths::DEFAULT_CHAT_MODEL)
}

pub fn gemma() -> PathBuf {
    model_path(hearth_core::paths::DEFAULT_BASE_MODEL)
}

/// Tests that time things run one at a time: two decode loops on 2 cores would
/// measure each other.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

pub fn load(path: PathBuf, n_ctx: u32) -> Engine {
    Engine::load(EngineConfig::new(path).with_n_ctx(n_ctx)).expect("model loads")
}

/// One engine per model for the whole test binary; the engine serialises requests.
pub fn shared_smollm() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| load(smollm(), 4096))
}

pub fn shared_gemma() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| load(gemma(), 4096))
}
