//! Quantize… in the app: the prediction before anything is written (size, the fit
//! planner's verdict, free space, whether the source was already quantized), then the
//! quantization and a measurement of the result against its source, each in a child
//! process (`hearth_worker::jobs`), with progress on a channel and a cancel that kills
//! the child. The measurement goes into the store, so the model list shows it.

use std::path::Path;
use std::sync::Arc;

use hearth_core::ErrorCode;
use hearth_engine::QuantType;
use hearth_worker::jobs::measure::{self, MeasureRequest, Measurement, ReferencePass};
use hearth_worker::jobs::quantize::{self as job, verdict_words, QuantizeJob, QuantizeOutcome, QuantizePlan};
use hearth_worker::jobs::{Cancel, ChildError, JobError};
use serde::Serialize;
use tauri::ipc::Channel;
use tauri::State;

use super::models::{describe, snapshot, ModelView};
use crate::error::{AppError, AppResult};
use crate::state::AppState;

/// What quantizing a model to a type will make, known before anything is written.
#[derive(Debug, Clone, PartialEq, Serialize, specta::Type)]
#[serde(rename_all = "camelCase")]
pub struct QuantizePlanView {
    pub source: String,
    pub target: String,
    /// The source's type ("Q4_K_M", "F16"...).
    pub source_type: Option<String>,
    /// The file it will write (beside the source).
    pub output: String,
    pub source_bytes: u64,
    pub predicted_bytes: u64,
    pub bits_per_weight: f64,
    /// The fit planner's verdict for the output on this machine, in words.
    pub fit: String,
    pub free_bytes: u64,
    /// Whether the output fits the free space.
    pub enough_space: bool,
    /// The source is already quantized: the errors of both quantizations compound, and
    /// the user must say so (`allowRequantize`).
    pub requantize: bool,
}

impl From<&QuantizePlan> for QuantizePlanView {
    fn from(p: &QuantizePlan) -> Self {
        Self {
            source: file_name(&p.source),
            target: p.target.to_owned(),
            source_type: p.source_type.clone(),
            output: file_name(&p.output),
            source_bytes: p.source_bytes,
            predicted_bytes: p.predicted_bytes,
            bits_per_weight: p.bits_per_weight,
            fit: verdict_words(p.fit).to_owned(),
            free_bytes: p.free_bytes,
            enough_space: p.space_needed() <= p.free_bytes,
            requantize: p.requantize,
        }
    }
}

/// Which step is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, specta::Type)]
#[serde(rename_all = "camelCase")]
pub enum QuantizePhase {
    /// Tensors written of all.
    Quantizing,
    /// Windows of text scored of all.
    Measuring,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, specta::Type)]
#[serde(rename_all = "camelCase")]
pub struct QuantizeProgressView {
    pub phase: QuantizePhase,
    pub done: u32,
    pub total: u32,
}

/// The new model, measured.
#[derive(Debug, Clone, PartialEq, Serialize, specta::Type)]
#[serde(rename_all = "camelCase")]
pub struct QuantizeResultView {
    /// The new file as the model list shows it (its measurement included).
    pub model: ModelView,
    /// e.g. "Q4_K_M: 3.1× smaller than F16, top token same as F16 in 94% of positions".
    pub summary: String,
    pub quantize_ms: f64,
    pub measure_ms: f64,
}

/// The types a model can be quantized to, smallest loss first.
#[tauri::command]
#[specta::specta]
pub async fn quantize_types() -> AppResult<Vec<String>> {
    Ok(QuantType::ALL.iter().map(|t| t.name().to_owned()).collect())
}

/// Predicts quantizing `model` (a name in the models folder, or a path) to `target`.
#[tauri::command]
#[specta::specta]
pub async fn plan_quantization(
    state: State<'_, AppState>,
    model: String,
    target: String,
) -> AppResult<QuantizePlanView> {
    let job = quantize_job(&state, &model, &target, true)?;
    let exe = state.job_program.clone();
    blocking(move || job::plan(&exe, &job, &Cancel::new()).map(|p| QuantizePlanView::from(&p))).await
}

/// Quantizes `model` to `target`, then measures the result against its source on a short
/// text; progress goes to `on_event`. One at a time; [`cancel_quantization`] stops it
/// and nothing is left behind.
#[tauri::command]
#[specta::specta]
pub async fn quantize_model(
    state: State<'_, AppState>,
    model: String,
    target: String,
    allow_requantize: bool,
    on_event: Channel<QuantizeProgressView>,
) -> AppResult<QuantizeResultView> {
    let job = quantize_job(&state, &model, &target, allow_requantize)?;
    let Some(_running) = state.begin_quantization() else {
        return Err(AppError::new(
            ErrorCode::Busy,
            "A quantization is already running: wait for it or cancel it first",
        ));
    };
    let exe = state.job_program.clone();
    let cancel = Arc::clone(&state.quantize_cancel);
    let store = state.manager.store().clone();
    let (hw, n_ctx) = (snapshot(&state), state.manager.settings().embedded.ctx);
    blocking(move || -> anyhow::Result<QuantizeResultView> {
        let progress = |phase| {
            let channel = on_event.clone();
            move |p: hearth_worker::jobs::Progress| {
                let _ = channel.send(QuantizeProgressView {
                    phase,
                    done: p.done,
                    total: p.total,
                });
            }
        };
        let plan = job::plan(&exe, &job, &cancel)?;
        let outcome = job::run(&exe, &job, &plan, &cancel, &mut progress(QuantizePhase::Quantizing))?;
        let started = std::time::Instant::now();
        let request = MeasureRequest {
            model: outcome.output.clone(),
            reference: Some(job.source.clone()),
            text: Some(measure::quick_text().to_owned()),
            ctx: 512,
            threads: None,
            reference_pass: ReferencePass::Auto,
            spool_top_k: None,
        };
        // The file is made: a failed or cancelled measurement keeps it (unmeasured).
        let measurement = measure::run(&exe, &request, &cancel, &mut progress(QuantizePhase::Measuring))?;
        store.blocking().record_model_eval(&measurement.to_model_eval()?)?;
        Ok(QuantizeResultView {
            model: describe(&outcome.output, &hw, n_ctx, store.blocking()),
            summary: summary(&plan, &outcome, &measurement),
            quantize_ms: outcome.ms,
            measure_ms: started.elapsed().as_secs_f64() * 1000.0,
        })
    })
    .await
}

/// Stops the quantization (or its measurement) in progress; nothing when none runs.
#[tauri::command]
#[specta::specta]
pub async fn cancel_quantization(state: State<'_, AppState>) -> AppResult<()> {
    if state.quantizing() {
        state.quantize_cancel.cancel();
    }
    Ok(())
}

fn quantize_job(state: &AppState, model: &str, target: &str, allow_requantize: bool) -> AppResult<QuantizeJob> {
    let target = QuantType::parse(target).map_err(|e| AppError::new(ErrorCode::InvalidType, e.to_string()))?;
    let given = Path::new(model);
    let source = if given.is_absolute() {
        given.to_path_buf()
    } else {
        state.paths.models_dir.join(given)
    };
    Ok(QuantizeJob {
        source,
        target,
        output: None,
        allow_requantize,
        threads: 0,
    })
}

/// Runs a job on the blocking pool and words its error for the UI.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> anyhow::Result<T> + Send + 'static) -> AppResult<T> {
    tauri::async_runtime::spawn_blocking(f)
        .await
        .map_err(AppError::internal)?
        .map_err(job_error)
}

/// The code for a job's error: the Quantize… dialog's own codes (from this process or a
/// child's answer); anything else, whatever its child said, is "quantization failed",
/// whose action (the log) fits the dialog where "choose another model in Settings" would not.
fn job_error(e: anyhow::Error) -> AppError {
    let code = match (e.downcast_ref::<ChildError>(), e.downcast_ref::<JobError>()) {
        (Some(ChildError::Cancelled), _) => ErrorCode::Cancelled,
        (Some(ChildError::Failed { code, .. }), _)
            if matches!(
                code,
                ErrorCode::AlreadyQuantized | ErrorCode::InvalidType | ErrorCode::DiskFull
            ) =>
        {
            *code
        }
        (_, Some(JobError::NotEnoughSpace { .. })) => ErrorCode::DiskFull,
        _ => match e.downcast_ref::<hearth_engine::QuantizeError>() {
            Some(hearth_engine::QuantizeError::AlreadyQuantized { .. }) => ErrorCode::AlreadyQuantized,
            _ => ErrorCode::QuantizeFailed,
        },
    };
    AppError::new(code, format!("{e:#}"))
}

/// "Q4_K_M: 3.1× smaller than F16 (253.1 MB), top token same as F16's in 94% of positions,
/// perplexity +0.2%".
fn summary(plan: &QuantizePlan, outcome: &QuantizeOutcome, m: &Measurement) -> String {
    let source = plan.source_type.as_deref().unwrap_or("the source");
    let ratio = plan.source_bytes as f64 / outcome.bytes.max(1) as f64;
    let size = if ratio >= 1.0 {
        format!("{ratio:.1}× smaller than {source}")
    } else {
        format!("{:.1}× larger than {source}", 1.0 / ratio)
    };
    let mut words = format!("{}: {size} ({})", plan.target, job::human_bytes(outcome.bytes));
    if let Some(same) = m.report.same_top_percent {
        words.push_str(&format!(", top token same as {source} in {same:.0}% of positions"));
    }
    if let Some(delta) = m.delta_ppl_percent {
        words.push_str(&format!(", perplexity {delta:+.1}%"));
    }
    words
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned())
}
