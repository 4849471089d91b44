//! How many guessed tokens the scheduler verifies in a step (prompt-lookup drafting).
//!
//! A sequence replying alone verifies as much of its guess as its measured step costs
//! by guess length say pays ([`crate::draft::lone_length`]), whatever the number of slots.
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

use crate::draft::MIN_GAIN;

/// The longest guess a sequence at `pos` may verify when its reply may take `left`
/// more tokens: the sampled token and each guess that holds add a token, so stay
/// within what the reply and the sequence have left.
pub(super) fn draft_limit(left: u32, n_ctx_seq: usize, pos: usize) -> usize {
    (left as usize).saturating_sub(1).min(n_ctx_seq.saturating_sub(pos + 2))
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

#[cfg(test)]
mod tests {
    use super::{draft_limit, plan_beside};
    use crate::draft::{lone_length, StepCosts};

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

    #[test]
    fn a_lone_guess_is_verified_as_far_as_it_pays() {
        let costs = StepCosts::default();
        // A copy: every guessed token very likely holds, so the whole guess is checked.
        assert_eq!(lone_length(&[0.98; 8], &costs), 8);
        // A doubtful guess is not worth a wider step; no guess is no draft.
        assert_eq!(lone_length(&[0.02, 0.01], &costs), 0);
        assert_eq!(lone_length(&[], &costs), 0);
    }

    #[test]
    fn a_guess_stays_within_the_reply_and_the_sequence() {
        assert_eq!(draft_limit(10, 1000, 100), 9);
        assert_eq!(draft_limit(10, 105, 100), 3);
        assert_eq!(draft_limit(0, 1000, 100), 0);
        assert_eq!(draft_limit(10, 100, 100), 0);
    }
}
