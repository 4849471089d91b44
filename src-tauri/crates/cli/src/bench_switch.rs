//! `hearth bench switch`: what changing backends mid-conversation costs, and what a
//! retry adds. A chat runs on the embedded engine (model A, in its worker), then moves
//! to a second backend: `hearth serve` with model B, reached as a vLLM server would be,
//! through a loopback proxy that can break a request on purpose. One JSON line.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use hearth_api::fault_proxy::{Fault, FaultProxy};
use hearth_core::SamplingParams;
use hearth_manager::settings::{EmbeddedSettings, RetrySettings, Secret, VllmSettings};
use hearth_manager::{BackendKind, BackendManager, ManagerOptions, Settings, StopSignal, SwitchReport};
use hearth_store::{AsyncStore, StoreOptions};

/// `hearth serve` as a child, killed when dropped.
pub(crate) struct Server {
    child: Child,
    pub(crate) port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `hearth serve` on a free port with a context of 2,048 and `extra` arguments.
pub(crate) fn start_server(program: &Path, model: &Path, threads: u32, token: &str, extra: &[&str]) -> Result<Server> {
    let mut child = Command::new(program)
        .args([
            "serve",
            "--port",
            "0",
            "--ctx",
            "2048",
            "--threads",
            &threads.to_string(),
        ])
        .arg("--model")
        .arg(model)
        .args(extra)
        .env("HEARTH_API_TOKEN", token)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("starting hearth serve")?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().context("stdout")?).read_line(&mut line)?;
    let value: serde_json::Value =
        serde_json::from_str(&line).with_context(|| format!("hearth serve said {line:?}"))?;
    let port = value["listening"]
        .as_str()
        .and_then(|u| u.rsplit(':').next())
        .and_then(|p| p.parse().ok())
        .context("no port in hearth serve's first line")?;
    Ok(Server { child, port })
}

pub(crate) async fn wait_ready(port: u16, limit: Duration) -> Result<()> {
    let deadline = Instant::now() + limit;
    let client = reqwest::Client::builder().no_proxy().build()?;
    loop {
        let ready = client
            .get(format!("http://127.0.0.1:{port}/health/ready"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if ready {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("hearth serve was not ready within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Sends `text` and returns the time to the first text the caller received.
async fn first_text_ms(manager: &BackendManager, text: &str) -> Result<(f64, u32)> {
    let started = Instant::now();
    let mut first = None;
    let turn = manager
        .send(text, SamplingParams::greedy(16), &StopSignal::default(), |_| {
            first.get_or_insert_with(Instant::now);
        })
        .await?;
    let first = first.context("the reply had no text")?;
    Ok((first.duration_since(started).as_secs_f64() * 1000.0, turn.retries))
}

pub fn run(model_a: &Path, model_b: &Path, threads: u32, reps: usize) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(measure(model_a, model_b, threads, reps.max(1)))
}

async fn measure(model_a: &Path, model_b: &Path, threads: u32, reps: usize) -> Result<()> {
    let program = std::env::current_exe().context("locating the hearth executable")?;
    let token = "bench-switch-token";
    let server = start_server(&program, model_b, threads, token, &[])?;
    wait_ready(server.port, Duration::from_secs(300)).await?;
    let proxy = FaultProxy::start(([127, 0, 0, 1], server.port).into()).await?;

    let dir = tempfile::tempdir()?;
    let store = AsyncStore::open(dir.path().join("bench.db"), StoreOptions::default()).await?;
    let retry = RetrySettings::default();
    let backoff_ms = retry.first_delay_ms as f64;
    let settings = bench_settings(model_a, threads, &proxy, token, retry);
    settings.validate().map_err(|p| anyhow::anyhow!("{p:?}"))?;
    let manager = BackendManager::new(settings, ManagerOptions::new(&program), store);
    let load = manager
        .initialize_backend(BackendKind::Embedded, None, None, None)
        .await?;
    for question in ["My name is Ada.", "Name a color.", "Name an animal."] {
        manager
            .send(question, SamplingParams::greedy(24), &StopSignal::default(), |_| {})
            .await?;
    }
    let Switches { first, warm, cold } = measure_switches(&manager, reps).await?;
    let (clean, retried) = measure_retry(&manager, &proxy, reps).await?;
    let (clean, retried) = (median(clean), median(retried));
    let line = serde_json::json!({
        "bench": "switch",
        "from": "embedded",
        "to": "vllm (hearth serve)",
        "from_model": load.model,
        "to_model": first.model,
        "threads": threads,
        "reps": reps,
        "messages_carried": first.messages_carried,
        "switch_ms": round(first.switch_ms),
        "switch_warm_median_ms": round(median(warm)),
        "switch_cold_ms": round(cold.switch_ms),
        "ttft_ms": round(clean),
        "ttft_with_one_retry_ms": round(retried),
        "retry_backoff_ms": backoff_ms,
        "retry_overhead_ms": round(retried - clean - backoff_ms),
    });
    println!("{line}");
    drop(manager);
    drop(server);
    Ok(())
}

/// The chat starts on the embedded engine (model A); the vLLM backend is `hearth serve`
/// (model B) behind `proxy`.
fn bench_settings(model_a: &Path, threads: u32, proxy: &FaultProxy, token: &str, retry: RetrySettings) -> Settings {
    Settings {
        active: BackendKind::Embedded,
        // Both stay loaded, so switching back and forth measures the switch itself.
        fallback: vec![BackendKind::Embedded, BackendKind::Vllm],
        embedded: EmbeddedSettings {
            model: model_a.to_string_lossy().into_owned(),
            ctx: 2048,
            gpu_layers: "auto".into(),
            threads: Some(threads),
            ..EmbeddedSettings::default()
        },
        vllm: Some(VllmSettings {
            url: format!("{}/v1", proxy.url()),
            model: None,
            api_key: Some(Secret::new(token)),
            stall_timeout_ms: 60_000,
        }),
        retry,
        ..Settings::default()
    }
}

/// The switches measured, starting on the embedded engine and ending on vLLM.
struct Switches {
    /// The first switch to vLLM, carrying the opening turns.
    first: SwitchReport,
    /// Every switch between the two loaded backends, in milliseconds.
    warm: Vec<f64>,
    /// A switch back to the embedded engine after its model was unloaded.
    cold: SwitchReport,
}

async fn measure_switches(manager: &BackendManager, reps: usize) -> Result<Switches> {
    // The first switch loads nothing (the server is up) but carries the three turns.
    let first = manager.switch_backend(BackendKind::Vllm, true).await?;
    let mut warm = vec![first.switch_ms];
    for _ in 1..reps {
        warm.push(manager.switch_backend(BackendKind::Embedded, true).await?.switch_ms);
        warm.push(manager.switch_backend(BackendKind::Vllm, true).await?.switch_ms);
    }
    // A switch to a backend whose model is not loaded: the worker starts and loads it.
    manager.unload(BackendKind::Embedded).await;
    let cold = manager.switch_backend(BackendKind::Embedded, true).await?;
    manager.switch_backend(BackendKind::Vllm, true).await?;
    Ok(Switches { first, warm, cold })
}

/// What a retry adds: the same short turn with and without one injected failure
/// (a reset before any answer), alternating, each in a fresh conversation so both
/// send the same number of tokens. Returns the times to first text, (clean, retried),
/// leaving out the first round as a warm-up.
async fn measure_retry(manager: &BackendManager, proxy: &FaultProxy, reps: usize) -> Result<(Vec<f64>, Vec<f64>)> {
    let (mut clean, mut retried) = (Vec::new(), Vec::new());
    for rep in 0..=reps {
        for with_fault in [rep % 2 == 0, rep % 2 != 0] {
            manager.conversation().start_new();
            if with_fault {
                proxy.push([Fault::Reset]);
            }
            let (ms, retries) = first_text_ms(
                manager,
                &format!("Question {rep}{}: name a fruit.", u8::from(with_fault)),
            )
            .await?;
            if retries != u32::from(with_fault) {
                bail!("expected {} retries, saw {retries}", u8::from(with_fault));
            }
            if rep > 0 {
                if with_fault { &mut retried } else { &mut clean }.push(ms);
            }
        }
    }
    Ok((clean, retried))
}
