//! Draft tokens guessed from the conversation ("prompt lookup"): a reply that repeats
//! its context is decoded several tokens per step, and the reply is the one the engine
//! gives one token at a time: greedy and seeded, with max_tokens and stop strings, on
//! SmolLM2 and on sliding-window Gemma, and across follow-up turns that reuse a cache
//! cut back after rejected guesses.
//!
//! "The same" is up to rounding: a draft is verified in a batch, which llama.cpp computes
//! with other kernels than a single token, so where two candidates were nearly tied the
//! replies may part (seen on AVX-512 machines). Every comparison traces both replies and
//! checks that they agree token for token up to the first difference, that the logits
//! before it agree within rounding, and that the difference is a near-tie
//! (`common::assert_same_or_near_tie`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;

use common::*;
use hearth_core::{ChatMessage, FinishReason, GenerationMetrics, SamplingParams};
use hearth_engine::{Engine, EngineConfig, Prompt};

/// Prose that repeats: any model continues it by copying, so guesses hold.
const PASSAGE: &str = "The lighthouse keeper climbed the spiral stairs every evening just before sunset. \
From the lantern room he could see the fishing boats returning across the grey water. \
Each boat carried a lamp at its bow, and he counted them one by one as they rounded the point.";

/// Lists that repeat with changes.
const VARIED: &str = "Monday: bread, milk, eggs, apples. Tuesday: bread, milk, rice, pears. \
Wednesday: bread, milk, eggs, plums. Thursday: bread, milk, rice, figs. Friday: bread,";

/// [`PASSAGE`] with other words in places: copies of the two alternate, so a guess
/// taken from the latest copy goes wrong where the next copy differs.
fn alternating() -> Prompt {
    let other = PASSAGE
        .replace("grey", "dark")
        .replace("lamp", "light")
        .replace("one by one", "two by two");
    Prompt::Text(format!("{PASSAGE} {other} {PASSAGE} {other} {PASSAGE}"))
}

/// An engine that never drafts and one that verifies every guess it finds
/// (`min_draft`): whether a guess pays is the measured step costs' call, which differs
/// by machine and load (unit tests check it on made-up costs); these tests check what
/// verifying guesses does to the reply and the cache, so every guess is verified.
/// Numbers counted up: each new number's digits follow earlier ones in other orders, so
/// a guess copied from an earlier number goes wrong again and again, on any machine.
fn counting() -> Prompt {
    let numbers: Vec<String> = (1..=40).map(|n| n.to_string()).collect();
    Prompt::Text(format!("Counting: {},", numbers.join(", ")))
}

fn engines(path: PathBuf) -> (Engine, Engine) {
    let config = EngineConfig::new(path).with_n_ctx(2048);
    let plain = Engine::load(EngineConfig {
        max_draft: 0,
        ..config.clone()
    })
    .expect("loads");
    let drafting = Engine::load(config.with_min_draft(hearth_engine::MAX_DRAFT as u32)).expect("loads");
    assert_eq!(drafting.info().n_ctx, plain.info().n_ctx);
    (plain, drafting)
}

/// The same request on both engines from an empty cache: the same reply up to rounding
/// (identical where no near-tie was tipped); returns the drafting one's metrics.
fn same_reply(plain: &Engine, drafting: &Engine, prompt: &Prompt, params: &SamplingParams) -> GenerationMetrics {
    let reference = traced_cold(plain, prompt, params);
    let out = traced_cold(drafting, prompt, params);
    let what = format!("{} with drafting, {params:?}", drafting.info().name);
    assert_same_or_near_tie(&what, params.temperature <= 0.0, &reference, &out);
    let metrics = out.metrics;
    assert_eq!(
        (reference.metrics.draft_tokens, reference.metrics.draft_accepted),
        (0, 0)
    );
    assert!(metrics.draft_accepted <= metrics.draft_tokens);
    metrics
}

fn copy_prompt() -> Prompt {
    Prompt::Text(format!("{PASSAGE} {PASSAGE} {PASSAGE}"))
}

#[test]
fn a_copying_reply_is_drafted_and_unchanged_on_both_models() {
    let _g = serial();
    for path in [smollm(), gemma()] {
        let (plain, drafting) = engines(path.clone());
        let greedy = SamplingParams::greedy(96);
        let m = same_reply(&plain, &drafting, &copy_prompt(), &greedy);
        // A good part of the reply came from guesses that held.
        assert!(
            m.draft_accepted >= 48,
            "{}: {} of {} guessed tokens held",
            path.display(),
            m.draft_accepted,
            m.draft_tokens
        );
        // Seeded sampling: the sampler makes the same draws, so the reply is the same.
        let sampled = SamplingParams {
            temperature: 0.7,
            seed: 7,
            ..SamplingParams::greedy(64)
        };
        same_reply(&plain, &drafting, &copy_prompt(), &sampled);
    }
}

#[test]
fn max_tokens_and_stop_strings_hold_mid_draft() {
    let _g = serial();
    let (plain, drafting) = engines(gemma());
    for max_tokens in [37, 50] {
        let m = same_reply(&plain, &drafting, &copy_prompt(), &SamplingParams::greedy(max_tokens));
        assert_eq!(m.completion_tokens, max_tokens);
        assert_eq!(m.finish_reason, FinishReason::Length);
        assert!(m.draft_accepted > 0);
    }
    let stop = SamplingParams {
        stop: vec!["rounded".into()],
        ..SamplingParams::greedy(200)
    };
    let m = same_reply(&plain, &drafting, &copy_prompt(), &stop);
    assert_eq!(m.finish_reason, FinishReason::Stop);
    let out = traced_cold(&drafting, &copy_prompt(), &stop);
    assert_eq!(out.metrics.finish_reason, FinishReason::Stop);
    assert!(out.metrics.draft_accepted > 0, "{:?}", out.metrics);
    // The stop string ends the reply where it starts, and is not shown.
    assert!(out.text.ends_with("as they "), "{:?}", out.text);
}

#[test]
fn rejected_guesses_are_cut_from_the_cache() {
    let _g = serial();
    for path in [gemma(), smollm()] {
        let (plain, drafting) = engines(path.clone());
        let mut rejected = 0;
        for (prompt, max_tokens) in [(alternating(), 48), (alternating(), 96), (counting(), 48)] {
            let m = same_reply(&plain, &drafting, &prompt, &SamplingParams::greedy(max_tokens));
            eprintln!(
                "{}: {max_tokens} tokens, {} of {} guesses held",
                path.display(),
                m.draft_accepted,
                m.draft_tokens
            );
            rejected += m.draft_tokens - m.draft_accepted;
        }
        assert!(rejected > 0, "{}: no guess was rejected", path.display());
    }
}

#[test]
fn a_follow_up_after_a_drafted_reply_reuses_the_cache() {
    let _g = serial();
    let (plain, drafting) = engines(smollm());
    let mut history = vec![ChatMessage::user(format!(
        "Repeat this text word for word: {PASSAGE} {VARIED}"
    ))];
    drafting.reset_cache().unwrap();
    let first = traced(&drafting, &Prompt::Chat(history.clone()), &SamplingParams::greedy(96));
    assert!(first.metrics.draft_tokens > 0, "{:?}", first.metrics);
    history.push(ChatMessage::assistant(first.text));
    history.push(ChatMessage::user("Now count the boats."));
    let follow_up = Prompt::Chat(history);
    let params = SamplingParams::greedy(48);
    let warm = traced(&drafting, &follow_up, &params);
    let m = &warm.metrics;
    assert!(
        m.prompt_tokens_evaluated <= 24,
        "evaluated {} of {} prompt tokens",
        m.prompt_tokens_evaluated,
        m.prompt_tokens
    );
    // What the cut-back cache gave equals a reply from nothing cached, without drafts.
    let cold = traced_cold(&plain, &follow_up, &params);
    assert_same_or_near_tie("a follow-up on a cut-back cache", true, &cold, &warm);
}
