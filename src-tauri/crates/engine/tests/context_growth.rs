//! The KV cache starts small and grows with the conversation, carrying what is cached:
//! a growing engine gives exactly the replies of one that allocated everything at load,
//! and a follow-up turn after a growth still evaluates only its new tokens. One sequence
//! is the scheduler with one slot (and this growth): its plan shows it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;

use common::*;
use hearth_core::{ChatMessage, GenerationMetrics, SamplingParams};
use hearth_engine::{Engine, EngineConfig, Prompt};

const CEILING: u32 = 4096;
const INITIAL: u32 = 256;

fn engines(path: PathBuf) -> (Engine, Engine) {
    let config = EngineConfig::new(path).with_n_ctx(CEILING);
    let growing = Engine::load(EngineConfig {
        initial_ctx: INITIAL,
        ..config.clone()
    })
    .expect("loads");
    let full = Engine::load(config.with_full_context()).expect("loads");
    (growing, full)
}

/// The same request on both engines: the same reply, up to rounding (a KV cache of
/// another size is attended over in other shapes; see `common::assert_same_or_near_tie`).
fn both(growing: &Engine, full: &Engine, prompt: Prompt, max_tokens: u32) -> (String, GenerationMetrics) {
    let params = SamplingParams::greedy(max_tokens);
    let (grown, reference) = (traced(growing, &prompt, &params), traced(full, &prompt, &params));
    assert_same_or_near_tie("a grown context", true, &reference, &grown);
    (grown.text, grown.metrics)
}

#[test]
fn limits_are_the_ceiling_while_the_cache_starts_small() {
    let _g = serial();
    let (growing, full) = engines(smollm());
    assert_eq!(growing.info().n_ctx, CEILING);
    assert_eq!(full.info().n_ctx, CEILING);
    assert_eq!(growing.info().n_ctx_initial, INITIAL);
    assert_eq!(growing.context_allocated(), INITIAL);
    assert_eq!(full.context_allocated(), CEILING);
    // The default: a 2048-token start under a larger ceiling, all of a smaller one.
    let default = load(smollm(), 8192);
    assert_eq!(default.info().n_ctx_initial, hearth_engine::INITIAL_CONTEXT);
    let small = load(smollm(), 1024);
    assert_eq!(small.info().n_ctx_initial, 1024);
    assert_eq!(small.context_allocated(), 1024);
    // Layers asked for with no GPU device (lavapipe is hidden in a plain `cargo test`):
    // the model runs on the CPU with none, and its cache starts small. With layers on a
    // device the whole context is allocated at load (tests/vulkan.rs checks it).
    let asked = Engine::load(EngineConfig {
        n_gpu_layers: 1,
        initial_ctx: INITIAL,
        ..EngineConfig::new(smollm()).with_n_ctx(CEILING)
    })
    .expect("loads");
    assert_eq!((asked.info().device.as_str(), asked.info().n_gpu_layers), ("CPU", 0));
    assert_eq!(asked.info().n_ctx_initial, INITIAL);
}

#[test]
fn a_chat_that_outgrows_the_cache_keeps_it_and_replies_the_same() {
    let _g = serial();
    let (growing, full) = engines(smollm());
    let mut history = vec![
        ChatMessage::system("You are a helpful assistant."),
        ChatMessage::user("Name three colours of the rainbow."),
    ];
    let (reply, m) = both(&growing, &full, Prompt::Chat(history.clone()), 32);
    assert_eq!(
        growing.context_allocated(),
        INITIAL,
        "a short turn fits the first allocation"
    );
    assert_eq!(m.prompt_tokens_evaluated, m.prompt_tokens);

    // A long second message: prompt and reply no longer fit in 256 tokens.
    let long = format!(
        "Here are my notes on colour. {} Which colour is the sky?",
        "Light splits into bands of colour when it passes through rain, and each band bends by a different angle. "
            .repeat(10)
    );
    history.push(ChatMessage::assistant(reply));
    history.push(ChatMessage::user(long.clone()));
    let (reply, m) = both(&growing, &full, Prompt::Chat(history.clone()), 32);
    let grown = growing.context_allocated();
    assert!(grown > INITIAL && grown < CEILING, "grew to {grown}");
    assert!(
        m.prompt_tokens + 32 <= grown,
        "room for the prompt and the reply: {m:?}, {grown}"
    );
    // The first turn came over with the growth: only the new message was evaluated.
    let new_turn = growing.count_tokens(Prompt::Text(long)).unwrap();
    assert!(
        m.prompt_tokens_evaluated <= new_turn + 16 && m.prompt_tokens > m.prompt_tokens_evaluated + 20,
        "evaluated {} of {} (new message {new_turn})",
        m.prompt_tokens_evaluated,
        m.prompt_tokens
    );

    // A reply allowed to be long reserves its room up front, up to the ceiling at most.
    history.push(ChatMessage::assistant(reply));
    history.push(ChatMessage::user("Thanks."));
    let (_, m) = both(&growing, &full, Prompt::Chat(history), 700);
    assert!(growing.context_allocated() >= m.prompt_tokens + 700);
    assert!(growing.context_allocated() <= CEILING);
    assert!(m.prompt_tokens_evaluated < 20, "{m:?}");
}

#[test]
fn a_sliding_window_model_grows_and_continues_the_same() {
    let _g = serial();
    let (growing, full) = engines(gemma());
    let story = "Once upon a time, in a small village by the sea, there lived an old fisherman who";
    let (first, _) = both(&growing, &full, Prompt::Text(story.into()), 24);
    assert_eq!(growing.context_allocated(), INITIAL);
    let continued = format!(
        "{story}{first} {} Then",
        "Every morning he mended his nets and watched the gulls circle over the harbour. ".repeat(12)
    );
    let (_, m) = both(&growing, &full, Prompt::Text(continued), 24);
    assert!(growing.context_allocated() > INITIAL);
    assert!(
        m.prompt_tokens > m.prompt_tokens_evaluated + 30,
        "the story so far came from the cache: evaluated {} of {}",
        m.prompt_tokens_evaluated,
        m.prompt_tokens
    );
}

#[test]
fn one_sequence_is_the_scheduler_with_one_slot() {
    let _g = serial();
    let engine = load_undrafted(smollm(), 1024);
    let prompt = Prompt::Text("Once upon a time, in a small village by the sea, there lived".into());
    let request = hearth_engine::GenerationRequest {
        prompt,
        params: SamplingParams::greedy(16),
    };
    let out = engine.generate_text(request).unwrap();
    let m = &out.metrics;
    let steps = engine.step_plans();
    // Nothing measured yet and the prompt within a batch: read whole, in one step.
    let reading: Vec<_> = steps.iter().filter(|s| s.read_by(0) > 0).collect();
    assert_eq!(reading.len(), 1, "{steps:#?}");
    assert_eq!(reading[0].read_by(0) as u32, m.prompt_tokens_evaluated);
    assert_eq!(reading[0].sampled, [0], "the first token comes from the prompt's step");
    assert_eq!(m.prompt_steps, 1);
    // Then a row a step for the only sequence, each sampled.
    let decoding: Vec<_> = steps.iter().filter(|s| !s.replying.is_empty()).collect();
    for step in &decoding {
        assert_eq!(
            (step.replying.as_slice(), step.decode_rows),
            ([0].as_slice(), 1),
            "{step:?}"
        );
        assert_eq!(step.sampled, [0]);
        assert!(!step.drafting, "drafting is off");
    }
    let decoded = match m.finish_reason {
        hearth_core::FinishReason::Length => m.completion_tokens - 1,
        _ => m.completion_tokens,
    };
    assert_eq!(decoding.len() as u32, decoded, "{m:?}");
    assert_eq!(m.decode_batch_sequences, [decoded]);
}
