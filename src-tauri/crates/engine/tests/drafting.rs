//! Draft tokens guessed from the conversation ("prompt lookup"): a reply that repeats
//! its context is decoded several tokens per step, and the reply is the one the engine
//! gives one token at a time: greedy and seeded, with max_tokens and stop strings, on
//! SmolLM2 and on sliding-window Gemma, and across follow-up turns that reuse a cache
//! cut back after rejected guesses.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;

use common::*;
use hearth_core::{ChatMessage, FinishReason, GenerationMetrics, SamplingParams};
use hearth_engine::{Engine, EngineConfig, GenerationRequest, Prompt};

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

fn engines(path: PathBuf) -> (Engine, Engine) {
    let config = EngineConfig::new(path).with_n_ctx(2048);
    let plain = Engine::load(EngineConfig {
        max_draft: 0,
        ..config.clone()
    })
    .expect("loads");
    let drafting = Engine::load(config).expect("loads");
    assert_eq!(drafting.info().n_ctx, plain.info().n_ctx);
    (plain, drafting)
}

fn generate(engine: &Engine, prompt: &Prompt, params: &SamplingParams) -> (String, GenerationMetrics) {
    engine.reset_cache().unwrap();
    let out = engine
        .generate(GenerationRequest {
            prompt: prompt.clone(),
            params: params.clone(),
        })
        .unwrap()
        .collect()
        .unwrap();
    (out.text, out.metrics)
}

/// The same request on both engines: identical replies; returns the drafting one's metrics.
fn same_reply(plain: &Engine, drafting: &Engine, prompt: &Prompt, params: &SamplingParams) -> GenerationMetrics {
    let (expected, reference) = generate(plain, prompt, params);
    let (text, metrics) = generate(drafting, prompt, params);
    assert_eq!(text, expected, "drafting changed the reply");
    assert_eq!(metrics.completion_tokens, reference.completion_tokens);
    assert_eq!(metrics.finish_reason, reference.finish_reason);
    assert_eq!((reference.draft_tokens, reference.draft_accepted), (0, 0));
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
        // A good part of the reply came from guesses that held (a fresh engine doubts
        // guesses, and has not measured its steps, for the first few dozen tokens).
        assert!(
            m.draft_accepted >= 24,
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
    // Warm the drafter's step costs so that guesses are verified from early on.
    generate(&drafting, &copy_prompt(), &SamplingParams::greedy(64));
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
    let (text, _) = generate(&drafting, &copy_prompt(), &stop);
    assert!(text.ends_with("as they "), "{text:?}");
}

#[test]
fn rejected_guesses_are_cut_from_the_cache() {
    let _g = serial();
    for path in [gemma(), smollm()] {
        let (plain, drafting) = engines(path.clone());
        let prompt = alternating();
        let mut rejected = 0;
        for max_tokens in [48, 96] {
            let m = same_reply(&plain, &drafting, &prompt, &SamplingParams::greedy(max_tokens));
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
    let first = drafting
        .generate(GenerationRequest {
            prompt: Prompt::Chat(history.clone()),
            params: SamplingParams::greedy(96),
        })
        .unwrap()
        .collect()
        .unwrap();
    assert!(first.metrics.draft_tokens > 0, "{:?}", first.metrics);
    history.push(ChatMessage::assistant(first.text));
    history.push(ChatMessage::user("Now count the boats."));
    let follow_up = Prompt::Chat(history);
    let params = SamplingParams::greedy(48);
    let warm = drafting
        .generate(GenerationRequest {
            prompt: follow_up.clone(),
            params: params.clone(),
        })
        .unwrap()
        .collect()
        .unwrap();
    let m = &warm.metrics;
    assert!(
        m.prompt_tokens_evaluated <= 24,
        "evaluated {} of {} prompt tokens",
        m.prompt_tokens_evaluated,
        m.prompt_tokens
    );
    // What the cut-back cache gave equals a reply from nothing cached, without drafts.
    let (cold, _) = generate(&plain, &follow_up, &params);
    assert_eq!(warm.text, cold);
}
