//! How much prompt a step of the parallel engine reads: step costs learned as the
//! engine runs, and the rule that shares a step between replies and prompts.
//!
//! A short prompt (a question) is read whole in one step even while others reply: its
//! asker waits for the first token, the replies lose one step of at most
//! [`Pace::STEP_MS`]. A prompt too long for that (a document) is read in chunks of
//! [`Pace::BESIDE_DECODING`] decode steps beside replies, so they never stall for long;
//! alone it goes in steps of [`Pace::STEP_MS`].

/// What a step costs on this machine (moving averages).
#[derive(Debug, Default, Clone)]
pub(super) struct Pace {
    /// A step of decode rows only, in ms, by its number of rows: a row costs a pass of
    /// the output layer too (Gemma's 262k-token vocabulary makes that most of the
    /// model), so 8 rows cost several times 1.
    decode_ms: Vec<Option<f64>>,
    /// Each prompt token added to a step, in ms.
    prompt_ms_per_token: Option<f64>,
}

/// A prompt still being read, as the planner sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Unread {
    /// Tokens left to read.
    pub left: usize,
    /// Tokens the request reads in all (its prompt less the cached prefix it reused).
    pub new: usize,
}

impl Pace {
    /// Quick to follow: a prompt token costs more the further into the prompt it is
    /// (attention reads every earlier one).
    const WEIGHT: f64 = 0.5;
    /// Before anything is measured: a chunk small enough for any model.
    const FIRST_CHUNK: usize = 32;
    const MIN_CHUNK: usize = super::steps::MIN_PROMPT_CHUNK;
    /// A document beside decoding, in decode steps' worth of time: the replies' next
    /// token waits under two decode steps, inside the four they may wait as contexts
    /// grow, the estimate lags and a busy machine adds noise (at one and a half steps'
    /// worth, waits of five steps were seen here). The price: beside a stream a long
    /// prompt is read slowly on a CPU (1,500 tokens in about 15 s beside one stream on
    /// 2 cores).
    const BESIDE_DECODING: f64 = super::steps::DOCUMENT_CHUNK_DECODE_STEPS;
    /// The longest step that reads prompts: what a newcomer may wait behind, and what a
    /// question may cost the replies running beside it. Shorter steps read a long prompt
    /// alone more slowly on a CPU (at 250 ms, a quarter slower here).
    const STEP_MS: f64 = 500.0;

    pub(super) fn observe(&mut self, decode_rows: usize, prompt_tokens: usize, ms: f64) {
        let blend = |old: Option<f64>, new: f64| Some(old.map_or(new, |o| o + Self::WEIGHT * (new - o)));
        if prompt_tokens == 0 {
            if decode_rows > 0 {
                if self.decode_ms.len() <= decode_rows {
                    self.decode_ms.resize(decode_rows + 1, None);
                }
                self.decode_ms[decode_rows] = blend(self.decode_ms[decode_rows], ms);
            }
        } else if prompt_tokens >= Self::MIN_CHUNK {
            // (A step of a token or two costs what reading the weights does: it says
            // nothing about the next token's cost.)
            let decode = if decode_rows > 0 {
                self.decode_ms(decode_rows).unwrap_or(0.0)
            } else {
                0.0
            };
            let per_token = ((ms - decode) / prompt_tokens as f64).max(0.0);
            self.prompt_ms_per_token = blend(self.prompt_ms_per_token, per_token);
        }
    }

    /// A decode step of `rows` rows: as measured, else the nearest measured width
    /// (preferring the wider: a budget from it errs short).
    pub(super) fn decode_ms(&self, rows: usize) -> Option<f64> {
        let measured = |r: usize| self.decode_ms.get(r).copied().flatten();
        (0..self.decode_ms.len().max(rows + 1))
            .flat_map(|d| [rows + d, rows.wrapping_sub(d)])
            .filter(|&r| r >= 1)
            .find_map(measured)
    }

    /// What a step of `rows` rows with logits costs (replies' tokens and guesses to
    /// verify), in ms: measured; between two measured widths, on the line through them;
    /// beyond the widest, on the line through the two widest (a GPU's flat costs stay
    /// flat, a CPU's rise by a row's compute), or in proportion where only one width is
    /// known. None before any decode step is measured.
    pub(super) fn step_ms(&self, rows: usize) -> Option<f64> {
        let measured: Vec<(usize, f64)> = self
            .decode_ms
            .iter()
            .enumerate()
            .filter_map(|(width, ms)| ms.map(|ms| (width, ms)))
            .collect();
        let below = measured.iter().rev().find(|&&(w, _)| w <= rows).copied();
        let above = measured.iter().find(|&&(w, _)| w >= rows).copied();
        let line = |(w0, c0): (usize, f64), (w1, c1): (usize, f64)| {
            let slope = ((c1 - c0) / (w1 as f64 - w0 as f64)).max(0.0);
            c1 + slope * (rows as f64 - w1 as f64)
        };
        match (below, above) {
            (Some((w, ms)), _) if w == rows => Some(ms),
            (Some(lo), Some(hi)) => Some(line(lo, hi)),
            (Some((w, ms)), None) => match measured.len() {
                1 => Some(ms * rows as f64 / w as f64),
                n => Some(line(measured[n - 2], (w, ms))),
            },
            (None, Some((_, ms))) => Some(ms),
            (None, None) => None,
        }
    }

    /// What a step of `decode_rows` rows and `prompt_tokens` prompt tokens costs by the
    /// measurements so far, in ms: the figure the budgets below are made from (the
    /// nearest measured decode width, and each prompt token at its measured cost).
    /// None until what the step holds has been measured.
    pub(super) fn predict_ms(&self, decode_rows: usize, prompt_tokens: usize) -> Option<f64> {
        let decode = if decode_rows > 0 {
            self.decode_ms(decode_rows)?
        } else {
            0.0
        };
        if prompt_tokens == 0 {
            return Some(decode);
        }
        Some(decode + prompt_tokens as f64 * self.prompt_ms_per_token?)
    }

    /// Prompt tokens a step may hold beside `decode_rows` replying rows (0: none), at
    /// most [`Self::STEP_MS`] in all, or four decode steps where one is slower (so a
    /// step's fixed cost, reading the weights, stays a quarter of it at most).
    pub(super) fn step_tokens(&self, decode_rows: usize, limit: usize) -> usize {
        let chunk = match self.prompt_ms_per_token {
            Some(per_token) if per_token > 0.0 => {
                // Unmeasured until a step without prompts: the step's limit still holds.
                let decode = self.decode_ms(decode_rows.max(1)).unwrap_or(0.0);
                let step = Self::STEP_MS.max(4.0 * decode);
                ((step - decode) / per_token) as usize
            }
            _ if decode_rows > 0 => Self::FIRST_CHUNK,
            _ => limit,
        };
        chunk.clamp(Self::MIN_CHUNK, limit.max(Self::MIN_CHUNK))
    }

    /// Prompt tokens of a document a step may add beside `decode_rows` replying rows.
    pub(super) fn beside_decoding(&self, decode_rows: usize, limit: usize) -> usize {
        let chunk = match (self.decode_ms(decode_rows.max(1)), self.prompt_ms_per_token) {
            (Some(decode), Some(per_token)) if per_token > 0.0 => (Self::BESIDE_DECODING * decode / per_token) as usize,
            _ => Self::FIRST_CHUNK,
        };
        chunk.clamp(Self::MIN_CHUNK, limit.max(Self::MIN_CHUNK))
    }
}

/// Tokens each prompt reads this step, for prompts given least-left first: a question
/// (whose whole new part fits in `step` tokens) may use what is left of `step`, a
/// document only what is left of `beside` (equal to `step` when nothing replies). Once
/// a prompt ends in the step, only prompts that end in it too are read: a question
/// arriving while a document is read gets its first token from a short step, and the
/// document goes on in the next.
pub(super) fn plan_reads(prompts: &[Unread], step: usize, beside: usize) -> Vec<usize> {
    let (mut step_left, mut beside_left) = (step, beside.min(step));
    let mut ending_only = false;
    prompts
        .iter()
        .map(|p| {
            let budget = if p.new <= step { step_left } else { beside_left };
            let ends = p.left <= budget;
            if budget == 0 || (ending_only && !ends) {
                return 0;
            }
            ending_only |= ends;
            let take = p.left.min(budget);
            step_left -= take;
            beside_left = beside_left.saturating_sub(take);
            take
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unread(left: usize, new: usize) -> Unread {
        Unread { left, new }
    }

    #[test]
    fn a_document_beside_replies_costs_under_a_decode_step() {
        let mut pace = Pace::default();
        assert_eq!(pace.beside_decoding(3, 512), Pace::FIRST_CHUNK);
        pace.observe(3, 0, 10.0);
        pace.observe(3, 100, 60.0); // 0.5 ms a prompt token beside a 10 ms decode step
        assert_eq!(pace.beside_decoding(3, 512), 15);
        // Never more than the batch has room for, never less than the minimum.
        assert_eq!(pace.beside_decoding(3, 10), 10);
        // Decode steps that become very short (the average follows within a few steps).
        for _ in 0..20 {
            pace.observe(3, 0, 0.01);
        }
        assert_eq!(pace.beside_decoding(3, 512), Pace::MIN_CHUNK);
    }

    #[test]
    fn a_step_is_predicted_from_what_was_measured() {
        let mut pace = Pace::default();
        assert_eq!(pace.predict_ms(3, 0), None, "nothing measured");
        assert_eq!(pace.predict_ms(0, 0), Some(0.0));
        pace.observe(3, 0, 10.0);
        assert_eq!(pace.predict_ms(3, 0), Some(10.0));
        assert_eq!(pace.predict_ms(3, 8), None, "no prompt token measured yet");
        pace.observe(3, 100, 60.0);
        assert_eq!(pace.predict_ms(3, 20), Some(20.0));
        assert_eq!(pace.predict_ms(0, 20), Some(10.0));
        // A document's chunk beside replies is predicted within the rule's bound.
        let chunk = pace.beside_decoding(3, 512);
        let bound = (1.0 + Pace::BESIDE_DECODING) * 10.0;
        assert!(pace.predict_ms(3, chunk).is_some_and(|ms| ms <= bound));
    }

    #[test]
    fn decode_costs_are_kept_by_width() {
        let mut pace = Pace::default();
        pace.observe(1, 0, 10.0);
        pace.observe(8, 0, 70.0);
        assert_eq!(pace.decode_ms(1), Some(10.0));
        assert_eq!(pace.decode_ms(8), Some(70.0));
        // Unmeasured widths take the nearest measured one, the wider on a tie.
        assert_eq!(pace.decode_ms(3), Some(10.0));
        assert_eq!(pace.decode_ms(5), Some(70.0));
        assert_eq!(pace.decode_ms(12), Some(70.0));
        // A prompt token's cost is what a step adds to the decode step of its width:
        // 6 rows and 20 prompt tokens in 130 ms, next to 70 ms for 6 rows alone.
        pace.observe(6, 0, 70.0);
        pace.observe(6, 20, 130.0);
        assert_eq!(pace.prompt_ms_per_token, Some(3.0));
        assert_eq!(pace.beside_decoding(6, 512), 17);
        assert_eq!(pace.beside_decoding(1, 512), Pace::MIN_CHUNK);
    }

    #[test]
    fn a_step_of_any_width_is_priced_from_the_measured_ones() {
        let mut pace = Pace::default();
        assert_eq!(pace.step_ms(3), None);
        // One width known: in proportion (a cautious guess for a CPU).
        pace.observe(2, 0, 12.0);
        assert_eq!(pace.step_ms(2), Some(12.0));
        assert_eq!(pace.step_ms(6), Some(36.0));
        assert_eq!(pace.step_ms(1), Some(12.0));
        // A CPU: each row adds its compute (8 ms at 1 row, 4 ms a row more).
        pace.observe(1, 0, 8.0);
        pace.observe(4, 0, 20.0);
        assert_eq!(pace.step_ms(3), Some(16.0));
        assert_eq!(pace.step_ms(10), Some(44.0));
        // A GPU: a wider batch costs next to nothing more, and a noisy narrower step
        // never makes a wider one look cheaper.
        let mut gpu = Pace::default();
        gpu.observe(4, 0, 6.0);
        gpu.observe(8, 0, 5.5);
        assert_eq!(gpu.step_ms(40), Some(5.5));
    }

    #[test]
    fn a_step_that_reads_prompts_lasts_about_half_a_second() {
        let mut pace = Pace::default();
        // Nothing measured yet: the whole batch alone, a small chunk beside replies.
        assert_eq!(pace.step_tokens(0, 512), 512);
        assert_eq!(pace.step_tokens(2, 512), Pace::FIRST_CHUNK);
        // A step of a single prompt token is all fixed cost: not a token's price.
        pace.observe(0, 1, 10.0);
        assert_eq!(pace.prompt_ms_per_token, None);
        // A small model on a CPU, 3.7 ms a prompt token: before a decode step is
        // measured, the step's limit alone (a burst of questions read in one step).
        pace.observe(0, 100, 370.0);
        assert_eq!(pace.step_tokens(3, 512), 135);
        // 10 ms a decode step.
        pace.observe(1, 0, 10.0);
        assert_eq!(pace.step_tokens(0, 512), 132);
        // Beside 8 replies (40 ms a step) there is less room.
        pace.observe(8, 0, 40.0);
        assert_eq!(pace.step_tokens(8, 512), 124);
        // A big model on a CPU: 200 ms a decode step (the weights read once), 30 ms a
        // token: four decode steps, so the fixed cost stays a quarter of the step.
        let mut big = Pace::default();
        big.observe(1, 0, 200.0);
        big.observe(0, 10, 300.0);
        assert_eq!(big.step_tokens(0, 512), 20);
        // A GPU: tokens cost next to nothing, the batch is the limit.
        let mut gpu = Pace::default();
        gpu.observe(1, 0, 5.0);
        gpu.observe(0, 512, 40.0);
        assert_eq!(gpu.step_tokens(0, 512), 512);
    }

    #[test]
    fn questions_beside_replies_are_read_whole_together() {
        // A burst: three questions of 30 tokens while others reply; a step holds 100.
        let questions = [unread(30, 30), unread(30, 30), unread(30, 30)];
        assert_eq!(plan_reads(&questions, 100, 8), [30, 30, 30]);
        // Room for two: the third waits for the next step rather than starting.
        assert_eq!(plan_reads(&questions, 70, 8), [30, 30, 0]);
    }

    #[test]
    fn a_document_beside_replies_goes_in_small_chunks() {
        // 1,500 tokens: too long for one step, so it gets the beside-decoding share,
        // even at its tail.
        assert_eq!(plan_reads(&[unread(1500, 1500)], 120, 8), [8]);
        assert_eq!(plan_reads(&[unread(20, 1500)], 120, 8), [8]);
        assert_eq!(plan_reads(&[unread(6, 1500)], 120, 8), [6]);
        // Alone (beside = step) it goes in whole steps.
        assert_eq!(plan_reads(&[unread(1500, 1500)], 120, 120), [120]);
    }

    #[test]
    fn a_question_ends_in_a_step_of_its_own_beside_a_document() {
        // Least left first: the question ends, so the document waits a step.
        assert_eq!(plan_reads(&[unread(30, 30), unread(900, 1500)], 120, 120), [30, 0]);
        assert_eq!(plan_reads(&[unread(30, 30), unread(900, 1500)], 120, 8), [30, 0]);
        // A document that ends in the step leaves room for a question that ends too.
        assert_eq!(plan_reads(&[unread(5, 1500), unread(30, 30)], 120, 8), [5, 30]);
        // Nothing ends: the document takes its chunk.
        assert_eq!(plan_reads(&[unread(900, 1500)], 120, 8), [8]);
        // The batch is full.
        assert_eq!(plan_reads(&[unread(30, 30)], 0, 0), [0]);
    }
}
