//! `hearth pull REPO [FILE|QUANT]` and `hearth search QUERY`: models from Hugging Face
//! (or the mirror `HF_ENDPOINT` names), each file judged for this machine before a byte
//! of its weights is fetched.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use hearth_hub::{gb, Hub, HubConfig, Progress, PullTarget, RepoFile};
use hearth_hw::{FitPlan, PlanRequest};
use serde::Serialize;

#[derive(Args, Debug)]
pub struct PullArgs {
    /// A Hugging Face repository holding GGUF files, e.g. bartowski/SmolLM2-135M-Instruct-GGUF.
    repo: String,
    /// The file to download, or its quantization (Q4_K_M). Without it, the repository's
    /// GGUF files are listed with whether each fits this machine.
    file: Option<String>,
    /// A branch, tag or commit of the repository.
    #[arg(long, default_value = "main")]
    revision: String,
    /// The context size the fit verdicts plan for.
    #[arg(long, default_value_t = 4096)]
    ctx: u32,
    /// Print JSON (one object per file listed, or one for the download).
    #[arg(long)]
    json: bool,
    /// Remove what a stopped download of FILE left (its .part file) instead of going on.
    #[arg(long, requires = "file")]
    discard: bool,
}

#[derive(Args, Debug)]
pub struct SearchArgs {
    /// Words in the repository's name, e.g. "qwen3 8b".
    query: String,
    #[arg(long, default_value_t = 20)]
    limit: u32,
    #[arg(long)]
    json: bool,
}

/// The Hub the user's settings and environment point at.
fn hub() -> Result<Hub> {
    let settings = hearth_manager::Settings::load_default()?;
    Ok(Hub::new(HubConfig::from_env(settings.downloads.enabled)?)?)
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

/// One file of a listing, judged for this machine from its header.
#[derive(Serialize)]
struct Judged {
    file: String,
    size: u64,
    quantization: Option<String>,
    sha256: Option<String>,
    /// Bytes fetched to read the header.
    header_bytes_read: u64,
    plan: Option<FitPlan>,
    /// On the CPU: this machine's read bandwidth ÷ the weights, the most tokens/s it can reach.
    decode_ceiling_tps: Option<f64>,
    error: Option<String>,
}

impl Judged {
    fn verdict_words(&self) -> String {
        match (&self.plan, &self.error) {
            (Some(plan), _) => plan.fit_words(self.decode_ceiling_tps),
            (None, Some(e)) => format!("unknown: {e}"),
            (None, None) => "unknown".into(),
        }
    }
}

async fn judge(hub: &Hub, repo: &str, revision: &str, file: &RepoFile, ctx: u32, bandwidth: f64) -> Judged {
    let target = PullTarget {
        repo: repo.to_owned(),
        revision: revision.to_owned(),
        file: file.path.clone(),
    };
    let mut judged = Judged {
        file: file.path.clone(),
        size: file.size,
        quantization: file.quantization.clone(),
        sha256: file.sha256.clone(),
        header_bytes_read: 0,
        plan: None,
        decode_ceiling_tps: None,
        error: None,
    };
    match hub.read_header(&target).await {
        Ok(header) => {
            judged.header_bytes_read = header.bytes_read;
            let request = PlanRequest {
                n_ctx: ctx,
                ..PlanRequest::default()
            };
            let plan = hearth_hw::plan_now(&header.info, &request);
            judged.decode_ceiling_tps = hearth_hw::membw::cpu_decode_ceiling_tps(&plan, bandwidth);
            judged.plan = Some(plan);
        }
        Err(e) => judged.error = Some(e.to_string()),
    }
    judged
}

pub fn run(args: &PullArgs) -> Result<()> {
    let hub = hub()?;
    let rt = runtime()?;
    let files = rt
        .block_on(hub.list_files(&args.repo, &args.revision))
        .with_context(|| format!("cannot list {}", args.repo))?;
    let Some(wanted) = &args.file else {
        return rt.block_on(list(&hub, args, &files));
    };
    let file = hearth_hub::select_file(&args.repo, &files, wanted)?;
    let target = PullTarget {
        repo: args.repo.clone(),
        revision: args.revision.clone(),
        file: file.path.clone(),
    };
    let dir = hearth_core::paths::models_dir();
    if args.discard {
        hearth_hub::discard_partial(&dir, &file.path)?;
        println!("Removed what was kept of {} in {}", file.path, dir.display());
        return Ok(());
    }
    let cancel = Arc::new(AtomicBool::new(false));
    let pulled = rt.block_on(async {
        let on_signal = Arc::clone(&cancel);
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                on_signal.store(true, Ordering::Relaxed);
            }
        });
        let mut shown = ProgressView::new(&file.path, file.size);
        let result = hub.pull(&target, &dir, &cancel, &mut |p| shown.update(p)).await;
        shown.finish();
        result
    })?;
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "path": pulled.path,
                "bytes": pulled.bytes,
                "sha256": pulled.sha256,
                "resumed_from": pulled.resumed_from,
                "restarted": pulled.restarted,
                "already_present": pulled.already_present,
                "transferred": pulled.transferred,
                "seconds": pulled.elapsed.as_secs_f64(),
                "mb_per_s": pulled.transferred as f64 / 1e6 / pulled.elapsed.as_secs_f64().max(1e-9),
            })
        );
        return Ok(());
    }
    if pulled.already_present {
        println!("{} is already in {}", file.path, dir.display());
    } else {
        let checked = if pulled.sha256.is_some() {
            "SHA-256 checked"
        } else {
            "size checked (the Hub gave no hash)"
        };
        let resumed = if pulled.resumed_from > 0 {
            format!(", resumed from {}", gb(pulled.resumed_from))
        } else {
            String::new()
        };
        println!(
            "Saved {} ({}, {checked}{resumed}) in {:.1} s, {:.1} MB/s",
            pulled.path.display(),
            gb(pulled.bytes),
            pulled.elapsed.as_secs_f64(),
            pulled.transferred as f64 / 1e6 / pulled.elapsed.as_secs_f64().max(1e-9)
        );
    }
    let name = pulled
        .path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    println!("Chat with it: hearth chat --model {name}");
    Ok(())
}

async fn list(hub: &Hub, args: &PullArgs, files: &[RepoFile]) -> Result<()> {
    let models: Vec<&RepoFile> = files.iter().filter(|f| f.is_gguf() && !f.is_projector()).collect();
    if models.is_empty() {
        anyhow::bail!(
            "{} has no GGUF model files: Hearth runs GGUF models (search with `hearth search NAME`)",
            args.repo
        );
    }
    // Read once, with the threads decoding would use: the ceiling of CPU decode speed.
    let threads = hearth_engine::default_threads() as usize;
    let bandwidth = tokio::task::spawn_blocking(move || hearth_hw::membw::quick_read_bandwidth(threads)).await?;
    let mut judged = Vec::new();
    for file in models {
        judged.push(judge(hub, &args.repo, &args.revision, file, args.ctx, bandwidth).await);
    }
    if args.json {
        for j in &judged {
            println!("{}", serde_json::to_string(j)?);
        }
        return Ok(());
    }
    println!(
        "{} at {} (fit for this machine at a {}-token context):",
        args.repo, args.revision, args.ctx
    );
    println!("{:<52} {:>10} {:<8} FIT", "FILE", "SIZE", "QUANT");
    for j in &judged {
        println!(
            "{:<52} {:>10} {:<8} {}",
            j.file,
            gb(j.size),
            j.quantization.as_deref().unwrap_or("?"),
            j.verdict_words()
        );
    }
    let example = judged
        .iter()
        .find(|j| j.plan.as_ref().is_some_and(FitPlan::fits))
        .or(judged.first())
        .map(|j| j.quantization.clone().unwrap_or_else(|| j.file.clone()))
        .unwrap_or_default();
    println!("Download one: hearth pull {} {example}", args.repo);
    Ok(())
}

pub fn search(args: &SearchArgs) -> Result<()> {
    let hub = hub()?;
    let found = runtime()?.block_on(hub.search(&args.query, args.limit))?;
    if args.json {
        for repo in &found {
            println!("{}", serde_json::to_string(repo)?);
        }
        return Ok(());
    }
    if found.is_empty() {
        println!("No GGUF repositories match {:?} on {}", args.query, hub.endpoint());
        return Ok(());
    }
    println!("{:<60} {:>12} {:>8}", "REPOSITORY", "DOWNLOADS", "LIKES");
    for repo in &found {
        println!("{:<60} {:>12} {:>8}", repo.id, repo.downloads, repo.likes);
    }
    println!("See a repository's files and whether they fit: hearth pull REPOSITORY");
    Ok(())
}

/// A progress bar on a terminal; elsewhere a line at every tenth of the file.
struct ProgressView {
    bar: Option<indicatif::ProgressBar>,
    next_tenth: u64,
}

impl ProgressView {
    fn new(file: &str, size: u64) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(size);
            let style = indicatif::ProgressStyle::with_template(
                "{msg} [{bar:32}] {bytes}/{total_bytes} {bytes_per_sec} {eta} left",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> ");
            bar.set_style(style);
            bar.set_message(file.to_owned());
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Self { bar, next_tenth: 1 }
    }

    fn update(&mut self, p: &Progress) {
        if let Some(bar) = &self.bar {
            bar.set_position(p.done);
            return;
        }
        let tenth = (p.done * 10).checked_div(p.total).unwrap_or(10);
        if tenth >= self.next_tenth {
            self.next_tenth = tenth + 1;
            eprintln!(
                "{}: {}% ({} of {}, {:.1} MB/s{})",
                p.file,
                tenth * 10,
                gb(p.done),
                gb(p.total),
                p.bytes_per_sec / 1e6,
                p.eta().map(|t| format!(", {} s left", t.as_secs())).unwrap_or_default()
            );
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
