//! The reference's side of a comparison kept on disk, for a model too large to load
//! beside its reference: a first pass runs the reference alone and writes, per scored
//! position, -log p of the true next token and the reference's most likely tokens with
//! their log-probabilities (as many as it takes to leave out less than [`TAIL_CUT`] of the
//! probability, at most `top_k`); the second pass runs the model alone and reads them back
//! in order. llama-perplexity's `--kl-divergence-base` keeps every token instead (16 bits
//! each, n_vocab per position: over 5 GB for 10,000 positions of Gemma's 262,144 tokens);
//! the top few thousand tokens hold nearly all the mass in a small part of that.
//!
//! What is exact: both perplexities and the top-token agreement (the reference's first
//! token is always kept). The KL divergence is computed over the kept tokens plus one
//! outcome for the rest (p_T, q_T): by the log-sum inequality that is at most the full
//! divergence, and the part it misses is what the left-out tokens' disagreement adds
//! within p_T. The report gives the largest p_T left out, so a reader can judge.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::sync::atomic::{AtomicBool, Ordering};

use super::{log_sum_exp, windows, PositionScore};
use crate::{Engine, EngineError, Prompt};

/// Keep top tokens until what is left out is below this probability.
pub const TAIL_CUT: f64 = 1e-6;

/// The reference's log-probabilities at one scored position.
#[derive(Debug, Clone, PartialEq)]
pub struct SpooledPosition {
    /// -log p(true next token).
    pub nll: f64,
    /// The most likely tokens first: (token, log p).
    pub top: Vec<(i32, f32)>,
}

/// The reference's most likely tokens at `logits`, most likely first, until less than
/// `tail_cut` of the probability is left (at most `top_k`, at least one), and -log p of `next`.
pub fn spool_position(logits: &[f32], next: usize, top_k: usize, tail_cut: f64) -> SpooledPosition {
    let lse = log_sum_exp(logits);
    let k = top_k.clamp(1, logits.len().max(1));
    let mut order: Vec<u32> = (0..logits.len() as u32).collect();
    let by_logit = |a: &u32, b: &u32| logits[*b as usize].total_cmp(&logits[*a as usize]);
    if k < order.len() {
        order.select_nth_unstable_by(k - 1, by_logit);
        order.truncate(k);
    }
    order.sort_unstable_by(by_logit);
    let mut kept = 0.0;
    let mut top = Vec::with_capacity(order.len());
    for id in order {
        let log_p = logits[id as usize] as f64 - lse;
        top.push((id as i32, log_p as f32));
        kept += log_p.exp();
        if 1.0 - kept < tail_cut {
            break;
        }
    }
    SpooledPosition {
        nll: lse - logits.get(next).copied().unwrap_or(f32::NEG_INFINITY) as f64,
        top,
    }
}

/// Scores the model's `logits` predicting `next` against the reference's spooled position.
pub fn score_against_spooled(logits: &[f32], next: usize, reference: &SpooledPosition) -> PositionScore {
    let lse = log_sum_exp(logits);
    let log_q = |id: i32| logits.get(id as usize).map_or(f64::NEG_INFINITY, |&x| x as f64 - lse);
    let (mut kl, mut p_kept, mut q_kept) = (0.0, 0.0, 0.0);
    for &(id, log_p) in &reference.top {
        let (log_p, log_q) = (f64::from(log_p), log_q(id));
        kl += log_p.exp() * (log_p - log_q);
        p_kept += log_p.exp();
        q_kept += log_q.exp();
    }
    let p_tail = 1.0 - p_kept;
    // The left-out tokens as one outcome. Below TAIL_CUT what is left is the rounding of
    // the f32 log-probabilities summed (every token kept), not a tail.
    if p_tail > TAIL_CUT {
        let q_tail = (1.0 - q_kept).max(f64::MIN_POSITIVE);
        kl += p_tail * (p_tail.ln() - q_tail.ln());
    }
    let model_top = (0..logits.len()).fold(0, |b, i| if logits[i] > logits[b] { i } else { b });
    PositionScore {
        nll: lse - logits.get(next).copied().unwrap_or(f32::NEG_INFINITY) as f64,
        reference_nll: Some(reference.nll),
        kl: Some(kl.max(0.0)),
        same_top: Some(reference.top.first().is_some_and(|&(id, _)| id as usize == model_top)),
    }
}

/// A reference model's scored positions in a file, written by [`ReferenceSpool::write`] and
/// read back once, in order, by [`crate::evaluate`].
#[derive(Debug)]
pub struct ReferenceSpool {
    pub(super) name: String,
    pub(super) tokens: Vec<i32>,
    pub(super) window: usize,
    positions: usize,
    bytes: u64,
    max_tail_mass: f64,
    top_k: usize,
    file: BufReader<File>,
}

impl ReferenceSpool {
    /// Runs `reference` over `text` in windows of `window` tokens (as [`crate::evaluate`]
    /// will) and writes each scored position to `file` (an anonymous temporary file: it
    /// goes when dropped). `on_window` hears (done, total); `cancel` stops between windows.
    pub fn write(
        reference: &Engine,
        text: &str,
        window: usize,
        top_k: usize,
        file: File,
        cancel: &AtomicBool,
        on_window: &mut dyn FnMut(usize, usize),
    ) -> Result<Self, EngineError> {
        let tokens = reference.tokenize(Prompt::Text(text.to_owned()))?;
        let (chunks, first) = windows(&tokens, window, reference.info().bos_token);
        let io = |e: std::io::Error| {
            EngineError::ScratchFile(format!("cannot write the reference's log-probabilities: {e}"))
        };
        let mut out = BufWriter::new(file);
        let (mut positions, mut max_tail_mass) = (0, 0.0f64);
        for (done, chunk) in chunks.iter().enumerate() {
            if cancel.load(Ordering::Acquire) {
                return Err(EngineError::InvalidSettings("cancelled".into()));
            }
            let rx = reference.score(chunk.clone(), first)?;
            for pos in first..chunk.len() - 1 {
                let logits = rx
                    .recv()
                    .map_err(|_| EngineError::EngineStopped)?
                    .map_err(EngineError::DecodeFailed)?;
                let next = usize::try_from(chunk[pos + 1]).unwrap_or(usize::MAX);
                let spooled = spool_position(&logits, next, top_k, TAIL_CUT);
                let kept: f64 = spooled.top.iter().map(|&(_, lp)| f64::from(lp).exp()).sum();
                max_tail_mass = max_tail_mass.max(1.0 - kept);
                write_position(&mut out, &spooled).map_err(io)?;
                positions += 1;
            }
            on_window(done + 1, chunks.len());
        }
        let mut file = out.into_inner().map_err(|e| io(e.into_error()))?;
        let bytes = file.stream_position().map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        Ok(ReferenceSpool {
            name: reference.info().name.clone(),
            tokens,
            window,
            positions,
            bytes,
            max_tail_mass,
            top_k,
            file: BufReader::new(file),
        })
    }

    /// The next position, in the order written.
    pub(super) fn next_position(&mut self) -> Result<SpooledPosition, EngineError> {
        read_position(&mut self.file)
            .map_err(|e| EngineError::ScratchFile(format!("cannot read the reference's log-probabilities back: {e}")))
    }

    /// Positions written.
    pub fn positions(&self) -> usize {
        self.positions
    }

    /// The file's size.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The most tokens kept at one position.
    pub fn top_k(&self) -> usize {
        self.top_k
    }

    /// The largest probability left out at any position (see the module's note).
    pub fn max_tail_mass(&self) -> f64 {
        self.max_tail_mass
    }
}

/// One position: nll (f64), count (u32), then (token i32, log p f32) pairs, little-endian.
fn write_position(out: &mut impl Write, p: &SpooledPosition) -> std::io::Result<()> {
    out.write_all(&p.nll.to_le_bytes())?;
    out.write_all(&(p.top.len() as u32).to_le_bytes())?;
    for &(id, log_p) in &p.top {
        out.write_all(&id.to_le_bytes())?;
        out.write_all(&log_p.to_le_bytes())?;
    }
    Ok(())
}

fn read_position(input: &mut impl Read) -> std::io::Result<SpooledPosition> {
    let mut b8 = [0u8; 8];
    let mut b4 = [0u8; 4];
    input.read_exact(&mut b8)?;
    let nll = f64::from_le_bytes(b8);
    input.read_exact(&mut b4)?;
    let n = u32::from_le_bytes(b4) as usize;
    let mut top = Vec::with_capacity(n);
    for _ in 0..n {
        input.read_exact(&mut b4)?;
        let id = i32::from_le_bytes(b4);
        input.read_exact(&mut b4)?;
        top.push((id, f32::from_le_bytes(b4)));
    }
    Ok(SpooledPosition { nll, top })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::super::score_position;
    use super::*;

    #[test]
    fn the_top_tokens_come_first_and_stop_once_the_tail_is_small() {
        let logits = [0.0f32, 5.0, 1.0, 4.0, -30.0];
        let p = spool_position(&logits, 2, 10, 1e-3);
        let ids: Vec<i32> = p.top.iter().map(|t| t.0).collect();
        // Token 4 carries about 1e-15 of the mass: left out.
        assert_eq!(ids, [1, 3, 2, 0]);
        let lse = log_sum_exp(&logits);
        assert!((p.nll - (lse - 1.0)).abs() < 1e-12);
        assert_eq!(spool_position(&logits, 2, 2, 0.0).top.len(), 2);
    }

    #[test]
    fn with_every_token_kept_the_score_equals_the_full_one() {
        let reference = [0.3f32, 2.0, -1.0, 0.7, 1.5];
        let model = [0.1f32, 1.2, 0.4, 0.9, 1.6];
        let full = score_position(&model, 3, Some(&reference));
        let spooled = score_against_spooled(&model, 3, &spool_position(&reference, 3, 5, 0.0));
        assert!((full.kl.unwrap() - spooled.kl.unwrap()).abs() < 1e-6);
        assert!((full.reference_nll.unwrap() - spooled.reference_nll.unwrap()).abs() < 1e-12);
        assert_eq!((full.nll, full.same_top), (spooled.nll, spooled.same_top));
    }

    #[test]
    fn a_lumped_tail_never_overstates_the_divergence() {
        let reference = [3.0f32, 2.5, 0.0, -0.5, -1.0, 0.2];
        let model = [2.0f32, 3.0, 1.0, -2.0, 0.5, -1.0];
        let full = score_position(&model, 0, Some(&reference)).kl.unwrap();
        for k in 1..=6 {
            let lumped = score_against_spooled(&model, 0, &spool_position(&reference, 0, k, 0.0));
            // f32 log-probabilities: equal to about 1e-7.
            assert!(lumped.kl.unwrap() <= full + 1e-6, "k = {k}");
            assert_eq!(lumped.same_top, Some(false));
        }
    }

    #[test]
    fn positions_read_back_as_written() {
        let mut file = tempfile::tempfile().unwrap();
        let written = [
            spool_position(&[1.0, 2.0, 3.0], 0, 2, 0.0),
            spool_position(&[0.5, -1.0], 1, 8, 0.0),
        ];
        for p in &written {
            write_position(&mut file, p).unwrap();
        }
        file.seek(SeekFrom::Start(0)).unwrap();
        for p in &written {
            assert_eq!(&read_position(&mut file).unwrap(), p);
        }
        assert!(read_position(&mut file).is_err());
    }
}
