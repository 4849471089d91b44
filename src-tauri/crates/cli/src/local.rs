//! The model behind `hearth chat` and `hearth generate`: by default a supervised
//! worker process (a llama.cpp abort costs the worker, never the chat or its saved
//! history), or with `--in-process` the engine in this process, to measure the difference.
//! Both are driven through the same [`Backend`] interface, so the commands do not know which.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures_util::StreamExt;
use hearth_backends::{Supervisor, WorkerConfig};
use hearth_core::{
    Backend, BackendError, ErrorCode, FinishReason, GenerateRequest, GenerationEvent, GenerationMetrics, Prompt,
    SamplingParams,
};
use hearth_engine_backend::EngineBackend;
use tokio::sync::Notify;

use crate::options::ModelOptions;

/// Facts about the loaded model the commands need.
#[derive(Debug, Clone)]
pub struct LoadedModel {
    pub name: String,
    pub has_chat_template: bool,
    /// "worker" or "in-process".
    pub mode: &'static str,
    /// Where it runs ("CPU", "Vulkan0") and the layers on that device.
    pub device: Option<String>,
    pub gpu_layers: Option<u32>,
    /// What `gpu_layers` is out of: the model's layers and its output layer.
    pub layers_total: Option<u32>,
    /// Why it runs elsewhere than asked (the GPU had no room), in words.
    pub placement_note: Option<String>,
}

/// A generation's result as the caller saw it.
#[derive(Debug, Clone)]
pub struct Reply {
    pub text: String,
    pub metrics: GenerationMetrics,
}

/// Stops the reply in progress; safe to call from a signal handler thread.
#[derive(Clone, Default)]
pub struct StopSignal(Arc<(AtomicBool, Notify)>);

impl StopSignal {
    pub fn stop(&self) {
        self.0 .0.store(true, Ordering::Release);
        self.0 .1.notify_one();
    }

    fn reset(&self) {
        self.0 .0.store(false, Ordering::Release);
    }

    fn is_stopped(&self) -> bool {
        self.0 .0.load(Ordering::Acquire)
    }

    async fn stopped(&self) {
        while !self.is_stopped() {
            self.0 .1.notified().await;
        }
    }
}

pub struct LocalModel {
    backend: Arc<dyn Backend>,
    info: LoadedModel,
    /// Last field: dropped after the backend, whose worker it reaps.
    runtime: tokio::runtime::Runtime,
}

impl LocalModel {
    /// Loads the model chosen by `options`, in a worker unless `in_process`.
    pub fn open(options: &ModelOptions, in_process: bool) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let (backend, mode): (Arc<dyn Backend>, _) = if in_process {
            let engine = options.load()?;
            (Arc::new(EngineBackend::from_engine(engine)), "in-process")
        } else {
            let path = options.resolve_path()?;
            eprintln!("loading {} in a worker process …", path.display());
            let mut config = WorkerConfig::new(std::env::current_exe().context("locating the hearth executable")?);
            config.args = options.worker_args();
            config.ready_timeout = Duration::from_secs(300);
            // Spawned from this (main) thread inside block_on: the worker's death signal is
            // tied to the spawning thread, which lives as long as the command.
            let supervisor = runtime.block_on(Supervisor::spawn(config, &path))?;
            (supervisor as Arc<dyn Backend>, "worker")
        };
        let models = runtime.block_on(backend.models())?;
        let model = models
            .into_iter()
            .next()
            .ok_or_else(|| anyhow::anyhow!("the {mode} engine loaded no model"))?;
        let info = LoadedModel {
            name: model.id,
            has_chat_template: model.has_chat_template.unwrap_or(true),
            mode,
            device: model.device,
            gpu_layers: model.gpu_layers,
            layers_total: model.layers_total,
            placement_note: model.placement_note,
        };
        // An in-process load said it already (ModelOptions::load).
        if let (Some(note), "worker") = (&info.placement_note, mode) {
            eprintln!("warning: {note}");
        }
        Ok(Self { backend, info, runtime })
    }

    pub fn info(&self) -> &LoadedModel {
        &self.info
    }

    /// Generates a reply, calling `on_delta` with each piece of text as it arrives.
    /// A `stop` ends it early: the text so far comes back with finish reason `cancelled`.
    pub fn generate(
        &self,
        prompt: Prompt,
        params: SamplingParams,
        stop: &StopSignal,
        on_delta: impl FnMut(&str),
    ) -> Result<Reply, BackendError> {
        stop.reset();
        let request = GenerateRequest {
            model: None,
            prompt,
            params,
        };
        self.runtime
            .block_on(stream_reply(self.backend.as_ref(), request, stop, on_delta))
    }
}

async fn stream_reply(
    backend: &dyn Backend,
    request: GenerateRequest,
    stop: &StopSignal,
    mut on_delta: impl FnMut(&str),
) -> Result<Reply, BackendError> {
    let started = Instant::now();
    let mut events = backend.generate(request).await?;
    let mut text = String::new();
    let mut first: Option<Instant> = None;
    let mut deltas = 0u32;
    loop {
        let event = tokio::select! {
            biased;
            _ = stop.stopped() => break,
            event = events.next() => event,
        };
        match event {
            Some(Ok(GenerationEvent::Delta { text: delta })) => {
                first.get_or_insert_with(Instant::now);
                deltas += 1;
                on_delta(&delta);
                text.push_str(&delta);
            }
            Some(Ok(GenerationEvent::Done { metrics })) => return Ok(Reply { text, metrics }),
            Some(Ok(GenerationEvent::Error { code, message })) => return Err(BackendError::Failed { code, message }),
            Some(Err(e)) => return Err(e),
            None => {
                return Err(BackendError::Failed {
                    code: ErrorCode::GenerationIncomplete,
                    message: format!("{} ended the reply without its final event", backend.name()),
                })
            }
        }
    }
    // Stopped: dropping the stream cancels the generation (the worker sees the
    // connection close). The figures are the caller's, since the engine's final
    // event is not awaited.
    drop(events);
    let total_ms = started.elapsed().as_secs_f64() * 1000.0;
    let ttft_ms = first.map_or(total_ms, |f| f.duration_since(started).as_secs_f64() * 1000.0);
    let decode_secs = (total_ms - ttft_ms) / 1000.0;
    Ok(Reply {
        text,
        metrics: GenerationMetrics {
            prompt_tokens: 0,
            prompt_tokens_evaluated: 0,
            completion_tokens: deltas,
            load_ms: 0.0,
            ttft_ms,
            prompt_tps: 0.0,
            decode_tps: if decode_secs > 0.0 && deltas > 1 {
                f64::from(deltas - 1) / decode_secs
            } else {
                0.0
            },
            total_ms,
            draft_tokens: 0,
            draft_accepted: 0,
            decode_batch_sequences: Vec::new(),
            prompt_steps: 0,
            prompt_format: None,
            finish_reason: FinishReason::Cancelled,
        },
    })
}
