//! The engine handle: one loaded model served by one dedicated OS thread.
//!
//! llama.cpp's context borrows its model and is not thread-safe, and the decode
//! loop must never run on an async runtime. So a thread owns model and context
//! for their whole life; callers talk to it through channels. Token events flow
//! back through a bounded channel, which also gives back-pressure.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use hearth_core::{ChatMessage, GenerationEvent, SamplingParams};
use serde::Serialize;

pub use crate::generation::{CancelToken, Generation, GenerationOutput, TracedOutput};
pub(crate) use crate::llama_backend::backend;
use crate::trace::TokenTrace;
use crate::{EngineConfig, EngineError, LayerFallback};

/// Events buffered between the decode thread and a slow reader before decoding pauses.
const EVENT_BUFFER: usize = 256;

/// What to generate from.
#[derive(Debug, Clone, PartialEq)]
pub enum Prompt {
    /// A conversation, formatted by the model's own chat template.
    Chat(Vec<ChatMessage>),
    /// Raw text continued as-is (base models without a chat template).
    Text(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct GenerationRequest {
    pub prompt: Prompt,
    pub params: SamplingParams,
}

/// Facts about the loaded model and how it was loaded.
#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    pub path: PathBuf,
    pub name: String,
    pub file_bytes: u64,
    pub architecture: String,
    pub n_params: u64,
    pub n_layer: u32,
    /// The context size requests are checked against (llama.cpp's padding applied).
    pub n_ctx: u32,
    /// The KV cache allocated at load, in tokens; it grows toward `n_ctx` on demand.
    pub n_ctx_initial: u32,
    pub n_ctx_train: u32,
    pub n_batch: u32,
    pub threads: u32,
    pub threads_batch: u32,
    /// Layers on the device (0 on the CPU; at most every layer and the output).
    pub n_gpu_layers: u32,
    /// Where the model runs: "CPU", or llama.cpp's device name ("Vulkan0", "CUDA0").
    pub device: String,
    /// Why the model runs elsewhere than asked, in words (a GPU without room for the
    /// layers asked for); `None` when it runs where asked.
    pub placement_note: Option<String>,
    /// Sequences served at once (each with `n_ctx` positions of its own).
    pub n_parallel: u32,
    pub has_chat_template: bool,
    /// The start token a text begins with, when the model uses one.
    pub bos_token: Option<i32>,
    pub load_ms: f64,
}

pub(crate) struct Job {
    pub request: GenerationRequest,
    pub requested_at: Instant,
    /// Answers once the prompt is tokenized and checked, before any decoding.
    pub accepted: SyncSender<Result<(), EngineError>>,
    pub events: SyncSender<GenerationEvent>,
    pub cancel: CancelToken,
    /// false: send the whole text once at the end, decoded from all tokens at once.
    pub stream: bool,
    /// When set: record what the sampler saw at each token (this many candidates) and
    /// send it here before `Done`.
    pub trace: Option<(usize, SyncSender<Vec<TokenTrace>>)>,
}

pub(crate) enum Command {
    Generate(Box<Job>),
    /// Requests that start together: with several sequences they join the same step.
    GenerateMany(Vec<Job>),
    /// Forget the cached conversation (the next prompt is evaluated in full).
    ResetCache,
    CountTokens(Prompt, SyncSender<Result<u32, EngineError>>),
    Tokenize(Prompt, SyncSender<Result<Vec<i32>, EngineError>>),
    /// Logits of every position of a token sequence from the given one on.
    Score(Vec<i32>, usize, SyncSender<Result<Vec<f32>, String>>),
}

/// A loaded model. Dropping it stops the thread and frees the model's memory.
pub struct Engine {
    commands: Option<SyncSender<Command>>,
    thread: Option<JoinHandle<()>>,
    info: ModelInfo,
    /// Tokens the KV cache holds room for now (written by the decode thread).
    allocated: Arc<AtomicU32>,
    /// The parallel engine's steps as planned (written by the decode thread).
    steps: Arc<crate::scheduler::StepLog>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

/// What a panic said, for an error message.
fn panic_words(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

impl Engine {
    /// Checks the file, loads it with llama.cpp on a new thread and warms it up.
    /// Returns once the model is ready for its first request.
    ///
    /// A load with layers on a GPU that fails there (llama.cpp could not allocate the
    /// weights, the cache or the compute buffers: the device is out of memory, as a
    /// rule) is tried again with fewer layers (`config.layer_fallback`), and finally on
    /// the CPU; `ModelInfo::placement_note` then says so, in words. An error the CPU
    /// load also meets is returned as it is.
    pub fn load(config: EngineConfig) -> Result<Self, EngineError> {
        config.validate()?;
        let asked = config.n_gpu_layers;
        let mut attempt = config;
        let mut failures: Vec<String> = Vec::new();
        loop {
            let layers = attempt.n_gpu_layers;
            let on_cpu = attempt.device == crate::DeviceChoice::Cpu;
            match Self::load_once(attempt.clone()) {
                Ok(mut engine) => {
                    if let Some(first) = failures.first() {
                        let place = if engine.info.device == "CPU" {
                            "the model runs on the CPU instead".to_owned()
                        } else {
                            format!(
                                "{} of {asked} layers run on {}",
                                engine.info.n_gpu_layers, engine.info.device
                            )
                        };
                        let note = format!("{first}: {place}");
                        tracing::warn!(tries = failures.len() + 1, "{note}");
                        engine.info.placement_note = Some(note);
                    }
                    return Ok(engine);
                }
                Err(
                    e @ (EngineError::LoadFailed { .. }
                    | EngineError::ContextFailed { .. }
                    | EngineError::DecodeFailed(_)),
                ) if layers > 0 && !on_cpu => {
                    let next = LayerFallback::next(attempt.layer_fallback.as_ref(), layers);
                    tracing::warn!(error = %e, layers, next, "the load failed with layers on the GPU: trying fewer");
                    let gpu = match &attempt.device {
                        crate::DeviceChoice::Named(name) => name.clone(),
                        _ => "the GPU".to_owned(),
                    };
                    // llama.cpp says only that it failed; which step failed says what did not fit.
                    let what = match &e {
                        EngineError::LoadFailed { .. } => "the weights could not be allocated there".to_owned(),
                        EngineError::ContextFailed { n_ctx, .. } => {
                            format!("the cache and buffers for {n_ctx} tokens could not be allocated there")
                        }
                        _ => format!("the first step failed there: {e}"),
                    };
                    failures.push(format!("{layers} layers did not fit on {gpu} ({what})"));
                    attempt.n_gpu_layers = next;
                    if next == 0 {
                        attempt.device = crate::DeviceChoice::Cpu;
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn load_once(config: EngineConfig) -> Result<Self, EngineError> {
        // llama.cpp trusts GGUF headers (a bad one can abort the process), so the
        // file is checked by our bounds-checked reader first.
        let header = hearth_gguf::read(&config.model_path)?;
        let model_path = config.model_path.clone();
        let backend = backend()?;
        let (ready_tx, ready_rx) = mpsc::sync_channel(1);
        let (cmd_tx, cmd_rx) = mpsc::sync_channel::<Command>(16);
        let n_swa = header
            .sliding_window
            .map_or(0, |w| u32::try_from(w).unwrap_or(u32::MAX));
        let allocated = Arc::new(AtomicU32::new(0));
        let allocated_by_thread = Arc::clone(&allocated);
        let steps = Arc::new(crate::scheduler::StepLog::default());
        let steps_by_thread = Arc::clone(&steps);
        let thread = std::thread::Builder::new()
            .name("hearth-decode".into())
            .spawn(move || {
                crate::decode_thread::engine_thread(
                    backend,
                    config,
                    n_swa,
                    allocated_by_thread,
                    steps_by_thread,
                    ready_tx,
                    cmd_rx,
                )
            })
            .map_err(|e| EngineError::DecodeFailed(format!("could not start the decode thread: {e}")))?;
        match ready_rx.recv() {
            Ok(Ok(info)) => {
                tracing::info!(model = %info.name, load_ms = info.load_ms, n_ctx = info.n_ctx, threads = info.threads, "model loaded");
                Ok(Self {
                    commands: Some(cmd_tx),
                    thread: Some(thread),
                    info,
                    allocated,
                    steps,
                })
            }
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            // The thread ended without a word: it panicked while loading (llama-cpp-2
            // panics on values it cannot convert, such as a context length past
            // i32::MAX in a header). That is the file's fault, not a stopped engine.
            Err(_) => Err(match thread.join() {
                Err(panic) => EngineError::LoadFailed {
                    path: model_path,
                    reason: format!(
                        "llama.cpp could not load it ({}); the file may be damaged or not a model llama.cpp supports",
                        panic_words(panic.as_ref())
                    ),
                },
                Ok(()) => EngineError::EngineStopped,
            }),
        }
    }

    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// Tokens the KV cache has room for now: between `info().n_ctx_initial` and
    /// `info().n_ctx`, growing as conversations need it.
    pub fn context_allocated(&self) -> u32 {
        self.allocated.load(Ordering::Acquire)
    }

    /// The most recent steps, oldest first, as the scheduler planned them (what each
    /// batch held, the predicted cost, who got a token): where its rules are checked.
    pub fn step_plans(&self) -> Vec<crate::StepPlan> {
        self.steps.snapshot()
    }

    /// Starts a generation. Returns after the prompt was checked (template,
    /// context fit, sampling parameters), so those errors come back here, typed,
    /// before any token is decoded. One generation runs at a time; a second
    /// caller waits for the first to finish.
    pub fn generate(&self, request: GenerationRequest) -> Result<Generation, EngineError> {
        self.start(request, true)
    }

    /// Generates without streaming: one text, decoded from the whole token sequence at
    /// the end (what an API's `stream: false` returns).
    pub fn generate_text(&self, request: GenerationRequest) -> Result<GenerationOutput, EngineError> {
        self.start(request, false)?.collect()
    }

    /// Generates (streaming internally, as [`Engine::generate`]) and records, for each
    /// token the sampler picked, the `top_k` best raw logits at its position: what tells
    /// a near-tie tipped by rounding from a real difference between two replies.
    pub fn generate_traced(&self, request: GenerationRequest, top_k: usize) -> Result<TracedOutput, EngineError> {
        let (trace_tx, trace_rx) = mpsc::sync_channel(1);
        let output = self.start_job(request, true, Some((top_k, trace_tx)))?.collect()?;
        let tokens = trace_rx.recv().map_err(|_| EngineError::EngineStopped)?;
        Ok(TracedOutput {
            text: output.text,
            metrics: output.metrics,
            tokens,
        })
    }

    /// Traces several requests that start together: with several sequences they are
    /// admitted in the same step and run in the same batches; with one, one after
    /// another. Each reply as [`Engine::generate_traced`] gives it.
    pub fn generate_traced_many(
        &self,
        requests: Vec<GenerationRequest>,
        top_k: usize,
    ) -> Result<Vec<TracedOutput>, EngineError> {
        let mut jobs = Vec::with_capacity(requests.len());
        let mut pending = Vec::with_capacity(requests.len());
        for request in requests {
            request.params.validate()?;
            let (job, accepted, generation) = job(request, true);
            let (trace_tx, trace_rx) = mpsc::sync_channel(1);
            jobs.push(Job {
                trace: Some((top_k, trace_tx)),
                ..job
            });
            pending.push((accepted, generation, trace_rx));
        }
        self.send(Command::GenerateMany(jobs))?;
        // Read each reply on its own thread as soon as it is accepted, so one engine
        // sequence never waits on a reader that has not started.
        let readers: Vec<_> = pending
            .into_iter()
            .map(|(accepted, generation, trace_rx)| {
                let accepted = accepted.recv().map_err(|_| EngineError::EngineStopped)?;
                accepted?;
                Ok(std::thread::spawn(move || -> Result<TracedOutput, EngineError> {
                    let output = generation.collect()?;
                    let tokens = trace_rx.recv().map_err(|_| EngineError::EngineStopped)?;
                    Ok(TracedOutput {
                        text: output.text,
                        metrics: output.metrics,
                        tokens,
                    })
                }))
            })
            .collect::<Result<_, EngineError>>()?;
        readers
            .into_iter()
            .map(|r| r.join().map_err(|_| EngineError::EngineStopped)?)
            .collect()
    }

    fn start(&self, request: GenerationRequest, stream: bool) -> Result<Generation, EngineError> {
        self.start_job(request, stream, None)
    }

    fn start_job(
        &self,
        request: GenerationRequest,
        stream: bool,
        trace: Option<(usize, SyncSender<Vec<TokenTrace>>)>,
    ) -> Result<Generation, EngineError> {
        request.params.validate()?;
        let (job, accepted, generation) = job(request, stream);
        self.send(Command::Generate(Box::new(Job { trace, ..job })))?;
        accepted.recv().map_err(|_| EngineError::EngineStopped)??;
        Ok(generation)
    }

    /// Tokens the prompt would take (template applied), without generating.
    pub fn count_tokens(&self, prompt: Prompt) -> Result<u32, EngineError> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.send(Command::CountTokens(prompt, tx))?;
        rx.recv().map_err(|_| EngineError::EngineStopped)?
    }

    /// The prompt's tokens (template applied; a text gets the model's start token when
    /// it uses one).
    pub fn tokenize(&self, prompt: Prompt) -> Result<Vec<i32>, EngineError> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.send(Command::Tokenize(prompt, tx))?;
        rx.recv().map_err(|_| EngineError::EngineStopped)?
    }

    /// Evaluates `tokens` from an empty cache and streams the logits (one vector of the
    /// vocabulary's size per position) of every position from `from` on. Dropping the
    /// receiver stops it. The cached conversation is gone afterwards.
    pub fn score(&self, tokens: Vec<i32>, from: usize) -> Result<Receiver<Result<Vec<f32>, String>>, EngineError> {
        // A few positions in flight: each is a whole vocabulary of logits.
        let (tx, rx) = mpsc::sync_channel(4);
        self.send(Command::Score(tokens, from, tx))?;
        Ok(rx)
    }

    /// Drops the cached conversation so the next prompt is evaluated from scratch.
    pub fn reset_cache(&self) -> Result<(), EngineError> {
        self.send(Command::ResetCache)
    }

    fn send(&self, command: Command) -> Result<(), EngineError> {
        self.commands
            .as_ref()
            .ok_or(EngineError::EngineStopped)?
            .send(command)
            .map_err(|_| EngineError::EngineStopped)
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        // Closing the command channel ends the thread's loop; joining frees the model.
        self.commands.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A job for `request` (untraced), the receiver of its acceptance, and its events.
fn job(request: GenerationRequest, stream: bool) -> (Job, Receiver<Result<(), EngineError>>, Generation) {
    let (accepted_tx, accepted_rx) = mpsc::sync_channel(1);
    let (events_tx, events_rx) = mpsc::sync_channel(EVENT_BUFFER);
    let cancel = CancelToken::default();
    let job = Job {
        request,
        requested_at: Instant::now(),
        accepted: accepted_tx,
        events: events_tx,
        cancel: cancel.clone(),
        stream,
        trace: None,
    };
    (
        job,
        accepted_rx,
        Generation {
            events: events_rx,
            cancel,
        },
    )
}
