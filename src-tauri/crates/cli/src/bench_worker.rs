//! `hearth bench worker`: what the process boundary costs. The same greedy
//! generations through the worker process (HTTP + SSE on loopback) and through the
//! in-process engine, alternating, timed at the caller; one JSON line.

use std::time::Duration;

use anyhow::{Context, Result};
use hearth_backends::measure::{measure, Measured};
use hearth_backends::{Supervisor, WorkerConfig};
use hearth_core::{Backend, GenerateRequest, Prompt, SamplingParams};
use hearth_engine::EngineConfig;
use hearth_engine_backend::EngineBackend;

/// A distinct first word per run, so no run reuses the previous one's KV cache
/// (the worker has no cache-reset route, and both sides must do the same work).
fn request(run: usize, max_tokens: u32) -> GenerateRequest {
    let text = format!(
        "Run {run}. The lighthouse keeper climbed the spiral stairs every evening just before sunset. \
         From the lantern room he could see the fishing boats returning across the grey water. \
         Each boat carried a lamp at its bow, and he counted them one by one as they rounded the point."
    );
    GenerateRequest {
        model: None,
        prompt: Prompt::Text(text),
        params: SamplingParams::greedy(max_tokens),
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

pub fn run(model: &std::path::Path, threads: u32, reps: usize, max_tokens: u32) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let in_process = EngineBackend::new(EngineConfig::new("").with_n_ctx(2048).with_threads(threads));
        in_process.load(&model.to_string_lossy()).await?;
        let mut config = WorkerConfig::new(std::env::current_exe().context("locating the hearth executable")?);
        config.args = vec![
            "--threads".into(),
            threads.to_string().into(),
            "--ctx".into(),
            "2048".into(),
        ];
        config.ready_timeout = Duration::from_secs(120);
        let worker = Supervisor::spawn(config, model).await?;
        let (mut local, mut remote): (Vec<Measured>, Vec<Measured>) = (Vec::new(), Vec::new());
        for run in 0..=reps {
            // Alternate which side goes first, so both share whatever else the machine does.
            let (a, b) = if run % 2 == 0 {
                let a = measure(&in_process, request(run, max_tokens)).await?;
                (a, measure(worker.as_ref(), request(run, max_tokens)).await?)
            } else {
                let b = measure(worker.as_ref(), request(run, max_tokens)).await?;
                (measure(&in_process, request(run, max_tokens)).await?, b)
            };
            if run > 0 {
                // Run 0 warms both up.
                local.push(a);
                remote.push(b);
            }
        }
        drop(worker);
        let figure = |runs: &[Measured], f: fn(&Measured) -> f64| median(runs.iter().map(f).collect());
        let local_ttft = figure(&local, |m| m.client_ttft_ms);
        let worker_ttft = figure(&remote, |m| m.client_ttft_ms);
        // The boundary's own cost, free of the engine's run-to-run noise (prompt evaluation
        // varies by tens of ms here): the caller's time to first token minus the engine's.
        let local_transport = figure(&local, |m| m.client_ttft_ms - m.engine.ttft_ms);
        let worker_transport = figure(&remote, |m| m.client_ttft_ms - m.engine.ttft_ms);
        let local_tps = figure(&local, |m| m.client_decode_tps);
        let worker_tps = figure(&remote, |m| m.client_decode_tps);
        let line = serde_json::json!({
            "bench": "worker",
            "model": model.file_name().map(|n| n.to_string_lossy().into_owned()),
            "threads": threads,
            "reps": reps,
            "prompt_tokens": remote.first().map(|m| m.engine.prompt_tokens),
            "completion_tokens": remote.first().map(|m| m.engine.completion_tokens),
            "in_process_ttft_ms": round(local_ttft),
            "worker_ttft_ms": round(worker_ttft),
            "added_ttft_ms": round(worker_ttft - local_ttft),
            "in_process_ttft_over_engine_ms": round(local_transport),
            "worker_ttft_over_engine_ms": round(worker_transport),
            "added_ttft_transport_ms": round(worker_transport - local_transport),
            "in_process_decode_tps": round(local_tps),
            "worker_decode_tps": round(worker_tps),
            "worker_vs_in_process": round(worker_tps / local_tps.max(f64::MIN_POSITIVE)),
            // As each engine measured itself: the same code, in this process or the worker.
            "in_process_engine_decode_tps": round(figure(&local, |m| m.engine.decode_tps)),
            "worker_engine_decode_tps": round(figure(&remote, |m| m.engine.decode_tps)),
        });
        println!("{line}");
        Ok(())
    })
}

fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}
