//! Carrying out a step: the slots' states and guesses go to the planner, the plan's rows
//! go into llama.cpp's batch (replies' tokens and guesses first, then prompt chunks),
//! the batch is decoded and measured, and each row with logits is sampled; guesses are
//! kept as far as the sampler agreed with them and the cache is cut back to what held.

use std::time::Instant;

use hearth_core::FinishReason;
use llama_cpp_2::token::LlamaToken;

use super::draft::draft_limit;
use super::plan::{plan_step, StepLimits};
use super::{to_i32, Scheduler, StepPlan};
use crate::reply::ms;

/// A row of the batch whose logits are sampled after the step.
struct SampledRow {
    slot: usize,
    row: i32,
    /// The reply's first token (sampled from the prompt's last logits).
    first: bool,
    /// The guesses laid after the token (checked in order against what is sampled).
    guesses: Vec<LlamaToken>,
}

impl Scheduler<'_> {
    /// One step: plan, fill the batch, decode, sample.
    pub(super) fn step(&mut self) {
        let cancelled = self.end_cancelled();
        let mut plan = self.plan();
        plan.cancelled = cancelled;
        let rows = match self.fill(&plan) {
            Ok(rows) => rows,
            Err(message) => return self.fail_all(&message),
        };
        if self.batch.n_tokens() == 0 {
            return;
        }
        self.step_index += 1;
        let started = Instant::now();
        if let Err(e) = self.ctx.decode(&mut self.batch) {
            return self.fail_all(&format!("decoding failed: {e}"));
        }
        plan.measured_ms = ms(started.elapsed());
        let prompt_tokens = plan.prompt_tokens();
        if let [(_, guessed)] = plan.drafts.as_slice() {
            // A lone reply's step, priced by its guess length for the drafter.
            self.step_costs.observe(*guessed, plan.measured_ms);
        }
        // A guess's rows cost what replies' rows do: the step is priced by its width.
        self.pace.observe(plan.decode_rows, prompt_tokens, plan.measured_ms);
        let decoding = plan.replying.len();
        let drafting = plan.drafting;
        self.steps.push(plan);
        for SampledRow {
            slot,
            row,
            first,
            guesses,
        } in rows
        {
            if drafting {
                self.verify_draft(slot, row, &guesses, decoding);
            } else if let Some((_, Some(finish))) = self.sample_token(slot, row, first, decoding) {
                self.end(slot, finish, None);
            }
        }
    }

    /// The slots' states (each replying slot's guess found first) and the plan for them.
    fn plan(&mut self) -> StepPlan {
        let n_ctx_seq = self.n_ctx_seq;
        let states: Vec<_> = self
            .slots
            .iter_mut()
            .map(|slot| {
                let chances = match slot.active.as_mut() {
                    Some(active) if active.pending.is_some() && !active.reading_prompt() => {
                        // The guess continues the sampled token, which the step adds.
                        let mut history = std::mem::take(&mut slot.cached);
                        history.extend(active.pending);
                        let limit = draft_limit(active.reply.tokens_left(), n_ctx_seq, active.pos);
                        active.guess = active.drafter.guess(&history, limit);
                        history.pop();
                        slot.cached = history;
                        active.guess.map(|g| active.drafter.chances(&g)).unwrap_or_default()
                    }
                    _ => Vec::new(),
                };
                slot.state(chances)
            })
            .collect();
        let limits = StepLimits {
            n_batch: self.n_batch,
            drafting: self.max_draft > 0,
            min_draft: self.min_draft,
            pace: &self.pace,
            costs: &self.step_costs,
        };
        plan_step(&states, &limits, self.step_index)
    }

    /// Lays the plan's rows in the batch; returns the rows to sample.
    fn fill(&mut self, plan: &StepPlan) -> Result<Vec<SampledRow>, String> {
        self.batch.clear();
        let mut rows = Vec::with_capacity(plan.sampled.len());
        for (n, &seq) in plan.replying.iter().enumerate() {
            let index = slot_of(seq);
            let slot = &mut self.slots[index];
            let Some(active) = slot.active.as_mut() else { continue };
            let Some(token) = active.pending.take() else { continue };
            slot.cached.push(token);
            let mut guesses = Vec::new();
            if plan.drafting {
                let k = plan.drafts.get(n).map_or(0, |&(_, k)| k);
                if let Some(guess) = active.guess.take() {
                    active.drafter.take(&guess, k, &slot.cached, &mut guesses);
                }
            }
            let row = self.batch.n_tokens();
            for (i, &t) in std::iter::once(&token).chain(&guesses).enumerate() {
                self.batch
                    .add(t, to_i32(active.pos + i), &[slot.seq], true)
                    .map_err(|e| format!("batch: {e}"))?;
            }
            slot.cached.extend_from_slice(&guesses);
            rows.push(SampledRow {
                slot: index,
                row,
                first: false,
                guesses,
            });
        }
        for &(seq, take) in &plan.reads {
            let index = slot_of(seq);
            let slot = &mut self.slots[index];
            let Some(active) = slot.active.as_mut() else { continue };
            let end = active.next + take;
            for pos in active.next..end {
                let last = pos + 1 == active.prompt.len();
                let row = self.batch.n_tokens();
                self.batch
                    .add(active.prompt[pos], to_i32(pos), &[slot.seq], last)
                    .map_err(|e| format!("batch: {e}"))?;
                if last {
                    rows.push(SampledRow {
                        slot: index,
                        row,
                        first: true,
                        guesses: Vec::new(),
                    });
                }
            }
            slot.cached.extend_from_slice(&active.prompt[active.next..end]);
            active.next = end;
            active.reply.read_step();
        }
        Ok(rows)
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
        let ended = active.accept(self.model, token, first, decoding, self.n_ctx_seq);
        Some((token, ended))
    }

    /// Samples a sequence's rows in order from `row` (its sampled token, then `draft`)
    /// while the sampler agrees with the guesses; cuts the cache back to the guesses
    /// that held. `decoding`: sequences replying in the step.
    fn verify_draft(&mut self, index: usize, row: i32, draft: &[LlamaToken], decoding: usize) {
        let Some(start) = self.slots[index].active.as_ref().map(|a| a.pos) else {
            return;
        };
        let (mut held, mut first, mut finish) = (0, None, None);
        for i in 0..=draft.len() {
            let Some((token, ended)) = self.sample_token(index, row + to_i32(i), false, decoding) else {
                return;
            };
            first.get_or_insert(token);
            if ended.is_some() {
                finish = ended;
                break;
            }
            if i == draft.len() || token != draft[i] {
                // The sampler's own token: evaluated by the next step.
                break;
            }
            held += 1;
            // A guess that held is in the cache already.
            if let Some(active) = self.slots[index].active.as_mut() {
                active.pending = None;
            }
        }
        let keep = start + 1 + held;
        let slot = &mut self.slots[index];
        if let (Some(active), Some(first)) = (slot.active.as_mut(), first) {
            active.drafter.record(draft.len(), held, first);
        }
        if slot.cached.len() > keep {
            let cut = self
                .ctx
                .clear_kv_cache_seq(
                    Some(super::seq_u32(slot.seq)),
                    Some(u32::try_from(keep).unwrap_or(u32::MAX)),
                    None,
                )
                .unwrap_or(false);
            if !cut {
                return self.fail_all("the KV cache could not be cut back after a draft");
            }
            slot.cached.truncate(keep);
        }
        if let Some(finish) = finish {
            self.end(index, finish, None);
        }
    }
}

/// The slot of sequence `seq` (slot `i` holds sequence `i`).
fn slot_of(seq: i32) -> usize {
    usize::try_from(seq).unwrap_or(0)
}
