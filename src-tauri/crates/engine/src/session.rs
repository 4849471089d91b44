//! The decode thread's state and job loop: prompt → prefix reuse (and cache growth) →
//! batched prompt evaluation → sample/decode until a stop condition, streaming text
//! deltas. The evaluation and decoding steps are in `session/decode.rs`, scoring for
//! `hearth eval` in `session/score.rs`.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Instant;

use hearth_core::{FinishReason, GenerationEvent, GenerationMetrics};
use llama_cpp_2::context::session::LlamaStateSeqFlags;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::{LlamaChatMessage, LlamaModel};
use llama_cpp_2::token::LlamaToken;

use crate::context::{next_size, ContextShape};
use crate::draft::{Drafter, StepCosts};
use crate::engine::{Job, Prompt};
use crate::sampler::build_sampler;
use crate::stop::{StopMatcher, StopScan};
use crate::trace::TraceRecorder;
use crate::utf8::Utf8Stream;
use crate::EngineError;

mod decode;
mod score;

/// The single sequence the engine uses in llama.cpp's KV cache.
const SEQ: i32 = 0;

/// What the session needs to make its context again, larger.
pub(crate) struct Growth {
    pub backend: &'static LlamaBackend,
    pub shape: ContextShape,
    /// The configured context size: never grown past, and what prompts are checked against.
    pub ceiling: u32,
    pub path: PathBuf,
    /// Published for [`crate::Engine::context_allocated`].
    pub allocated: Arc<AtomicU32>,
}

pub(crate) struct Session<'m> {
    model: &'m LlamaModel,
    ctx: LlamaContext<'m>,
    growth: Growth,
    name: String,
    /// Tokens whose keys and values are in the KV cache, in order from position 0.
    /// The next prompt reuses the longest common prefix with it.
    cached: Vec<LlamaToken>,
    /// Sliding-window size for SWA models (0 = none): positions older than the window
    /// are dropped from those layers, which limits how far back the cache can be cut.
    n_swa: u32,
    /// Most draft tokens verified per step (0 = one token at a time).
    max_draft: usize,
    /// What a step costs by draft length on this machine, learned across replies.
    step_costs: StepCosts,
    load_ms: f64,
    /// What the sampler saw at each token of the current reply, when its caller asked.
    trace: Option<TraceRecorder>,
}

/// How a decode loop ended, before metrics are attached.
struct Outcome {
    finish: FinishReason,
    completion_tokens: u32,
    first_token_at: Option<Instant>,
    error: Option<String>,
    /// Draft tokens verified, and how many of them the sampler agreed with.
    drafted: u32,
    draft_accepted: u32,
}

impl Outcome {
    fn ended(finish: FinishReason, error: Option<String>) -> Self {
        Self {
            finish,
            completion_tokens: 0,
            first_token_at: None,
            error,
            drafted: 0,
            draft_accepted: 0,
        }
    }
}

impl<'m> Session<'m> {
    pub(crate) fn new(
        model: &'m LlamaModel,
        ctx: LlamaContext<'m>,
        growth: Growth,
        name: String,
        n_swa: u32,
        max_draft: usize,
    ) -> Self {
        Self {
            model,
            ctx,
            growth,
            name,
            cached: Vec::new(),
            n_swa,
            max_draft,
            step_costs: StepCosts::default(),
            load_ms: 0.0,
            trace: None,
        }
    }

    pub(crate) fn set_load_ms(&mut self, load_ms: f64) {
        self.load_ms = load_ms;
    }

    /// A first decode touches every weight page (mmap) and triggers llama.cpp's
    /// one-time weight repacking and graph allocation, so a user's first request
    /// runs as fast as later ones. Same idea as llama.cpp's common warm-up.
    pub(crate) fn warm_up(&mut self) -> Result<(), EngineError> {
        let vocab = self.model.vocab();
        let mut tokens = vec![vocab.bos()];
        let eos = vocab.eos();
        if eos.0 >= 0 {
            tokens.push(eos);
        }
        let mut batch = LlamaBatch::new(tokens.len(), 1);
        for (pos, token) in tokens.iter().enumerate() {
            add_token(&mut batch, *token, pos, pos + 1 == tokens.len())?;
        }
        self.ctx
            .decode(&mut batch)
            .map_err(|e| EngineError::DecodeFailed(format!("warm-up: {e}")))?;
        // A single-token step too: generation uses a different graph than prompt batches.
        batch.clear();
        add_token(&mut batch, tokens[0], tokens.len(), true)?;
        self.ctx
            .decode(&mut batch)
            .map_err(|e| EngineError::DecodeFailed(format!("warm-up: {e}")))?;
        self.reset();
        Ok(())
    }

    pub(crate) fn reset(&mut self) {
        self.ctx.clear_kv_cache();
        self.cached.clear();
    }

    pub(crate) fn tokenize_prompt(&self, prompt: &Prompt) -> Result<Vec<LlamaToken>, EngineError> {
        tokenize_prompt(self.model, &self.name, prompt)
    }

    pub(crate) fn run(&mut self, job: Job) {
        let Job {
            request,
            requested_at,
            accepted,
            events,
            cancel,
            stream,
            trace,
        } = job;
        let (trace_top, trace_tx) = match trace {
            Some((top_k, tx)) => (Some(top_k), Some(tx)),
            None => (None, None),
        };
        self.trace = trace_top.map(TraceRecorder::new);
        let tokens = match self.tokenize_prompt(&request.prompt) {
            Ok(tokens) => tokens,
            Err(e) => {
                let _ = accepted.send(Err(e));
                return;
            }
        };
        let limit = self.growth.ceiling;
        // At least one position must stay free for the reply.
        let needed = u32::try_from(tokens.len()).unwrap_or(u32::MAX).saturating_add(1);
        if needed > limit {
            let _ = accepted.send(Err(EngineError::ContextOverflow { needed, limit }));
            return;
        }
        let mut sampler = build_sampler(&request.params, self.model);
        let mut reused = self.reuse_prefix(&tokens);
        // Room for the prompt and the whole reply, so a reply never stops short of
        // max_tokens while the ceiling would have allowed more.
        match self.make_room(needed.saturating_add(request.params.max_tokens)) {
            Ok(true) => {}
            Ok(false) => reused = 0,
            Err(e) => {
                let _ = accepted.send(Err(e));
                return;
            }
        }
        let _ = accepted.send(Ok(()));

        let prompt_started = Instant::now();
        let mut outcome = match self.evaluate_prompt(&tokens[reused..], reused, &cancel) {
            Ok(true) => self.decode_loop(&request.params, &mut sampler, tokens.len(), &events, &cancel, stream),
            Ok(false) => Outcome::ended(FinishReason::Cancelled, None),
            Err(message) => Outcome::ended(FinishReason::Error, Some(message)),
        };
        let finished_at = Instant::now();
        if let Some(message) = outcome.error.take() {
            tracing::warn!(model = %self.name, error = %message, "generation failed");
            // The cache may hold half a batch: start clean next time.
            self.reset();
            let _ = events.send(GenerationEvent::Error { message });
            return;
        }
        let times = ReplyTimes {
            requested_at,
            prompt_started,
            first_token_at: outcome.first_token_at,
            finished_at,
        };
        let mut metrics = reply_metrics(
            tokens.len(),
            tokens.len() - reused,
            outcome.completion_tokens,
            &times,
            self.load_ms,
            outcome.finish,
        );
        metrics.draft_tokens = outcome.drafted;
        metrics.draft_accepted = outcome.draft_accepted;
        // One sequence: every token after the first was decoded in a step of its own.
        let decoded = outcome.completion_tokens.saturating_sub(1);
        if decoded > 0 {
            metrics.decode_batch_sequences = vec![decoded];
        }
        let n_batch = (self.ctx.n_batch() as usize).max(1);
        metrics.prompt_steps = u32::try_from((tokens.len() - reused).div_ceil(n_batch)).unwrap_or(u32::MAX);
        tracing::debug!(model = %self.name, ?metrics, "generation finished");
        if let (Some(tx), Some(trace)) = (trace_tx, self.trace.take()) {
            let _ = tx.send(trace.finish());
        }
        let _ = events.send(GenerationEvent::Done { metrics });
    }

    /// Grows the context when it holds fewer than `wanted` tokens (and the ceiling
    /// allows more), carrying the cached conversation over. Returns whether the cache
    /// survived; if it did not, it was cleared and the prompt is evaluated in full.
    /// On failure the old context stays in use.
    fn make_room(&mut self, wanted: u32) -> Result<bool, EngineError> {
        let current = self.ctx.n_ctx();
        let Some(size) = next_size(current, wanted, self.growth.ceiling) else {
            return Ok(true);
        };
        let started = Instant::now();
        let carried = if self.cached.is_empty() {
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
            .new_context(self.growth.backend, self.growth.shape.params(size))
            .map_err(|e| EngineError::ContextFailed {
                path: self.growth.path.clone(),
                n_ctx: size,
                reason: e.to_string(),
            })?;
        // The old context (and its KV cache) is freed here.
        self.ctx = ctx;
        self.growth.allocated.store(self.ctx.n_ctx(), Ordering::Release);
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
            self.reset();
        }
        tracing::info!(
            model = %self.name,
            from = current,
            to = self.ctx.n_ctx(),
            carried_tokens = if kept { self.cached.len() } else { 0 },
            ms = ms(started.elapsed()),
            "context grown"
        );
        Ok(kept)
    }

    /// Keeps the KV cache of the longest prefix this prompt shares with what is
    /// cached and removes the rest. Returns how many prompt tokens are reused.
    fn reuse_prefix(&mut self, tokens: &[LlamaToken]) -> usize {
        keep_prefix(&mut self.ctx, SEQ, &mut self.cached, tokens, self.n_swa)
    }
}

/// Keeps the KV cache of the longest prefix a prompt of `tokens` shares with `cached`
/// (what sequence `seq` holds, from position 0) and removes the rest; returns how many
/// prompt tokens are reused. The one rule for one sequence and many: the last prompt
/// token is always evaluated (its logits start the reply), and with a sliding window
/// the prefix is kept only if the positions the window dropped are not needed.
pub(crate) fn keep_prefix(
    ctx: &mut LlamaContext,
    seq: i32,
    cached: &mut Vec<LlamaToken>,
    tokens: &[LlamaToken],
    n_swa: u32,
) -> usize {
    let seq_id = u32::try_from(seq).unwrap_or(0);
    let common = cached.iter().zip(tokens).take_while(|(a, b)| a == b).count();
    let mut keep = common.min(tokens.len() - 1);
    if keep < cached.len()
        && !ctx
            .clear_kv_cache_seq(Some(seq_id), Some(to_u32(keep)), None)
            .unwrap_or(false)
    {
        keep = 0;
    }
    // With a sliding window, positions before (keep - window) are gone from the SWA
    // layers; continuing from `keep` is only valid if they were never needed.
    if keep > 0 && n_swa > 0 {
        let pos_min = ctx.kv_cache_seq_pos_min(seq);
        let window_start = keep.saturating_sub(n_swa as usize);
        if pos_min > 0 && usize::try_from(pos_min).unwrap_or(usize::MAX) > window_start {
            keep = 0;
        }
    }
    if keep == 0 {
        ctx.clear_kv_cache_seq(Some(seq_id), None, None).ok();
    }
    cached.truncate(keep);
    keep
}

fn add_token(batch: &mut LlamaBatch, token: LlamaToken, pos: usize, logits: bool) -> Result<(), EngineError> {
    let pos = i32::try_from(pos).map_err(|_| EngineError::DecodeFailed("position overflow".into()))?;
    batch
        .add(token, pos, &[SEQ], logits)
        .map_err(|e| EngineError::DecodeFailed(format!("batch: {e}")))
}

/// Formats and tokenizes a prompt. A chat needs the model's own template; a base
/// model gets a clear error instead of a silently malformed prompt.
pub(crate) fn tokenize_prompt(model: &LlamaModel, name: &str, prompt: &Prompt) -> Result<Vec<LlamaToken>, EngineError> {
    let vocab = model.vocab();
    let tokens = match prompt {
        Prompt::Text(text) => vocab.tokenize(text.as_bytes(), true, false),
        Prompt::Chat(messages) => {
            let template = model
                .chat_template(None)
                .map_err(|_| EngineError::NoChatTemplate { model: name.to_owned() })?;
            let chat = messages
                .iter()
                .map(|m| LlamaChatMessage::new(m.role.as_str().to_owned(), m.content.clone()))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| EngineError::TemplateFailed {
                    model: name.to_owned(),
                    reason: e.to_string(),
                })?;
            let text = model
                .apply_chat_template(&template, &chat, true)
                .map_err(|e| EngineError::TemplateFailed {
                    model: name.to_owned(),
                    reason: e.to_string(),
                })?;
            // The template writes special tokens as text (<|im_start|> …): parse them.
            vocab.tokenize(text.as_bytes(), true, true)
        }
    };
    if tokens.is_empty() {
        return Err(EngineError::InvalidSettings(
            "the prompt is empty: write something to continue".into(),
        ));
    }
    Ok(tokens)
}

/// When a reply's phases began and ended.
pub(crate) struct ReplyTimes {
    pub requested_at: Instant,
    pub prompt_started: Instant,
    pub first_token_at: Option<Instant>,
    pub finished_at: Instant,
}

/// A reply's figures, the same for one sequence or many.
pub(crate) fn reply_metrics(
    prompt_tokens: usize,
    evaluated: usize,
    completion_tokens: u32,
    times: &ReplyTimes,
    load_ms: f64,
    finish_reason: FinishReason,
) -> GenerationMetrics {
    let prompt_end = times.first_token_at.unwrap_or(times.finished_at);
    let prompt_secs = prompt_end.duration_since(times.prompt_started).as_secs_f64();
    let decode_secs = times
        .first_token_at
        .map_or(0.0, |t| times.finished_at.duration_since(t).as_secs_f64());
    GenerationMetrics {
        prompt_tokens: to_u32(prompt_tokens),
        prompt_tokens_evaluated: to_u32(evaluated),
        completion_tokens,
        load_ms,
        ttft_ms: times
            .first_token_at
            .map_or(0.0, |t| ms(t.duration_since(times.requested_at))),
        prompt_tps: rate(evaluated, prompt_secs),
        // Tokens after the first, over the time after the first: llama.cpp's "eval" rate.
        decode_tps: rate(completion_tokens.saturating_sub(1) as usize, decode_secs),
        total_ms: ms(times.finished_at.duration_since(times.requested_at)),
        finish_reason,
        draft_tokens: 0,
        draft_accepted: 0,
        decode_batch_sequences: Vec::new(),
        prompt_steps: 0,
    }
}

fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn rate(tokens: usize, secs: f64) -> f64 {
    if secs > 0.0 && tokens > 0 {
        tokens as f64 / secs
    } else {
        0.0
    }
}
