//! How a model is loaded: the options shared by the worker and the CLI commands that
//! load a model (`--model`, `--ctx`, `--threads`, `--batch`, `--gpu-layers`), the fit
//! planner's answer for `--gpu-layers auto`, and the memory measured after a load.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use hearth_engine::{DeviceChoice, Engine, EngineConfig};
use hearth_hw::{FitPlan, PlanRequest, Verdict};
use hearth_store::{PerfMetrics, PerfRecord, Store};

const MIB: f64 = 1024.0 * 1024.0;

/// RssAnon + RssFile: heap and touched file pages (the mmapped weights).
pub fn resident_bytes() -> Option<u64> {
    let m = hearth_hw::proc_files::self_status_memory()?;
    Some(m.rss_anon? + m.rss_file?)
}

#[derive(Args, Debug, Clone)]
pub struct ModelOptions {
    /// Model: a .gguf path, or the name (or a unique part of it) of an installed model.
    /// Default: the default chat model.
    #[arg(short, long, env = "HEARTH_MODEL")]
    pub model: Option<String>,
    /// Context size in tokens.
    #[arg(long, default_value_t = 4096)]
    pub ctx: u32,
    /// Threads (default: one per physical core).
    #[arg(short = 't', long)]
    pub threads: Option<u32>,
    /// Prompt batch size.
    #[arg(long, default_value_t = 512)]
    pub batch: u32,
    /// Layers to offload to the GPU: `auto` (the fit planner's answer for this machine) or a number.
    #[arg(long, default_value = "auto", value_parser = parse_gpu_layers)]
    pub gpu_layers: GpuLayers,
    /// The device to run on: `auto` (a CUDA GPU, else a Vulkan GPU, else the CPU), `cpu`,
    /// or a device `hearth hw` lists (e.g. `vulkan0`).
    #[arg(long, default_value = "auto", env = "HEARTH_DEVICE", value_parser = parse_device)]
    pub device: DeviceChoice,
    /// Most tokens guessed from the conversation and checked in one step (0 = off).
    /// Replies that repeat the context come faster; the text is the same either way.
    #[arg(long, default_value_t = hearth_engine::MAX_DRAFT as u32)]
    pub draft: u32,
    /// Sequences served at once (continuous batching), each with the whole context:
    /// `auto` (as many as fit beside the weights, at most 4) or a number. `hearth serve`
    /// defaults to `auto`; one-user commands to 1.
    #[arg(long, value_parser = parse_parallel)]
    pub parallel: Option<Parallel>,
}

/// How many sequences to serve at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parallel {
    Auto,
    Exactly(u32),
}

/// `--parallel auto` never plans more: on a CPU a batch of many sequences is no longer
/// cheap (each row costs compute), and four is what a person, an editor and a script
/// use at once.
pub const AUTO_PARALLEL_MOST: u32 = 4;

impl std::fmt::Display for Parallel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Parallel::Auto => f.write_str("auto"),
            Parallel::Exactly(n) => write!(f, "{n}"),
        }
    }
}

fn parse_parallel(s: &str) -> std::result::Result<Parallel, String> {
    if s.eq_ignore_ascii_case("auto") {
        return Ok(Parallel::Auto);
    }
    match s.parse() {
        Ok(n) if (1..=hearth_engine::MAX_PARALLEL).contains(&n) => Ok(Parallel::Exactly(n)),
        _ => Err(format!(
            "--parallel must be `auto` or a number of sequences from 1 to {}, not {s:?}",
            hearth_engine::MAX_PARALLEL
        )),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GpuLayers {
    Auto,
    Exactly(u32),
}

impl std::fmt::Display for GpuLayers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GpuLayers::Auto => f.write_str("auto"),
            GpuLayers::Exactly(n) => write!(f, "{n}"),
        }
    }
}

fn parse_device(s: &str) -> std::result::Result<DeviceChoice, String> {
    s.parse().map_err(|e: hearth_engine::EngineError| e.to_string())
}

fn parse_gpu_layers(s: &str) -> std::result::Result<GpuLayers, String> {
    if s.eq_ignore_ascii_case("auto") {
        return Ok(GpuLayers::Auto);
    }
    s.parse()
        .map(GpuLayers::Exactly)
        .map_err(|_| format!("--gpu-layers must be `auto` or a number of layers, not {s:?}"))
}

impl ModelOptions {
    pub fn resolve_path(&self) -> Result<PathBuf> {
        crate::models::resolve(self.model.as_deref())
    }

    /// The engine settings, with `--gpu-layers auto` resolved by the fit planner
    /// against this machine's live free memory.
    pub fn config(&self) -> Result<EngineConfig> {
        Ok(self.planned_config()?.0)
    }

    /// [`Self::config`] plus the plan it came from (absent when the file is unreadable).
    pub fn planned_config(&self) -> Result<(EngineConfig, Option<FitPlan>)> {
        let path = self.resolve_path()?;
        let mut config = EngineConfig::new(&path).with_n_ctx(self.ctx);
        config.n_threads = self.threads;
        config.n_batch = self.batch;
        config.max_draft = self.draft;
        config.device = self.device.clone();
        // A file the planner cannot read is reported by Engine::load with the same checks.
        let plan = hearth_gguf::read(&path).ok().map(|header| {
            let request = PlanRequest {
                n_ctx: self.ctx,
                n_batch: self.batch,
                n_gpu_layers: match self.gpu_layers {
                    GpuLayers::Auto => None,
                    GpuLayers::Exactly(n) => Some(n),
                },
                ..PlanRequest::default()
            };
            hearth_hw::plan_now(&header, &request)
        });
        config.n_parallel = match (self.parallel, &plan) {
            (None, _) => 1,
            (Some(Parallel::Exactly(n)), _) => n,
            (Some(Parallel::Auto), Some(plan)) => plan.parallel_sequences(AUTO_PARALLEL_MOST),
            (Some(Parallel::Auto), None) => 1,
        };
        config.n_gpu_layers = match (self.gpu_layers, &plan) {
            (GpuLayers::Exactly(n), _) => n,
            (GpuLayers::Auto, Some(plan)) if hearth_engine::gpu_offload_supported() => plan.n_gpu_layers,
            (GpuLayers::Auto, _) => 0,
        };
        Ok((config, plan))
    }

    /// Arguments after `hearth worker --model PATH` that load the model the same way.
    pub fn worker_args(&self) -> Vec<std::ffi::OsString> {
        let mut args: Vec<String> = vec![
            "--ctx".into(),
            self.ctx.to_string(),
            "--batch".into(),
            self.batch.to_string(),
            "--gpu-layers".into(),
            self.gpu_layers.to_string(),
            "--draft".into(),
            self.draft.to_string(),
            "--device".into(),
            self.device.to_string(),
        ];
        if let Some(threads) = self.threads {
            args.extend(["--threads".into(), threads.to_string()]);
        }
        if let Some(parallel) = self.parallel {
            args.extend(["--parallel".into(), parallel.to_string()]);
        }
        args.into_iter().map(Into::into).collect()
    }

    pub fn load(&self) -> Result<Engine> {
        let (config, plan) = self.planned_config()?;
        eprintln!("loading {} …", config.model_path.display());
        if let Some(plan) = plan.as_ref().filter(|p| p.verdict == Verdict::DoesNotFit) {
            eprintln!("warning: {}", plan.reason);
            for suggestion in &plan.suggestions {
                eprintln!("  try: {suggestion}");
            }
        }
        // llama.cpp and its GPU modules start once per process, not per model: started
        // before the measurement that is logged beside the plan.
        hearth_engine::devices()?;
        let before = resident_bytes();
        let engine = Engine::load(config)?;
        record_load(engine.info(), plan.as_ref(), before, &hearth_store::default_db_path());
        Ok(engine)
    }
}

/// The memory use measured after a load, beside the plan's prediction: in the log and
/// as a `load_model` performance record in the database at `db`. `before` is
/// [`resident_bytes`] before the load.
pub fn record_load(info: &hearth_engine::ModelInfo, plan: Option<&FitPlan>, before: Option<u64>, db: &std::path::Path) {
    let (Some(plan), Some(before), Some(after)) = (plan, before, resident_bytes()) else {
        return;
    };
    // The plan's promise, checked on every load (the engine warms up, so weights are
    // resident), for the KV cache the engine allocated at load.
    let at_load = plan_at_load(info, plan);
    let predicted = at_load.as_ref().unwrap_or(plan).cpu.resident_bytes() as f64 / MIB;
    let measured = after.saturating_sub(before) as f64 / MIB;
    tracing::info!(
        model = %info.name,
        n_ctx = info.n_ctx,
        n_ctx_allocated = info.n_ctx_initial,
        n_gpu_layers = plan.n_gpu_layers,
        predicted_ram_mib = format!("{predicted:.1}"),
        measured_ram_mib = format!("{measured:.1}"),
        error_pct = format!("{:+.1}", (predicted - measured) / measured.max(1.0) * 100.0),
        "memory after load vs plan"
    );
    log_load(info, predicted, measured, db);
}

/// The plan for what a load allocates: the engine's KV cache starts at `n_ctx_initial`
/// and grows toward the planned context later. `None` when that is the planned context.
fn plan_at_load(info: &hearth_engine::ModelInfo, plan: &FitPlan) -> Option<FitPlan> {
    if info.n_ctx_initial >= plan.n_ctx {
        return None;
    }
    let header = hearth_gguf::read(&info.path).ok()?;
    let request = PlanRequest {
        n_ctx: info.n_ctx_initial,
        n_batch: plan.n_batch,
        n_gpu_layers: Some(plan.n_gpu_layers),
        ..PlanRequest::default()
    };
    Some(hearth_hw::plan_now(&header, &request))
}

/// Keeps each load's measured memory beside the planner's prediction, so the planner's
/// accuracy on real machines can be checked over time. A failure is logged, never fatal.
fn log_load(info: &hearth_engine::ModelInfo, predicted_ram_mib: f64, measured_ram_mib: f64, db: &std::path::Path) {
    let mut metrics = PerfMetrics::default();
    for (key, value) in [
        ("n_ctx", serde_json::json!(info.n_ctx)),
        ("n_ctx_allocated", serde_json::json!(info.n_ctx_initial)),
        ("n_gpu_layers", serde_json::json!(info.n_gpu_layers)),
        ("threads", serde_json::json!(info.threads)),
        ("predicted_ram_mib", serde_json::json!(predicted_ram_mib)),
        ("measured_ram_mib", serde_json::json!(measured_ram_mib)),
    ] {
        metrics.extra.insert(key.into(), value);
    }
    let record = PerfRecord {
        operation: "load_model".into(),
        latency_ms: info.load_ms,
        tokens_processed: None,
        backend: ENGINE_BACKEND.into(),
        model: info.name.clone(),
        timestamp: None,
        metrics,
    };
    if let Err(e) = Store::open(db).and_then(|store| store.log_perf(&record)) {
        tracing::warn!(error = %e, operation = %record.operation, "performance record not saved");
    }
}

/// The backend name performance records of the in-process engine carry.
pub const ENGINE_BACKEND: &str = "llama.cpp";
