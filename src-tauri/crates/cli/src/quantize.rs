//! `hearth quantize SRC --type T [-o OUT]`: make a smaller GGUF file with llama.cpp's
//! quantizer, in a worker process (`hearth_worker::jobs::quantize`, which the app's
//! Quantize… dialog runs too).
//!
//! Before anything is written: the source is checked by Hearth's GGUF reader, an
//! already-quantized source needs `--allow-requantize`, and a dry run predicts the
//! output's size, shown with the fit planner's verdict for it on this machine and
//! checked against the free space of the output's disk. Ctrl-C kills the worker and
//! removes the partial file.

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use anyhow::{Context, Result};
use clap::Args;
use hearth_engine::QuantType;
use hearth_worker::jobs::quantize::{self as job, human_bytes, verdict_words, QuantizeJob};
use hearth_worker::jobs::{Cancel, Progress};
use serde::Serialize;

#[derive(Args, Debug)]
pub struct QuantizeArgs {
    /// The model to quantize: a .gguf path, or the name (or a unique part of it) of an installed model.
    source: String,
    /// Target type: F16, Q8_0, Q6_K, Q5_K_M, Q4_K_M or Q4_0.
    #[arg(long = "type", short = 't')]
    target: String,
    /// Output file (default: beside the source, named for the type).
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Allow a source that is already quantized (the errors of both quantizations compound).
    #[arg(long)]
    allow_requantize: bool,
    /// Threads (0: all cores).
    #[arg(long, default_value_t = 0)]
    threads: u32,
    /// Print JSON lines (the plan, progress, the result) instead of text.
    #[arg(long)]
    json: bool,
}

/// What `--json` prints, one line each: the plan, progress, the result.
#[derive(Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
enum JsonLine<'a> {
    Plan(&'a job::QuantizePlan),
    Progress(Progress),
    Done {
        #[serde(flatten)]
        outcome: &'a job::QuantizeOutcome,
        target: &'static str,
        predicted_bytes: u64,
        source_bytes: u64,
    },
}

/// One cancel for the process: Ctrl-C kills whichever worker runs.
pub(crate) fn ctrl_c_cancel() -> Arc<Cancel> {
    static CANCEL: OnceLock<Arc<Cancel>> = OnceLock::new();
    CANCEL
        .get_or_init(|| {
            let cancel = Arc::new(Cancel::new());
            let on_signal = Arc::clone(&cancel);
            let _ = ctrlc::set_handler(move || on_signal.cancel());
            cancel
        })
        .clone()
}

pub fn run(args: &QuantizeArgs) -> Result<()> {
    let target = QuantType::parse(&args.target)?;
    let job = QuantizeJob {
        source: crate::models::resolve(Some(&args.source))?,
        target,
        output: args.output.clone(),
        allow_requantize: args.allow_requantize,
        threads: args.threads,
    };
    let exe = std::env::current_exe().context("cannot find the hearth executable")?;
    let cancel = ctrl_c_cancel();
    let plan = job::plan(&exe, &job, &cancel)?;
    if args.json {
        print_json(&JsonLine::Plan(&plan))?;
    } else {
        eprintln!(
            "{} ({}, {}) → {} {}: about {} ({:.2} bits per weight); on this machine: {}",
            file_name(&job.source),
            plan.source_type.as_deref().unwrap_or("?"),
            human_bytes(plan.source_bytes),
            plan.output.display(),
            target,
            human_bytes(plan.predicted_bytes),
            plan.bits_per_weight,
            verdict_words(plan.fit)
        );
    }
    let json = args.json;
    let mut last_shown = 0;
    let outcome = job::run(&exe, &job, &plan, &cancel, &mut |p| {
        if json {
            let _ = print_json(&JsonLine::Progress(p));
        } else if p.done == p.total || p.done >= last_shown + (p.total / 50).max(1) {
            last_shown = p.done;
            eprint!("\rquantizing: tensor {}/{} ", p.done, p.total);
        }
    });
    if !json {
        eprintln!();
    }
    let outcome = outcome?;
    if json {
        print_json(&JsonLine::Done {
            outcome: &outcome,
            target: target.name(),
            predicted_bytes: plan.predicted_bytes,
            source_bytes: plan.source_bytes,
        })?;
    } else {
        println!(
            "{}: {} ({:.1}× the source's {}), {} tensors in {:.1} s",
            outcome.output.display(),
            human_bytes(outcome.bytes),
            outcome.bytes as f64 / plan.source_bytes.max(1) as f64,
            human_bytes(plan.source_bytes),
            outcome.tensors,
            outcome.ms / 1000.0
        );
    }
    Ok(())
}

fn print_json<T: Serialize>(value: &T) -> Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, value)?;
    out.write_all(b"\n")?;
    out.flush()?;
    Ok(())
}

fn file_name(path: &std::path::Path) -> String {
    path.file_name()
        .map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned())
}
