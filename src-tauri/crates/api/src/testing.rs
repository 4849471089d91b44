//! A scripted backend for testing the API server and its clients (routing, errors,
//! streaming, cancellation, limits) without a model. It never stands in for testing
//! a real backend: those have their own tests against real models.
//!
//! Its model is `scripted`. A prompt containing `forever` streams until dropped; one
//! containing `overflow` fails with a context overflow; one containing `crash` fails
//! part-way with a backend crash. Otherwise it streams the words of a fixed reply,
//! at most `max_tokens` of them.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hearth_core::backend::BoxFuture;
use hearth_core::{
    Backend, BackendError, EventStream, FinishReason, GenerateRequest, GenerationEvent, GenerationMetrics, Health,
    ModelDescriptor, Prompt,
};

pub const SCRIPTED_MODEL: &str = "scripted";
pub const SCRIPTED_REPLY: &str = "Hello from the scripted backend.";

#[derive(Default)]
pub struct ScriptedBackend {
    not_ready: AtomicBool,
    live: Arc<AtomicUsize>,
    started: AtomicUsize,
}

/// Counts a stream as live until it is dropped.
struct Live(Arc<AtomicUsize>);

impl Drop for Live {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl ScriptedBackend {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn set_ready(&self, ready: bool) {
        self.not_ready.store(!ready, Ordering::Release);
    }

    /// Event streams handed out and not yet dropped.
    pub fn live_streams(&self) -> usize {
        self.live.load(Ordering::Acquire)
    }

    /// Generations started so far.
    pub fn started(&self) -> usize {
        self.started.load(Ordering::Acquire)
    }
}

fn metrics(completion_tokens: u32, finish_reason: FinishReason) -> GenerationMetrics {
    GenerationMetrics {
        prompt_tokens: 3,
        prompt_tokens_evaluated: 3,
        completion_tokens,
        load_ms: 0.0,
        ttft_ms: 1.0,
        prompt_tps: 100.0,
        decode_tps: 50.0,
        total_ms: 2.0,
        // As if 3 of 4 guessed tokens held: the counters must carry them through.
        draft_tokens: 4,
        draft_accepted: 3,
        decode_batch_sequences: vec![2, 1],
        prompt_steps: 0,
        prompt_format: None,
        finish_reason,
    }
}

impl Backend for ScriptedBackend {
    fn name(&self) -> &str {
        "scripted"
    }

    fn load<'a>(&'a self, _model: &'a str) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move {
            self.set_ready(true);
            Ok(())
        })
    }

    fn unload(&self) -> BoxFuture<'_, Result<(), BackendError>> {
        Box::pin(async move {
            self.set_ready(false);
            Ok(())
        })
    }

    fn models(&self) -> BoxFuture<'_, Result<Vec<ModelDescriptor>, BackendError>> {
        Box::pin(async move {
            Ok(vec![ModelDescriptor {
                id: SCRIPTED_MODEL.into(),
                owned_by: "hearth".into(),
                context_length: Some(4096),
                has_chat_template: Some(true),
                device: None,
                gpu_layers: None,
                layers_total: None,
                placement_note: None,
            }])
        })
    }

    fn health(&self) -> BoxFuture<'_, Health> {
        Box::pin(async move {
            if self.not_ready.load(Ordering::Acquire) {
                Health::not_ready("scripted: not ready")
            } else {
                Health::ready(SCRIPTED_MODEL)
            }
        })
    }

    fn generate(&self, request: GenerateRequest) -> BoxFuture<'_, Result<EventStream, BackendError>> {
        Box::pin(async move {
            if request.model.as_deref().is_some_and(|m| m != SCRIPTED_MODEL) {
                return Err(BackendError::ModelNotFound {
                    model: request.model.unwrap_or_default(),
                });
            }
            if self.not_ready.load(Ordering::Acquire) {
                return Err(BackendError::NotLoaded);
            }
            let text = match &request.prompt {
                Prompt::Text(t) => t.clone(),
                Prompt::Chat(messages) => messages
                    .iter()
                    .map(|m| m.content.as_str())
                    .collect::<Vec<_>>()
                    .join("\n"),
            };
            if text.contains("overflow") {
                return Err(BackendError::ContextOverflow {
                    needed: 5000,
                    limit: 4096,
                });
            }
            self.started.fetch_add(1, Ordering::AcqRel);
            self.live.fetch_add(1, Ordering::AcqRel);
            let live = Live(Arc::clone(&self.live));
            let forever = text.contains("forever");
            let crash = text.contains("crash");
            let words: Vec<String> = SCRIPTED_REPLY.split_inclusive(' ').map(str::to_owned).collect();
            let max = request.params.max_tokens as usize;
            let stream = futures_util::stream::unfold((0usize, false, live), move |(i, done, live)| {
                let words = words.clone();
                async move {
                    if done {
                        return None;
                    }
                    if forever {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        return Some((Ok(GenerationEvent::Delta { text: "la ".into() }), (i + 1, false, live)));
                    }
                    if crash && i == 2 {
                        let e = BackendError::Crashed {
                            backend: "scripted".into(),
                            cause: "scripted crash".into(),
                        };
                        return Some((Err(e), (i, true, live)));
                    }
                    let n = words.len().min(max);
                    if i < n {
                        return Some((
                            Ok(GenerationEvent::Delta { text: words[i].clone() }),
                            (i + 1, false, live),
                        ));
                    }
                    let reason = if n < words.len() {
                        FinishReason::Length
                    } else {
                        FinishReason::Stop
                    };
                    let done = GenerationEvent::Done {
                        metrics: metrics(u32::try_from(n).unwrap_or(0), reason),
                    };
                    Some((Ok(done), (i, true, live)))
                }
            });
            Ok(Box::pin(stream) as EventStream)
        })
    }
}
