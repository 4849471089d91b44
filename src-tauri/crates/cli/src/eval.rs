//! `hearth eval MODEL [--reference REF] [--text FILE]`: perplexity, and against a
//! reference (the file a quantization came from) the KL divergence and how often both
//! rank the same token first (`hearth_worker::jobs::measure`; see
//! `hearth_engine::evaluate` for the method). The result is recorded in the database, so
//! `hearth models` and the app's model list show it beside the file.
//!
//! The measuring runs in a child process (`hearth measure-worker`), as every command
//! that loads a model does: llama.cpp aborts the process on some model files, and that
//! must end in an error that says so, not in `hearth eval` dying of a signal. Ctrl-C
//! kills the child.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use hearth_worker::jobs::measure::{self, MeasureRequest, Measurement, ReferencePass, ReferenceRun};

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
    /// How to run the reference: beside the model (together), or first and alone with its
    /// log-probabilities kept in a temporary file (spooled: for models too large to load
    /// twice). Default: together when the fit planner says both fit in memory at once.
    #[arg(long, value_enum, default_value_t = ReferencePass::Auto)]
    reference_pass: ReferencePass,
    /// Spooled: the most reference tokens kept per position (more: closer to the full
    /// KL divergence, a larger temporary file; default 8192).
    #[arg(long)]
    spool_top_k: Option<usize>,
    /// Tokens per window; the second half of each is scored (llama-perplexity's default: 512).
    #[arg(long, default_value_t = 512)]
    ctx: u32,
    /// Threads (default: the physical cores).
    #[arg(long)]
    threads: Option<u32>,
    /// Do not record the result in the database.
    #[arg(long)]
    no_record: bool,
    /// Print one JSON line.
    #[arg(long)]
    json: bool,
}

pub fn run(args: &EvalArgs) -> Result<()> {
    let text = args
        .text
        .as_ref()
        .map(|path| std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display())))
        .transpose()?;
    let request = MeasureRequest {
        model: crate::models::resolve(Some(&args.model))?,
        reference: args
            .reference
            .as_deref()
            .map(|r| crate::models::resolve(Some(r)))
            .transpose()?,
        text,
        ctx: args.ctx,
        threads: args.threads,
        reference_pass: args.reference_pass,
        spool_top_k: args.spool_top_k,
    };
    let exe = std::env::current_exe().context("cannot find the hearth executable")?;
    let cancel = crate::quantize::ctrl_c_cancel();
    let json = args.json;
    let mut shown = false;
    let line = measure::run(&exe, &request, &cancel, &mut |p| {
        if !json {
            eprint!("\rscoring: window {}/{} ", p.done, p.total);
            shown = true;
        }
    });
    if shown {
        eprintln!();
    }
    let line = line?;
    if !args.no_record {
        record(&line);
    }
    if json {
        println!("{}", serde_json::to_string(&line)?);
        return Ok(());
    }
    print_text(&line);
    Ok(())
}

/// Records the measurement for the model cards; a database that cannot be written costs
/// the record, not the result (which is printed either way).
fn record(line: &Measurement) {
    let result = line
        .to_model_eval()
        .and_then(|eval| Ok(hearth_store::Store::open_default()?.record_model_eval(&eval)?));
    if let Err(e) = result {
        eprintln!("warning: the measurement was not recorded in the database ({e:#})");
    }
}

fn print_text(line: &Measurement) {
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
    if let Some(ReferenceRun::Spooled {
        spool_bytes,
        top_k,
        max_tail_mass,
    }) = &line.reference_run
    {
        println!(
            "the reference ran first, alone: {:.1} MB of its log-probabilities (at most {top_k} tokens per position, at most {max_tail_mass:.1e} of the probability left out)",
            *spool_bytes as f64 / 1e6
        );
    }
}
