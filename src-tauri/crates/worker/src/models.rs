//! Installed models and model-name resolution (`--model NAME`).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// The `.gguf` files in the models directory, sorted.
pub fn installed() -> Result<Vec<PathBuf>> {
    installed_in(&hearth_core::paths::models_dir())
}

/// The `.gguf` files in `dir`, sorted (none when it does not exist):
/// [`hearth_core::paths::gguf_files_in`], with the folder named when it cannot be read.
pub fn installed_in(dir: &Path) -> Result<Vec<PathBuf>> {
    hearth_core::paths::gguf_files_in(dir)
        .with_context(|| format!("cannot read the models directory {}", dir.display()))
}

/// The model `--model` names ([`hearth_core::resolve_model`] among the installed
/// models), or the default chat model when none is named.
pub fn resolve(model: Option<&str>) -> Result<PathBuf> {
    let dir = hearth_core::paths::models_dir();
    let Some(model) = model else {
        let default = dir.join(hearth_core::paths::DEFAULT_CHAT_MODEL);
        if !default.exists() {
            bail!(
                "the default model {} is not installed: get a model with `hearth pull REPO QUANT` \
                 (e.g. `hearth pull bartowski/SmolLM2-135M-Instruct-GGUF Q4_K_M`), run `make models` \
                 for the defaults, or pass --model PATH to a .gguf file",
                default.display()
            );
        }
        return Ok(default);
    };
    Ok(hearth_core::resolve_model(&dir, model, None)?)
}
