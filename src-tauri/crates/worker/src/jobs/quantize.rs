//! Quantizing a model file: the checks and the prediction before anything is written,
//! then llama.cpp's quantizer in a child process, writing `OUT.partial` that is renamed
//! to `OUT` only once complete and readable as GGUF, so a file named `.gguf` is never
//! a half-written one. `hearth quantize` and the app's Quantize… dialog both run this.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use hearth_engine::{QuantType, QuantizeError, QuantizeOptions, QuantizeProgress, QuantizeReport};
use hearth_gguf::GgufInfo;
use serde::{Deserialize, Serialize};

use hearth_core::ErrorCode;

use super::{code_of, run_child, Cancel, JobError, Progress};

/// What to quantize, into what.
#[derive(Debug, Clone)]
pub struct QuantizeJob {
    pub source: PathBuf,
    pub target: QuantType,
    /// Default: beside the source, named for the type ([`default_output`]).
    pub output: Option<PathBuf>,
    /// A source that is already quantized is refused without it (errors compound).
    pub allow_requantize: bool,
    /// 0: all cores.
    pub threads: u32,
}

/// What the job will do, known before anything is written.
#[derive(Debug, Clone, Serialize)]
pub struct QuantizePlan {
    pub source: PathBuf,
    pub output: PathBuf,
    pub target: &'static str,
    /// The source's type ("Q4_K_M", "F16"...).
    pub source_type: Option<String>,
    pub source_bytes: u64,
    pub predicted_bytes: u64,
    pub bits_per_weight: f64,
    /// The fit planner's verdict for the output on this machine.
    pub fit: hearth_hw::Verdict,
    /// Free bytes on the output's disk.
    pub free_bytes: u64,
    /// Whether the source was already quantized (allowed with `allow_requantize`).
    pub requantize: bool,
}

impl QuantizePlan {
    /// Whether the output fits the free space, with 1% to spare for the header and
    /// alignment.
    pub fn space_needed(&self) -> u64 {
        self.predicted_bytes + self.predicted_bytes / 100
    }
}

/// The finished file.
#[derive(Debug, Clone, Serialize)]
pub struct QuantizeOutcome {
    pub output: PathBuf,
    pub bytes: u64,
    pub bits_per_weight: f64,
    pub tensors: u32,
    /// Wall time of the quantization itself (the prediction not included).
    pub ms: f64,
}

/// The worker's command line: `quantize-worker SRC OUT --type T [--dry-run]`.
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

/// The worker's result line.
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

/// The child: llama.cpp's quantizer, reporting each tensor.
pub fn run_worker(args: &QuantizeWorkerArgs) -> Result<()> {
    let result = QuantType::parse(&args.target).and_then(|target| {
        let options = QuantizeOptions {
            target,
            allow_requantize: args.allow_requantize,
            threads: args.threads,
            dry_run: args.dry_run,
        };
        hearth_engine::quantize_file(&args.source, &args.output, &options, &mut |p: QuantizeProgress| {
            hearth_child::progress(p.done, p.total)
        })
    });
    hearth_child::report(result.map(WorkerReport::from).map_err(anyhow::Error::from), |e| {
        code_of(e, ErrorCode::QuantizeFailed)
    })
}

/// Checks the job and predicts its output (a dry run of the same quantization in the
/// child): the source must be a readable GGUF, quantized only with `allow_requantize`;
/// the output must not exist. Free space is measured, not yet required: [`run`] does.
pub fn plan(exe: &Path, job: &QuantizeJob, cancel: &Cancel) -> Result<QuantizePlan> {
    if !job.source.is_file() {
        bail!(
            "{} does not exist: pass a .gguf file or an installed model's name (`hearth models` lists them)",
            job.source.display()
        );
    }
    let info = hearth_gguf::read(&job.source).with_context(|| format!("cannot quantize {}", job.source.display()))?;
    let requantize = !hearth_engine::is_unquantized(&info);
    if requantize && !job.allow_requantize {
        let quant = info.quantization.clone().unwrap_or_else(|| "quantized".into());
        return Err(QuantizeError::AlreadyQuantized {
            path: job.source.clone(),
            quant,
        }
        .into());
    }
    let output = job
        .output
        .clone()
        .unwrap_or_else(|| default_output(&job.source, job.target));
    if output.exists() {
        bail!(
            "{} already exists: remove it or choose another output file",
            output.display()
        );
    }
    let dry = child(exe, job, &partial_path(&output), true, cancel, &mut |_| {})?;
    let dir = output
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    Ok(QuantizePlan {
        source: job.source.clone(),
        target: job.target.name(),
        source_type: info.quantization.clone(),
        source_bytes: info.file_size,
        predicted_bytes: info.data_offset + dry.tensor_bytes,
        bits_per_weight: dry.bits_per_weight,
        fit: predicted_fit(&info, dry.tensor_bytes),
        free_bytes: free_space(dir)?,
        requantize,
        output,
    })
}

/// Quantizes as planned: refuses to start without the space, writes the partial file,
/// checks it reads as GGUF, renames it. A failure or a cancel removes the partial file.
pub fn run(
    exe: &Path,
    job: &QuantizeJob,
    plan: &QuantizePlan,
    cancel: &Cancel,
    on_progress: &mut dyn FnMut(Progress),
) -> Result<QuantizeOutcome> {
    if plan.space_needed() > plan.free_bytes {
        return Err(JobError::NotEnoughSpace {
            dir: plan.output.parent().unwrap_or(Path::new(".")).to_path_buf(),
            needed: plan.space_needed(),
            free: plan.free_bytes,
        }
        .into());
    }
    let partial = partial_path(&plan.output);
    let started = std::time::Instant::now();
    let result = child(exe, job, &partial, false, cancel, on_progress).and_then(|report| {
        hearth_gguf::read(&partial).context("the quantized file is not readable")?;
        std::fs::rename(&partial, &plan.output)
            .with_context(|| format!("cannot rename {} to {}", partial.display(), plan.output.display()))?;
        Ok(report)
    });
    let report = match result {
        Ok(report) => report,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
    };
    Ok(QuantizeOutcome {
        bytes: std::fs::metadata(&plan.output)?.len(),
        output: plan.output.clone(),
        bits_per_weight: report.bits_per_weight,
        tensors: report.tensors,
        ms: started.elapsed().as_secs_f64() * 1000.0,
    })
}

fn child(
    exe: &Path,
    job: &QuantizeJob,
    output: &Path,
    dry_run: bool,
    cancel: &Cancel,
    on_progress: &mut dyn FnMut(Progress),
) -> Result<WorkerReport> {
    let mut args: Vec<OsString> = vec![
        "quantize-worker".into(),
        job.source.clone().into(),
        output.into(),
        "--type".into(),
        job.target.name().into(),
        "--threads".into(),
        job.threads.to_string().into(),
    ];
    if job.allow_requantize {
        args.push("--allow-requantize".into());
    }
    if dry_run {
        args.push("--dry-run".into());
    }
    run_child(exe, &args, "quantize", cancel, on_progress)
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

/// The verdict in words.
pub fn verdict_words(verdict: hearth_hw::Verdict) -> &'static str {
    match verdict {
        hearth_hw::Verdict::FitsOnGpu => "fits on the GPU",
        hearth_hw::Verdict::PartialOffload => "fits with part of it on the GPU",
        hearth_hw::Verdict::CpuOnly => "runs on the CPU",
        hearth_hw::Verdict::DoesNotFit => "too large for this machine's memory",
    }
}

/// Bytes the current user can write on the file system holding `dir`.
fn free_space(dir: &Path) -> Result<u64> {
    hearth_core::paths::available_space(dir).with_context(|| format!("cannot read the free space of {}", dir.display()))
}

/// Decimal megabytes or gigabytes, as disks are sold.
pub fn human_bytes(bytes: u64) -> String {
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

    #[test]
    fn sizes_read_as_disks_are_sold() {
        assert_eq!(human_bytes(241_408_704), "241.4 MB");
        assert_eq!(human_bytes(2_500_000_000), "2.50 GB");
    }
}
