//! How a model is loaded: the options shared by the worker and the CLI commands that
//! load a model (`--model`, `--ctx`, `--threads`, `--batch`, `--gpu-layers`), the fit
//! planner's answer for `--gpu-layers auto`, and the memory measured after a load.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use hearth_engine::{DeviceChoice, Engine, EngineConfig, LayerFallback};

use crate::placement::{self, VramCheck};
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
    /// The fewest guessed tokens checked whenever there is a guess (0 = as many as pay
    /// on this machine, measured as it runs). Raise it on a GPU, where checking is
    /// nearly free; at most `--draft`.
    #[arg(long, default_value_t = 0)]
    pub draft_min: u32,
    /// Sequences served at once (continuous batching), each with the whole context:
    /// `auto` (as many as fit beside the weights, at most 4) or a number. `hearth serve`
    /// defaults to `auto`; one-user commands to 1.
    #[arg(long, value_parser = parse_parallel)]
    pub parallel: Option<Parallel>,
    /// A Jinja chat template to write chats with instead of the model's own (the
    /// `tokenizer.chat_template` in its GGUF file), as Hugging Face and llama-server
    /// render templates. Gives a base model chats, or fixes a model's broken template.
    #[arg(long, env = "HEARTH_CHAT_TEMPLATE_FILE")]
    pub chat_template_file: Option<PathBuf>,
}

/// How many sequences to serve at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parallel {
    Auto,
    Exactly(u32),
}

pub use hearth_core::AUTO_PARALLEL_MOST;

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

    /// [`Self::config`] plus the plan it came from (absent when the file is unreadable):
    /// made against the free memory of the device the load will use (`--device`), which
    /// the config then names, so the plan and the load agree on it.
    pub fn planned_config(&self) -> Result<(EngineConfig, Option<FitPlan>)> {
        let path = self.resolve_path()?;
        let mut config = EngineConfig::new(&path).with_n_ctx(self.ctx);
        config.n_threads = self.threads;
        config.n_batch = self.batch;
        config.max_draft = self.draft;
        config.min_draft = self.draft_min;
        config.chat_template = self.chat_template()?;
        let device = hearth_engine::resolve_device(&self.device)?;
        config.device = match &device {
            Some(d) => DeviceChoice::Named(d.name.clone()),
            None => DeviceChoice::Cpu,
        };
        let request = PlanRequest {
            n_ctx: self.ctx,
            n_batch: self.batch,
            n_gpu_layers: match self.gpu_layers {
                GpuLayers::Auto => None,
                GpuLayers::Exactly(n) => Some(n),
            },
            ..PlanRequest::default()
        };
        // A file the planner cannot read is reported by Engine::load with the same checks.
        let header = hearth_gguf::read(&path).ok();
        let plan = match &header {
            Some(header) => Some(placement::plan_on(header, &request, device.as_ref())?),
            None => None,
        };
        config.n_parallel = match (self.parallel, &plan) {
            (None, _) => 1,
            (Some(Parallel::Exactly(n)), _) => n,
            (Some(Parallel::Auto), Some(plan)) => plan.parallel_sequences(AUTO_PARALLEL_MOST),
            (Some(Parallel::Auto), None) => 1,
        };
        config.n_gpu_layers = match (self.gpu_layers, &plan) {
            (_, _) if device.is_none() => 0,
            (GpuLayers::Exactly(n), _) => n,
            (GpuLayers::Auto, Some(plan)) => plan.n_gpu_layers,
            (GpuLayers::Auto, None) => 0,
        };
        if let (Some(header), Some(device)) = (header, device) {
            config.layer_fallback = Some(replan_after_failure(header, request, device.name));
        }
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
            "--draft-min".into(),
            self.draft_min.to_string(),
            "--device".into(),
            self.device.to_string(),
        ];
        if let Some(threads) = self.threads {
            args.extend(["--threads".into(), threads.to_string()]);
        }
        if let Some(parallel) = self.parallel {
            args.extend(["--parallel".into(), parallel.to_string()]);
        }
        let mut args: Vec<std::ffi::OsString> = args.into_iter().map(Into::into).collect();
        if let Some(file) = &self.chat_template_file {
            // Absolute: the worker need not share this process's directory.
            let file = std::path::absolute(file).unwrap_or_else(|_| file.clone());
            args.extend(["--chat-template-file".into(), file.into_os_string()]);
        }
        args
    }

    /// The text of `--chat-template-file`, if given.
    fn chat_template(&self) -> Result<Option<String>> {
        let Some(file) = &self.chat_template_file else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(file).map_err(|e| {
            anyhow::anyhow!(
                "cannot read the chat template file {}: {e}. Give the path of a Jinja template (a text file)",
                file.display()
            )
        })?;
        Ok(Some(text))
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
        let baseline = LoadBaseline::now(&config);
        let engine = Engine::load(config)?;
        if let Some(note) = &engine.info().placement_note {
            eprintln!("warning: {note}");
        }
        record_load(engine.info(), &baseline, &hearth_store::default_db_path());
        Ok(engine)
    }
}

/// After a load failed with `failed` layers on the GPU: the layers the fit planner
/// gives the device's free memory now (the failed load's allocations are gone), or
/// `None` when it cannot plan; the engine applies `hearth_core::fewer_gpu_layers`.
fn replan_after_failure(header: hearth_gguf::GgufInfo, request: PlanRequest, device: String) -> LayerFallback {
    LayerFallback::new(move |failed| {
        let live = hearth_engine::devices()
            .ok()
            .and_then(|all| all.into_iter().find(|d| d.name == device));
        let request = PlanRequest {
            n_gpu_layers: None,
            ..request.clone()
        };
        let layers = placement::plan_on(&header, &request, live.as_ref())
            .ok()
            .map(|plan| plan.n_gpu_layers);
        tracing::info!(failed, ?layers, device = %device, "re-planned the layers after a failed load");
        layers
    })
}

/// What memory looked like just before a load: the process's resident memory and the
/// free memory of the device the load is for. llama.cpp and its GPU modules start
/// first (once per process, not per model), so they are not counted as the model's.
#[derive(Debug, Clone)]
pub struct LoadBaseline {
    rss: Option<u64>,
    device_free: Option<(String, u64)>,
}

impl LoadBaseline {
    pub fn now(config: &EngineConfig) -> Self {
        let _ = hearth_engine::devices();
        let device_free = match &config.device {
            DeviceChoice::Named(name) if config.n_gpu_layers > 0 => {
                placement::device_free_bytes(name).map(|free| (name.clone(), free))
            }
            _ => None,
        };
        Self {
            rss: resident_bytes(),
            device_free,
        }
    }

    /// The device memory the load of `info` took, beside the plan for what was loaded
    /// (`None` on the CPU, or when either figure is unknown).
    pub fn vram_check(&self, info: &hearth_engine::ModelInfo) -> Option<VramCheck> {
        self.vram_against(info, &plan_loaded(info)?)
    }

    fn vram_against(&self, info: &hearth_engine::ModelInfo, plan: &FitPlan) -> Option<VramCheck> {
        let (name, before) = self.device_free.as_ref()?;
        if *name != info.device || info.n_gpu_layers == 0 {
            return None;
        }
        let after = placement::device_free_bytes(name)?;
        // A driver that reports the same free memory whatever is allocated (Mesa's
        // lavapipe does) gives no measurement, not a measurement of zero.
        if after >= *before {
            tracing::debug!(device = %name, "the device's free memory did not change with the load: not measured");
            return None;
        }
        Some(VramCheck {
            measured_bytes: before - after,
            planned_bytes: placement::planned_gpu_bytes(plan),
        })
    }
}

/// The memory a load took, measured, beside the fit planner's figures for what was
/// loaded (the layers and device it ended on, the cache allocated at load): RAM always,
/// device memory when layers went to a GPU (free memory before minus after, from the
/// device's own backend). In the log, as a warning when the device memory is over 10%
/// off the plan, and as a `load_model` performance record in the database at `db`.
pub fn record_load(
    info: &hearth_engine::ModelInfo,
    baseline: &LoadBaseline,
    db: &std::path::Path,
) -> Option<VramCheck> {
    let plan = plan_loaded(info)?;
    let vram = baseline.vram_against(info, &plan);
    if let Some(check) = vram.filter(VramCheck::off_plan) {
        tracing::warn!(
            model = %info.name,
            device = %info.device,
            n_gpu_layers = info.n_gpu_layers,
            "device memory after load is {:.0} MiB, the plan said {:.0} MiB ({:+.0}%)",
            check.measured_mib(),
            check.planned_mib(),
            check.error() * 100.0
        );
    }
    let (Some(before), Some(after)) = (baseline.rss, resident_bytes()) else {
        return vram;
    };
    let predicted = plan.cpu.resident_bytes() as f64 / MIB;
    let measured = after.saturating_sub(before) as f64 / MIB;
    tracing::info!(
        model = %info.name,
        n_ctx = info.n_ctx,
        n_ctx_allocated = info.n_ctx_initial,
        device = %info.device,
        n_gpu_layers = info.n_gpu_layers,
        predicted_ram_mib = format!("{predicted:.1}"),
        measured_ram_mib = format!("{measured:.1}"),
        error_pct = format!("{:+.1}", (predicted - measured) / measured.max(1.0) * 100.0),
        predicted_vram_mib = vram.map(|v| format!("{:.1}", v.planned_mib())),
        measured_vram_mib = vram.map(|v| format!("{:.1}", v.measured_mib())),
        "memory after load vs plan"
    );
    log_load(info, predicted, measured, vram, db);
    vram
}

/// The fit plan for what a load allocated: the layers and device it ended on, and the
/// KV cache at load (it grows toward `n_ctx` later). `None` when the file is unreadable.
pub fn plan_loaded(info: &hearth_engine::ModelInfo) -> Option<FitPlan> {
    let header = hearth_gguf::read(&info.path).ok()?;
    let device = (info.device != "CPU")
        .then(|| {
            hearth_engine::devices()
                .ok()?
                .into_iter()
                .find(|d| d.name == info.device)
        })
        .flatten();
    let request = PlanRequest {
        n_ctx: info.n_ctx_initial,
        n_batch: info.n_batch,
        n_gpu_layers: Some(info.n_gpu_layers),
        ..PlanRequest::default()
    };
    placement::plan_on(&header, &request, device.as_ref()).ok()
}

/// Keeps each load's measured memory beside the planner's prediction, so the planner's
/// accuracy on real machines can be checked over time. A failure is logged, never fatal.
fn log_load(
    info: &hearth_engine::ModelInfo,
    predicted_ram_mib: f64,
    measured_ram_mib: f64,
    vram: Option<VramCheck>,
    db: &std::path::Path,
) {
    let mut metrics = PerfMetrics::default();
    for (key, value) in [
        ("n_ctx", serde_json::json!(info.n_ctx)),
        ("n_ctx_allocated", serde_json::json!(info.n_ctx_initial)),
        ("n_gpu_layers", serde_json::json!(info.n_gpu_layers)),
        ("threads", serde_json::json!(info.threads)),
        ("predicted_ram_mib", serde_json::json!(predicted_ram_mib)),
        ("measured_ram_mib", serde_json::json!(measured_ram_mib)),
        ("device", serde_json::json!(info.device)),
        ("predicted_vram_mib", serde_json::json!(vram.map(|v| v.planned_mib()))),
        ("measured_vram_mib", serde_json::json!(vram.map(|v| v.measured_mib()))),
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
