//! Many sequences at once: continuous batching on one llama.cpp context.
//!
//! Decoding a token reads every weight once, whatever the number of sequences in the
//! batch, so serving several replies in one batch costs little more than serving one.
//! The context holds `n_parallel` sequences, each with its own part of the KV cache
//! (`kv_unified` off: a sequence has exactly the configured context, and one long
//! conversation cannot crowd out the others). Each step builds one batch: the next
//! token of every sequence that is replying, then prompt tokens of sequences still
//! reading theirs ([`pace`]: a question is read whole, beside the replies; a long
//! prompt in chunks sized from measured step costs, so it delays their next token by a
//! few decode steps at most). Requests join between steps and leave as soon as they end.
//!
//! A request goes to the idle slot whose cache shares the longest prefix with its
//! prompt (least recently used first on a tie), so each conversation keeps its prefix
//! reuse under load; a slot holding another conversation is cleared only when no slot
//! would lose less. With one slot the engine uses [`crate::session`] instead (with
//! a KV cache that grows): a single sequence is served exactly as before. A sequence
//! replying alone drafts as that engine does; beside others, guesses are verified
//! where the measured cost of a wider step says they pay ([`draft`]).

mod draft;
mod pace;
mod slot;
mod steps;

use std::collections::VecDeque;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;
use std::time::Instant;

use hearth_core::FinishReason;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;

use crate::draft::{Drafter, StepCosts};
use crate::engine::{Command, Job};
use crate::sampler::build_sampler;
use crate::session::{keep_prefix, tokenize_prompt};
use crate::trace::TraceRecorder;
use crate::EngineError;
use pace::{plan_reads, Pace, Unread};
use slot::{Active, Output, Slot};
pub(crate) use steps::StepLog;
pub use steps::{StepPlan, DOCUMENT_CHUNK_DECODE_STEPS, MIN_PROMPT_CHUNK};

/// A row of the batch whose logits are sampled after the step.
struct SampledRow {
    slot: usize,
    row: i32,
    /// The reply's first token (sampled from the prompt's last logits).
    first: bool,
}

pub(crate) struct Scheduler<'m> {
    model: &'m LlamaModel,
    ctx: LlamaContext<'m>,
    name: String,
    slots: Vec<Slot>,
    waiting: VecDeque<Job>,
    /// Positions each sequence may use (the configured context).
    n_ctx_seq: usize,
    n_batch: usize,
    /// Sliding-window size for SWA models (0 = none).
    n_swa: u32,
    load_ms: f64,
    pace: Pace,
    batch: LlamaBatch<'static>,
    /// Guesses verified per step by a lone replying sequence (0: no drafting).
    max_draft: usize,
    /// What a lone sequence's step costs by draft length (the drafter's cost model).
    step_costs: StepCosts,
    /// Each step as planned (read by `Engine::step_plans`).
    steps: Arc<StepLog>,
    /// Steps taken so far.
    step_index: u64,
}

impl<'m> Scheduler<'m> {
    pub(crate) fn new(
        model: &'m LlamaModel,
        ctx: LlamaContext<'m>,
        name: String,
        n_parallel: u32,
        n_swa: u32,
        max_draft: usize,
        steps: Arc<StepLog>,
    ) -> Self {
        let n_batch = ctx.n_batch() as usize;
        let n = n_parallel.max(1);
        let n_ctx_seq = (ctx.n_ctx() / n) as usize;
        Self {
            model,
            ctx,
            name,
            slots: (0..n).map(|i| Slot::new(i32::try_from(i).unwrap_or(0))).collect(),
            waiting: VecDeque::new(),
            n_ctx_seq,
            n_batch,
            n_swa,
            load_ms: 0.0,
            pace: Pace::default(),
            batch: LlamaBatch::new(n_batch, i32::try_from(n).unwrap_or(1)),
            max_draft,
            step_costs: StepCosts::default(),
            steps,
            step_index: 0,
        }
    }

    pub(crate) fn set_load_ms(&mut self, load_ms: f64) {
        self.load_ms = load_ms;
    }

    /// The positions a sequence may use: what prompts are checked against.
    pub(crate) fn n_ctx_seq(&self) -> u32 {
        u32::try_from(self.n_ctx_seq).unwrap_or(u32::MAX)
    }

    /// Decodes one token on every sequence and clears them, so the first real request
    /// does not pay for page faults, weight repacking and graph allocation.
    pub(crate) fn warm_up(&mut self) -> Result<(), EngineError> {
        let bos = self.model.vocab().bos();
        self.batch.clear();
        for slot in &self.slots {
            self.batch
                .add(bos, 0, &[slot.seq], true)
                .map_err(|e| EngineError::DecodeFailed(format!("warm-up: {e}")))?;
        }
        self.ctx
            .decode(&mut self.batch)
            .map_err(|e| EngineError::DecodeFailed(format!("warm-up: {e}")))?;
        self.ctx.clear_kv_cache();
        Ok(())
    }

    /// Serves commands until the engine is dropped and the last reply has ended.
    pub(crate) fn run(mut self, commands: &Receiver<Command>) {
        let mut open = true;
        loop {
            if !self.busy() {
                if !open {
                    return;
                }
                match commands.recv() {
                    Ok(command) => self.take(command),
                    Err(_) => return,
                }
            }
            // Whatever else arrived joins between steps.
            loop {
                match commands.try_recv() {
                    Ok(command) => self.take(command),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        open = false;
                        break;
                    }
                }
            }
            self.admit();
            if self.slots.iter().any(|s| s.active.is_some()) {
                self.step();
            }
        }
    }

    fn busy(&self) -> bool {
        !self.waiting.is_empty() || self.slots.iter().any(|s| s.active.is_some())
    }

    fn take(&mut self, command: Command) {
        match command {
            Command::Generate(job) => self.waiting.push_back(*job),
            Command::GenerateMany(jobs) => self.waiting.extend(jobs),
            Command::ResetCache => {
                for slot in self.slots.iter_mut().filter(|s| s.active.is_none()) {
                    self.ctx.clear_kv_cache_seq(Some(seq_u32(slot.seq)), None, None).ok();
                    slot.cached.clear();
                }
            }
            Command::CountTokens(prompt, reply) => {
                let counted = tokenize_prompt(self.model, &self.name, &prompt)
                    .map(|t| u32::try_from(t.len()).unwrap_or(u32::MAX));
                let _ = reply.send(counted);
            }
            Command::Tokenize(prompt, reply) => {
                let tokens = tokenize_prompt(self.model, &self.name, &prompt);
                let _ = reply.send(tokens.map(|t| t.into_iter().map(|t| t.0).collect()));
            }
            Command::Score(_, _, reply) => {
                let _ = reply.send(Err(
                    "scoring needs the whole context: measure with an engine of one sequence (hearth eval does)".into(),
                ));
            }
        }
    }

    /// Gives waiting requests the idle slots, checking each prompt first.
    fn admit(&mut self) {
        while self.slots.iter().any(|s| s.active.is_none()) {
            let Some(job) = self.waiting.pop_front() else { return };
            let tokens = match tokenize_prompt(self.model, &self.name, &job.request.prompt) {
                Ok(tokens) => tokens,
                Err(e) => {
                    let _ = job.accepted.send(Err(e));
                    continue;
                }
            };
            let needed = u32::try_from(tokens.len()).unwrap_or(u32::MAX).saturating_add(1);
            let limit = self.n_ctx_seq();
            if needed > limit {
                let _ = job.accepted.send(Err(EngineError::ContextOverflow { needed, limit }));
                continue;
            }
            let busy: Vec<bool> = self.slots.iter().map(|s| s.active.is_some()).collect();
            let chosen = self
                .slots
                .iter()
                .enumerate()
                .filter(|(_, s)| s.active.is_none())
                .max_by_key(|&(i, s)| {
                    // A slot that would keep at least half of what it holds (the same
                    // conversation, a regenerated reply) before one that would lose
                    // another conversation for a shared system prompt; an empty slot
                    // loses nothing. Then the longest prefix; then the slot that keeps
                    // the busy sequences in the fewest runs of consecutive ids (llama.cpp
                    // decodes each run in a pass of its own over the weights: 4 replies
                    // in 3 runs took 35 ms a step here, 2 in one run 16 ms); then the
                    // least recently used, then the lowest.
                    let common = s.common_prefix(&tokens);
                    (
                        common * 2 >= s.cached.len(),
                        common,
                        std::cmp::Reverse(runs_with(&busy, i)),
                        std::cmp::Reverse(s.last_used),
                        std::cmp::Reverse(i),
                    )
                })
                .map(|(i, _)| i);
            let Some(index) = chosen else { return };
            let reused = self.reuse_prefix(index, &tokens);
            let Job {
                request,
                requested_at,
                accepted,
                events,
                cancel,
                stream,
                trace,
            } = job;
            let sampler = build_sampler(&request.params, self.model);
            if accepted.send(Ok(())).is_err() {
                continue;
            }
            self.slots[index].active = Some(Active {
                output: Output::new(events, stream, &request.params.stop),
                sampler,
                params: request.params,
                cancel,
                trace: trace.map(|(top_k, tx)| (TraceRecorder::new(top_k), tx)),
                next: reused,
                reused,
                prompt: tokens,
                requested_at,
                prompt_started: Instant::now(),
                first_token_at: None,
                completion_tokens: 0,
                pending: None,
                pos: 0,
                decode_batch_sequences: Vec::new(),
                prompt_steps: 0,
                drafter: Drafter::new(self.max_draft),
            });
        }
    }

    /// Keeps the slot's cache of the longest prefix it shares with `tokens` (the rule of
    /// one sequence, [`keep_prefix`]); returns how many prompt tokens are reused.
    fn reuse_prefix(&mut self, index: usize, tokens: &[llama_cpp_2::token::LlamaToken]) -> usize {
        let slot = &mut self.slots[index];
        keep_prefix(&mut self.ctx, slot.seq, &mut slot.cached, tokens, self.n_swa)
    }

    /// One batch: a token for every replying sequence, then prompt chunks; decode;
    /// sample where a sequence needs its next token.
    fn step(&mut self) {
        let cancelled = self.end_cancelled();
        let reading = self
            .slots
            .iter()
            .any(|s| s.active.as_ref().is_some_and(Active::reading_prompt));
        self.batch.clear();
        // The replying sequences' sampled tokens go into their caches first, so their
        // guesses continue them.
        let replying: Vec<(usize, LlamaToken)> = self
            .slots
            .iter_mut()
            .enumerate()
            .filter_map(|(index, slot)| {
                let token = slot.active.as_mut()?.pending.take()?;
                slot.cached.push(token);
                Some((index, token))
            })
            .collect();
        let decode_rows = replying.len();
        let drafting = !reading && self.max_draft > 0;
        let mut guesses_of = if drafting && decode_rows > 1 {
            let indices: Vec<usize> = replying.iter().map(|&(index, _)| index).collect();
            self.guesses_beside(&indices, self.n_batch.saturating_sub(decode_rows))
        } else {
            Vec::new()
        };
        let mut rows: Vec<SampledRow> = Vec::with_capacity(self.slots.len());
        // Each sampled row's guesses, beside `rows` (when sequences draft beside others).
        let mut verify: Vec<Vec<LlamaToken>> = Vec::new();
        let mut failed = None;
        for (n, &(index, token)) in replying.iter().enumerate() {
            let slot = &mut self.slots[index];
            let Some(active) = slot.active.as_ref() else { continue };
            let row = self.batch.n_tokens();
            let guesses = guesses_of.get_mut(n).map(std::mem::take).unwrap_or_default();
            let added = std::iter::once(token)
                .chain(guesses.iter().copied())
                .enumerate()
                .try_for_each(|(i, t)| self.batch.add(t, to_i32(active.pos + i), &[slot.seq], true));
            if let Err(e) = added {
                failed = Some(format!("batch: {e}"));
                break;
            }
            slot.cached.extend_from_slice(&guesses);
            rows.push(SampledRow {
                slot: index,
                row,
                first: false,
            });
            if !guesses_of.is_empty() {
                verify.push(guesses);
            }
        }
        if let Some(message) = failed {
            return self.fail_all(&message);
        }
        // One sequence replying and no prompt to read: it drafts as the one-sequence
        // engine does.
        let lone = match rows.as_slice() {
            [only] if drafting => Some(only.slot),
            _ => None,
        };
        let draft = match lone.map(|index| self.add_draft(index)).transpose() {
            Ok(draft) => draft.unwrap_or_default(),
            Err(message) => return self.fail_all(&message),
        };
        let room = self.n_batch.saturating_sub(self.batch.n_tokens() as usize);
        let step_tokens = self.pace.step_tokens(decode_rows, room).min(room);
        let beside = if decode_rows > 0 {
            self.pace.beside_decoding(decode_rows, room).min(room)
        } else {
            step_tokens
        };
        // The prompt with the least left to read first (then the oldest).
        let mut readers: Vec<usize> = (0..self.slots.len())
            .filter(|&i| self.slots[i].active.as_ref().is_some_and(Active::reading_prompt))
            .collect();
        readers.sort_by_key(|&i| {
            self.slots[i]
                .active
                .as_ref()
                .map(|a| (a.prompt.len() - a.next, a.requested_at))
        });
        let unread: Vec<Unread> = readers
            .iter()
            .filter_map(|&i| self.slots[i].active.as_ref())
            .map(|a| Unread {
                left: a.prompt.len() - a.next,
                new: a.prompt.len() - a.reused,
            })
            .collect();
        let mut prompt_tokens = 0;
        let mut reads: Vec<(i32, usize)> = Vec::new();
        for (index, take) in readers.into_iter().zip(plan_reads(&unread, step_tokens, beside)) {
            if take == 0 {
                continue;
            }
            let slot = &mut self.slots[index];
            let Some(active) = slot.active.as_mut() else { continue };
            let end = active.next + take;
            for pos in active.next..end {
                let last = pos + 1 == active.prompt.len();
                let row = self.batch.n_tokens();
                if let Err(e) = self.batch.add(active.prompt[pos], to_i32(pos), &[slot.seq], last) {
                    failed = Some(format!("batch: {e}"));
                    break;
                }
                if last {
                    rows.push(SampledRow {
                        slot: index,
                        row,
                        first: true,
                    });
                }
            }
            if failed.is_some() {
                break;
            }
            slot.cached.extend_from_slice(&active.prompt[active.next..end]);
            reads.push((slot.seq, take));
            prompt_tokens += take;
            active.next = end;
            active.prompt_steps += 1;
        }
        if let Some(message) = failed {
            return self.fail_all(&message);
        }
        if self.batch.n_tokens() == 0 {
            return;
        }
        // The plan as the pace sees it before this step is measured.
        let guessed: usize = verify.iter().map(Vec::len).sum::<usize>() + draft.len();
        let mut plan = StepPlan {
            index: self.step_index,
            replying: replying.iter().map(|&(index, _)| self.slots[index].seq).collect(),
            decode_rows: decode_rows + guessed,
            reads,
            step_budget: step_tokens,
            beside_budget: beside,
            decode_ms: (decode_rows + guessed > 0)
                .then(|| self.pace.decode_ms(decode_rows + guessed))
                .flatten(),
            predicted_ms: self.pace.predict_ms(decode_rows + guessed, prompt_tokens),
            measured_ms: 0.0,
            sampled: rows.iter().map(|r| self.slots[r.slot].seq).collect(),
            cancelled,
        };
        self.step_index += 1;
        let started = Instant::now();
        if let Err(e) = self.ctx.decode(&mut self.batch) {
            return self.fail_all(&format!("decoding failed: {e}"));
        }
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        plan.measured_ms = ms;
        self.steps.push(plan);
        if let (Some(index), [only]) = (lone, rows.as_slice()) {
            self.step_costs.observe(draft.len(), ms);
            // Its guesses are rows like any reply's: the step prices that width too.
            self.pace.observe(decode_rows + draft.len(), prompt_tokens, ms);
            return self.verify_draft(index, only.row, &draft, 1);
        }
        // A guess's rows cost what replies' rows do: the step is priced by its width.
        self.pace.observe(decode_rows + guessed, prompt_tokens, ms);
        if !verify.is_empty() {
            for (SampledRow { slot, row, .. }, guesses) in rows.into_iter().zip(verify) {
                self.verify_draft(slot, row, &guesses, decode_rows);
            }
            return;
        }
        for SampledRow { slot, row, first } in rows {
            if let Some((_, Some(finish))) = self.sample_token(slot, row, first, decode_rows) {
                self.end(slot, finish, None);
            }
        }
    }

    /// Samples batch row `row` for slot `index` and passes the token on; returns it, and
    /// how the reply ended if it did. `decoding`: sequences decoded in this step.
    fn sample_token(
        &mut self,
        index: usize,
        row: i32,
        first: bool,
        decoding: usize,
    ) -> Option<(LlamaToken, Option<FinishReason>)> {
        let active = self.slots[index].active.as_mut()?;
        let token = active.sampler.sample(&self.ctx, row);
        if let Some((trace, _)) = active.trace.as_mut() {
            let bytes = self.model.vocab().token_to_piece(token, true, None);
            trace.record(
                token.0,
                String::from_utf8_lossy(&bytes).into_owned(),
                self.ctx.get_logits_ith(row),
            );
        }
        if first {
            active.pos = active.prompt.len();
        } else {
            active.pos += 1;
            active.decoded_beside(decoding);
        }
        Some((token, active.accept(self.model, token, self.n_ctx_seq)))
    }

    /// Requests whose caller cancelled (or hung up) leave before the step; returns
    /// their sequences.
    fn end_cancelled(&mut self) -> Vec<i32> {
        let mut cancelled = Vec::new();
        for index in 0..self.slots.len() {
            if self.slots[index]
                .active
                .as_ref()
                .is_some_and(|a| a.cancel.is_cancelled())
            {
                self.end(index, FinishReason::Cancelled, None);
                cancelled.push(self.slots[index].seq);
            }
        }
        cancelled
    }

    fn end(&mut self, index: usize, finish: FinishReason, error: Option<String>) {
        let slot = &mut self.slots[index];
        slot.last_used = Instant::now();
        if let Some(active) = slot.active.take() {
            active.finish(finish, error, self.load_ms, &self.name);
        }
    }

    /// A failed decode leaves the cache in an unknown state: every running reply gets
    /// the error and every sequence starts clean.
    fn fail_all(&mut self, message: &str) {
        for index in 0..self.slots.len() {
            self.end(index, FinishReason::Error, Some(message.to_owned()));
            self.slots[index].cached.clear();
        }
        self.ctx.clear_kv_cache();
    }
}

/// Runs of consecutive busy slots once slot `index` is busy too.
fn runs_with(busy: &[bool], index: usize) -> usize {
    let is_busy = |i: usize| i == index || busy.get(i).copied().unwrap_or(false);
    (0..busy.len())
        .filter(|&i| is_busy(i) && (i == 0 || !is_busy(i - 1)))
        .count()
}

fn seq_u32(seq: i32) -> u32 {
    u32::try_from(seq).unwrap_or(0)
}

fn to_i32(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use super::runs_with;

    #[test]
    fn a_newcomer_is_counted_in_the_runs_it_joins_or_starts() {
        let busy = [true, true, false, false, true, false];
        assert_eq!(runs_with(&busy, 2), 2);
        assert_eq!(runs_with(&busy, 3), 2);
        assert_eq!(runs_with(&busy, 5), 2);
        assert_eq!(runs_with(&[true, false, true], 1), 1);
        assert_eq!(runs_with(&[false, false, false], 1), 1);
    }
}
