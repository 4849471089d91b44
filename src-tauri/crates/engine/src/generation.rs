//! What a caller holds while a reply runs: its events, its cancel token, and the
//! collected results for callers that do not stream.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Arc;

use hearth_core::{GenerationEvent, GenerationMetrics};
use serde::Serialize;

use crate::trace::TokenTrace;
use crate::EngineError;

/// Stops a running generation. Cheap to clone; the decode loop checks it before
/// every token and between prompt batches.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Release);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// A generation in progress: read `events` until `Done` or `Error`.
#[derive(Debug)]
pub struct Generation {
    pub events: Receiver<GenerationEvent>,
    pub cancel: CancelToken,
}

/// A reply with what the sampler saw at each of its tokens ([`Engine::generate_traced`]).
#[derive(Debug, Clone, Serialize)]
pub struct TracedOutput {
    pub text: String,
    pub metrics: GenerationMetrics,
    /// One entry per sampled token, in order, the end-of-generation token included.
    pub tokens: Vec<TokenTrace>,
}

/// The whole result of a generation, for callers that do not stream.
#[derive(Debug, Clone, Serialize)]
pub struct GenerationOutput {
    pub text: String,
    pub metrics: GenerationMetrics,
}

impl Generation {
    /// Reads the stream to its end, calling `on_delta` for each piece of text.
    pub fn collect_with(self, mut on_delta: impl FnMut(&str)) -> Result<GenerationOutput, EngineError> {
        let mut text = String::new();
        for event in self.events.iter() {
            match event {
                GenerationEvent::Delta { text: delta } => {
                    on_delta(&delta);
                    text.push_str(&delta);
                }
                GenerationEvent::Done { metrics } => return Ok(GenerationOutput { text, metrics }),
                GenerationEvent::Error { message, .. } => return Err(EngineError::DecodeFailed(message)),
            }
        }
        Err(EngineError::EngineStopped)
    }

    pub fn collect(self) -> Result<GenerationOutput, EngineError> {
        self.collect_with(|_| {})
    }
}
