//! Prompt-lookup drafting in the parallel engine.
//!
//! A sequence replying alone drafts as the one-sequence engine does: its drafter and
//! measured step costs ([`StepCosts`]) are that engine's own, so a lone client is served
//! as fast by an engine of several sequences as by one.
//!
//! Beside other replies the question is the batch's: a guess's rows widen a step that
//! already carries several sequences, and on a CPU every row costs compute, so a guess
//! must be likely enough to pay for the time it takes from all of them; on a GPU a
//! wider batch costs next to nothing and guesses pay easily. [`plan_beside`] weighs
//! each replying sequence's guess (how likely each token is to hold, from its own
//! drafter) against what steps of each width cost here (measured by [`super::pace`])
//! and verifies the guess tokens that raise the expected tokens per millisecond.
//! Guesses not verified are still checked against what is sampled, for free.
//!
//! Either way a step holds each sequence's sampled token followed by its guesses;
//! they are sampled in order while the sampler agrees, and the cache is cut back to
//! what held.

use llama_cpp_2::token::LlamaToken;

use super::{to_i32, Scheduler};
use crate::draft::MIN_GAIN;

/// The longest guess a sequence at `pos` may verify: the sampled token and each guess
/// that holds add a token, so stay within what the reply and the sequence have left.
fn draft_limit(max_tokens: u32, completion_tokens: u32, n_ctx_seq: usize, pos: usize) -> usize {
    let left = max_tokens.saturating_sub(completion_tokens) as usize;
    left.saturating_sub(1).min(n_ctx_seq.saturating_sub(pos + 2))
}

/// How many tokens of its guess each of `rows` replying sequences verifies in a step:
/// `chances[i][j]` is the chance that guess `i` holds up to its token `j` (so falling
/// along a guess), `step_ms(w)` what a step of `w` rows costs, `room` the rows the batch
/// has left. Every sequence verifies the same number `k` or none does: with a KV stream
/// per sequence, llama.cpp splits a batch into micro-batches that take the same number
/// of tokens from each sequence, so uneven guesses would cost a second pass over the
/// weights (measured here: 7 replies and one guess took 55–60 ms where 8 rows take 38).
/// `k` is the one with the most expected tokens per ms, if that beats the plain step by
/// [`MIN_GAIN`]; a sequence without a guess rules drafting out for the step.
pub(super) fn plan_beside(
    chances: &[Vec<f64>],
    rows: usize,
    room: usize,
    step_ms: impl Fn(usize) -> Option<f64>,
) -> usize {
    let Some(plain) = step_ms(rows).filter(|&ms| ms > 0.0) else {
        return 0;
    };
    let longest = chances.iter().map(Vec::len).min().unwrap_or(0);
    let longest = if chances.len() == rows {
        longest.min(room / rows.max(1))
    } else {
        0
    };
    let (mut best, mut best_rate) = (0, MIN_GAIN * rows as f64 / plain);
    let mut expected = rows as f64;
    for k in 1..=longest {
        expected += chances.iter().map(|guess| guess[k - 1]).sum::<f64>();
        let Some(ms) = step_ms(rows * (k + 1)).filter(|&ms| ms > 0.0) else {
            break;
        };
        if expected / ms > best_rate {
            (best, best_rate) = (k, expected / ms);
        }
    }
    best
}

impl Scheduler<'_> {
    /// Adds the guesses for the lone replying sequence in slot `index` to the batch
    /// (after its sampled token); returns them (empty: no guess worth a batch).
    pub(super) fn add_draft(&mut self, index: usize) -> Result<Vec<LlamaToken>, String> {
        let slot = &mut self.slots[index];
        let Some(active) = slot.active.as_mut() else {
            return Ok(Vec::new());
        };
        let mut draft = Vec::new();
        let limit = draft_limit(
            active.params.max_tokens,
            active.completion_tokens,
            self.n_ctx_seq,
            active.pos,
        );
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

    /// The guesses to verify beside each other for the replying sequences in slots
    /// `replying` (their sampled tokens already in their caches), one list per slot
    /// (empty: only checked against what is sampled); `room`: rows the batch has left.
    pub(super) fn guesses_beside(&mut self, replying: &[usize], room: usize) -> Vec<Vec<LlamaToken>> {
        let n_ctx_seq = self.n_ctx_seq;
        let guesses: Vec<_> = replying
            .iter()
            .map(|&index| {
                let slot = &mut self.slots[index];
                let active = slot.active.as_mut()?;
                let limit = draft_limit(
                    active.params.max_tokens,
                    active.completion_tokens,
                    n_ctx_seq,
                    active.pos,
                );
                active.drafter.guess(&slot.cached, limit)
            })
            .collect();
        let chances: Vec<Vec<f64>> = replying
            .iter()
            .zip(&guesses)
            .map(|(&index, guess)| match (guess, self.slots[index].active.as_ref()) {
                (Some(guess), Some(active)) => active.drafter.chances(guess),
                _ => Vec::new(),
            })
            .collect();
        // One micro-batch needs the sequences in one run of consecutive ids, too.
        let one_run = replying
            .windows(2)
            .all(|w| self.slots[w[1]].seq == self.slots[w[0]].seq + 1);
        let pace = &self.pace;
        let k = if one_run {
            plan_beside(&chances, replying.len(), room, |rows| pace.step_ms(rows))
        } else {
            0
        };
        replying
            .iter()
            .zip(guesses)
            .map(|(&index, guess)| {
                let mut draft = Vec::new();
                let slot = &mut self.slots[index];
                if let (Some(guess), Some(active)) = (guess, slot.active.as_mut()) {
                    active.drafter.take(&guess, k, &slot.cached, &mut draft);
                }
                draft
            })
            .collect()
    }

    /// Samples a sequence's rows in order from `row` (its sampled token, then `draft`)
    /// while the sampler agrees with the guesses; cuts the cache back to the guesses
    /// that held. `decoding`: sequences replying in the step.
    pub(super) fn verify_draft(&mut self, index: usize, row: i32, draft: &[LlamaToken], decoding: usize) {
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

#[cfg(test)]
mod tests {
    use super::plan_beside;

    /// A 2-core CPU: 8 ms to read the weights, 4 ms more for each row.
    fn cpu(rows: usize) -> Option<f64> {
        Some(8.0 + 4.0 * (rows as f64 - 1.0))
    }

    /// A GPU: a step costs the same at any width this small.
    fn gpu(_rows: usize) -> Option<f64> {
        Some(5.0)
    }

    fn chain(first: f64, later: f64, len: usize) -> Vec<f64> {
        std::iter::successors(Some(first), |c| Some(c * later))
            .take(len)
            .collect()
    }

    #[test]
    fn chat_replies_beside_each_other_on_a_cpu_verify_no_guess() {
        // Prose: a guess from a two-token match holds about one time in three.
        let chances = vec![chain(0.33, 0.5, 4); 8];
        assert_eq!(plan_beside(&chances, 8, 500, cpu), 0);
        // Two sequences, each of whose guesses would hold half the time: not enough.
        let chances = vec![chain(0.5, 0.5, 4); 2];
        assert_eq!(plan_beside(&chances, 2, 500, cpu), 0);
    }

    #[test]
    fn copies_beside_each_other_verify_their_guesses_even_on_a_cpu() {
        let chances = vec![chain(0.98, 1.0, 8), chain(0.98, 1.0, 8)];
        assert_eq!(plan_beside(&chances, 2, 500, cpu), 8);
        // A copy beside a chat: the chat's doubtful guess would cost as many rows.
        let chances = vec![chain(0.98, 1.0, 8), chain(0.2, 0.5, 4)];
        assert_eq!(plan_beside(&chances, 2, 500, cpu), 0);
        // A sequence with no guess at all: nobody drafts (its rows would split the batch).
        let chances = vec![chain(0.98, 1.0, 8), Vec::new()];
        assert_eq!(plan_beside(&chances, 2, 500, cpu), 0);
    }

    #[test]
    fn on_a_gpu_even_doubtful_guesses_are_worth_checking() {
        let chances = vec![chain(0.3, 0.5, 2), chain(0.4, 0.5, 3), chain(0.3, 0.5, 2)];
        assert_eq!(plan_beside(&chances, 3, 500, gpu), 2);
        // The batch's room is the limit: 3 rows and 3 guesses.
        assert_eq!(plan_beside(&chances, 3, 4, gpu), 1);
    }

    #[test]
    fn unknown_costs_verify_nothing() {
        let chances = vec![chain(0.98, 1.0, 8); 2];
        assert_eq!(plan_beside(&chances, 2, 500, |_| None), 0);
        // Known only up to the present width: no guess is priced.
        assert_eq!(plan_beside(&chances, 2, 500, |rows| (rows <= 2).then_some(10.0)), 0);
    }
}
