//! Draft tokens taken from the conversation itself ("prompt lookup" decoding).
//!
//! A reply often repeats what is already in the context: a quoted passage, a name, a
//! line of code being edited, a list being continued. When the last few tokens
//! appeared earlier, the tokens that followed them then are a cheap guess at what
//! comes next. The engine evaluates the guess together with the next token in one
//! batch and keeps the longest prefix the sampler agrees with: the sampler makes the
//! same calls as one token at a time, so the reply is the same (up to the rounding
//! differences between a batch and a single token in llama.cpp's kernels, which can
//! tip a near-tie). Only the number of steps changes.
//!
//! [`Drafter`] finds the guess and decides how much of it to verify. It weighs how often
//! guesses have held in this reply (guesses it did not verify are checked for free
//! against what was sampled) against what a step of each length costs on this machine,
//! measured as the engine runs ([`StepCosts`]): on a small CPU a failed guess costs
//! almost a whole extra step, on a GPU next to nothing.

/// The most draft tokens verified in one batch.
pub const MAX_DRAFT: usize = 8;

/// Shortest suffix of the history that must match earlier for a guess: a single
/// token repeats far too often to predict anything.
const MIN_MATCH: usize = 2;

/// Longest suffix compared; beyond this a match is as good as certain.
const MAX_MATCH: usize = 6;

/// Match lengths are tracked in buckets: 2, 3, 4–5, and [`MAX_MATCH`] (6) or more.
const BUCKETS: usize = 4;

fn bucket(match_len: usize) -> usize {
    match match_len {
        0..=2 => 0,
        3 => 1,
        4 | 5 => 2,
        _ => 3,
    }
}

/// Older outcomes fade, so the drafter follows a reply that starts or stops copying.
const DECAY: f32 = 0.9;

/// A draft must promise this much more than one token per step to be worth a batch.
pub(crate) const MIN_GAIN: f64 = 1.05;

/// A step's cost relative to a single token before anything was measured: a cautious
/// guess, so that only a guess very likely to hold is tried on unknown hardware.
/// Measured on a 2-core CPU (SmolLM2) it is about 1 + 0.85 k for small drafts and
/// 1 + 0.55 k at 8; on a GPU it stays close to 1.
const PRIOR_COST_PER_DRAFT_TOKEN: f64 = 0.8;

/// The longest suffix of `history` (at least [`MIN_MATCH`], at most [`MAX_MATCH`] tokens)
/// that occurred earlier with at least one token after it. Returns (match length,
/// index of the token that followed the most recent such occurrence).
pub(crate) fn find_continuation<T: PartialEq>(history: &[T]) -> Option<(usize, usize)> {
    let n = history.len();
    if n <= MIN_MATCH {
        return None;
    }
    let last = &history[n - 1];
    let mut best: Option<(usize, usize)> = None;
    // `end` is the index just after a candidate occurrence; it must leave a token to propose.
    for end in (1..n).rev() {
        if &history[end - 1] != last {
            continue;
        }
        let limit = MAX_MATCH.min(end);
        let len = (0..limit)
            .take_while(|&i| history[end - 1 - i] == history[n - 1 - i])
            .count();
        if len >= MIN_MATCH && best.is_none_or(|(l, _)| len > l) {
            best = Some((len, end));
            if len == MAX_MATCH {
                break;
            }
        }
    }
    best
}

/// How often something held, with older outcomes fading.
#[derive(Debug, Clone, Copy)]
struct Rate {
    hits: f32,
    trials: f32,
}

impl Rate {
    /// Starts as if `hits` of `trials` had held.
    const fn prior(hits: f32, trials: f32) -> Self {
        Self { hits, trials }
    }

    fn value(self) -> f64 {
        f64::from(self.hits / self.trials)
    }

    fn learn(&mut self, held: bool) {
        self.hits = self.hits * DECAY + f32::from(u8::from(held));
        self.trials = self.trials * DECAY + 1.0;
    }
}

/// What a step costs by draft length, relative to a step with no draft, measured as
/// the engine runs (per loaded model: it depends on the hardware and the weights).
#[derive(Debug, Clone)]
pub(crate) struct StepCosts {
    /// Smoothed milliseconds of a step verifying k drafts, by k.
    ms: [Option<f64>; MAX_DRAFT + 1],
}

impl Default for StepCosts {
    fn default() -> Self {
        Self {
            ms: [None; MAX_DRAFT + 1],
        }
    }
}

impl StepCosts {
    pub(crate) fn observe(&mut self, drafted: usize, ms: f64) {
        if let Some(slot) = self.ms.get_mut(drafted) {
            *slot = Some(slot.map_or(ms, |old| 0.7 * old + 0.3 * ms));
        }
    }

    /// The cost of a step verifying `k` drafts, in single-token steps: measured, or
    /// drawn between the nearest measured lengths, or the cautious prior.
    pub(crate) fn relative(&self, k: usize) -> f64 {
        let k = k.min(MAX_DRAFT);
        let prior = 1.0 + PRIOR_COST_PER_DRAFT_TOKEN * k as f64;
        let Some(single) = self.ms[0].filter(|&ms| ms > 0.0) else {
            return if k == 0 { 1.0 } else { prior };
        };
        let measured = |j: usize| self.ms[j].map(|ms| ms / single);
        if k == 0 {
            return 1.0;
        }
        if let Some(cost) = measured(k) {
            return cost;
        }
        let (lo, lo_cost) = (1..k)
            .rev()
            .find_map(|j| measured(j).map(|c| (j, c)))
            .unwrap_or((0, 1.0));
        match (k + 1..=MAX_DRAFT).find_map(|j| measured(j).map(|c| (j, c))) {
            Some((hi, hi_cost)) => lo_cost + (hi_cost - lo_cost) * (k - lo) as f64 / (hi - lo) as f64,
            // Beyond the longest measured: at its cost per draft token, but no worse than
            // the prior. Batches are often cheaper per token as they grow (a 4-row batch
            // can cost less than a 3-row one where GGML has a 4-row kernel), so a costly
            // short draft must not rule out trying a long one.
            None if lo > 0 => (1.0 + (lo_cost - 1.0) / lo as f64 * k as f64).min(prior),
            None => prior,
        }
    }
}

/// How many tokens of its guess a sequence replying alone verifies: the length that
/// gives the most expected tokens per unit of step cost (`chances[j]`: the chance that
/// the guess holds up to its token `j`; `costs`: what a step verifying `k` guesses costs
/// here relative to a plain one), or 0 when none beats a plain step by [`MIN_GAIN`].
pub(crate) fn lone_length(chances: &[f64], costs: &StepCosts) -> usize {
    let (mut best, mut best_gain) = (0, MIN_GAIN);
    // Expected tokens from a step verifying k guesses: the sampled one, plus each guess
    // that holds (all before it must hold too).
    let mut expected = 1.0;
    for (k, chance) in (1..).zip(chances) {
        expected += chance;
        let gain = expected / costs.relative(k);
        if gain > best_gain {
            (best, best_gain) = (k, gain);
        }
    }
    best
}

/// A continuation found in the history: where it starts and how long it may be.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Guess {
    bucket: usize,
    next: usize,
    available: usize,
}

/// Decides how many draft tokens to verify after each sampled token, and learns from the result.
#[derive(Debug)]
pub(crate) struct Drafter<T> {
    max: usize,
    /// Per match-length bucket: how often a guess's first token was right. Once a
    /// guessed token holds the match is longer, so the longest bucket also tells how
    /// often each further token holds.
    first: [Rate; BUCKETS],
    /// The guess of the last step that was not verified: (bucket, its first token).
    shadow: Option<(usize, T)>,
    /// The bucket of the guess being verified.
    verifying: Option<usize>,
    /// Totals for this reply: tokens verified, tokens accepted.
    pub drafted: u32,
    pub accepted: u32,
}

impl<T: PartialEq + Copy> Drafter<T> {
    /// `max` 0 turns drafting off.
    pub(crate) fn new(max: usize) -> Self {
        Self {
            max: max.min(MAX_DRAFT),
            // A guess from a short match is doubted until guesses in this reply have
            // held; one from six or more repeated tokens is probably a copy going on.
            first: [
                Rate::prior(1.0, 3.0),
                Rate::prior(1.0, 3.0),
                Rate::prior(1.0, 2.0),
                Rate::prior(2.0, 3.0),
            ],
            shadow: None,
            verifying: None,
            drafted: 0,
            accepted: 0,
        }
    }

    /// The draft length that maximises expected tokens per unit of step cost (0 when no
    /// draft beats a single step by [`MIN_GAIN`]).
    #[cfg(test)]
    fn best_length(&self, guess: &Guess, costs: &StepCosts) -> usize {
        lone_length(&self.chances(guess), costs)
    }

    /// Fills `draft` with the tokens to verify after the last token of `history`
    /// (at most `limit`); empty when there is no guess or it is not worth a batch. What
    /// the scheduler's plan does for a lone reply, in one call for these tests.
    #[cfg(test)]
    pub(crate) fn propose(&mut self, history: &[T], limit: usize, costs: &StepCosts, draft: &mut Vec<T>) {
        draft.clear();
        if let Some(guess) = self.guess(history, limit) {
            let k = self.best_length(&guess, costs);
            self.take(&guess, k, history, draft);
        }
    }

    /// The guess for what follows `history` (at most `limit` tokens), if there is one;
    /// forgets the last step's guess. [`Self::take`] says how much of it is verified.
    pub(crate) fn guess(&mut self, history: &[T], limit: usize) -> Option<Guess> {
        self.shadow = None;
        self.verifying = None;
        if self.max == 0 {
            return None;
        }
        let (len, next) = find_continuation(history)?;
        let available = self.max.min(limit).min(history.len() - next);
        Some(Guess {
            bucket: bucket(len),
            next,
            available,
        })
    }

    /// For each token of `guess`, the chance that it and all before it hold (what it
    /// adds to a step's expected tokens): the first at the rate of its match length,
    /// each further one times the longest match's rate.
    pub(crate) fn chances(&self, guess: &Guess) -> Vec<f64> {
        let p = self.first[guess.bucket].value();
        let q = self.first[BUCKETS - 1].value();
        std::iter::successors(Some(p), |c| Some(c * q))
            .take(guess.available)
            .collect()
    }

    /// Verifies the first `k` tokens of `guess` (put in `draft`); with `k` 0 the guess
    /// is only checked against what is sampled next, which costs nothing.
    pub(crate) fn take(&mut self, guess: &Guess, k: usize, history: &[T], draft: &mut Vec<T>) {
        let k = k.min(guess.available);
        if k == 0 {
            self.shadow = history.get(guess.next).map(|&first| (guess.bucket, first));
            return;
        }
        draft.extend_from_slice(&history[guess.next..guess.next + k]);
        self.verifying = Some(guess.bucket);
    }

    /// What the sampler chose: `accepted` of the `drafted` tokens held, and `first` is
    /// the token sampled right after the history (checked against an unverified guess).
    pub(crate) fn record(&mut self, drafted: usize, accepted: usize, first: T) {
        if let Some((bucket, guess)) = self.shadow.take() {
            self.first[bucket].learn(guess == first);
        }
        let Some(bucket) = self.verifying.take() else {
            return;
        };
        self.first[bucket].learn(accepted > 0);
        // Each further draft was a guess from a long match.
        for _ in 1..accepted {
            self.first[BUCKETS - 1].learn(true);
        }
        if accepted > 0 && accepted < drafted {
            self.first[BUCKETS - 1].learn(false);
        }
        self.drafted += u32::try_from(drafted).unwrap_or(u32::MAX);
        self.accepted += u32::try_from(accepted).unwrap_or(u32::MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_and_latest_earlier_occurrence_is_found() {
        // ... 1 2 3 [9] ... 2 3 [7] ... 1 2 3 → "1 2 3" matched at its first occurrence.
        let h = [1, 2, 3, 9, 5, 2, 3, 7, 6, 1, 2, 3];
        assert_eq!(find_continuation(&h), Some((3, 3)));
        // Two equally long matches: the later one wins.
        let h = [2, 3, 4, 0, 2, 3, 5, 1, 2, 3];
        assert_eq!(find_continuation(&h), Some((2, 6)));
    }

    #[test]
    fn a_single_repeated_token_or_no_repeat_is_no_guess() {
        assert_eq!(find_continuation(&[1, 2, 3, 4, 5]), None);
        assert_eq!(find_continuation(&[5, 1, 2, 5]), None);
        assert_eq!(find_continuation::<i32>(&[]), None);
        assert_eq!(find_continuation(&[1, 1]), None);
    }

    #[test]
    fn a_run_of_one_token_proposes_more_of_it() {
        let h = [4, 4, 4, 4];
        assert_eq!(find_continuation(&h), Some((3, 3)));
    }

    #[test]
    fn matches_stop_at_the_longest_compared_length() {
        let h: Vec<i32> = (0..10).chain(0..10).collect();
        // The suffix 4..10 (6 tokens) matches the first copy, followed by nothing new
        // except the second copy's start.
        assert_eq!(find_continuation(&h), Some((MAX_MATCH, 10)));
    }

    /// Costs as measured on a 2-core CPU: a draft must be likely to hold.
    fn cpu_costs() -> StepCosts {
        let mut costs = StepCosts::default();
        for (k, ms) in [13.0, 24.0, 34.5, 40.0, 45.5, 51.0, 57.0, 63.0, 69.0]
            .into_iter()
            .enumerate()
        {
            costs.observe(k, ms);
        }
        costs
    }

    #[test]
    fn costs_are_relative_to_a_single_step_and_guessed_until_measured() {
        let costs = cpu_costs();
        assert!((costs.relative(0) - 1.0).abs() < 1e-9);
        assert!((costs.relative(8) - 69.0 / 13.0).abs() < 1e-9);
        let mut fresh = StepCosts::default();
        assert!((fresh.relative(3) - (1.0 + 3.0 * PRIOR_COST_PER_DRAFT_TOKEN)).abs() < 1e-9);
        // Between measured lengths a straight line; beyond them, the last cost per token.
        let mut sparse = StepCosts::default();
        sparse.observe(0, 10.0);
        sparse.observe(4, 30.0);
        assert!((sparse.relative(2) - 2.0).abs() < 1e-9);
        assert!((sparse.relative(6) - 4.0).abs() < 1e-9);
        // A costly short draft: longer ones are still given the prior's chance.
        let mut costly = StepCosts::default();
        costly.observe(0, 10.0);
        costly.observe(2, 40.0);
        assert!((costly.relative(8) - (1.0 + 8.0 * PRIOR_COST_PER_DRAFT_TOKEN)).abs() < 1e-9);
        sparse.observe(8, 40.0);
        assert!((sparse.relative(6) - 3.5).abs() < 1e-9);
        // Smoothed, not replaced: one slow step moves the estimate part of the way.
        fresh.observe(0, 10.0);
        fresh.observe(1, 20.0);
        fresh.observe(1, 30.0);
        assert!((fresh.relative(1) - 2.3).abs() < 1e-9);
        // Relative to a single step only once that is measured.
        let mut no_base = StepCosts::default();
        no_base.observe(2, 30.0);
        assert!((no_base.relative(2) - (1.0 + 2.0 * PRIOR_COST_PER_DRAFT_TOKEN)).abs() < 1e-9);
    }

    #[test]
    fn a_copying_reply_drafts_long_guesses() {
        let text: Vec<i32> = (1000..1200).collect();
        let mut history: Vec<i32> = text.clone();
        history.extend_from_slice(&text[..5]);
        let costs = cpu_costs();
        let mut drafter = Drafter::<i32>::new(MAX_DRAFT);
        let mut draft = Vec::new();
        // A first guess, before anything is known, is not worth a batch on this CPU …
        drafter.propose(&history, 100, &costs, &mut draft);
        assert!(draft.is_empty());
        // … but it is checked for free against what is sampled, and guesses that keep
        // coming true are verified, longer as they keep holding.
        let mut lengths = Vec::new();
        let mut next = 5; // the index in `text` of the next token sampled
        while next + MAX_DRAFT < text.len() {
            let k = draft.len();
            if k > 0 {
                assert_eq!(draft, text[next..next + k]);
                lengths.push(k);
            }
            // The step samples text[next], and each draft holds.
            drafter.record(k, k, text[next]);
            history.extend_from_slice(&text[next..=next + k]);
            next += k + 1;
            drafter.propose(&history, 100, &costs, &mut draft);
        }
        assert!(lengths.len() > 5, "{lengths:?}");
        assert_eq!(lengths.last(), Some(&MAX_DRAFT), "{lengths:?}");
        assert_eq!(drafter.drafted, drafter.accepted);
        // The limit (tokens left in the reply) bounds a draft.
        drafter.propose(&history, 3, &costs, &mut draft);
        assert_eq!(draft.len(), 3);
    }

    #[test]
    fn guesses_that_fail_stop_drafting() {
        let costs = StepCosts::default();
        let history = [1, 2, 3, 4, 1, 2, 3];
        let mut drafter = Drafter::<i32>::new(MAX_DRAFT);
        drafter.first = [Rate::prior(19.5, 20.0); BUCKETS];
        let mut draft = Vec::new();
        drafter.propose(&history, 100, &costs, &mut draft);
        assert_eq!(draft[0], 4);
        let mut misses = 0;
        while !draft.is_empty() {
            drafter.record(draft.len(), 0, 9);
            misses += 1;
            assert!(misses < 10, "still drafting after {misses} misses");
            drafter.propose(&history, 100, &costs, &mut draft);
        }
        assert!(misses >= 1);
        assert_eq!(drafter.accepted, 0);
    }

    #[test]
    fn cheap_steps_make_even_uncertain_guesses_worth_checking() {
        // A GPU: a step of 9 tokens costs about as much as a step of one.
        let mut costs = StepCosts::default();
        for k in 0..=MAX_DRAFT {
            costs.observe(k, 10.0 + k as f64 * 0.1);
        }
        let mut drafter = Drafter::<i32>::new(MAX_DRAFT);
        drafter.first = [
            Rate::prior(3.0, 10.0),
            Rate::prior(3.0, 10.0),
            Rate::prior(3.0, 10.0),
            Rate::prior(5.0, 10.0),
        ];
        let history = [5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 5, 6, 7];
        let mut draft = Vec::new();
        drafter.propose(&history, 100, &costs, &mut draft);
        assert!(draft.len() >= 4, "{draft:?}");
        // The same odds with CPU costs are not worth a batch.
        drafter.propose(&history, 100, &cpu_costs(), &mut draft);
        assert!(draft.is_empty());
    }

    #[test]
    fn drafting_off_never_proposes() {
        let mut drafter = Drafter::<i32>::new(0);
        let mut draft = vec![1];
        drafter.propose(&[1, 2, 3, 1, 2], 100, &StepCosts::default(), &mut draft);
        assert!(draft.is_empty());
        drafter.record(0, 0, 3);
        assert_eq!((drafter.drafted, drafter.accepted), (0, 0));
    }
}
