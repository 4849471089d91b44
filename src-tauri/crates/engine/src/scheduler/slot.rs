//! One sequence of the engine: its cached tokens (kept between requests, so a
//! conversation that comes back to the slot evaluates only its new turn), and while a
//! request runs, its sampler, its reply ([`Reply`]: text, stop strings, limits,
//! figures), its place in the sequence, its guesses and its cancel token.

use std::sync::mpsc::SyncSender;

use hearth_core::FinishReason;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;

use super::plan::{SlotState, Work};
use crate::draft::{Drafter, Guess};
use crate::engine::CancelToken;
use crate::reply::{Piece, Reply};
use crate::trace::{TokenTrace, TraceRecorder};

/// A request being served by a slot.
pub(super) struct Active {
    pub sampler: LlamaSampler,
    pub reply: Reply,
    pub cancel: CancelToken,
    pub trace: Option<(TraceRecorder, SyncSender<Vec<TokenTrace>>)>,
    /// The prompt's tokens; `prompt[next..]` are still to be evaluated.
    pub prompt: Vec<LlamaToken>,
    pub next: usize,
    /// Prompt tokens found in the slot's cache (not evaluated).
    pub reused: usize,
    /// When the request arrived, counted in requests: the older of two equal prompts is
    /// read first.
    pub arrival: u64,
    /// The last sampled token, evaluated by the next step at `pos`.
    pub pending: Option<LlamaToken>,
    pub pos: usize,
    /// Guesses from the conversation, verified where the plan says they pay.
    pub drafter: Drafter<LlamaToken>,
    /// This step's guess (found before the plan, taken from after it).
    pub guess: Option<Guess>,
}

impl Active {
    pub(super) fn reading_prompt(&self) -> bool {
        self.next < self.prompt.len()
    }

    /// Records a token sampled at this reply's next position (`first`: from the prompt's
    /// last logits; else from a step that decoded `decoding` sequences); returns how the
    /// reply ended, if it did. `n_ctx_seq` is the sequence's room in the KV cache.
    pub(super) fn accept(
        &mut self,
        model: &LlamaModel,
        token: LlamaToken,
        first: bool,
        decoding: usize,
        n_ctx_seq: usize,
    ) -> Option<FinishReason> {
        if first {
            self.pos = self.prompt.len();
        } else {
            self.pos += 1;
            self.reply.decoded_beside(decoding);
        }
        let vocab = model.vocab();
        let mut bytes = Vec::new();
        let piece = if vocab.is_eog(token) {
            Piece::End
        } else {
            vocab.token_to_piece_into(token, &mut bytes, false, None);
            Piece::Text(&bytes)
        };
        let ended = self.reply.accept(piece, self.pos, n_ctx_seq);
        if ended.is_none() {
            self.pending = Some(token);
        }
        ended
    }

    /// Sends the reply's end: its figures (or the error), and its trace when one was asked.
    pub(super) fn finish(mut self, finish: FinishReason, error: Option<String>, load_ms: f64, name: &str) {
        if let Some(message) = &error {
            tracing::warn!(model = %name, error = %message, "generation failed");
        }
        if error.is_none() {
            if let Some((trace, tx)) = self.trace.take() {
                let _ = tx.send(trace.finish());
            }
        }
        let drafts = (self.drafter.drafted, self.drafter.accepted);
        if let Some(metrics) = self.reply.finish(finish, error, load_ms, drafts) {
            tracing::debug!(model = %name, ?metrics, "generation finished");
        }
    }
}

/// One of the engine's sequences.
pub(super) struct Slot {
    pub seq: i32,
    /// Tokens whose keys and values this sequence holds, from position 0.
    pub cached: Vec<LlamaToken>,
    /// When the slot last ended a request, counted in requests ended (0: never).
    pub last_used: u64,
    pub active: Option<Active>,
}

impl Slot {
    pub(super) fn new(seq: i32) -> Self {
        Self {
            seq,
            cached: Vec::new(),
            last_used: 0,
            active: None,
        }
    }

    /// Tokens at the start of `prompt` this slot already holds.
    pub(super) fn common_prefix(&self, prompt: &[LlamaToken]) -> usize {
        self.cached.iter().zip(prompt).take_while(|(a, b)| a == b).count()
    }

    /// The slot as the planner sees it (`chances`: its guess's, when replying).
    pub(super) fn state(&self, chances: Vec<f64>) -> SlotState {
        let work = match &self.active {
            None => Work::Idle,
            Some(a) if a.reading_prompt() => Work::Reading {
                left: a.prompt.len() - a.next,
                new: a.prompt.len() - a.reused,
                arrival: a.arrival,
            },
            Some(a) if a.pending.is_some() => Work::Replying { chances },
            // Between its last token and its end: nothing to decode.
            Some(_) => Work::Idle,
        };
        SlotState { seq: self.seq, work }
    }
}
