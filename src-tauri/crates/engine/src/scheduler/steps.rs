//! The scheduler's steps as it planned them: what each batch held, what the pace
//! predicted it would cost, and who got a token. Kept so that the scheduling rules are
//! checked on the scheduler's decisions (tests, `hearth bench`), not on a stopwatch:
//! a busy machine stretches every step, but does not change what a step was planned
//! to hold.

use std::collections::VecDeque;
use std::sync::Mutex;

/// A document (a prompt too long to read whole in a step) is read beside replies in
/// chunks predicted to cost at most this many decode steps, so that the replies' next
/// token waits under two decode steps.
pub const DOCUMENT_CHUNK_DECODE_STEPS: f64 = 0.75;

/// The fewest prompt tokens a step reads of a prompt it reads at all (the budgets are
/// never cut below it: a step of a token or two says nothing about a token's cost).
pub const MIN_PROMPT_CHUNK: usize = 4;

/// One step of the scheduler, as planned and as it went.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StepPlan {
    /// Steps counted from the engine's start (0 for the first).
    pub index: u64,
    /// Sequences whose next token the step decodes (their replies were running).
    pub replying: Vec<i32>,
    /// Rows with logits for the replies: their tokens and any guesses to verify.
    pub decode_rows: usize,
    /// Whether the replies' rows are checked against guesses from their conversations
    /// (no prompt is read beside them, and drafting is on).
    pub drafting: bool,
    /// Guess tokens verified after a reply's token, by sequence (only where drafting).
    pub drafts: Vec<(i32, usize)>,
    /// Prompt tokens read, by sequence, in the order they were laid in the batch.
    pub reads: Vec<(i32, usize)>,
    /// The most prompt tokens a step may hold (a question is read whole within it).
    pub step_budget: usize,
    /// The most tokens of a document (a prompt longer than `step_budget`) a step may
    /// hold beside replies.
    pub beside_budget: usize,
    /// What a step of `decode_rows` rows alone costs by the pace's measurements, in ms
    /// (None until a decode step of some width was measured).
    pub decode_ms: Option<f64>,
    /// What the pace predicted for this whole step, in ms (None until both a decode
    /// step and a prompt token were measured; a step without prompt tokens is
    /// predicted at `decode_ms`).
    pub predicted_ms: Option<f64>,
    /// What the step took, in ms (wall clock: a busy machine stretches it).
    pub measured_ms: f64,
    /// Sequences that got a token from this step: every replying one, and each prompt
    /// that ended in it (its first token).
    pub sampled: Vec<i32>,
    /// Sequences that left before the step because their caller cancelled.
    pub cancelled: Vec<i32>,
}

impl StepPlan {
    /// Prompt tokens the step read in all.
    pub fn prompt_tokens(&self) -> usize {
        self.reads.iter().map(|&(_, n)| n).sum()
    }

    /// Prompt tokens the step read for sequence `seq`.
    pub fn read_by(&self, seq: i32) -> usize {
        self.reads.iter().filter(|&&(s, _)| s == seq).map(|&(_, n)| n).sum()
    }
}

/// The most recent steps (a bounded ring: a server that runs for days keeps the last
/// [`StepLog::CAPACITY`], a few hundred kilobytes).
#[derive(Debug, Default)]
pub(crate) struct StepLog {
    steps: Mutex<VecDeque<StepPlan>>,
}

impl StepLog {
    /// About three minutes of steps at 20 ms each.
    pub(crate) const CAPACITY: usize = 8192;

    pub(crate) fn push(&self, step: StepPlan) {
        let Ok(mut steps) = self.steps.lock() else { return };
        if steps.len() == Self::CAPACITY {
            steps.pop_front();
        }
        steps.push_back(step);
    }

    /// The steps kept, oldest first.
    pub(crate) fn snapshot(&self) -> Vec<StepPlan> {
        self.steps
            .lock()
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(index: u64) -> StepPlan {
        StepPlan {
            index,
            replying: vec![0, 1],
            decode_rows: 2,
            drafting: false,
            drafts: Vec::new(),
            reads: vec![(2, 30), (3, 5), (2, 1)],
            step_budget: 200,
            beside_budget: 40,
            decode_ms: Some(10.0),
            predicted_ms: Some(17.0),
            measured_ms: 18.0,
            sampled: vec![0, 1, 3],
            cancelled: Vec::new(),
        }
    }

    #[test]
    fn the_log_keeps_the_most_recent_steps_in_order() {
        let log = StepLog::default();
        for i in 0..(StepLog::CAPACITY as u64 + 3) {
            log.push(step(i));
        }
        let kept = log.snapshot();
        assert_eq!(kept.len(), StepLog::CAPACITY);
        assert_eq!(kept[0].index, 3);
        assert_eq!(kept.last().map(|s| s.index), Some(StepLog::CAPACITY as u64 + 2));
    }

    #[test]
    fn reads_are_counted_by_sequence() {
        let s = step(0);
        assert_eq!(s.prompt_tokens(), 36);
        assert_eq!(s.read_by(2), 31);
        assert_eq!(s.read_by(3), 5);
        assert_eq!(s.read_by(0), 0);
    }
}
