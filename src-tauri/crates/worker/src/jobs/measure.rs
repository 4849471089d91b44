//! Measuring a model file: perplexity on a text, and against a reference (the file a
//! quantization came from) the KL divergence and top-token agreement
//! (`hearth_engine::evaluate`), with what the file costs to run: bits per weight, the
//! memory loading it adds, decode speed. `hearth eval` and the app's Quantize… flow both
//! run it in a child (`measure-worker`, [`run`]): llama.cpp aborts the process on some
//! model files, and that must cost the measurement, not the command or the app. The
//! result becomes a [`ModelEval`] in the store, which every model card shows.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use anyhow::{Context, Result};
use clap::Args;
use hearth_core::SamplingParams;
use hearth_engine::{Engine, EngineConfig, EvalReport, GenerationRequest, Prompt, Reference, ReferenceSpool};
use hearth_store::{ModelEval, ModelFile, ReferenceComparison};
use serde::{Deserialize, Serialize};

use super::{code_of, run_child_fed, Cancel, Progress};

/// The default text: chapters 1-12 of Pride and Prejudice (public domain; see
/// data/eval/README.md), built in so that measuring needs nothing else.
pub const DEFAULT_TEXT: &str = include_str!("../../../../../data/eval/pride-and-prejudice-1-12.txt");

/// The shorter text the app measures a fresh quantization on: the default text's first
/// chapters (whole paragraphs, about 16,000 characters; 8 windows of 512 tokens for
/// SmolLM2), so that the dialog answers in tens of seconds on two cores. `hearth eval`
/// measures on the whole text.
pub fn quick_text() -> &'static str {
    const CHARS: usize = 16_000;
    let cut = DEFAULT_TEXT[..CHARS.min(DEFAULT_TEXT.len())]
        .rfind("\n\n")
        .unwrap_or(CHARS.min(DEFAULT_TEXT.len()));
    &DEFAULT_TEXT[..cut]
}

/// What to measure.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MeasureRequest {
    pub model: PathBuf,
    pub reference: Option<PathBuf>,
    /// The text to score (default: [`DEFAULT_TEXT`]).
    pub text: Option<String>,
    /// Tokens per window (llama-perplexity's default: 512).
    pub ctx: u32,
    pub threads: Option<u32>,
    /// How the reference is run (default: as the fit planner decides).
    #[serde(default)]
    pub reference_pass: ReferencePass,
    /// The most reference tokens kept per position when spooled (default [`SPOOL_TOP_K`]).
    #[serde(default)]
    pub spool_top_k: Option<usize>,
}

/// How a reference is run beside the model.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum ReferencePass {
    /// Together when the fit planner says both fit in memory at once, else spooled.
    #[default]
    Auto,
    /// Both loaded at once, scored in step.
    Together,
    /// The reference first, alone, its log-probabilities written to a temporary file;
    /// then the model alone, read against them (for models too large to load twice).
    Spooled,
}

/// How the reference was run, in the measurement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum ReferenceRun {
    Together,
    Spooled {
        /// The file's size.
        spool_bytes: u64,
        /// The most tokens kept per position.
        top_k: usize,
        /// The largest probability left out at a position (the KL divergence is computed
        /// over the kept tokens and the rest as one).
        max_tail_mass: f64,
    },
}

/// The most reference tokens kept per position when spooled (at most 64 KiB a position;
/// a sharp distribution stops earlier, at [`hearth_engine::TAIL_CUT`]). Measured on
/// Gemma 3 270M (262,144 tokens, a small model's flat distributions), Q4_0 against F16
/// on 1,020 positions: KL divergence 0.3202 spooled against 0.3208 together (-0.17%),
/// at most 1.4% of the probability left out; 1,024 tokens gave -2.2%, 32,768 -0.01%.
pub const SPOOL_TOP_K: usize = 8192;

/// The measurement: `hearth eval --json` prints it as one line.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Measurement {
    #[serde(flatten)]
    pub report: EvalReport,
    /// Perplexity against the reference's, in percent.
    pub delta_ppl_percent: Option<f64>,
    pub quantization: Option<String>,
    pub file_bytes: u64,
    /// Tensor bits per parameter.
    pub bits_per_weight: f64,
    /// What loading the model added to the measuring process's resident memory.
    pub ram_after_load_bytes: u64,
    /// Greedy decoding of 64 tokens continuing a story, with the engine's default settings.
    pub decode_tps: f64,
    /// SHA-256 of the scored text.
    pub text_sha256: String,
    pub model_path: PathBuf,
    pub reference_path: Option<PathBuf>,
    /// How the reference was run (none without one).
    pub reference_run: Option<ReferenceRun>,
}

impl Measurement {
    /// The record for the store: hashes the model (and the reference) file.
    pub fn to_model_eval(&self) -> Result<ModelEval> {
        let identify = |path: &Path| {
            ModelFile::identify(path)
                .with_context(|| format!("cannot read {} to record its measurement", path.display()))
        };
        let file = identify(&self.model_path)?;
        let reference = match (
            &self.reference_path,
            self.report.reference_perplexity,
            self.report.kl_mean,
        ) {
            (Some(path), Some(perplexity), Some(kl_mean)) => Some(ReferenceComparison {
                hash: identify(path)?.hash,
                name: self.report.reference.clone().unwrap_or_default(),
                perplexity,
                kl_mean,
                kl_p99: self.report.kl_p99.unwrap_or(kl_mean),
                same_top_percent: self.report.same_top_percent.unwrap_or(0.0),
            }),
            _ => None,
        };
        Ok(ModelEval {
            id: 0,
            file,
            quant_type: self.quantization.clone(),
            bits_per_weight: self.bits_per_weight,
            ram_after_load_bytes: Some(self.ram_after_load_bytes),
            decode_tps: Some(self.decode_tps),
            text_hash: self.text_sha256.clone(),
            window: u32::try_from(self.report.window).unwrap_or(u32::MAX),
            tokens_scored: self.report.tokens_scored as u64,
            perplexity: self.report.perplexity,
            reference,
            measured_at: 0,
        })
    }
}

/// Measures in this process. `cancel` stops between windows; `on_window` hears (done,
/// total) over both passes when the reference is spooled.
pub fn measure(
    request: &MeasureRequest,
    cancel: &AtomicBool,
    on_window: &mut dyn FnMut(Progress),
) -> Result<Measurement> {
    let text = request.text.as_deref().unwrap_or(DEFAULT_TEXT);
    let load = |path: &Path| load_engine(request, path);
    let window = request.ctx as usize;
    let pass = reference_pass(request)?;
    let mut report_progress = |pass_index: u32, passes: u32, done: usize, total: usize| {
        let (done, total) = (
            u32::try_from(done).unwrap_or(u32::MAX),
            u32::try_from(total).unwrap_or(u32::MAX),
        );
        on_window(Progress {
            done: pass_index * total + done,
            total: passes * total,
        });
    };
    // Spooled: the reference runs first and alone, and is gone before the model loads.
    let mut spool = match (pass, &request.reference) {
        (Some(ReferencePass::Spooled), Some(path)) => {
            let reference = load(path)?;
            let file =
                tempfile::tempfile().context("cannot create a temporary file for the reference's log-probabilities")?;
            Some(ReferenceSpool::write(
                &reference,
                text,
                window,
                request.spool_top_k.unwrap_or(SPOOL_TOP_K),
                file,
                cancel,
                &mut |done, total| report_progress(0, 2, done, total),
            )?)
        }
        _ => None,
    };
    // The model alone first, so that the memory it adds is its own (llama.cpp and its
    // GPU modules, started once per process, before the measurement).
    hearth_engine::devices()?;
    let rss_before = resident_bytes();
    let model = load(&request.model)?;
    let ram_after_load_bytes = resident_bytes().saturating_sub(rss_before);
    let decode_tps = decode_speed(&model)?;
    let loaded_reference = match (pass, &request.reference) {
        (Some(ReferencePass::Together), Some(path)) => Some(load(path)?),
        _ => None,
    };
    let (reference, passes) = match (&loaded_reference, spool.as_mut()) {
        (Some(engine), _) => (Some(Reference::Loaded(engine)), 1),
        (None, Some(spool)) => (Some(Reference::Spooled(spool)), 2),
        (None, None) => (None, 1),
    };
    let report = hearth_engine::evaluate(&model, reference, text, window, cancel, &mut |done, total| {
        report_progress(passes - 1, passes, done, total)
    })?;
    let reference_run = reference_run(spool.as_ref(), pass);
    let info = hearth_gguf::read(&request.model)?;
    Ok(Measurement {
        delta_ppl_percent: report
            .reference_perplexity
            .map(|r| 100.0 * (report.perplexity / r - 1.0)),
        quantization: info.quantization.clone(),
        file_bytes: info.file_size,
        bits_per_weight: 8.0 * info.tensor_bytes_total() as f64 / info.parameter_count.max(1) as f64,
        ram_after_load_bytes,
        decode_tps,
        text_sha256: hearth_store::text_sha256(text),
        model_path: request.model.clone(),
        reference_path: request.reference.clone(),
        reference_run,
        report,
    })
}

/// Loads a model file with the request's window and threads.
fn load_engine(request: &MeasureRequest, path: &Path) -> Result<Engine> {
    let mut config = EngineConfig::new(path.to_path_buf()).with_n_ctx(request.ctx);
    if let Some(threads) = request.threads {
        config = config.with_threads(threads);
    }
    Engine::load(config).with_context(|| format!("cannot load {}", path.display()))
}

/// How the reference will be run (none without one): `Auto` becomes together or spooled
/// as the fit planner says.
fn reference_pass(request: &MeasureRequest) -> Result<Option<ReferencePass>> {
    Ok(match &request.reference {
        None => None,
        Some(reference) => Some(match request.reference_pass {
            ReferencePass::Auto if fit_together(&request.model, reference, request.ctx)? => ReferencePass::Together,
            ReferencePass::Auto => ReferencePass::Spooled,
            chosen => chosen,
        }),
    })
}

/// How the reference was run, for the measurement: spooled if there is a spool, else
/// together if there was a reference at all.
fn reference_run(spool: Option<&ReferenceSpool>, pass: Option<ReferencePass>) -> Option<ReferenceRun> {
    match (spool, pass) {
        (Some(spool), _) => Some(ReferenceRun::Spooled {
            spool_bytes: spool.bytes(),
            top_k: spool.top_k(),
            max_tail_mass: spool.max_tail_mass(),
        }),
        (None, Some(_)) => Some(ReferenceRun::Together),
        (None, None) => None,
    }
}

/// Whether the fit planner says the model and its reference fit in memory at once, at
/// the window's context, on this machine as it is now.
fn fit_together(model: &Path, reference: &Path, ctx: u32) -> Result<bool> {
    let request = hearth_hw::PlanRequest {
        n_ctx: ctx,
        ..hearth_hw::PlanRequest::default()
    };
    let machine = hearth_hw::Probe::new().sample();
    let plan = |path: &Path| -> Result<hearth_hw::FitPlan> {
        let info = hearth_gguf::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        Ok(hearth_hw::plan(&info, &request, &machine))
    };
    let (a, b) = (plan(model)?, plan(reference)?);
    let together = a.fits_beside(&b);
    tracing::info!(
        model_bytes = a.total_bytes(),
        reference_bytes = b.total_bytes(),
        budget_bytes = a.cpu.budget_bytes(),
        together,
        "measuring against a reference"
    );
    Ok(together)
}

/// The child's command line: `measure-worker [REQUEST_JSON]`.
#[derive(Args, Debug)]
pub struct MeasureWorkerArgs {
    /// The [`MeasureRequest`] as JSON; without it, the request is read from stdin (as
    /// [`run`] sends it: a text to score can be longer than a command line may be).
    request: Option<String>,
}

/// The child: measures and reports each window.
pub fn run_worker(args: &MeasureWorkerArgs) -> Result<()> {
    let never = AtomicBool::new(false);
    let result = request_json(args)
        .and_then(|json| {
            serde_json::from_str::<MeasureRequest>(&json).context("the measure worker's request is not valid JSON")
        })
        .and_then(|request| measure(&request, &never, &mut |p| hearth_child::progress(p.done, p.total)));
    // What fails here without a code of the engine's is Hearth's own (the request, the
    // scratch file): internal.
    hearth_child::report(result, |e| code_of(e, hearth_core::ErrorCode::Internal))
}

fn request_json(args: &MeasureWorkerArgs) -> Result<String> {
    if let Some(json) = &args.request {
        return Ok(json.clone());
    }
    let mut json = String::new();
    std::io::Read::read_to_string(&mut std::io::stdin(), &mut json)
        .context("cannot read the measure worker's request from stdin")?;
    Ok(json)
}

/// Measures in a child of `exe` (a cancel is a kill; a crash is an error that says so).
pub fn run(
    exe: &Path,
    request: &MeasureRequest,
    cancel: &Cancel,
    on_window: &mut dyn FnMut(Progress),
) -> Result<Measurement> {
    let args: Vec<OsString> = vec!["measure-worker".into()];
    let input = serde_json::to_vec(request)?;
    run_child_fed(exe, &args, Some(input), "measure", cancel, on_window)
}

fn resident_bytes() -> u64 {
    memory_stats::memory_stats().map_or(0, |m| m.physical_mem as u64)
}

/// Decode speed on a story continuation (a reply that copies nothing, so drafting would
/// not change it; the request sets none).
fn decode_speed(model: &Engine) -> Result<f64> {
    let out = model
        .generate(GenerationRequest {
            prompt: Prompt::Text("It was a bright cold day in April, and the village".into()),
            params: SamplingParams::greedy(64),
        })?
        .collect()?;
    model.reset_cache()?;
    Ok(out.metrics.decode_tps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_quick_text_is_whole_paragraphs_from_the_start() {
        let quick = quick_text();
        assert!(DEFAULT_TEXT.starts_with(quick));
        assert!(quick.len() > 12_000 && quick.len() <= 16_000, "{}", quick.len());
        assert!(DEFAULT_TEXT[quick.len()..].starts_with("\n\n"));
    }
}
