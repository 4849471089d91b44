//! Installed models (the GGUF files of the models directory), each with its metadata
//! and the fit planner's verdict for this machine, and importing a model file.

use std::path::{Path, PathBuf};

use hearth_hw::{PlanRequest, Snapshot};
use serde::Serialize;
use tauri::State;

use crate::error::{AppError, AppResult};
use crate::state::AppState;

#[derive(Debug, Clone, PartialEq, Serialize, specta::Type)]
#[serde(rename_all = "camelCase")]
pub struct ModelView {
    /// The file name (what Settings' `model` takes).
    pub name: String,
    pub path: String,
    /// A JSON number (exact below 2^53 bytes, 8 PiB).
    pub size_bytes: u64,
    pub architecture: Option<String>,
    pub quantization: Option<String>,
    pub context_length: Option<u32>,
    pub has_chat_template: bool,
    /// The fit planner's verdict and why (`cpu_only: …`), or why the file is unusable.
    pub fit: Option<String>,
}

fn describe(path: &Path, snapshot: &Snapshot, n_ctx: u32) -> ModelView {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let size_bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    match hearth_gguf::read(path) {
        Ok(info) => {
            let request = PlanRequest {
                n_ctx,
                ..PlanRequest::default()
            };
            let plan = hearth_hw::plan(&info, &request, snapshot);
            let verdict = serde_json::to_value(plan.verdict)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            ModelView {
                name,
                path: path.display().to_string(),
                size_bytes,
                architecture: info.architecture.clone(),
                quantization: info.quantization.clone(),
                context_length: info.context_length.and_then(|c| u32::try_from(c).ok()),
                has_chat_template: info.chat_template.is_some(),
                fit: Some(format!("{verdict}: {}", plan.reason)),
            }
        }
        Err(e) => ModelView {
            name,
            path: path.display().to_string(),
            size_bytes,
            architecture: None,
            quantization: None,
            context_length: None,
            has_chat_template: false,
            fit: Some(format!("unusable: {e}")),
        },
    }
}

fn gguf_files(dir: &Path) -> AppResult<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(AppError::new(
                "models_unreadable",
                format!(
                    "The models folder {} cannot be read ({e}): check its permissions",
                    dir.display()
                ),
            ))
        }
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x.eq_ignore_ascii_case("gguf")))
        .collect();
    paths.sort();
    Ok(paths)
}

fn snapshot(state: &AppState) -> Snapshot {
    state
        .sampler
        .as_ref()
        .and_then(hearth_hw::SamplerHandle::latest)
        .unwrap_or_else(Snapshot::capture)
}

/// The installed models, by file name.
#[tauri::command]
#[specta::specta]
pub async fn list_models(state: State<'_, AppState>) -> AppResult<Vec<ModelView>> {
    let dir = state.paths.models_dir.clone();
    let n_ctx = state.manager.settings().embedded.ctx;
    let hw = snapshot(&state);
    tauri::async_runtime::spawn_blocking(move || -> AppResult<Vec<ModelView>> {
        Ok(gguf_files(&dir)?.iter().map(|p| describe(p, &hw, n_ctx)).collect())
    })
    .await
    .map_err(AppError::internal)?
}

/// Checks that `path` is a GGUF model and copies it into the models folder (whole or
/// not at all: a temporary file renamed into place).
#[tauri::command]
#[specta::specta]
pub async fn import_model(state: State<'_, AppState>, path: String) -> AppResult<ModelView> {
    let dir = state.paths.models_dir.clone();
    let n_ctx = state.manager.settings().embedded.ctx;
    let hw = snapshot(&state);
    tauri::async_runtime::spawn_blocking(move || -> AppResult<ModelView> {
        let source = PathBuf::from(&path);
        hearth_gguf::read(&source)?;
        let name = source
            .file_name()
            .ok_or_else(|| AppError::new("invalid_model", format!("{path} is not a file: choose a .gguf file")))?;
        let mut target = dir.join(name);
        if target.extension().is_none_or(|x| !x.eq_ignore_ascii_case("gguf")) {
            target.set_extension("gguf");
        }
        if target.exists() {
            return Err(AppError::new(
                "model_exists",
                format!(
                    "A model named {} is already installed: rename the file to import it as another model",
                    target.display()
                ),
            ));
        }
        copy_atomically(&source, &target).map_err(|e| {
            AppError::new(
                "import_failed",
                format!(
                    "Copying to {} failed ({e}): check the free space and permissions",
                    target.display()
                ),
            )
        })?;
        Ok(describe(&target, &hw, n_ctx))
    })
    .await
    .map_err(AppError::internal)?
}

fn copy_atomically(source: &Path, target: &Path) -> std::io::Result<()> {
    let dir = target.parent().unwrap_or_else(|| Path::new("."));
    std::fs::create_dir_all(dir)?;
    let partial = tempfile::Builder::new()
        .prefix(".import-")
        .suffix(".part")
        .tempfile_in(dir)?;
    std::io::copy(&mut std::fs::File::open(source)?, &mut partial.as_file())?;
    partial.as_file().sync_all()?;
    // A temporary file is deleted if anything above failed; persisting is the rename.
    partial.persist_noclobber(target).map_err(|e| e.error)?;
    Ok(())
}
