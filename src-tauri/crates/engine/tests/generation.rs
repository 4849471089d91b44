//! Real generation on the real default models (SmolLM2 with a chat template,
//! Gemma 3 270M base without one). Greedy sampling on an undrafted engine makes the
//! outputs exact from the same cache state; from another cache state they are compared
//! up to rounding (`common::assert_same_or_near_tie`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use hearth_core::{ChatMessage, FinishReason, GenerationEvent, SamplingParams};
use hearth_engine::{Engine, EngineError, GenerationRequest, Prompt};

const STORY: &str = "Once upon a time, in a small village by the sea, there lived an old fisherman who";

fn chat(q: &str) -> Prompt {
    Prompt::Chat(vec![ChatMessage::user(q)])
}

fn text(t: &str) -> Prompt {
    Prompt::Text(t.to_owned())
}

/// The prompt each model understands: a chat for SmolLM2, plain text for Gemma base.
fn engines() -> [(&'static Engine, Prompt); 2] {
    [
        (
            shared_smollm(),
            chat("Write a short story about a fisherman and the sea."),
        ),
        (shared_gemma(), text(STORY)),
    ]
}

fn request(prompt: Prompt, params: SamplingParams) -> GenerationRequest {
    GenerationRequest { prompt, params }
}

/// Greedy output is exact for the same prompt from the same cache state. From a
/// different state (part of the prompt cached) llama.cpp evaluates the rest in other
/// batch shapes, whose float rounding can differ, as with llama-server's prompt
/// cache. Comparisons therefore start from an empty cache.
fn cold(engine: &Engine) -> &Engine {
    engine.reset_cache().unwrap();
    engine
}

#[test]
fn greedy_is_deterministic_and_streamed_text_equals_non_streamed() {
    let _g = serial();
    for (engine, prompt) in engines() {
        let params = SamplingParams::greedy(48);
        let a = cold(engine)
            .generate(request(prompt.clone(), params.clone()))
            .unwrap()
            .collect()
            .unwrap();
        let b = cold(engine)
            .generate(request(prompt.clone(), params.clone()))
            .unwrap()
            .collect()
            .unwrap();
        assert!(!a.text.trim().is_empty(), "{}: empty reply", engine.info().name);
        assert_eq!(
            a.text,
            b.text,
            "{}: greedy output differs between runs",
            engine.info().name
        );

        // Streamed deltas, concatenated, equal the text decoded from all tokens at once.
        let mut deltas = Vec::new();
        let streamed = cold(engine).generate(request(prompt.clone(), params.clone())).unwrap();
        let streamed = streamed.collect_with(|d| deltas.push(d.to_owned())).unwrap();
        let whole = cold(engine).generate_text(request(prompt, params)).unwrap();
        assert!(deltas.len() > 1, "expected several deltas, got {}", deltas.len());
        assert_eq!(deltas.concat(), whole.text);
        assert_eq!(streamed.text, whole.text);
        assert_eq!(streamed.metrics.completion_tokens, whole.metrics.completion_tokens);
    }
}

#[test]
fn max_tokens_is_honoured_exactly() {
    let _g = serial();
    for (engine, prompt) in engines() {
        for max in [1, 7] {
            let out = engine
                .generate(request(prompt.clone(), SamplingParams::greedy(max)))
                .unwrap()
                .collect()
                .unwrap();
            assert_eq!(out.metrics.completion_tokens, max, "{}", engine.info().name);
            assert_eq!(out.metrics.finish_reason, FinishReason::Length);
        }
    }
}

#[test]
fn stop_string_ends_the_reply_and_is_not_included() {
    let _g = serial();
    for (engine, prompt) in engines() {
        let full = cold(engine)
            .generate_text(request(prompt.clone(), SamplingParams::greedy(40)))
            .unwrap()
            .text;
        // A word from the middle of the known greedy output becomes the stop string.
        let words: Vec<&str> = full.split_whitespace().filter(|w| w.len() >= 3).collect();
        assert!(words.len() >= 4, "reply too short to pick a stop word: {full:?}");
        let stop = words[words.len() / 2].to_owned();
        let expected = &full[..full.find(&stop).unwrap()];
        let params = SamplingParams {
            stop: vec![stop.clone()],
            ..SamplingParams::greedy(40)
        };
        for streamed in [true, false] {
            let out = if streamed {
                cold(engine)
                    .generate(request(prompt.clone(), params.clone()))
                    .unwrap()
                    .collect()
                    .unwrap()
            } else {
                cold(engine)
                    .generate_text(request(prompt.clone(), params.clone()))
                    .unwrap()
            };
            assert_eq!(
                out.text,
                expected,
                "{} stop {stop:?} streamed={streamed}",
                engine.info().name
            );
            assert!(!out.text.contains(&stop));
            assert_eq!(out.metrics.finish_reason, FinishReason::Stop);
        }
    }
}

#[test]
fn cancel_after_first_token_stops_the_reply() {
    let _g = serial();
    for (engine, prompt) in engines() {
        let generation = engine.generate(request(prompt, SamplingParams::greedy(3000))).unwrap();
        let first = generation.events.recv_timeout(Duration::from_secs(30)).unwrap();
        assert!(matches!(first, GenerationEvent::Delta { .. }), "first event: {first:?}");
        let cancelled_at = Instant::now();
        generation.cancel.cancel();
        let done = loop {
            match generation
                .events
                .recv_timeout(Duration::from_secs(5))
                .expect("generation ended")
            {
                GenerationEvent::Delta { .. } => continue,
                GenerationEvent::Done { metrics } => break metrics,
                GenerationEvent::Error { message, .. } => panic!("error: {message}"),
            }
        };
        // What shows the stop is the count: the reply ended cancelled, far short of
        // its 3,000 tokens. The time is held only to a hang's bound (a step takes tens
        // of ms here; 60 s is a stop that never came), so a busy machine cannot fail it.
        let took = cancelled_at.elapsed();
        assert!(
            took < Duration::from_secs(60),
            "{} took {took:?} to stop",
            engine.info().name
        );
        assert_eq!(done.finish_reason, FinishReason::Cancelled);
        assert!(done.completion_tokens < 3000);
    }
}

#[test]
fn a_prompt_that_cannot_fit_is_refused_before_decoding() {
    let _g = serial();
    for path in [smollm(), gemma()] {
        let engine = load(path, 256);
        let limit = engine.info().n_ctx;
        assert!(limit >= 256);
        let long = "The quick brown fox jumps over the lazy dog. ".repeat(limit as usize / 4);
        // Refused by `generate` itself, before a generation exists: no token of it is
        // decoded (that is the decision; how long it takes is the machine's business).
        let err = engine
            .generate(request(text(&long), SamplingParams::greedy(8)))
            .unwrap_err();
        match err {
            EngineError::ContextOverflow {
                needed,
                limit: refused_at,
            } => {
                assert_eq!(refused_at, limit);
                assert!(needed > limit, "needed {needed}");
            }
            other => panic!("expected ContextOverflow, got {other:?}"),
        }
        assert!(err_message_says_what_to_do(&engine, &long, limit));
        // The engine is still usable afterwards.
        let ok = engine
            .generate(request(text("Hello"), SamplingParams::greedy(2)))
            .unwrap()
            .collect()
            .unwrap();
        assert_eq!(ok.metrics.completion_tokens, 2);
    }
}

fn err_message_says_what_to_do(engine: &Engine, long: &str, limit: u32) -> bool {
    let err = engine
        .generate(request(text(long), SamplingParams::greedy(1)))
        .unwrap_err();
    let msg = err.to_string();
    msg.contains("context") && msg.contains(&limit.to_string()) && msg.contains("shorten")
}

#[test]
fn emoji_and_cjk_stream_as_whole_characters() {
    let _g = serial();
    let cases = [
        (
            shared_smollm(),
            chat("Repeat exactly, nothing else: 你好世界 😀🎉 こんにちは 한국어 👨‍👩‍👧"),
        ),
        (
            shared_gemma(),
            text("日本語の文章です。東京は日本の首都です。😀🎉 中文：你好，世界！"),
        ),
    ];
    let mut saw_multibyte = false;
    for (engine, prompt) in cases {
        let mut deltas = Vec::new();
        let out = cold(engine)
            .generate(request(prompt.clone(), SamplingParams::greedy(40)))
            .unwrap()
            .collect_with(|d| deltas.push(d.to_owned()))
            .unwrap();
        for d in &deltas {
            assert!(!d.is_empty());
            assert!(!d.contains('\u{FFFD}'), "broken character in delta {d:?}");
        }
        let whole = cold(engine)
            .generate_text(request(prompt, SamplingParams::greedy(40)))
            .unwrap();
        assert_eq!(deltas.concat(), whole.text);
        saw_multibyte |= out.text.chars().any(|c| c.len_utf8() > 2);
    }
    assert!(
        saw_multibyte,
        "no reply contained CJK or emoji; the test would prove nothing"
    );
}

#[test]
fn follow_up_turns_evaluate_only_their_new_tokens() {
    let _g = serial();
    let engine = load(smollm(), 4096);
    let mut history = vec![ChatMessage::system("You are a helpful assistant.")];
    let questions = [
        "Name three colours of the rainbow.",
        "Which of them is the colour of the sky?",
        "And which one is the colour of grass?",
    ];
    let mut last = None;
    for (turn, q) in questions.iter().enumerate() {
        history.push(ChatMessage::user(*q));
        let out = engine
            .generate(request(Prompt::Chat(history.clone()), SamplingParams::greedy(24)))
            .unwrap()
            .collect()
            .unwrap();
        history.push(ChatMessage::assistant(out.text.clone()));
        let m = &out.metrics;
        if turn == 0 {
            assert_eq!(
                m.prompt_tokens_evaluated, m.prompt_tokens,
                "first turn evaluates everything"
            );
        } else {
            let new_turn = engine.count_tokens(Prompt::Text(q.to_string())).unwrap();
            // The new user message plus the template's few role tokens; the earlier turns come from the cache.
            assert!(
                m.prompt_tokens_evaluated <= new_turn + 16,
                "turn {turn}: evaluated {} of {} prompt tokens (new message is {new_turn})",
                m.prompt_tokens_evaluated,
                m.prompt_tokens
            );
            assert!(m.prompt_tokens > m.prompt_tokens_evaluated + 30);
        }
        last = Some(out.metrics);
    }
    // A reset forgets the cache: everything is evaluated again.
    engine.reset_cache().unwrap();
    let again = engine
        .generate(request(Prompt::Chat(history), SamplingParams::greedy(1)))
        .unwrap()
        .collect()
        .unwrap();
    assert_eq!(again.metrics.prompt_tokens_evaluated, again.metrics.prompt_tokens);
    assert!(last.is_some());
}

#[test]
fn continued_text_on_a_sliding_window_model_reuses_the_cache() {
    let _g = serial();
    let engine = load(gemma(), 4096);
    let first = engine
        .generate(request(text(STORY), SamplingParams::greedy(16)))
        .unwrap()
        .collect()
        .unwrap();
    let continued = format!("{STORY}{} Then", first.text);
    let second = traced(&engine, &text(&continued), &SamplingParams::greedy(16));
    let m = &second.metrics;
    assert!(
        m.prompt_tokens_evaluated <= 8,
        "evaluated {} of {}",
        m.prompt_tokens_evaluated,
        m.prompt_tokens
    );
    // Same reply from a cold cache (up to rounding: the cold prompt is read in one
    // batch, the reused one in two): the reused cache gave the same continuation.
    let cold = traced_cold(&engine, &text(&continued), &SamplingParams::greedy(16));
    assert_eq!(cold.metrics.prompt_tokens_evaluated, cold.metrics.prompt_tokens);
    assert_same_or_near_tie("Gemma continued from a reused cache", true, &cold, &second);
}

#[test]
fn a_base_model_asked_to_chat_says_so() {
    let err = shared_gemma()
        .generate(request(chat("hello"), SamplingParams::greedy(4)))
        .unwrap_err();
    assert!(matches!(err, EngineError::NoChatTemplate { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("gemma-3-270m") && msg.contains("no chat template"),
        "{msg}"
    );
}

#[test]
fn invalid_sampling_parameters_are_refused_with_the_field_named() {
    let params = SamplingParams {
        temperature: f32::NAN,
        ..SamplingParams::greedy(4)
    };
    let err = shared_smollm().generate(request(text("hi"), params)).unwrap_err();
    assert!(err.to_string().contains("temperature"), "{err}");
}

#[test]
fn metrics_are_filled_in() {
    let _g = serial();
    let out = shared_smollm()
        .generate(request(chat("Say hello."), SamplingParams::greedy(16)))
        .unwrap()
        .collect()
        .unwrap();
    let m = out.metrics;
    assert!(m.prompt_tokens > 0 && m.completion_tokens > 0);
    assert!(m.load_ms > 0.0 && m.ttft_ms > 0.0 && m.total_ms >= m.ttft_ms);
    assert!(m.prompt_tps > 0.0);
    if m.completion_tokens > 1 {
        assert!(m.decode_tps > 0.0);
    }
}
