//! Prompt-lookup drafting in the parallel engine, for a sequence replying alone.
//!
//! On a CPU every row of a batch costs compute: beside other sequences a draft's rows
//! take the step's time from them (and a verified guess saves one step of one
//! sequence only), so guesses are verified only while one sequence is replying and no
//! prompt is being read. Then the step is the one-sequence engine's: the sampled token
//! and the guessed ones after it in one batch, sampled in order while the sampler
//! agrees, the cache cut back to what held. The drafter and its measured step costs
//! ([`StepCosts`]) are the one-sequence engine's own, so a lone client is served as
//! fast by an engine of several sequences as by one.

use llama_cpp_2::token::LlamaToken;

use super::{to_i32, Scheduler};

impl Scheduler<'_> {
    /// Adds the guesses for the lone replying sequence in slot `index` to the batch
    /// (after its sampled token); returns them (empty: no guess worth a batch).
    pub(super) fn add_draft(&mut self, index: usize) -> Result<Vec<LlamaToken>, String> {
        let slot = &mut self.slots[index];
        let Some(active) = slot.active.as_mut() else {
            return Ok(Vec::new());
        };
        let mut draft = Vec::new();
        // The sampled token and each guess that holds add a token: stay within what the
        // reply and the sequence have left.
        let left = active.params.max_tokens.saturating_sub(active.completion_tokens) as usize;
        let room = self.n_ctx_seq.saturating_sub(active.pos + 2);
        let limit = left.saturating_sub(1).min(room);
        active
            .drafter
            .propose(&slot.cached, limit, &self.step_costs, &mut draft);
        for (i, &guess) in draft.iter().enumerate() {
            self.batch
                .add(guess, to_i32(active.pos + 1 + i), &[slot.seq], true)
                .map_err(|e| format!("batch: {e}"))?;
        }
        slot.cached.extend_from_slice(&draft);
        Ok(draft)
    }

    /// Samples the lone sequence's rows in order from `row` (its sampled token, then
    /// `draft`) while the sampler agrees with the guesses; cuts the cache back to the
    /// guesses that held.
    pub(super) fn verify_draft(&mut self, index: usize, row: i32, draft: &[LlamaToken]) {
        let Some(start) = self.slots[index].active.as_ref().map(|a| a.pos) else {
            return;
        };
        let (mut held, mut first, mut finish) = (0, None, None);
        for i in 0..=draft.len() {
            let Some((token, ended)) = self.sample_token(index, row + to_i32(i), false, 1) else {
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
        if let Some(active) = slot.active.as_mut() {
            if let Some(first) = first {
                active.drafter.record(draft.len(), held, first);
            }
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
