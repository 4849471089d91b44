//! Decoding: the prompt in batches, then sample and decode token by token (or with a
//! verified draft) until a stop condition, streaming text deltas. Split from
//! `session.rs`, which owns the session's state, its cache and the job loop.

use super::*;

impl Session<'_> {
    /// Evaluates prompt tokens in batches; only the last one needs logits.
    /// Returns Ok(false) when cancelled between batches.
    pub(super) fn evaluate_prompt(
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

    pub(super) fn decode_loop(
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
    pub(super) fn decode_tokens(
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
    pub(super) fn decode_tokens_with(
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
    pub(super) fn verify_step(
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

    /// Samples from the logits of batch row `idx` (-1: the last), recording them when
    /// the reply is traced.
    pub(super) fn sample_at(&mut self, sampler: &mut llama_cpp_2::sampling::LlamaSampler, idx: i32) -> LlamaToken {
        let token = sampler.sample(&self.ctx, idx);
        if let Some(trace) = self.trace.as_mut() {
            let bytes = self.model.vocab().token_to_piece(token, true, None);
            let piece = String::from_utf8_lossy(&bytes).into_owned();
            trace.record(token.0, piece, self.ctx.get_logits_ith(idx));
        }
        token
    }
}
