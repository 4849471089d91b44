//! The process boundary changes nothing in the output: the same greedy generations
//! through the worker process (HTTP + SSE) and the in-process engine give the same
//! text. What it costs in time is measured by `hearth bench worker`, not asserted here.

mod common;

use std::time::Duration;

use common::{chat_model, hearth};
use hearth_backends::measure::measure;
use hearth_backends::{Supervisor, WorkerConfig};
use hearth_core::{Backend, GenerateRequest, Prompt, SamplingParams};
use hearth_engine::EngineConfig;
use hearth_engine_backend::EngineBackend;

const RUNS: usize = 2;
const MAX_TOKENS: u32 = 32;
/// One decode thread each: with two on a busy 2-core machine, llama.cpp's thread
/// barrier makes timings swing far more than anything measured here.
const THREADS: &str = "1";

/// A distinct first word per run, so no run reuses the previous one's KV cache.
fn request(run: usize) -> GenerateRequest {
    let text = format!(
        "Run {run}. The lighthouse keeper climbed the spiral stairs every evening just before sunset. \
         From the lantern room he could see the fishing boats returning across the grey water. \
         Each boat carried a lamp at its bow, and he counted them one by one as they rounded the point."
    );
    GenerateRequest {
        model: None,
        prompt: Prompt::Text(text),
        params: SamplingParams::greedy(MAX_TOKENS),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_gives_the_same_text_as_in_process() {
    // Drafting off on both sides: draft lengths follow step times measured as each engine
    // runs, so two engines could batch a reply differently, and a batch rounds otherwise
    // than single tokens. Undrafted, both run the same shapes and must agree exactly.
    let in_process = EngineBackend::new(EngineConfig {
        max_draft: 0,
        ..EngineConfig::new("").with_n_ctx(1024).with_threads(1)
    });
    in_process.load(&chat_model().to_string_lossy()).await.expect("load");
    let mut config = WorkerConfig::new(hearth());
    config.args = ["--threads", THREADS, "--ctx", "1024", "--draft", "0"]
        .map(Into::into)
        .to_vec();
    config.ready_timeout = Duration::from_secs(60);
    let worker = Supervisor::spawn(config, chat_model()).await.expect("spawn");
    // Alternating runs share whatever else the machine is doing between both sides.
    let (mut local, mut remote) = (Vec::new(), Vec::new());
    for run in 0..=RUNS {
        // Alternating which goes first, too.
        let (a, b) = if run % 2 == 0 {
            let a = measure(&in_process, request(run)).await.expect("in-process run");
            (a, measure(worker.as_ref(), request(run)).await.expect("worker run"))
        } else {
            let b = measure(worker.as_ref(), request(run)).await.expect("worker run");
            (measure(&in_process, request(run)).await.expect("in-process run"), b)
        };
        // Run 0 warms both up.
        if run > 0 {
            local.push(a);
            remote.push(b);
        }
    }
    drop(worker);
    for (a, b) in local.iter().zip(&remote) {
        assert_eq!(a.text, b.text, "greedy output must not depend on the process boundary");
    }
}
