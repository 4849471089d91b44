//! What a model (or a quantization of it) costs in accuracy, measured the way llama.cpp's
//! `llama-perplexity` does: the text is cut into windows of the context size; each window
//! starts with the model's start token and only its second half is scored, so every
//! scored token has at least half a window of context. Perplexity is exp(mean negative
//! log-likelihood of the next token). Against a reference model with the same vocabulary
//! (say the F16 a quantization came from): the KL divergence of the model's next-token
//! distribution from the reference's, per position (mean and 99th percentile), and how
//! often both rank the same token first.
//!
//! The reference is either loaded beside the model and scored window by window with it
//! (one position's logits at a time cross the channel, so memory stays at two models and
//! two vocabularies of logits), or, when the two do not fit together, run first on its own
//! into a [`ReferenceSpool`] on disk that the model's pass reads back (see `spool.rs`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::{Engine, EngineError, Prompt};

mod spool;

pub use spool::{score_against_spooled, spool_position, ReferenceSpool, SpooledPosition, TAIL_CUT};

/// What the model is compared with.
#[derive(Debug)]
pub enum Reference<'a> {
    /// Loaded beside the model, scored in step with it.
    Loaded(&'a Engine),
    /// Scored earlier, read back from disk.
    Spooled(&'a mut ReferenceSpool),
}

/// One scored position.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PositionScore {
    /// -log p(next token) under the model.
    pub nll: f64,
    /// The same under the reference.
    pub reference_nll: Option<f64>,
    /// KL(reference || model) over the whole vocabulary, in nats.
    pub kl: Option<f64>,
    /// Whether both put the same token first.
    pub same_top: Option<bool>,
}

/// log Σ exp(x), computed in f64 from the largest value.
pub fn log_sum_exp(logits: &[f32]) -> f64 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = logits.iter().map(|&x| (x as f64 - max).exp()).sum();
    max + sum.ln()
}

fn argmax(logits: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in logits.iter().enumerate() {
        if x > logits[best] {
            best = i;
        }
    }
    best
}

/// Scores one position: `logits` (the model's) predict token `next`.
pub fn score_position(logits: &[f32], next: usize, reference: Option<&[f32]>) -> PositionScore {
    let lse = log_sum_exp(logits);
    let nll = lse - logits.get(next).copied().unwrap_or(f32::NEG_INFINITY) as f64;
    let Some(reference) = reference else {
        return PositionScore {
            nll,
            reference_nll: None,
            kl: None,
            same_top: None,
        };
    };
    let ref_lse = log_sum_exp(reference);
    let kl: f64 = reference
        .iter()
        .zip(logits)
        .map(|(&r, &m)| {
            let log_p = r as f64 - ref_lse;
            log_p.exp() * (log_p - (m as f64 - lse))
        })
        .sum();
    PositionScore {
        nll,
        reference_nll: Some(ref_lse - reference.get(next).copied().unwrap_or(f32::NEG_INFINITY) as f64),
        // Rounding can make a tiny divergence come out a hair below zero.
        kl: Some(kl.max(0.0)),
        same_top: Some(argmax(reference) == argmax(logits)),
    }
}

/// The measurement, one JSON line with `hearth eval --json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    pub model: String,
    pub reference: Option<String>,
    /// Tokens per window (the context size scored with).
    pub window: usize,
    pub windows: usize,
    pub tokens_scored: usize,
    pub perplexity: f64,
    pub reference_perplexity: Option<f64>,
    /// KL divergence from the reference, nats per token.
    pub kl_mean: Option<f64>,
    pub kl_p99: Option<f64>,
    pub kl_max: Option<f64>,
    /// Percent of positions where both rank the same token first.
    pub same_top_percent: Option<f64>,
    pub ms: f64,
}

/// Aggregates position scores.
pub fn summarize(
    model: String,
    reference: Option<String>,
    window: usize,
    windows: usize,
    scores: &[PositionScore],
    ms: f64,
) -> EvalReport {
    let n = scores.len().max(1) as f64;
    let perplexity = (scores.iter().map(|s| s.nll).sum::<f64>() / n).exp();
    let with_reference = reference.is_some();
    let mut kls: Vec<f64> = scores.iter().filter_map(|s| s.kl).collect();
    kls.sort_by(f64::total_cmp);
    let p99 = |v: &[f64]| {
        v.get(((v.len() as f64 * 0.99).ceil() as usize).saturating_sub(1))
            .copied()
    };
    EvalReport {
        model,
        reference,
        window,
        windows,
        tokens_scored: scores.len(),
        perplexity,
        reference_perplexity: with_reference
            .then(|| (scores.iter().filter_map(|s| s.reference_nll).sum::<f64>() / n).exp()),
        kl_mean: with_reference.then(|| kls.iter().sum::<f64>() / n),
        kl_p99: if with_reference { p99(&kls) } else { None },
        kl_max: if with_reference { kls.last().copied() } else { None },
        same_top_percent: with_reference
            .then(|| 100.0 * scores.iter().filter(|s| s.same_top == Some(true)).count() as f64 / n),
        ms,
    }
}

/// The windows llama-perplexity scores: `window` tokens each, back to back, the first
/// token of each replaced by the start token (when the model uses one); only whole
/// windows. Returns (windows, first scored position).
pub fn windows(tokens: &[i32], window: usize, bos: Option<i32>) -> (Vec<Vec<i32>>, usize) {
    let chunks = tokens
        .chunks_exact(window.max(2))
        .map(|c| {
            let mut w = c.to_vec();
            if let Some(bos) = bos {
                w[0] = bos;
            }
            w
        })
        .collect();
    (chunks, window / 2)
}

/// Scores `model` (and, when given, `reference`) on `text` in windows of `window` tokens.
/// `on_window` hears after each window (done, total); `cancel` stops between windows.
pub fn evaluate(
    model: &Engine,
    mut reference: Option<Reference<'_>>,
    text: &str,
    window: usize,
    cancel: &AtomicBool,
    on_window: &mut dyn FnMut(usize, usize),
) -> Result<EvalReport, EngineError> {
    let started = Instant::now();
    let tokens = model.tokenize(Prompt::Text(text.to_owned()))?;
    let reference_name = match &reference {
        None => None,
        Some(Reference::Loaded(r)) => Some(r.info().name.clone()),
        Some(Reference::Spooled(s)) => Some(s.name.clone()),
    };
    let same_tokens = match &reference {
        None => true,
        Some(Reference::Loaded(r)) => r.tokenize(Prompt::Text(text.to_owned()))? == tokens,
        Some(Reference::Spooled(s)) => {
            if s.window != window {
                return Err(EngineError::InvalidSettings(format!(
                    "the reference was scored in windows of {} tokens, not {window}",
                    s.window
                )));
            }
            s.tokens == tokens
        }
    };
    if !same_tokens {
        return Err(EngineError::InvalidSettings(format!(
            "{} and {} split the text into different tokens: compare models with the same vocabulary (a model and its quantizations)",
            model.info().name,
            reference_name.unwrap_or_default()
        )));
    }
    let (chunks, first) = windows(&tokens, window, model.info().bos_token);
    if chunks.is_empty() {
        return Err(EngineError::InvalidSettings(format!(
            "the text has {} tokens, fewer than one window of {window}: use a longer text or a smaller --ctx",
            tokens.len()
        )));
    }
    let next_logits = |rx: &std::sync::mpsc::Receiver<Result<Vec<f32>, String>>| -> Result<Vec<f32>, EngineError> {
        rx.recv()
            .map_err(|_| EngineError::EngineStopped)?
            .map_err(EngineError::DecodeFailed)
    };
    let mut scores = Vec::with_capacity(chunks.len() * (window - first));
    for (done, chunk) in chunks.iter().enumerate() {
        if cancel.load(Ordering::Acquire) {
            return Err(EngineError::InvalidSettings("cancelled".into()));
        }
        let model_rx = model.score(chunk.clone(), first)?;
        let ref_rx = match &reference {
            Some(Reference::Loaded(r)) => Some(r.score(chunk.clone(), first)?),
            _ => None,
        };
        // Logits at position p predict the token at p + 1; the last position predicts
        // nothing inside the window.
        for pos in first..chunk.len() - 1 {
            let logits = next_logits(&model_rx)?;
            let next = usize::try_from(chunk[pos + 1]).unwrap_or(usize::MAX);
            scores.push(match (&mut reference, &ref_rx) {
                (Some(Reference::Spooled(spool)), _) => score_against_spooled(&logits, next, &spool.next_position()?),
                (_, Some(rx)) => score_position(&logits, next, Some(&next_logits(rx)?)),
                _ => score_position(&logits, next, None),
            });
        }
        on_window(done + 1, chunks.len());
    }
    Ok(summarize(
        model.info().name.clone(),
        reference_name,
        window,
        chunks.len(),
        &scores,
        started.elapsed().as_secs_f64() * 1000.0,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_position_against_itself_costs_nothing() {
        let logits = [1.0f32, 3.0, -2.0, 0.5];
        let s = score_position(&logits, 1, Some(&logits));
        assert!(s.kl.is_some_and(|kl| kl.abs() < 1e-12));
        assert_eq!(s.same_top, Some(true));
        // -log softmax(3.0) among these.
        let lse = (1f64.exp() + 3f64.exp() + (-2f64).exp() + 0.5f64.exp()).ln();
        assert!((s.nll - (lse - 3.0)).abs() < 1e-12);
        assert_eq!(s.reference_nll, Some(s.nll));
    }

    #[test]
    fn kl_divergence_is_the_textbook_sum() {
        let reference = [0.0f32, 1.0, 2.0];
        let model = [0.5f32, 0.5, 1.0];
        let p: Vec<f64> = softmax(&reference);
        let q: Vec<f64> = softmax(&model);
        let expected: f64 = p.iter().zip(&q).map(|(p, q)| p * (p / q).ln()).sum();
        let s = score_position(&model, 0, Some(&reference));
        assert!((s.kl.unwrap_or(f64::NAN) - expected).abs() < 1e-12);
        assert_eq!(s.same_top, Some(true));
        let flipped = score_position(&[3.0, 0.0, 0.0], 0, Some(&reference));
        assert_eq!(flipped.same_top, Some(false));
    }

    fn softmax(x: &[f32]) -> Vec<f64> {
        let total: f64 = x.iter().map(|&v| (v as f64).exp()).sum();
        x.iter().map(|&v| (v as f64).exp() / total).collect()
    }

    #[test]
    fn windows_are_whole_start_with_the_start_token_and_score_their_second_half() {
        let tokens: Vec<i32> = (10..31).collect();
        let (chunks, first) = windows(&tokens, 8, Some(1));
        assert_eq!(chunks.len(), 2);
        assert_eq!(chunks[0], vec![1, 11, 12, 13, 14, 15, 16, 17]);
        assert_eq!(chunks[1][0], 1);
        assert_eq!(first, 4);
        assert_eq!(windows(&tokens, 8, None).0[1][0], 18);
    }

    #[test]
    fn a_summary_has_perplexity_percentiles_and_agreement() {
        let scores: Vec<PositionScore> = (0..100)
            .map(|i| PositionScore {
                nll: 2.0,
                reference_nll: Some(1.0),
                kl: Some(f64::from(i) / 100.0),
                same_top: Some(i % 4 != 0),
            })
            .collect();
        let r = summarize("m".into(), Some("r".into()), 8, 2, &scores, 1.0);
        assert!((r.perplexity - 2f64.exp()).abs() < 1e-9);
        assert!((r.reference_perplexity.unwrap_or(0.0) - 1f64.exp()).abs() < 1e-9);
        assert_eq!(r.kl_p99, Some(0.98));
        assert_eq!(r.kl_max, Some(0.99));
        assert!((r.kl_mean.unwrap_or(0.0) - 0.495).abs() < 1e-9);
        assert_eq!(r.same_top_percent, Some(75.0));
        let alone = summarize("m".into(), None, 8, 2, &scores, 1.0);
        assert_eq!((alone.kl_mean, alone.same_top_percent), (None, None));
    }
}
