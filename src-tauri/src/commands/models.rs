//! Installed models (the GGUF files of the models directory), each with its metadata
//! and the fit planner's verdict for this machine, and importing a model file.

use std::path::{Path, PathBuf};

use hearth_core::stores::ModelSource;
use hearth_core::ErrorCode;
use hearth_hw::{PlanRequest, Snapshot};
use serde::Serialize;
use tauri::ipc::Channel;
use tauri::State;

use crate::error::{AppError, AppResult};
use crate::state::AppState;

#[derive(Debug, Clone, PartialEq, Serialize, specta::Type)]
#[serde(rename_all = "camelCase")]
pub struct ModelView {
    /// The file name, or the name Ollama or LM Studio shows (what Settings' `model` takes).
    pub name: String,
    /// "hearth" (the models folder), "ollama" or "lm studio": used where it lies.
    pub source: String,
    pub path: String,
    /// A JSON number (exact below 2^53 bytes, 8 PiB).
    pub size_bytes: u64,
    pub architecture: Option<String>,
    pub quantization: Option<String>,
    pub context_length: Option<u32>,
    pub has_chat_template: bool,
    /// The fit planner's verdict and why (`cpu_only: …`), or why the file is unusable.
    pub fit: Option<String>,
    /// The latest measurement of this file as it is now (`hearth eval`, Quantize…).
    pub measured: Option<MeasuredView>,
}

/// What measuring a model file found (a row of the store's `model_evals`).
#[derive(Debug, Clone, PartialEq, Serialize, specta::Type)]
#[serde(rename_all = "camelCase")]
pub struct MeasuredView {
    pub perplexity: f64,
    pub tokens_scored: u64,
    pub bits_per_weight: f64,
    pub ram_after_load_bytes: Option<u64>,
    pub decode_tps: Option<f64>,
    /// The model it was compared with (the file it was quantized from), by file name.
    pub reference_name: Option<String>,
    pub reference_perplexity: Option<f64>,
    /// Mean KL divergence from the reference, nats per token.
    pub kl_mean: Option<f64>,
    pub kl_p99: Option<f64>,
    /// Percent of positions where both rank the same token first.
    pub same_top_percent: Option<f64>,
    /// Unix milliseconds.
    pub measured_at: i64,
}

impl From<hearth_store::ModelEval> for MeasuredView {
    fn from(e: hearth_store::ModelEval) -> Self {
        let r = e.reference.as_ref();
        Self {
            perplexity: e.perplexity,
            tokens_scored: e.tokens_scored,
            bits_per_weight: e.bits_per_weight,
            ram_after_load_bytes: e.ram_after_load_bytes,
            decode_tps: e.decode_tps,
            reference_name: r.map(|r| r.name.clone()),
            reference_perplexity: r.map(|r| r.perplexity),
            kl_mean: r.map(|r| r.kl_mean),
            kl_p99: r.map(|r| r.kl_p99),
            same_top_percent: r.map(|r| r.same_top_percent),
            measured_at: e.measured_at,
        }
    }
}

/// A model file with its metadata, fit and latest measurement (from `store`).
pub(crate) fn describe(path: &Path, snapshot: &Snapshot, n_ctx: u32, store: &hearth_store::Store) -> ModelView {
    let measured = store
        .latest_model_eval_at(path)
        .map_err(|e| tracing::warn!(error = %e, "model measurements unreadable"))
        .ok()
        .flatten()
        .map(MeasuredView::from);
    ModelView {
        measured,
        ..describe_file(path, snapshot, n_ctx)
    }
}

fn describe_file(path: &Path, snapshot: &Snapshot, n_ctx: u32) -> ModelView {
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
                source: ModelSource::Hearth.label().to_owned(),
                path: path.display().to_string(),
                size_bytes,
                architecture: info.architecture.clone(),
                quantization: info.quantization.clone(),
                context_length: info.context_length.and_then(|c| u32::try_from(c).ok()),
                has_chat_template: info.chat_template.is_some(),
                fit: Some(format!("{verdict}: {}", plan.reason)),
                measured: None,
            }
        }
        Err(e) => ModelView {
            name,
            source: ModelSource::Hearth.label().to_owned(),
            path: path.display().to_string(),
            size_bytes,
            architecture: None,
            quantization: None,
            context_length: None,
            has_chat_template: false,
            fit: Some(format!("unusable: {e}")),
            measured: None,
        },
    }
}

fn gguf_files(dir: &Path) -> AppResult<Vec<PathBuf>> {
    hearth_worker::models::installed_in(dir).map_err(|e| {
        AppError::new(
            ErrorCode::ModelsUnreadable,
            format!("{e:#}: check the models folder's permissions"),
        )
    })
}

pub(crate) fn snapshot(state: &AppState) -> Snapshot {
    state
        .sampler
        .as_ref()
        .and_then(hearth_hw::SamplerHandle::latest)
        .unwrap_or_else(Snapshot::capture)
}

/// The installed models, by file name, then those Ollama and LM Studio keep, by the
/// names those tools show.
#[tauri::command]
#[specta::specta]
pub async fn list_models(state: State<'_, AppState>) -> AppResult<Vec<ModelView>> {
    let dir = state.paths.models_dir.clone();
    let n_ctx = state.manager.settings().embedded.ctx;
    let hw = snapshot(&state);
    let store = state.manager.store().clone();
    tauri::async_runtime::spawn_blocking(move || -> AppResult<Vec<ModelView>> {
        let own = gguf_files(&dir)?
            .into_iter()
            .map(|p| describe(&p, &hw, n_ctx, store.blocking()));
        let foreign = hearth_core::stores::foreign_models().into_iter().map(|m| ModelView {
            name: m.name.clone(),
            source: m.source.label().to_owned(),
            ..describe(&m.path, &hw, n_ctx, store.blocking())
        });
        Ok(own.chain(foreign).collect())
    })
    .await
    .map_err(AppError::internal)?
}

/// How far an import is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, specta::Type)]
#[serde(rename_all = "camelCase")]
pub struct ImportProgressView {
    pub done_bytes: u64,
    pub total_bytes: u64,
}

/// Checks that `path` is a GGUF model and puts it into the models folder: a hard link
/// when both are on one file system (instant, no second copy on disk), else a copy with
/// progress on `on_event` (whole or not at all: a temporary file renamed into place).
#[tauri::command]
#[specta::specta]
pub async fn import_model(
    state: State<'_, AppState>,
    path: String,
    on_event: Channel<ImportProgressView>,
) -> AppResult<ModelView> {
    let dir = state.paths.models_dir.clone();
    let n_ctx = state.manager.settings().embedded.ctx;
    let hw = snapshot(&state);
    let store = state.manager.store().clone();
    tauri::async_runtime::spawn_blocking(move || -> AppResult<ModelView> {
        let source = PathBuf::from(&path);
        hearth_gguf::read(&source)?;
        let name = source.file_name().ok_or_else(|| {
            AppError::new(
                ErrorCode::InvalidModel,
                format!("{path} is not a file: choose a .gguf file"),
            )
        })?;
        let mut target = dir.join(name);
        if target.extension().is_none_or(|x| !x.eq_ignore_ascii_case("gguf")) {
            target.set_extension("gguf");
        }
        if target.exists() {
            return Err(AppError::new(
                ErrorCode::ModelExists,
                format!(
                    "A model named {} is already installed: rename the file to import it as another model",
                    target.display()
                ),
            ));
        }
        let total = std::fs::metadata(&source).map(|m| m.len()).unwrap_or(0);
        let report = |done: u64| {
            let _ = on_event.send(ImportProgressView {
                done_bytes: done,
                total_bytes: total,
            });
        };
        link_or_copy(&source, &target, report).map_err(|e| {
            AppError::new(
                ErrorCode::ImportFailed,
                format!(
                    "Copying to {} failed ({e}): check the free space and permissions",
                    target.display()
                ),
            )
        })?;
        Ok(describe(&target, &hw, n_ctx, store.blocking()))
    })
    .await
    .map_err(AppError::internal)?
}

/// A hard link where the file system allows one, else [`copy_atomically`].
fn link_or_copy(source: &Path, target: &Path, report: impl FnMut(u64)) -> std::io::Result<()> {
    if let Some(dir) = target.parent() {
        std::fs::create_dir_all(dir)?;
    }
    match std::fs::hard_link(source, target) {
        Ok(()) => Ok(()),
        Err(e) => {
            tracing::debug!(error = %e, "no hard link (another file system?): copying");
            copy_atomically(source, target, report)
        }
    }
}

/// Copies in 8 MiB steps, telling `report` the bytes copied after each.
fn copy_atomically(source: &Path, target: &Path, mut report: impl FnMut(u64)) -> std::io::Result<()> {
    use std::io::{Read, Write};
    let dir = target.parent().unwrap_or_else(|| Path::new("."));
    std::fs::create_dir_all(dir)?;
    let partial = tempfile::Builder::new()
        .prefix(".import-")
        .suffix(".part")
        .tempfile_in(dir)?;
    let mut input = std::fs::File::open(source)?;
    let mut output = partial.as_file();
    let mut buffer = vec![0u8; 8 << 20];
    let mut done = 0u64;
    loop {
        let n = input.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        output.write_all(&buffer[..n])?;
        done += n as u64;
        report(done);
    }
    partial.as_file().sync_all()?;
    // A temporary file is deleted if anything above failed; persisting is the rename.
    partial.persist_noclobber(target).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::os::unix::fs::MetadataExt;

    use super::*;

    #[test]
    fn on_one_file_system_an_import_is_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("m.gguf");
        std::fs::write(&source, vec![7u8; 1000]).unwrap();
        let target = dir.path().join("models/m.gguf");
        let mut reports = Vec::new();
        link_or_copy(&source, &target, |d| reports.push(d)).unwrap();
        assert_eq!(
            std::fs::metadata(&source).unwrap().ino(),
            std::fs::metadata(&target).unwrap().ino()
        );
        assert!(reports.is_empty(), "a link copies nothing");
    }

    #[test]
    fn a_copy_reports_its_progress_and_appears_whole() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("m.gguf");
        let bytes: Vec<u8> = (0..(20u32 << 20)).map(|i| (i % 251) as u8).collect();
        std::fs::write(&source, &bytes).unwrap();
        let target = dir.path().join("models/m.gguf");
        let mut reports = Vec::new();
        copy_atomically(&source, &target, |d| reports.push(d)).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), bytes);
        assert!(reports.len() >= 3, "{reports:?}");
        assert!(reports.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(reports.last().copied(), Some(bytes.len() as u64));
        let left: Vec<_> = std::fs::read_dir(dir.path().join("models")).unwrap().collect();
        assert_eq!(left.len(), 1, "no temporary file left: {left:?}");
    }
}
