//! The scheduler's decisions, as pure functions over plain data: which slot a request
//! gets ([`choose_slot`]) and what a step holds ([`plan_step`]). Nothing here touches
//! llama.cpp, so every rule is unit-tested with made-up slots and step costs; the
//! executor (`execute.rs`) only carries a plan out.

use super::draft::plan_beside;
use super::pace::{plan_reads, Pace, Unread};
use super::steps::StepPlan;
use crate::draft::{lone_length, StepCosts};

/// What a slot is doing, as the planner sees it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Work {
    Idle,
    /// Reading its prompt: `left` tokens to go of the `new` ones it reads in all (its
    /// prompt less the cached prefix it reused); `arrival` orders equal prompts.
    Reading {
        left: usize,
        new: usize,
        arrival: u64,
    },
    /// Replying, its last token to decode. `chances[j]`: the chance that the guess from
    /// its conversation holds up to token `j` (empty: no guess).
    Replying {
        chances: Vec<f64>,
    },
}

/// A slot as the planner sees it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SlotState {
    pub seq: i32,
    pub work: Work,
}

/// What a step may hold and what the machine costs.
pub(crate) struct StepLimits<'a> {
    /// Tokens a batch holds.
    pub n_batch: usize,
    /// Whether guesses may be verified at all.
    pub drafting: bool,
    /// Guesses verified at least whenever every replying sequence has one (as far as
    /// the guesses and the batch reach), whatever the costs say.
    pub min_draft: usize,
    /// Step costs by width (replies and prompt tokens).
    pub pace: &'a Pace,
    /// A lone reply's step costs by guess length.
    pub costs: &'a StepCosts,
}

/// The step to take next for `slots` (in sequence order).
///
/// - Every replying sequence gets a row for its token: none waits for a prompt.
/// - Guesses are verified only when no prompt is read in the step: alone, as far as
///   the lone reply's step costs say they pay; beside others, the same number for
///   every sequence where the widths' costs say so ([`plan_beside`]), and only for
///   sequences in one run of consecutive ids (each run is a pass over the weights).
/// - Prompts are read least-left first (then oldest): a question whole within the
///   step budget, a document in chunks of the beside budget ([`plan_reads`]). With a
///   single slot the step budget is the whole batch.
///
/// `index` numbers the step; the plan's `measured_ms` and `cancelled` are the
/// executor's to fill.
pub(crate) fn plan_step(slots: &[SlotState], limits: &StepLimits, index: u64) -> StepPlan {
    let replying: Vec<(i32, &[f64])> = slots
        .iter()
        .filter_map(|s| match &s.work {
            Work::Replying { chances } => Some((s.seq, chances.as_slice())),
            _ => None,
        })
        .collect();
    let mut readers: Vec<(i32, Unread, u64)> = slots
        .iter()
        .filter_map(|s| match s.work {
            Work::Reading { left, new, arrival } => Some((s.seq, Unread { left, new }, arrival)),
            _ => None,
        })
        .collect();
    readers.sort_by_key(|&(_, unread, arrival)| (unread.left, arrival));
    let rows = replying.len();
    let drafting = limits.drafting && readers.is_empty() && rows > 0;
    let drafts: Vec<(i32, usize)> = if drafting {
        let chances: Vec<&[f64]> = replying.iter().map(|&(_, c)| c).collect();
        let k = draft_length(&replying, limits);
        replying
            .iter()
            .zip(chances)
            .map(|(&(seq, _), c)| (seq, k.min(c.len())))
            .collect()
    } else {
        Vec::new()
    };
    let guessed: usize = drafts.iter().map(|&(_, k)| k).sum();
    let room = limits.n_batch.saturating_sub(rows + guessed);
    // With one slot nobody can arrive and wait behind a long step: the prompt goes in
    // whole batches, the fastest way to read it (steps of STEP_MS were a sixth slower).
    let step_budget = if slots.len() == 1 {
        room
    } else {
        limits.pace.step_tokens(rows, room).min(room)
    };
    let beside_budget = if rows > 0 {
        limits.pace.beside_decoding(rows, room).min(room)
    } else {
        step_budget
    };
    let unread: Vec<Unread> = readers.iter().map(|&(_, u, _)| u).collect();
    let takes = plan_reads(&unread, step_budget, beside_budget);
    let reads: Vec<(i32, usize)> = readers
        .iter()
        .zip(&takes)
        .filter(|(_, &take)| take > 0)
        .map(|(&(seq, _, _), &take)| (seq, take))
        .collect();
    let ending = readers
        .iter()
        .zip(&takes)
        .filter(|(&(_, unread, _), &take)| take > 0 && take == unread.left)
        .map(|(&(seq, _, _), _)| seq);
    let prompt_tokens: usize = reads.iter().map(|&(_, n)| n).sum();
    let decode_rows = rows + guessed;
    StepPlan {
        index,
        replying: replying.iter().map(|&(seq, _)| seq).collect(),
        decode_rows,
        drafting,
        drafts,
        reads,
        step_budget,
        beside_budget,
        decode_ms: (decode_rows > 0).then(|| limits.pace.decode_ms(decode_rows)).flatten(),
        predicted_ms: limits.pace.predict_ms(decode_rows, prompt_tokens),
        measured_ms: 0.0,
        sampled: replying.iter().map(|&(seq, _)| seq).chain(ending).collect(),
        cancelled: Vec::new(),
    }
}

/// Guess tokens each replying sequence verifies when nothing is read beside them.
fn draft_length(replying: &[(i32, &[f64])], limits: &StepLimits) -> usize {
    let rows = replying.len();
    let room = limits.n_batch.saturating_sub(rows);
    let shortest = replying.iter().map(|(_, c)| c.len()).min().unwrap_or(0);
    if let [(_, chances)] = replying {
        let forced = limits.min_draft.min(shortest).min(room);
        return lone_length(chances, limits.costs).max(forced);
    }
    // One micro-batch needs the sequences in one run of consecutive ids, too.
    let one_run = replying.windows(2).all(|w| w[1].0 == w[0].0 + 1);
    if !one_run {
        return 0;
    }
    let forced = limits.min_draft.min(shortest).min(room / rows.max(1));
    let chances: Vec<Vec<f64>> = replying.iter().map(|&(_, c)| c.to_vec()).collect();
    plan_beside(&chances, rows, room, |w| limits.pace.step_ms(w)).max(forced)
}

/// A slot as the slot choice sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SlotView {
    /// Serving a request now.
    pub busy: bool,
    /// Tokens it holds.
    pub cached: usize,
    /// Tokens at the start of the new prompt it holds.
    pub common: usize,
    /// When it last ended a request (larger: more recently; 0: never).
    pub last_used: u64,
}

/// The idle slot a new request goes to, if any: one that would keep at least half of
/// what it holds (the same conversation, a regenerated reply) before one that would
/// lose another conversation for a shared system prompt (an empty slot loses nothing);
/// then the longest shared prefix; then the slot that keeps the busy sequences in the
/// fewest runs of consecutive ids (llama.cpp decodes each run in a pass of its own over
/// the weights: 4 replies in 3 runs took 35 ms a step here, 2 in one run 16 ms); then
/// the least recently used; then the lowest.
pub(crate) fn choose_slot(slots: &[SlotView]) -> Option<usize> {
    let busy: Vec<bool> = slots.iter().map(|s| s.busy).collect();
    slots
        .iter()
        .enumerate()
        .filter(|(_, s)| !s.busy)
        .max_by_key(|&(i, s)| {
            (
                s.common * 2 >= s.cached,
                s.common,
                std::cmp::Reverse(runs_with(&busy, i)),
                std::cmp::Reverse(s.last_used),
                std::cmp::Reverse(i),
            )
        })
        .map(|(i, _)| i)
}

/// Runs of consecutive busy slots once slot `index` is busy too.
fn runs_with(busy: &[bool], index: usize) -> usize {
    let is_busy = |i: usize| i == index || busy.get(i).copied().unwrap_or(false);
    (0..busy.len())
        .filter(|&i| is_busy(i) && (i == 0 || !is_busy(i - 1)))
        .count()
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
