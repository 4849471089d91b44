//! `hearth quantize SRC --type T [-o OUT]`: make a smaller GGUF file with llama.cpp's
//! quantizer, in a worker process.
//!
//! Before anything is written: the source is checked by Hearth's GGUF reader, an
//! already-quantized source needs `--allow-requantize`, and a dry run in the worker
//! predicts the output's size, which is shown with the fit planner's verdict for it on
//! this machine and checked against the free space of the output's disk. The output is
//! written to `OUT.partial` and renamed only once complete and readable, so a file named
//! `.gguf` is never a half-written one; Ctrl-C kills the worker (a kill is a clean
//! cancel, and a crash in llama.cpp costs nothing) and removes the partial file.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use hearth_engine::{QuantType, QuantizeError, QuantizeOptions, QuantizeProgress, QuantizeReport};
use hearth_gguf::GgufInfo;
use serde::{Deserialize, Serialize};

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

/// The worker: runs llama.cpp's quantizer and reports on stdout, one JSON line each.
#[derive(Args, Debug)]
pub struct QuantizeWorkerArgs {
    source: PathBuf,
    output: PathBuf,
    #[arg(long = "type")]
    target: String,
    #[arg(long)]
    allow_requantize: bool,
    #[arg(long, default_value_t = 0)]
    threads: u32,
    #[arg(long)]
    dry_run: bool,
}

/// What the worker says.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
enum WorkerLine {
    Progress { done: u32, total: u32 },
    Done { report: WorkerReport },
    Error { message: String },
}

#[derive(Debug, Serialize, Deserialize)]
struct WorkerReport {
    tensors: u32,
    source_tensor_bytes: u64,
    tensor_bytes: u64,
    bits_per_weight: f64,
    ms: f64,
}

impl From<QuantizeReport> for WorkerReport {
    fn from(r: QuantizeReport) -> Self {
        Self {
            tensors: r.tensors,
            source_tensor_bytes: r.source_tensor_bytes,
            tensor_bytes: r.tensor_bytes,
            bits_per_weight: r.bits_per_weight,
            ms: r.ms,
        }
    }
}

pub fn run_worker(args: &QuantizeWorkerArgs) -> Result<()> {
    let say = |line: &WorkerLine| {
        let mut out = std::io::stdout().lock();
        let _ = serde_json::to_writer(&mut out, line);
        let _ = out.write_all(b"\n");
        let _ = out.flush();
    };
    let result = QuantType::parse(&args.target).and_then(|target| {
        let options = QuantizeOptions {
            target,
            allow_requantize: args.allow_requantize,
            threads: args.threads,
            dry_run: args.dry_run,
        };
        hearth_engine::quantize_file(&args.source, &args.output, &options, &mut |p: QuantizeProgress| {
            say(&WorkerLine::Progress {
                done: p.done,
                total: p.total,
            });
        })
    });
    match result {
        Ok(report) => {
            say(&WorkerLine::Done { report: report.into() });
            Ok(())
        }
        Err(e) => {
            say(&WorkerLine::Error { message: e.to_string() });
            Err(e.into())
        }
    }
}

/// What `--json` prints before quantizing: the prediction.
#[derive(Debug, Serialize)]
struct PlanLine<'a> {
    event: &'static str,
    source: &'a Path,
    output: &'a Path,
    target: &'static str,
    source_bytes: u64,
    predicted_bytes: u64,
    bits_per_weight: f64,
    fit: hearth_hw::Verdict,
    free_bytes: u64,
}

/// What `--json` prints at the end.
#[derive(Debug, Serialize)]
struct DoneLine<'a> {
    event: &'static str,
    output: &'a Path,
    target: &'static str,
    bytes: u64,
    predicted_bytes: u64,
    source_bytes: u64,
    bits_per_weight: f64,
    tensors: u32,
    ms: f64,
}

pub fn run(args: &QuantizeArgs) -> Result<()> {
    let target = QuantType::parse(&args.target)?;
    let source = crate::models::resolve(Some(&args.source))?;
    if !source.is_file() {
        bail!(
            "{} does not exist: pass a .gguf file or an installed model's name (`hearth models` lists them)",
            source.display()
        );
    }
    let info = hearth_gguf::read(&source).with_context(|| format!("cannot quantize {}", source.display()))?;
    if !args.allow_requantize && !hearth_engine::is_unquantized(&info) {
        let quant = info.quantization.clone().unwrap_or_else(|| "quantized".into());
        return Err(QuantizeError::AlreadyQuantized { path: source, quant }.into());
    }
    let output = match &args.output {
        Some(path) => path.clone(),
        None => default_output(&source, target),
    };
    if output.exists() {
        bail!(
            "{} already exists: remove it or choose another file with -o",
            output.display()
        );
    }
    let partial = partial_path(&output);

    // The prediction: a dry run of the same quantization.
    let plan = run_worker_process(args, &source, &partial, target, true, &mut |_| {})?;
    let predicted_bytes = info.data_offset + plan.tensor_bytes;
    let fit = predicted_fit(&info, plan.tensor_bytes);
    let dir = output
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let free_bytes = free_space(dir)?;
    if args.json {
        print_json(&PlanLine {
            event: "plan",
            source: &source,
            output: &output,
            target: target.name(),
            source_bytes: info.file_size,
            predicted_bytes,
            bits_per_weight: plan.bits_per_weight,
            fit,
            free_bytes,
        })?;
    } else {
        eprintln!(
            "{} ({}, {}) → {} {}: about {} ({:.2} bits per weight); on this machine: {}",
            file_name(&source),
            info.quantization.as_deref().unwrap_or("?"),
            human(info.file_size),
            output.display(),
            target,
            human(predicted_bytes),
            plan.bits_per_weight,
            verdict_words(fit)
        );
    }
    // Room for the output, with 1% to spare for alignment and the header.
    let needed = predicted_bytes + predicted_bytes / 100;
    if needed > free_bytes {
        bail!(
            "not enough free space in {}: the output needs about {} and {} is free. Free some space or choose another disk with -o",
            dir.display(),
            human(needed),
            human(free_bytes)
        );
    }

    let started = Instant::now();
    let json = args.json;
    let mut last_shown = 0;
    let result = run_worker_process(args, &source, &partial, target, false, &mut |p| {
        if json {
            let _ = print_json(&WorkerLine::Progress {
                done: p.done,
                total: p.total,
            });
        } else if p.done == p.total || p.done >= last_shown + (p.total / 50).max(1) {
            last_shown = p.done;
            eprint!("\rquantizing: tensor {}/{} ", p.done, p.total);
        }
    });
    if !json {
        eprintln!();
    }
    let report = match result.and_then(|report| {
        // Readable as GGUF before it gets its name.
        hearth_gguf::read(&partial).context("the quantized file is not readable")?;
        std::fs::rename(&partial, &output)
            .with_context(|| format!("cannot rename {} to {}", partial.display(), output.display()))?;
        Ok(report)
    }) {
        Ok(report) => report,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
    };
    let bytes = std::fs::metadata(&output)?.len();
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    if json {
        print_json(&DoneLine {
            event: "done",
            output: &output,
            target: target.name(),
            bytes,
            predicted_bytes,
            source_bytes: info.file_size,
            bits_per_weight: report.bits_per_weight,
            tensors: report.tensors,
            ms,
        })?;
    } else {
        println!(
            "{}: {} ({:.1}× the source's {}), {} tensors in {:.1} s",
            output.display(),
            human(bytes),
            bytes as f64 / info.file_size.max(1) as f64,
            human(info.file_size),
            report.tensors,
            ms / 1000.0
        );
    }
    Ok(())
}

/// Runs the worker (this executable, `quantize-worker`) and reads its lines. Ctrl-C kills
/// it; the caller removes what it wrote.
fn run_worker_process(
    args: &QuantizeArgs,
    source: &Path,
    output: &Path,
    target: QuantType,
    dry_run: bool,
    on_progress: &mut dyn FnMut(QuantizeProgress),
) -> Result<WorkerReport> {
    let exe = std::env::current_exe().context("cannot find the hearth executable")?;
    let mut command = Command::new(exe);
    command
        .arg("quantize-worker")
        .arg(source)
        .arg(output)
        .args(["--type", target.name(), "--threads", &args.threads.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if args.allow_requantize {
        command.arg("--allow-requantize");
    }
    if dry_run {
        command.arg("--dry-run");
    }
    let mut child = command.spawn().context("cannot start the quantize worker")?;
    let cancelled = watch_ctrl_c(&child);
    let lines = BufReader::new(child.stdout.take().context("the worker's stdout")?).lines();
    let mut outcome: Option<Result<WorkerReport>> = None;
    for line in lines {
        let Ok(line) = line else { break };
        match serde_json::from_str::<WorkerLine>(&line) {
            Ok(WorkerLine::Progress { done, total }) => on_progress(QuantizeProgress { done, total }),
            Ok(WorkerLine::Done { report }) => outcome = Some(Ok(report)),
            Ok(WorkerLine::Error { message }) => outcome = Some(Err(anyhow::anyhow!(message))),
            Err(_) => {}
        }
    }
    let status = wait(&mut child);
    RUNNING.store(0, Ordering::Release);
    let status = status?;
    if cancelled.load(Ordering::Acquire) {
        bail!("cancelled: nothing was written");
    }
    match outcome {
        Some(Ok(report)) if status.success() => Ok(report),
        Some(Err(e)) => Err(e),
        _ => bail!("the quantize worker stopped unexpectedly ({status}); nothing was written"),
    }
}

fn wait(child: &mut Child) -> Result<std::process::ExitStatus> {
    child.wait().context("waiting for the quantize worker")
}

/// The worker being run now, for Ctrl-C (the handler can be installed once per process).
static RUNNING: AtomicU32 = AtomicU32::new(0);

fn watch_ctrl_c(child: &Child) -> Arc<AtomicBool> {
    static CANCELLED: std::sync::OnceLock<Arc<AtomicBool>> = std::sync::OnceLock::new();
    let cancelled = CANCELLED
        .get_or_init(|| {
            let flag = Arc::new(AtomicBool::new(false));
            let seen = Arc::clone(&flag);
            let _ = ctrlc::set_handler(move || {
                seen.store(true, Ordering::Release);
                let pid = RUNNING.load(Ordering::Acquire);
                if pid != 0 {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap_or(0)),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            });
            flag
        })
        .clone();
    RUNNING.store(child.id(), Ordering::Release);
    cancelled
}

/// `gemma-3-270m-Q4_K_M.gguf` → `gemma-3-270m-F16.gguf`: the source's quantization in its
/// name is replaced, or the type appended.
pub fn default_output(source: &Path, target: QuantType) -> PathBuf {
    let stem = source
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let known = [
        "F32", "F16", "BF16", "Q8_0", "Q6_K", "Q5_K_M", "Q5_K_S", "Q5_0", "Q5_1", "Q4_K_M", "Q4_K_S", "Q4_0", "Q4_1",
        "Q3_K_M", "Q3_K_S", "Q3_K_L", "Q2_K",
    ];
    let upper = stem.to_uppercase();
    let renamed = known
        .iter()
        .filter_map(|k| upper.rfind(k).map(|at| (at, k.len())))
        .max_by_key(|&(at, len)| (at, len))
        .map(|(at, len)| format!("{}{}{}", &stem[..at], target.name(), &stem[at + len..]));
    let name = renamed.unwrap_or_else(|| format!("{stem}-{}", target.name()));
    source.with_file_name(format!("{name}.gguf"))
}

/// Where the output is written until it is complete: not a `.gguf` name, so neither
/// Hearth nor another tool takes it for a model.
pub fn partial_path(output: &Path) -> PathBuf {
    let mut name = output.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    output.with_file_name(name)
}

/// The fit planner's verdict for the output: the source's layout with every tensor
/// scaled to the predicted size (the quantizer keeps the tensors, and changes their types).
fn predicted_fit(source: &GgufInfo, predicted_tensor_bytes: u64) -> hearth_hw::Verdict {
    let total = source.tensor_bytes_total().max(1);
    let mut info = source.clone();
    for tensor in &mut info.tensors {
        tensor.n_bytes = (u128::from(tensor.n_bytes) * u128::from(predicted_tensor_bytes) / u128::from(total))
            .try_into()
            .unwrap_or(u64::MAX);
    }
    info.file_size = source.data_offset + predicted_tensor_bytes;
    hearth_hw::plan_now(&info, &hearth_hw::PlanRequest::default()).verdict
}

fn verdict_words(verdict: hearth_hw::Verdict) -> &'static str {
    match verdict {
        hearth_hw::Verdict::FitsOnGpu => "fits on the GPU",
        hearth_hw::Verdict::PartialOffload => "fits with part of it on the GPU",
        hearth_hw::Verdict::CpuOnly => "runs on the CPU",
        hearth_hw::Verdict::DoesNotFit => "too large for this machine's memory",
    }
}

/// Bytes the current user can write on the file system holding `dir`.
fn free_space(dir: &Path) -> Result<u64> {
    let stat =
        nix::sys::statvfs::statvfs(dir).with_context(|| format!("cannot read the free space of {}", dir.display()))?;
    Ok(stat.blocks_available().saturating_mul(stat.fragment_size()))
}

fn print_json<T: Serialize>(value: &T) -> Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, value)?;
    out.write_all(b"\n")?;
    out.flush()?;
    Ok(())
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned())
}

fn human(bytes: u64) -> String {
    let mb = bytes as f64 / 1e6;
    if mb >= 1000.0 {
        format!("{:.2} GB", mb / 1000.0)
    } else {
        format!("{mb:.1} MB")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_are_named_for_their_type() {
        let p = |s: &str, t| default_output(Path::new(s), t).display().to_string();
        assert_eq!(
            p("/m/gemma-3-270m-Q4_K_M.gguf", QuantType::F16),
            "/m/gemma-3-270m-F16.gguf"
        );
        assert_eq!(
            p("/m/SmolLM2-135M-Instruct-Q4_1.gguf", QuantType::Q8_0),
            "/m/SmolLM2-135M-Instruct-Q8_0.gguf"
        );
        assert_eq!(p("/m/model-f16.gguf", QuantType::Q4_0), "/m/model-Q4_0.gguf");
        assert_eq!(p("/m/model.gguf", QuantType::Q6K), "/m/model-Q6_K.gguf");
        assert_eq!(partial_path(Path::new("/m/a.gguf")), PathBuf::from("/m/a.gguf.partial"));
    }
}
