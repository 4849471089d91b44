//! Helpers shared by the integration tests.
#![allow(dead_code, clippy::unwrap_used)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

pub const SMOLLM2: &str = "SmolLM2-135M-Instruct-Q4_1.gguf";
pub const GEMMA3: &str = "gemma-3-270m-Q4_K_M.gguf";

/// `$HEARTH_MODELS_DIR`, else `~/.local/share/hearth/models`.
pub fn models_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("HEARTH_MODELS_DIR") {
        return PathBuf::from(d);
    }
    let home = std::env::var_os("HOME").unwrap_or_default();
    Path::new(&home).join(".local/share/hearth/models")
}

/// The real model file. A missing one fails the test: it would prove nothing.
pub fn model(name: &str) -> PathBuf {
    let p = models_dir().join(name);
    assert!(
        p.is_file(),
        "{} is missing: run `make models` (or set HEARTH_MODELS_DIR)",
        p.display()
    );
    p
}

/// Writes the first `n` bytes of `src` to `dst`. Only the first `real` bytes
/// are copied (the header); the rest is extended with `set_len`, because the
/// reader never looks at tensor data, only at the file's length.
pub fn write_prefix(src: &Path, dst: &Path, n: u64, real: u64) {
    let mut buf = Vec::new();
    std::fs::File::open(src)
        .unwrap()
        .take(n.min(real))
        .read_to_end(&mut buf)
        .unwrap();
    let mut f = std::fs::File::create(dst).unwrap();
    f.write_all(&buf).unwrap();
    f.set_len(n).unwrap();
}
