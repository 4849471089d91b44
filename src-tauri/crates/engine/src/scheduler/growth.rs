//! A scheduler of one slot grows its KV cache with the conversation (see
//! [`crate::context`]) and can score a fixed token sequence for `hearth eval`; both
//! need the whole context for one sequence, so an engine of several has neither.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::Arc;
use std::time::Instant;

use llama_cpp_2::context::session::LlamaStateSeqFlags;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::token::LlamaToken;

use super::Scheduler;
use crate::context::{next_size, ContextShape};
use crate::prompt::add_token;
use crate::reply::ms;
use crate::EngineError;

/// The only sequence of a scheduler of one slot.
const SEQ: i32 = 0;

/// What a scheduler of one slot needs to make its context again, larger.
pub(crate) struct Growth {
    pub backend: &'static LlamaBackend,
    pub shape: ContextShape,
    /// The configured context size: never grown past, and what prompts are checked against.
    pub ceiling: u32,
    pub path: PathBuf,
    /// Published for [`crate::Engine::context_allocated`].
    pub allocated: Arc<AtomicU32>,
}

impl Scheduler<'_> {
    /// Grows the context when it holds fewer than `wanted` tokens (and the ceiling
    /// allows more), carrying the cached conversation over. Returns whether the cache
    /// survived; if it did not, it was cleared and the prompt is evaluated in full.
    /// On failure the old context stays in use. Without growth: the cache stays.
    pub(super) fn make_room(&mut self, wanted: u32) -> Result<bool, EngineError> {
        let Some(growth) = &self.growth else { return Ok(true) };
        let current = self.ctx.n_ctx();
        let Some(size) = next_size(current, wanted, growth.ceiling) else {
            return Ok(true);
        };
        let started = Instant::now();
        let cached = self.slots[0].cached.len();
        let carried = if cached == 0 {
            None
        } else {
            match self.ctx.state_seq_get(SEQ, LlamaStateSeqFlags::empty()) {
                Ok(state) => Some(state),
                Err(e) => {
                    tracing::warn!(model = %self.name, error = %e, "the cached conversation could not be copied; it is evaluated again");
                    None
                }
            }
        };
        let ctx = self
            .model
            .new_context(growth.backend, growth.shape.params(size))
            .map_err(|e| EngineError::ContextFailed {
                path: growth.path.clone(),
                n_ctx: size,
                reason: e.to_string(),
            })?;
        // The old context (and its KV cache) is freed here.
        self.ctx = ctx;
        self.n_ctx_seq = self.ctx.n_ctx() as usize;
        growth.allocated.store(self.ctx.n_ctx(), Ordering::Release);
        let kept = match carried {
            Some(state) => match self.ctx.state_seq_set(&state, SEQ) {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!(model = %self.name, error = %e, "the cached conversation could not be restored; it is evaluated again");
                    false
                }
            },
            None => false,
        };
        if !kept {
            self.ctx.clear_kv_cache();
            self.slots[0].cached.clear();
        }
        tracing::info!(
            model = %self.name,
            from = current,
            to = self.ctx.n_ctx(),
            carried_tokens = if kept { cached } else { 0 },
            ms = ms(started.elapsed()),
            "context grown"
        );
        Ok(kept)
    }

    /// Evaluates `tokens` from position 0 and sends the logits of each position from
    /// `from` on, in order. Stops early when the receiver hangs up (a cancel). The cache
    /// holds no conversation afterwards.
    pub(super) fn score(&mut self, tokens: &[i32], from: usize, out: &SyncSender<Result<Vec<f32>, String>>) {
        if self.growth.is_none() {
            let _ = out.send(Err(
                "scoring needs the whole context: measure with an engine of one sequence (hearth eval does)".into(),
            ));
            return;
        }
        if self.slots[0].active.is_some() {
            let _ = out.send(Err("a reply is running: score once it has ended".into()));
            return;
        }
        self.clear();
        if let Err(e) = self.score_into(tokens, from, out) {
            let _ = out.send(Err(e));
        }
        self.clear();
    }

    fn clear(&mut self) {
        self.ctx.clear_kv_cache();
        self.slots[0].cached.clear();
    }

    fn score_into(
        &mut self,
        tokens: &[i32],
        from: usize,
        out: &SyncSender<Result<Vec<f32>, String>>,
    ) -> Result<(), String> {
        let wanted = u32::try_from(tokens.len()).map_err(|_| "too many tokens".to_owned())?;
        let ceiling = self.n_ctx_limit();
        if wanted > ceiling {
            return Err(format!(
                "a window of {wanted} tokens does not fit the context of {ceiling} tokens: load the model with a larger context"
            ));
        }
        self.make_room(wanted).map_err(|e| e.to_string())?;
        let n_batch = self.ctx.n_batch() as usize;
        let mut batch = LlamaBatch::new(n_batch, 1);
        for (chunk_index, chunk) in tokens.chunks(n_batch).enumerate() {
            let start = chunk_index * n_batch;
            batch.clear();
            for (i, &token) in chunk.iter().enumerate() {
                add_token(&mut batch, LlamaToken(token), start + i, SEQ, start + i >= from)
                    .map_err(|e| e.to_string())?;
            }
            self.ctx
                .decode(&mut batch)
                .map_err(|e| format!("evaluation failed: {e}"))?;
            for i in 0..chunk.len() {
                if start + i < from {
                    continue;
                }
                let row = i32::try_from(i).map_err(|_| "batch row overflow".to_owned())?;
                if out.send(Ok(self.ctx.get_logits_ith(row).to_vec())).is_err() {
                    return Ok(());
                }
            }
        }
        Ok(())
    }
}
