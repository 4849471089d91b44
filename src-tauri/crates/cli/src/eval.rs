//! `hearth eval MODEL [--reference REF] [--text FILE]`: perplexity, and against a
//! reference (the file a quantization came from) the KL divergence and how often both
//! rank the same token first. See `hearth_engine::evaluate` for the method.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;
use hearth_core::SamplingParams;
use hearth_engine::{Engine, EngineConfig, EvalReport, GenerationRequest, Prompt};
use serde::Serialize;

/// The default text: chapters 1-12 of Pride and Prejudice (public domain; see
/// data/eval/README.md), built in so that `hearth eval` needs nothing else.
const DEFAULT_TEXT: &str = include_str!("../../../../data/eval/pride-and-prejudice-1-12.txt");

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// The model to measure: a .gguf path, or the name (or a unique part of it) of an installed model.
    model: String,
    /// The model to compare with (same vocabulary: e.g. the F16 the model was quantized from).
    #[arg(long)]
    reference: Option<String>,
    /// A UTF-8 text file to score (default: chapters 1-12 of Pride and Prejudice, built in).
    #[arg(long)]
    text: Option<PathBuf>,
    /// Tokens per window; the second half of each is scored (llama-perplexity's default: 512).
    #[arg(long, default_value_t = 512)]
    ctx: u32,
    /// Threads (default: the physical cores).
    #[arg(long)]
    threads: Option<u32>,
    /// Print one JSON line.
    #[arg(long)]
    json: bool,
}

pub fn run(args: &EvalArgs) -> Result<()> {
    let text = match &args.text {
        Some(path) => std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?,
        None => DEFAULT_TEXT.to_owned(),
    };
    let load = |name: &str| -> Result<Engine> {
        let path = crate::models::resolve(Some(name))?;
        let mut config = EngineConfig::new(path.clone()).with_n_ctx(args.ctx);
        if let Some(threads) = args.threads {
            config = config.with_threads(threads);
        }
        Engine::load(config).with_context(|| format!("cannot load {}", path.display()))
    };
    // The model first and alone, so that the memory it adds is its own.
    let rss_before = resident_bytes();
    let model = load(&args.model)?;
    let ram_after_load_bytes = resident_bytes().saturating_sub(rss_before);
    let decode_tps = decode_speed(&model)?;
    let reference = args.reference.as_deref().map(load).transpose()?;
    let cancel = Arc::new(AtomicBool::new(false));
    let on_ctrl_c = Arc::clone(&cancel);
    let _ = ctrlc::set_handler(move || on_ctrl_c.store(true, Ordering::Release));
    let json = args.json;
    let report = hearth_engine::evaluate(
        &model,
        reference.as_ref(),
        &text,
        args.ctx as usize,
        &cancel,
        &mut |done, total| {
            if !json {
                eprint!("\rscoring: window {done}/{total} ");
            }
        },
    )?;
    let info = hearth_gguf::read(&model.info().path)?;
    let line = EvalLine {
        delta_ppl_percent: report
            .reference_perplexity
            .map(|r| 100.0 * (report.perplexity / r - 1.0)),
        quantization: info.quantization.clone(),
        file_bytes: info.file_size,
        bits_per_weight: 8.0 * info.tensor_bytes_total() as f64 / info.parameter_count.max(1) as f64,
        ram_after_load_bytes,
        decode_tps,
        report,
    };
    if json {
        println!("{}", serde_json::to_string(&line)?);
        return Ok(());
    }
    eprintln!();
    let report = &line.report;
    println!(
        "{}: perplexity {:.4} over {} tokens ({} windows of {}); {:.2} bits per weight, {:.1} MB on disk, {:.1} MB of RAM after load, {:.1} tokens/s decoding",
        report.model,
        report.perplexity,
        report.tokens_scored,
        report.windows,
        report.window,
        line.bits_per_weight,
        line.file_bytes as f64 / 1e6,
        line.ram_after_load_bytes as f64 / 1e6,
        line.decode_tps
    );
    if let (Some(name), Some(ref_ppl), Some(kl), Some(p99), Some(same)) = (
        &report.reference,
        report.reference_perplexity,
        report.kl_mean,
        report.kl_p99,
        report.same_top_percent,
    ) {
        println!(
            "against {name}: perplexity {ref_ppl:.4} ({:+.2}%), KL divergence {kl:.6} nats/token (99th percentile {p99:.6}), same top token {same:.2}%",
            100.0 * (report.perplexity / ref_ppl - 1.0)
        );
    }
    Ok(())
}

/// One line of `hearth eval --json`: the measurement and what the file costs to run.
#[derive(Debug, Serialize)]
struct EvalLine {
    #[serde(flatten)]
    report: EvalReport,
    /// Perplexity against the reference's, in percent.
    delta_ppl_percent: Option<f64>,
    quantization: Option<String>,
    file_bytes: u64,
    /// Tensor bits per parameter.
    bits_per_weight: f64,
    /// What loading the model added to this process's resident memory.
    ram_after_load_bytes: u64,
    /// Greedy decoding of 64 tokens continuing a story, with the engine's default settings.
    decode_tps: f64,
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
