//! What the sampler saw at each token of a reply, recorded on request.
//!
//! llama.cpp computes a batch of several rows with other kernels (and other rounding)
//! than a single row, and GGML picks different kernels on AVX2 and AVX-512 machines. Two
//! replies to the same request can therefore differ where two candidates were nearly
//! tied: a draft verified in a batch, a prompt read from a reused cache instead of in
//! one batch, another CPU. A trace holds, for each token the sampler picked, the raw
//! logits of the best candidates at that position, so a caller can tell a near-tie tipped
//! by rounding (a tiny gap) from a real change (a large one). Recording reads the
//! vocabulary's logits once per token, so it is off unless asked for.

use serde::Serialize;

/// Most candidates a trace keeps per token.
pub const MAX_TRACE_TOP: usize = 64;

/// One sampled token and the logits it was sampled from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TokenTrace {
    /// The token the sampler picked (end-of-generation tokens included).
    pub token: i32,
    /// Its text, lossily decoded (a piece can be part of a character).
    pub piece: String,
    /// Its raw logit (before penalties and temperature).
    pub logit: f32,
    /// The best candidates at this position, best first: (token, raw logit).
    pub top: Vec<(i32, f32)>,
}

impl TokenTrace {
    /// The raw logit of `token` at this position, if it was the pick or among the best.
    pub fn logit_of(&self, token: i32) -> Option<f32> {
        if token == self.token {
            return Some(self.logit);
        }
        self.top.iter().find(|(t, _)| *t == token).map(|(_, l)| *l)
    }

    /// How far the best candidate is ahead of the second best.
    pub fn top_gap(&self) -> Option<f32> {
        match self.top.as_slice() {
            [(_, a), (_, b), ..] => Some(a - b),
            _ => None,
        }
    }
}

/// Collects the trace of one reply on the decode thread.
pub(crate) struct TraceRecorder {
    top_k: usize,
    tokens: Vec<TokenTrace>,
}

impl TraceRecorder {
    pub(crate) fn new(top_k: usize) -> Self {
        Self {
            top_k: top_k.clamp(1, MAX_TRACE_TOP),
            tokens: Vec::new(),
        }
    }

    pub(crate) fn record(&mut self, token: i32, piece: String, logits: &[f32]) {
        let logit = usize::try_from(token)
            .ok()
            .and_then(|i| logits.get(i))
            .copied()
            .unwrap_or(f32::NAN);
        self.tokens.push(TokenTrace {
            token,
            piece,
            logit,
            top: top_logits(logits, self.top_k),
        });
    }

    pub(crate) fn finish(self) -> Vec<TokenTrace> {
        self.tokens
    }
}

/// The `k` largest logits with their token ids, largest first (ties: lower id first).
pub(crate) fn top_logits(logits: &[f32], k: usize) -> Vec<(i32, f32)> {
    let mut best: Vec<(i32, f32)> = Vec::with_capacity(k + 1);
    for (id, &logit) in logits.iter().enumerate() {
        if best.len() == k && best.last().is_some_and(|&(_, worst)| logit <= worst) {
            continue;
        }
        let at = best.partition_point(|&(_, l)| l >= logit);
        best.insert(at, (i32::try_from(id).unwrap_or(i32::MAX), logit));
        best.truncate(k);
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_logits_are_the_largest_in_order() {
        let logits = [0.5, 3.0, -1.0, 3.0, 2.5, 7.0];
        assert_eq!(top_logits(&logits, 3), vec![(5, 7.0), (1, 3.0), (3, 3.0)]);
        assert_eq!(top_logits(&logits, 10).len(), logits.len());
        assert!(top_logits(&[], 3).is_empty());
    }

    #[test]
    fn a_trace_knows_the_gap_and_the_logits_it_kept() {
        let mut rec = TraceRecorder::new(2);
        rec.record(1, "a".into(), &[1.0, 4.0, 3.5, 0.0]);
        let trace = rec.finish();
        assert_eq!(trace.len(), 1);
        assert_eq!(trace[0].top_gap(), Some(0.5));
        assert_eq!(trace[0].logit_of(2), Some(3.5));
        assert_eq!(trace[0].logit_of(1), Some(4.0));
        assert_eq!(trace[0].logit_of(0), None);
    }

    #[test]
    fn the_pick_keeps_its_logit_outside_the_top() {
        let mut rec = TraceRecorder::new(1);
        rec.record(0, "x".into(), &[1.0, 4.0]);
        let trace = rec.finish();
        assert_eq!(trace[0].logit_of(0), Some(1.0));
        assert_eq!(trace[0].top_gap(), None);
    }
}
