//! `hearth bench`: figures for the engine on this machine, as JSON lines.
//!
//! Every run uses the same prompt and greedy sampling so runs compare; the KV
//! cache is cleared before each so the whole prompt is evaluated every time.
//! Medians of several repetitions after a warm-up are reported, plus the first
//! request after load (to show the warm-up at load works) and the memory-read
//! ceiling for decode speed.

use anyhow::Result;
use clap::Args;
use hearth_core::{paths, SamplingParams};
use hearth_engine::{Engine, EngineConfig, GenerationOutput, GenerationRequest, Prompt};
use hearth_worker::options::{plan_loaded, LoadBaseline};
use hearth_worker::placement;
use serde::Serialize;

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum BenchKind {
    /// Load, time to first token, prompt and decode tokens/s per model.
    Generate,
    /// The database under 5 readers and 2 writers: write/read p50/p99, messages/s.
    Store,
    /// The hardware sampler's own CPU cost at 1 Hz.
    Hw,
    /// Decode tokens/s and time to first token through the worker process vs in-process.
    Worker,
    /// Switching backends mid-chat (embedded engine -> hearth serve), and what a retry adds.
    Switch,
    /// An OpenAI-compatible server (hearth serve, or --url) under 1, 2, 4, 8 concurrent clients.
    Serve,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// What to measure.
    #[arg(value_enum, default_value = "generate")]
    what: BenchKind,
    /// Seconds to run the store benchmark.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Store benchmark: pause of each reader and writer between operations, in ms.
    /// 0 (default) is a closed loop: 7 threads on this machine's cores, so latencies
    /// include waiting for a CPU; a pause models the app's load (a UI does not read in
    /// a tight loop) and measures the store itself.
    #[arg(long, default_value_t = 0.0)]
    think_ms: f64,
    /// Models to measure (paths or installed names; repeatable). Default: both default models.
    #[arg(short, long)]
    model: Vec<String>,
    /// Threads (default: one per physical core).
    #[arg(short = 't', long)]
    threads: Option<u32>,
    /// Measured repetitions (after one warm-up run).
    #[arg(short, long, default_value_t = 5)]
    reps: usize,
    /// Prompt length in tokens (approximately; the prompt is whole sentences).
    #[arg(long, default_value_t = 452)]
    prompt_tokens: u32,
    /// Tokens to generate per run.
    #[arg(short = 'n', long, default_value_t = 128)]
    max_tokens: u32,
    #[arg(long, default_value_t = 4096)]
    ctx: u32,
    /// Instead of the repeated prose, send this as one chat message (a model with a chat
    /// template): a reply that need not repeat its prompt.
    #[arg(long)]
    chat: Option<String>,
    /// Draft lengths to measure each model with (0 = one token per step); one line each.
    #[arg(long, value_delimiter = ',', default_values_t = [0, hearth_engine::MAX_DRAFT as u32])]
    draft: Vec<u32>,
    /// Generate benchmark: the device (`auto`, `cpu`, or a name `hearth hw` lists, e.g.
    /// `vulkan0`); every layer goes on it unless --gpu-layers says fewer.
    #[arg(long, default_value = "auto", value_parser = parse_device)]
    device: hearth_engine::DeviceChoice,
    /// Generate benchmark: layers on the device (default: all).
    #[arg(long, default_value_t = 999)]
    gpu_layers: u32,
    /// Skip the memory-bandwidth measurement.
    #[arg(long)]
    no_bandwidth: bool,
    /// Serve benchmark: numbers of concurrent clients, one JSON line each.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 2, 4, 8])]
    clients: Vec<usize>,
    /// Serve benchmark: a running OpenAI-compatible server to measure instead of starting
    /// `hearth serve` (its root, e.g. http://127.0.0.1:8080); --model is then the model name.
    #[arg(long)]
    url: Option<String>,
    /// Serve benchmark: the bearer token the server at --url wants.
    #[arg(long, env = "HEARTH_BENCH_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Serve benchmark: requests each client sends, one after another.
    #[arg(long, default_value_t = 2)]
    requests: usize,
    /// Serve benchmark: `hearth serve --parallel` (auto, or a number).
    #[arg(long, default_value = "auto")]
    parallel: String,
    /// Serve benchmark: plain text completions (`/v1/completions`) instead of chat, for a
    /// base model without a chat template.
    #[arg(long)]
    text: bool,
    /// Serve benchmark: also measure what a document of about 1,500 tokens costs the
    /// others while it is read: a short question's time to first token, and the gaps
    /// between three streams' tokens in decode steps (p50/p99/max). Two more JSON lines:
    /// idle, then with a CPU-bound process beside the server.
    #[arg(long)]
    long_prompt: bool,
    /// Serve benchmark: how many times each --long-prompt measurement is made (each
    /// trial reads two documents).
    #[arg(long, default_value_t = 3)]
    long_prompt_trials: usize,
    /// Serve benchmark: every request is a passage given twice (and started a third time) as a plain
    /// completion, which the model continues by copying (where prompt-lookup drafting
    /// pays); the default asks chat questions, whose replies copy nothing.
    #[arg(long)]
    copy: bool,
}

#[derive(Serialize)]
struct BenchLine {
    bench: &'static str,
    /// "prose" (the repeated sentences, continued as text) or "chat".
    workload: &'static str,
    model: String,
    bytes: u64,
    threads: u32,
    n_ctx: u32,
    max_draft: u32,
    reps: usize,
    prompt_tokens: u32,
    completion_tokens: u32,
    load_ms: f64,
    /// Where the model ran ("CPU", "Vulkan0") and the layers on it.
    device: String,
    n_gpu_layers: u32,
    /// The device memory the load took, from GGML's free-memory query before and after
    /// (`None` on the CPU).
    vram_mb: Option<f64>,
    /// What the fit planner predicts for the layers on a GPU it knows (NVML or sysfs);
    /// `None` when it plans no GPU.
    plan_vram_mb: Option<f64>,
    first_ttft_ms: f64,
    ttft_ms: f64,
    prompt_tps: f64,
    decode_tps: f64,
    decode_tps_min: f64,
    decode_tps_max: f64,
    mem_read_gbps: Option<f64>,
    ceiling_tps: Option<f64>,
    decode_vs_ceiling: Option<f64>,
    /// Per reply: draft tokens verified and accepted (the same every run: greedy).
    draft_tokens: u32,
    draft_accepted: u32,
    /// Whether every reply's text equals the first reply after load.
    same_text: bool,
    /// Whether the reply equals the one without drafting (when that was measured first).
    #[serde(skip_serializing_if = "Option::is_none")]
    same_as_no_draft: Option<bool>,
}

/// Plain prose the benchmark repeats to reach the prompt length; any model can continue it.
const SENTENCES: &[&str] = &[
    "The lighthouse keeper climbed the spiral stairs every evening just before sunset.",
    "From the lantern room he could see the fishing boats returning across the grey water.",
    "Each boat carried a lamp at its bow, and he counted them one by one as they rounded the point.",
    "On calm nights the sea reflected the stars so clearly that the horizon disappeared.",
    "On stormy nights the waves struck the rocks below with a sound like distant thunder.",
    "He kept a logbook of the weather, the ships that passed, and the birds that rested on the railing.",
    "Over thirty years the logbook had grown to fill an entire shelf in the small kitchen.",
    "Visitors sometimes asked whether he was lonely, living so far from the nearest village.",
    "He always answered that the light was company enough, and that the sea was never quiet.",
    "In winter the supply boat came only once a month, bringing flour, oil, letters and newspapers.",
    "He read the newspapers slowly, a page each morning, so that they lasted until the next delivery.",
    "The letters came from his sister, who lived in the city and wrote about her garden and her grandchildren.",
];

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

fn build_prompt(engine: &Engine, target: u32) -> Result<String> {
    let mut text = String::new();
    for sentence in SENTENCES.iter().cycle() {
        if !text.is_empty() {
            text.push(' ');
        }
        text.push_str(sentence);
        if engine.count_tokens(Prompt::Text(text.clone()))? >= target {
            break;
        }
    }
    Ok(text)
}

fn run_once(engine: &Engine, prompt: &Prompt, max_tokens: u32) -> Result<GenerationOutput> {
    engine.reset_cache()?;
    let request = GenerationRequest {
        prompt: prompt.clone(),
        params: SamplingParams::greedy(max_tokens),
    };
    Ok(engine.generate(request)?.collect()?)
}

pub fn run(args: &BenchArgs) -> Result<()> {
    match args.what {
        BenchKind::Generate => run_generate(args),
        BenchKind::Store => {
            // A scratch database: the benchmark never touches the user's history.
            let dir = tempfile::tempdir()?;
            let options = hearth_store::BenchOptions {
                duration: std::time::Duration::from_secs(args.seconds),
                readers: 5,
                writers: 2,
                think_time: std::time::Duration::from_secs_f64(args.think_ms.max(0.0) / 1000.0),
                ..hearth_store::BenchOptions::default()
            };
            let report = hearth_store::bench_with(&dir.path().join("bench.db"), &options)?;
            println!("{}", serde_json::to_string(&report)?);
            Ok(())
        }
        BenchKind::Worker => {
            let model = match args.model.first() {
                Some(m) => crate::models::resolve(Some(m))?,
                None => crate::models::resolve(None)?,
            };
            crate::bench_worker::run(
                &model,
                args.threads.unwrap_or_else(hearth_engine::default_threads),
                args.reps,
                args.max_tokens,
            )
        }
        BenchKind::Switch => {
            let a = crate::models::resolve(args.model.first().map(String::as_str))?;
            let b = crate::models::resolve(Some(
                args.model
                    .get(1)
                    .map_or(hearth_core::paths::DEFAULT_BASE_MODEL, String::as_str),
            ))?;
            crate::bench_switch::run(&a, &b, args.threads.unwrap_or(1), args.reps)
        }
        BenchKind::Serve => run_serve(args),
        BenchKind::Hw => {
            let overhead = hearth_hw::measure_overhead(
                std::time::Duration::from_secs(1),
                std::time::Duration::from_secs(args.seconds),
            )?;
            println!("{}", serde_json::to_string(&overhead)?);
            Ok(())
        }
    }
}

fn run_serve(args: &BenchArgs) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let token = "bench-serve-token";
        let (url, model, token, _server) = match &args.url {
            Some(url) => (
                url.trim_end_matches('/').to_owned(),
                args.model.first().cloned().unwrap_or_else(|| "default".into()),
                args.token.clone(),
                None,
            ),
            None => {
                let path = crate::models::resolve(args.model.first().map(String::as_str))?;
                let program = std::env::current_exe()?;
                let threads = args.threads.unwrap_or_else(hearth_engine::default_threads);
                // One --draft value is passed on (`--draft 0`: batching measured alone).
                let draft = match args.draft.as_slice() {
                    [one] => one.to_string(),
                    _ => hearth_engine::MAX_DRAFT.to_string(),
                };
                let server = crate::bench_switch::start_server(
                    &program,
                    &path,
                    threads,
                    token,
                    &["--parallel", &args.parallel, "--draft", &draft],
                )?;
                crate::bench_switch::wait_ready(server.port, std::time::Duration::from_secs(300)).await?;
                let name = path
                    .file_stem()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                (
                    format!("http://127.0.0.1:{}", server.port),
                    name,
                    Some(token.to_owned()),
                    Some(server),
                )
            }
        };
        crate::bench_serve::run(&crate::bench_serve::ServeBench {
            url,
            token,
            model,
            clients: &args.clients,
            requests_per_client: args.requests.max(1),
            max_tokens: args.max_tokens,
            text: args.text,
            long_prompt: args.long_prompt,
            long_prompt_trials: args.long_prompt_trials.max(1),
            copy: args.copy,
        })
        .await
    })
}

fn run_generate(args: &BenchArgs) -> Result<()> {
    let models: Vec<std::path::PathBuf> = if args.model.is_empty() {
        let dir = paths::models_dir();
        [paths::DEFAULT_CHAT_MODEL, paths::DEFAULT_BASE_MODEL]
            .iter()
            .map(|m| dir.join(m))
            .collect()
    } else {
        args.model
            .iter()
            .map(|m| crate::models::resolve(Some(m)))
            .collect::<Result<_>>()?
    };
    let mut bandwidth: Option<f64> = None;
    for path in models {
        let mut no_draft_text: Option<String> = None;
        for &max_draft in &args.draft {
            let (mut line, text) = bench_model(args, &path, max_draft, &mut bandwidth)?;
            if max_draft == 0 {
                no_draft_text.get_or_insert(text);
            } else if let Some(reference) = &no_draft_text {
                line.same_as_no_draft = Some(*reference == text);
            }
            println!("{}", serde_json::to_string(&line)?);
        }
    }
    Ok(())
}

fn bench_model(
    args: &BenchArgs,
    path: &std::path::Path,
    max_draft: u32,
    bandwidth: &mut Option<f64>,
) -> Result<(BenchLine, String)> {
    let mut config = EngineConfig::new(path).with_n_ctx(args.ctx);
    config.n_threads = args.threads;
    config.max_draft = max_draft;
    config.device = match hearth_engine::resolve_device(&args.device)? {
        Some(device) => hearth_engine::DeviceChoice::Named(device.name),
        None => hearth_engine::DeviceChoice::Cpu,
    };
    config.n_gpu_layers = args.gpu_layers;
    let baseline = LoadBaseline::now(&config);
    let engine = Engine::load(config)?;
    let info = engine.info().clone();
    // Measured (free device memory before the load minus after) beside the fit plan
    // for what was loaded: the same check every load logs.
    let vram = baseline.vram_check(&info);
    let vram_mb = vram.map(|v| round(v.measured_mib()));
    let plan_vram_mb = plan_loaded(&info)
        .map(|plan| placement::planned_gpu_bytes(&plan))
        .filter(|&bytes| bytes > 0)
        .map(|bytes| round(bytes as f64 / MIB));
    let prompt = match &args.chat {
        Some(message) => Prompt::Chat(vec![hearth_core::ChatMessage::user(message.clone())]),
        None => Prompt::Text(build_prompt(&engine, args.prompt_tokens)?),
    };
    // The first request after load, before anything else touched the model.
    let first = run_once(&engine, &prompt, args.max_tokens)?;
    let warm = run_once(&engine, &prompt, args.max_tokens)?;
    let mut same_text = warm.text == first.text;
    let mut runs = Vec::with_capacity(args.reps);
    for _ in 0..args.reps.max(1) {
        let output = run_once(&engine, &prompt, args.max_tokens)?;
        same_text &= output.text == first.text;
        runs.push(output.metrics);
    }
    let mut ttft: Vec<f64> = runs.iter().map(|m| m.ttft_ms).collect();
    let mut prompt_tps: Vec<f64> = runs.iter().map(|m| m.prompt_tps).collect();
    let mut decode_tps: Vec<f64> = runs.iter().map(|m| m.decode_tps).collect();
    let decode_median = median(&mut decode_tps);
    if bandwidth.is_none() && !args.no_bandwidth {
        // Measured once, with the engine's thread count, after the model runs (same conditions).
        *bandwidth = Some(hearth_hw::membw::read_bandwidth(info.threads as usize));
    }
    let ceiling = bandwidth.map(|bw| bw / info.file_bytes as f64);
    let line = BenchLine {
        bench: "generate",
        workload: if args.chat.is_some() { "chat" } else { "prose" },
        model: info.name.clone(),
        bytes: info.file_bytes,
        threads: info.threads,
        n_ctx: info.n_ctx,
        max_draft,
        reps: runs.len(),
        prompt_tokens: runs[0].prompt_tokens,
        completion_tokens: runs[0].completion_tokens,
        load_ms: round(info.load_ms),
        device: info.device.clone(),
        n_gpu_layers: info.n_gpu_layers,
        vram_mb,
        plan_vram_mb,
        first_ttft_ms: round(first.metrics.ttft_ms),
        ttft_ms: round(median(&mut ttft)),
        prompt_tps: round(median(&mut prompt_tps)),
        decode_tps: round(decode_median),
        decode_tps_min: round(decode_tps.first().copied().unwrap_or(0.0)),
        decode_tps_max: round(decode_tps.last().copied().unwrap_or(0.0)),
        mem_read_gbps: bandwidth.map(|bw| round(bw / 1e9)),
        ceiling_tps: ceiling.map(round),
        decode_vs_ceiling: ceiling.map(|c| round(decode_median / c)),
        draft_tokens: runs[0].draft_tokens,
        draft_accepted: runs[0].draft_accepted,
        same_text,
        same_as_no_draft: None,
    };
    Ok((line, first.text))
}

const MIB: f64 = 1024.0 * 1024.0;

/// Free memory of each device llama.cpp sees, by name.
fn parse_device(s: &str) -> std::result::Result<hearth_engine::DeviceChoice, String> {
    s.parse().map_err(|e: hearth_engine::EngineError| e.to_string())
}

fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}
