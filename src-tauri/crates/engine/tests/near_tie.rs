//! The rule the real-model tests compare replies by (`common::assert_same_or_near_tie`),
//! checked on made-up traces: what it accepts and what it refuses, without a model.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};

use common::{assert_same_or_near_tie, MAX_LOGIT_DRIFT, MAX_PAIR_DRIFT};
use hearth_core::{FinishReason, GenerationMetrics};
use hearth_engine::{TokenTrace, TracedOutput};

/// A token picked from `top` (token, logit), best first; its piece is its id as text.
fn pick(token: i32, top: &[(i32, f32)]) -> TokenTrace {
    TokenTrace {
        token,
        piece: format!("<{token}>"),
        logit: top.iter().find(|(t, _)| *t == token).map(|(_, l)| *l).unwrap(),
        top: top.to_vec(),
    }
}

fn reply(tokens: Vec<TokenTrace>, finish: FinishReason) -> TracedOutput {
    let text = tokens.iter().map(|t| t.piece.as_str()).collect();
    TracedOutput {
        text,
        metrics: GenerationMetrics {
            prompt_tokens: 4,
            prompt_tokens_evaluated: 4,
            completion_tokens: u32::try_from(tokens.len()).unwrap(),
            load_ms: 1.0,
            ttft_ms: 1.0,
            prompt_tps: 1.0,
            decode_tps: 1.0,
            total_ms: 1.0,
            finish_reason: finish,
            draft_tokens: 0,
            draft_accepted: 0,
            decode_batch_sequences: Vec::new(),
            prompt_steps: 0,
            prompt_format: None,
        },
        tokens,
    }
}

fn refused(greedy: bool, a: &TracedOutput, b: &TracedOutput) -> bool {
    catch_unwind(AssertUnwindSafe(|| assert_same_or_near_tie("made up", greedy, a, b))).is_err()
}

#[test]
fn equal_replies_within_rounding_are_accepted() {
    let a = reply(
        vec![pick(1, &[(1, 20.0), (2, 17.0)]), pick(3, &[(3, 25.0), (1, 21.0)])],
        FinishReason::Length,
    );
    let b = reply(
        vec![pick(1, &[(1, 20.4), (2, 17.1)]), pick(3, &[(3, 24.8), (1, 21.0)])],
        FinishReason::Length,
    );
    assert_eq!(assert_same_or_near_tie("made up", true, &a, &b), None);
}

#[test]
fn a_near_tie_tipped_by_rounding_is_accepted_and_located() {
    let a = reply(
        vec![pick(1, &[(1, 20.0), (2, 17.0)]), pick(5, &[(5, 22.01), (6, 22.0)])],
        FinishReason::Length,
    );
    let b = reply(
        vec![pick(1, &[(1, 20.1), (2, 17.0)]), pick(6, &[(6, 22.2), (5, 22.1)])],
        FinishReason::Length,
    );
    let parted = assert_same_or_near_tie("made up", true, &a, &b).unwrap();
    assert_eq!(
        (parted.at, parted.reference.as_str(), parted.other.as_str()),
        (1, "<5>", "<6>")
    );
    assert!((parted.gap - 0.01).abs() < 1e-4, "{parted:?}");
}

#[test]
fn a_clear_winner_overturned_is_refused() {
    // The reference's pick led by 3 logits: no rounding swaps that.
    let a = reply(vec![pick(5, &[(5, 25.0), (6, 22.0)])], FinishReason::Length);
    let b = reply(vec![pick(6, &[(6, 25.0), (5, 22.0)])], FinishReason::Length);
    assert!(refused(true, &a, &b));
    // A pick the other run did not even rank among its best.
    let c = reply(vec![pick(7, &[(7, 25.0), (8, 24.9)])], FinishReason::Length);
    assert!(refused(true, &a, &c));
}

#[test]
fn the_same_tokens_from_another_context_are_refused() {
    let a = reply(vec![pick(1, &[(1, 20.0), (2, 17.0)])], FinishReason::Length);
    // The lead over the runner-up changed by more than rounding does.
    let lead = reply(
        vec![pick(1, &[(1, 20.0), (2, 17.0 + MAX_PAIR_DRIFT + 0.5)])],
        FinishReason::Length,
    );
    assert!(refused(true, &a, &lead));
    // The whole row moved by more than rounding does.
    let shifted = reply(
        vec![pick(
            1,
            &[(1, 20.0 + MAX_LOGIT_DRIFT + 0.5), (2, 17.0 + MAX_LOGIT_DRIFT + 0.5)],
        )],
        FinishReason::Length,
    );
    assert!(refused(true, &a, &shifted));
}

#[test]
fn sampled_replies_may_part_only_where_the_logits_agree() {
    // Sampling took the second candidate in one run and the first in the other, from
    // the same distribution up to rounding: a draw near a boundary.
    let a = reply(vec![pick(6, &[(5, 21.0), (6, 20.0)])], FinishReason::Length);
    let b = reply(vec![pick(5, &[(5, 21.1), (6, 20.05)])], FinishReason::Length);
    assert!(assert_same_or_near_tie("made up", false, &a, &b).is_some());
    // The same picks from distributions that differ: refused.
    let c = reply(vec![pick(5, &[(5, 24.0), (6, 20.0)])], FinishReason::Length);
    assert!(refused(false, &a, &c));
}

#[test]
fn a_reply_must_be_the_picks_and_end_alike() {
    let a = reply(vec![pick(1, &[(1, 20.0), (2, 17.0)])], FinishReason::Length);
    // Text the sampler never picked.
    let mut forged = a.clone();
    forged.text = "<2>".into();
    assert!(refused(true, &a, &forged));
    // The same picks, but one reply went on.
    let longer = reply(
        vec![pick(1, &[(1, 20.0), (2, 17.0)]), pick(3, &[(3, 20.0), (4, 10.0)])],
        FinishReason::Length,
    );
    assert!(refused(true, &a, &longer));
}
