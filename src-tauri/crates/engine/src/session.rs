//! The decode thread's state and loop: prompt → prefix reuse → batched prompt
//! evaluation → sample/decode until a stop condition, streaming text deltas.

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

    /// Formats and tokenizes a prompt. A chat needs the model's own template; a base
    /// model gets a clear error instead of a silently malformed prompt.
    pub(crate) fn tokenize_prompt(&self, prompt: &Prompt) -> Result<Vec<LlamaToken>, EngineError> {
        let vocab = self.model.vocab();
        let tokens = match prompt {
            Prompt::Text(text) => vocab.tokenize(text.as_bytes(), true, false),
            Prompt::Chat(messages) => {
                let template = self
                    .model
                    .chat_template(None)
                    .map_err(|_| EngineError::NoChatTemplate {
                        model: self.name.clone(),
                    })?;
                let chat = messages
                    .iter()
                    .map(|m| LlamaChatMessage::new(m.role.as_str().to_owned(), m.content.clone()))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| EngineError::TemplateFailed {
                        model: self.name.clone(),
                        reason: e.to_string(),
                    })?;
                let text = self.model.apply_chat_template(&template, &chat, true).map_err(|e| {
                    EngineError::TemplateFailed {
                        model: self.name.clone(),
                        reason: e.to_string(),
                    }
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
        let prompt_end = outcome.first_token_at.unwrap_or(finished_at);
        let evaluated = tokens.len() - reused;
        let prompt_secs = prompt_end.duration_since(prompt_started).as_secs_f64();
        let decode_secs = outcome
            .first_token_at
            .map_or(0.0, |t| finished_at.duration_since(t).as_secs_f64());
        let metrics = GenerationMetrics {
            prompt_tokens: to_u32(tokens.len()),
            prompt_tokens_evaluated: to_u32(evaluated),
            completion_tokens: outcome.completion_tokens,
            load_ms: self.load_ms,
            ttft_ms: outcome
                .first_token_at
                .map_or(0.0, |t| ms(t.duration_since(requested_at))),
            prompt_tps: rate(evaluated, prompt_secs),
            // Tokens after the first, over the time after the first: llama.cpp's "eval" rate.
            decode_tps: rate(outcome.completion_tokens.saturating_sub(1) as usize, decode_secs),
            total_ms: ms(finished_at.duration_since(requested_at)),
            finish_reason: outcome.finish,
            draft_tokens: outcome.drafted,
            draft_accepted: outcome.draft_accepted,
        };
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
        let common = self.cached.iter().zip(tokens).take_while(|(a, b)| a == b).count();
        // The last prompt token is always evaluated: its logits start the reply.
        let mut keep = common.min(tokens.len() - 1);
        if keep < self.cached.len() {
            let removed = self
                .ctx
                .clear_kv_cache_seq(Some(0), Some(to_u32(keep)), None)
                .unwrap_or(false);
            if !removed {
                keep = 0;
            }
        }
        // With a sliding window, positions before (keep - window) are gone from the
        // SWA layers; continuing from `keep` is only valid if they were never needed.
        if keep > 0 && self.n_swa > 0 {
            let pos_min = self.ctx.kv_cache_seq_pos_min(SEQ);
            let window_start = keep.saturating_sub(self.n_swa as usize);
            if pos_min > 0 && usize::try_from(pos_min).unwrap_or(usize::MAX) > window_start {
                keep = 0;
            }
        }
        if keep == 0 {
            self.ctx.clear_kv_cache();
        }
        self.cached.truncate(keep);
        keep
    }

    /// Evaluates prompt tokens in batches; only the last one needs logits.
    /// Returns Ok(false) when cancelled between batches.
    fn evaluate_prompt(
        &mut self,
        tokens: &[LlamaToken],
        start_pos: usize,
        cancel: &crate::CancelToken,
    ) -> Result<bool, String> {
        let n_batch = self.ctx.n_batch() as usize;
        let mut batch = LlamaBatch::new(n_batch, 1);
        let mut pos = start_pos;
        for chunk in tokens.chunks(n_batch) {
            if cancel.is_cancelled() {
                return Ok(false);
            }
            batch.clear();
            for (i, token) in chunk.iter().enumerate() {
                let last = pos + i + 1 == start_pos + tokens.len();
                add_token(&mut batch, *token, pos + i, last).map_err(|e| e.to_string())?;
            }
            self.ctx
                .decode(&mut batch)
                .map_err(|e| format!("prompt evaluation failed: {e}"))?;
            self.cached.extend_from_slice(chunk);
            pos += chunk.len();
        }
        Ok(true)
    }

    fn decode_loop(
        &mut self,
        params: &hearth_core::SamplingParams,
        sampler: &mut llama_cpp_2::sampling::LlamaSampler,
        prompt_len: usize,
        events: &std::sync::mpsc::SyncSender<GenerationEvent>,
        cancel: &crate::CancelToken,
        stream: bool,
    ) -> Outcome {
        if stream {
            return self.decode_tokens(params, sampler, prompt_len, events, cancel);
        }
        // Not streamed: decode silently, then turn the whole token sequence into text at
        // once. A second, independent path from token bytes to text: tests compare the two.
        let mut bytes = Vec::new();
        // Stop strings are still detected as text arrives, so generation ends at one.
        let mut utf8 = Utf8Stream::default();
        let mut stops = StopMatcher::new(&params.stop);
        let mut outcome = self.decode_tokens_with(params, sampler, prompt_len, cancel, &mut |piece, _| {
            bytes.extend_from_slice(piece);
            matches!(stops.push(&utf8.push(piece)), StopScan::Continue(_))
        });
        let mut text = Utf8Stream::decode_all(&bytes);
        if let Some(at) = params.stop.iter().filter_map(|s| text.find(s.as_str())).min() {
            text.truncate(at);
            outcome.finish = FinishReason::Stop;
        }
        if !text.is_empty() && events.send(GenerationEvent::Delta { text }).is_err() {
            outcome.finish = FinishReason::Cancelled;
        }
        outcome
    }

    /// Streams text deltas as tokens arrive: whole characters only, stop strings never shown.
    fn decode_tokens(
        &mut self,
        params: &hearth_core::SamplingParams,
        sampler: &mut llama_cpp_2::sampling::LlamaSampler,
        prompt_len: usize,
        events: &std::sync::mpsc::SyncSender<GenerationEvent>,
        cancel: &crate::CancelToken,
    ) -> Outcome {
        let mut utf8 = Utf8Stream::default();
        let mut stops = StopMatcher::new(&params.stop);
        let send = |text: String| text.is_empty() || events.send(GenerationEvent::Delta { text }).is_ok();
        let mut stopped = false;
        let mut outcome = self.decode_tokens_with(params, sampler, prompt_len, cancel, &mut |piece, _| {
            let text = utf8.push(piece);
            match stops.push(&text) {
                StopScan::Continue(shown) => send(shown),
                StopScan::Stopped(shown) => {
                    send(shown);
                    stopped = true;
                    false
                }
            }
        });
        if stopped {
            outcome.finish = FinishReason::Stop;
            return outcome;
        }
        if outcome.finish == FinishReason::Cancelled {
            return outcome;
        }
        // Whatever is still held back was not a stop string.
        utf8.finish();
        send(stops.flush());
        outcome
    }

    /// The sample → decode loop. `on_piece` gets each token's bytes and returns false
    /// to end the reply (a stop string, or a reader that hung up).
    ///
    /// Each step evaluates the last sampled token together with any draft tokens guessed
    /// from the conversation ([`Drafter`]), then samples at every position in order until
    /// the sampler disagrees with a draft. The sampler sees exactly the calls it would see
    /// one token at a time, so greedy and seeded replies do not depend on the guesses;
    /// the cache is cut back to the tokens that held.
    fn decode_tokens_with(
        &mut self,
        params: &hearth_core::SamplingParams,
        sampler: &mut llama_cpp_2::sampling::LlamaSampler,
        prompt_len: usize,
        cancel: &crate::CancelToken,
        on_piece: &mut dyn FnMut(&[u8], u32) -> bool,
    ) -> Outcome {
        let vocab = self.model.vocab();
        let n_ctx = self.ctx.n_ctx() as usize;
        let mut drafter = Drafter::new(self.max_draft);
        let mut batch = LlamaBatch::new(self.max_draft + 1, 1);
        let mut draft: Vec<LlamaToken> = Vec::with_capacity(self.max_draft);
        // Sampled tokens not yet shown. All but the last are already in the KV cache
        // (they were drafts that held); the last is evaluated by the next step.
        let mut ready: VecDeque<LlamaToken> = VecDeque::with_capacity(self.max_draft + 1);
        // Where the token being shown sits in the sequence.
        let mut pos = prompt_len;
        let mut outcome = Outcome::ended(FinishReason::Stop, None);
        let mut piece = Vec::with_capacity(32);
        // Tokens taken from the sampler so far (what a trace keeps).
        let mut consumed = 0;
        loop {
            if cancel.is_cancelled() {
                outcome.finish = FinishReason::Cancelled;
                break;
            }
            let token = match ready.pop_front() {
                Some(token) => token,
                // The reply's first token, from the prompt's last logits.
                None => self.sample_at(sampler, -1),
            };
            consumed += 1;
            outcome.first_token_at.get_or_insert_with(Instant::now);
            if vocab.is_eog(token) {
                outcome.finish = FinishReason::Stop;
                break;
            }
            outcome.completion_tokens += 1;
            piece.clear();
            vocab.token_to_piece_into(token, &mut piece, false, None);
            if !on_piece(&piece, outcome.completion_tokens) {
                // A stop string (the caller sets Stop) or a reader that hung up.
                outcome.finish = FinishReason::Cancelled;
                break;
            }
            if outcome.completion_tokens >= params.max_tokens || pos + 1 >= n_ctx {
                outcome.finish = FinishReason::Length;
                break;
            }
            if !ready.is_empty() {
                // A draft that held: already evaluated.
                pos += 1;
                continue;
            }
            // The token goes into the cache now; guess what follows it, within what the
            // reply and the context have left.
            self.cached.push(token);
            let left = (params.max_tokens - outcome.completion_tokens) as usize;
            let room = n_ctx.saturating_sub(pos + 2);
            drafter.propose(&self.cached, (left - 1).min(room), &self.step_costs, &mut draft);
            match self.verify_step(&mut batch, token, &draft, pos, sampler, &mut ready) {
                Ok(accepted) => drafter.record(draft.len(), accepted, ready[0]),
                Err(message) => {
                    outcome.error = Some(format!(
                        "decoding token {} failed: {message}",
                        outcome.completion_tokens
                    ));
                    break;
                }
            }
            pos += 1;
        }
        if let Some(trace) = self.trace.as_mut() {
            trace.truncate(consumed);
        }
        outcome.drafted = drafter.drafted;
        outcome.draft_accepted = drafter.accepted;
        if self.max_draft > 0 {
            tracing::debug!(
                model = %self.name,
                drafted = drafter.drafted,
                accepted = drafter.accepted,
                step_costs = ?self.step_costs.table(),
                "drafting"
            );
        }
        outcome
    }

    /// Evaluates `token` at `pos` followed by `draft`, samples at each position while the
    /// sampler agrees with the draft, and queues what it sampled in `ready`. The KV cache
    /// (and `cached`, which already ends with `token`) keeps `token` and the drafts that
    /// held; returns how many held.
    fn verify_step(
        &mut self,
        batch: &mut LlamaBatch,
        token: LlamaToken,
        draft: &[LlamaToken],
        pos: usize,
        sampler: &mut llama_cpp_2::sampling::LlamaSampler,
        ready: &mut VecDeque<LlamaToken>,
    ) -> Result<usize, String> {
        batch.clear();
        add_token(batch, token, pos, true).map_err(|e| e.to_string())?;
        for (i, &guess) in draft.iter().enumerate() {
            add_token(batch, guess, pos + 1 + i, true).map_err(|e| e.to_string())?;
        }
        let started = Instant::now();
        self.ctx.decode(batch).map_err(|e| e.to_string())?;
        if self.max_draft > 0 {
            self.step_costs.observe(draft.len(), ms(started.elapsed()));
        }
        self.cached.extend_from_slice(draft);
        let vocab = self.model.vocab();
        let mut accepted = 0;
        for i in 0..=draft.len() {
            let sampled = self.sample_at(sampler, i32::try_from(i).unwrap_or(i32::MAX));
            ready.push_back(sampled);
            if i == draft.len() || sampled != draft[i] || vocab.is_eog(sampled) {
                break;
            }
            accepted += 1;
        }
        if accepted < draft.len() {
            // The first rejected guess and everything after it leave the cache.
            let keep = pos + 1 + accepted;
            let removed = self
                .ctx
                .clear_kv_cache_seq(Some(SEQ as u32), Some(to_u32(keep)), None)
                .unwrap_or(false);
            if !removed {
                return Err("the KV cache could not be cut back after a draft".into());
            }
            self.cached.truncate(keep);
        }
        Ok(accepted)
    }
}

impl Session<'_> {
    /// Samples from the logits of batch row `idx` (-1: the last), recording them when
    /// the reply is traced.
    fn sample_at(&mut self, sampler: &mut llama_cpp_2::sampling::LlamaSampler, idx: i32) -> LlamaToken {
        let token = sampler.sample(&self.ctx, idx);
        if let Some(trace) = self.trace.as_mut() {
            let bytes = self.model.vocab().token_to_piece(token, true, None);
            let piece = String::from_utf8_lossy(&bytes).into_owned();
            trace.record(token.0, piece, self.ctx.get_logits_ith(idx));
        }
        token
    }
}

fn add_token(batch: &mut LlamaBatch, token: LlamaToken, pos: usize, logits: bool) -> Result<(), EngineError> {
    let pos = i32::try_from(pos).map_err(|_| EngineError::DecodeFailed("position overflow".into()))?;
    batch
        .add(token, pos, &[SEQ], logits)
        .map_err(|e| EngineError::DecodeFailed(format!("batch: {e}")))
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
