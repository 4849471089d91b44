//! One sequence of the parallel engine: its cached tokens (kept between requests, so a
//! conversation that comes back to the slot evaluates only its new turn), and while a
//! request runs, its own sampler, stop strings, limits, cancel token and figures.

use std::sync::mpsc::SyncSender;
use std::time::Instant;

use hearth_core::{FinishReason, GenerationEvent, SamplingParams};
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;

use crate::draft::Drafter;
use crate::engine::CancelToken;
use crate::session::{reply_metrics, ReplyTimes};
use crate::stop::{StopMatcher, StopScan};
use crate::trace::{TokenTrace, TraceRecorder};
use crate::utf8::Utf8Stream;

/// Where a reply's text goes: streamed as deltas, or sent whole at the end (decoded
/// from all its bytes at once, as the one-sequence engine does for `stream: false`).
pub(super) struct Output {
    events: SyncSender<GenerationEvent>,
    stream: bool,
    utf8: Utf8Stream,
    stops: StopMatcher,
    stop_strings: Vec<String>,
    /// The reply's bytes, when it is sent whole.
    bytes: Vec<u8>,
}

/// What one more token of text did to the reply.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Shown {
    Continue,
    /// A stop string appeared.
    Stopped,
    /// The reader hung up.
    Gone,
}

impl Output {
    pub(super) fn new(events: SyncSender<GenerationEvent>, stream: bool, stop: &[String]) -> Self {
        Self {
            events,
            stream,
            utf8: Utf8Stream::default(),
            stops: StopMatcher::new(stop),
            stop_strings: stop.to_vec(),
            bytes: Vec::new(),
        }
    }

    fn send(&self, text: String) -> bool {
        text.is_empty() || self.events.send(GenerationEvent::Delta { text }).is_ok()
    }

    pub(super) fn push(&mut self, piece: &[u8]) -> Shown {
        if !self.stream {
            self.bytes.extend_from_slice(piece);
        }
        let text = self.utf8.push(piece);
        match self.stops.push(&text) {
            StopScan::Continue(shown) => {
                if self.stream && !self.send(shown) {
                    return Shown::Gone;
                }
                Shown::Continue
            }
            StopScan::Stopped(shown) => {
                if self.stream {
                    self.send(shown);
                }
                Shown::Stopped
            }
        }
    }

    /// The end of the reply: what was held back (not a stop string after all), or the
    /// whole text. Returns the finish reason, `Cancelled` if the reader is gone.
    pub(super) fn finish(&mut self, finish: FinishReason) -> FinishReason {
        if finish == FinishReason::Cancelled {
            return finish;
        }
        if self.stream {
            // After a stop string nothing is held back; otherwise what is was not one.
            self.utf8.finish();
            let rest = self.stops.flush();
            return if self.send(rest) {
                finish
            } else {
                FinishReason::Cancelled
            };
        }
        let mut text = Utf8Stream::decode_all(&self.bytes);
        let mut finish = finish;
        if let Some(at) = self.stop_strings.iter().filter_map(|s| text.find(s.as_str())).min() {
            text.truncate(at);
            finish = FinishReason::Stop;
        }
        if !text.is_empty() && self.events.send(GenerationEvent::Delta { text }).is_err() {
            return FinishReason::Cancelled;
        }
        finish
    }

    pub(super) fn done(&self, event: GenerationEvent) {
        let _ = self.events.send(event);
    }
}

/// A request being served by a slot.
pub(super) struct Active {
    pub params: SamplingParams,
    pub sampler: LlamaSampler,
    pub output: Output,
    pub cancel: CancelToken,
    pub trace: Option<(TraceRecorder, SyncSender<Vec<TokenTrace>>)>,
    /// The prompt's tokens; `prompt[next..]` are still to be evaluated.
    pub prompt: Vec<LlamaToken>,
    pub next: usize,
    /// Prompt tokens found in the slot's cache (not evaluated).
    pub reused: usize,
    pub requested_at: Instant,
    pub prompt_started: Instant,
    pub first_token_at: Option<Instant>,
    pub completion_tokens: u32,
    /// The last sampled token, evaluated by the next step at `pos`.
    pub pending: Option<LlamaToken>,
    pub pos: usize,
    /// Element `n - 1`: tokens decoded in a step of `n` sequences.
    pub decode_batch_sequences: Vec<u32>,
    /// Steps that read part of the prompt.
    pub prompt_steps: u32,
    /// Guesses from the conversation, verified while this sequence replies alone.
    pub drafter: Drafter<LlamaToken>,
}

impl Active {
    pub(super) fn reading_prompt(&self) -> bool {
        self.next < self.prompt.len()
    }

    /// Counts a token decoded in a step with `sequences` sequences decoding.
    pub(super) fn decoded_beside(&mut self, sequences: usize) {
        let Some(at) = sequences.checked_sub(1) else { return };
        if self.decode_batch_sequences.len() <= at {
            self.decode_batch_sequences.resize(at + 1, 0);
        }
        self.decode_batch_sequences[at] += 1;
    }

    /// Records a sampled token; returns how the reply goes on. `n_ctx_seq` is the
    /// sequence's room in the KV cache.
    pub(super) fn accept(&mut self, model: &LlamaModel, token: LlamaToken, n_ctx_seq: usize) -> Option<FinishReason> {
        self.first_token_at.get_or_insert_with(Instant::now);
        let vocab = model.vocab();
        if vocab.is_eog(token) {
            return Some(FinishReason::Stop);
        }
        self.completion_tokens += 1;
        let mut piece = Vec::with_capacity(16);
        vocab.token_to_piece_into(token, &mut piece, false, None);
        match self.output.push(&piece) {
            Shown::Continue => {}
            Shown::Stopped => return Some(FinishReason::Stop),
            Shown::Gone => return Some(FinishReason::Cancelled),
        }
        if self.completion_tokens >= self.params.max_tokens || self.pos + 1 >= n_ctx_seq {
            return Some(FinishReason::Length);
        }
        self.pending = Some(token);
        None
    }

    /// Sends the reply's end: its figures (or the error) on its own channel.
    pub(super) fn finish(mut self, finish: FinishReason, error: Option<String>, load_ms: f64, name: &str) {
        let finished_at = Instant::now();
        if let Some(message) = error {
            tracing::warn!(model = %name, error = %message, "generation failed");
            self.output.done(GenerationEvent::Error { message });
            return;
        }
        let finish = self.output.finish(finish);
        let times = ReplyTimes {
            requested_at: self.requested_at,
            prompt_started: self.prompt_started,
            first_token_at: self.first_token_at,
            finished_at,
        };
        let mut metrics = reply_metrics(
            self.prompt.len(),
            self.prompt.len() - self.reused,
            self.completion_tokens,
            &times,
            load_ms,
            finish,
        );
        metrics.decode_batch_sequences = std::mem::take(&mut self.decode_batch_sequences);
        metrics.prompt_steps = self.prompt_steps;
        metrics.draft_tokens = self.drafter.drafted;
        metrics.draft_accepted = self.drafter.accepted;
        tracing::debug!(model = %name, ?metrics, "generation finished");
        if let Some((trace, tx)) = self.trace.take() {
            let _ = tx.send(trace.finish());
        }
        self.output.done(GenerationEvent::Done { metrics });
    }
}

/// One of the engine's sequences.
pub(super) struct Slot {
    pub seq: i32,
    /// Tokens whose keys and values this sequence holds, from position 0.
    pub cached: Vec<LlamaToken>,
    pub last_used: Instant,
    pub active: Option<Active>,
}

impl Slot {
    pub(super) fn new(seq: i32) -> Self {
        Self {
            seq,
            cached: Vec::new(),
            last_used: Instant::now(),
            active: None,
        }
    }

    /// Tokens at the start of `prompt` this slot already holds.
    pub(super) fn common_prefix(&self, prompt: &[LlamaToken]) -> usize {
        self.cached.iter().zip(prompt).take_while(|(a, b)| a == b).count()
    }
}
