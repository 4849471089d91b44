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

/// A path is used as given, then the name of a model Ollama or LM Studio keeps; anything
/// else is matched against installed model names.
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
    let as_path = Path::new(model);
    if as_path.exists() {
        return Ok(as_path.to_path_buf());
    }
    // A model Ollama or LM Studio keeps, by the name they show (`smollm2:135m`).
    if let Some(found) = hearth_core::stores::find_foreign(model) {
        return Ok(found.path);
    }
    if as_path.components().count() > 1 {
        return Ok(as_path.to_path_buf());
    }
    // A bare file name: the installed model of that name, else the path as given
    // (the loader then says the file is missing).
    if model.ends_with(".gguf") {
        let installed = dir.join(model);
        return Ok(if installed.exists() {
            installed
        } else {
            as_path.to_path_buf()
        });
    }
    let needle = model.to_lowercase();
    let matches: Vec<PathBuf> = installed()?
        .into_iter()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().to_lowercase().contains(&needle))
        })
        .collect();
    match matches.as_slice() {
        [one] => Ok(one.clone()),
        [] => bail!(
            "no installed model matches {model:?} in {}: run `hearth models` to see them, or pass a path",
            dir.display()
        ),
        many => bail!(
            "{model:?} matches several models ({}): be more specific",
            many.iter()
                .filter_map(|p| p.file_name())
                .map(|n| n.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}
