//! Several sequences at once (continuous batching) on the real default models. A reply
//! served beside others runs in other batch shapes than alone, whose float rounding
//! can differ, so replies are compared with their lone runs by the near-tie rule
//! (`common::assert_same_or_near_tie`); where the shapes are the same (identical
//! requests in the same steps) they must be equal.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use common::*;
use hearth_core::{ChatMessage, FinishReason, GenerationEvent, SamplingParams};
use hearth_engine::{
    Engine, EngineConfig, EngineError, GenerationRequest, Prompt, StepPlan, TracedOutput, DOCUMENT_CHUNK_DECODE_STEPS,
    MIN_PROMPT_CHUNK,
};

const SEQUENCES: u32 = 4;

fn parallel(path: std::path::PathBuf, n_ctx: u32) -> Engine {
    Engine::load(EngineConfig::new(path).with_n_ctx(n_ctx).with_parallel(SEQUENCES)).expect("model loads")
}

fn chat(q: &str) -> Prompt {
    Prompt::Chat(vec![ChatMessage::user(q)])
}

fn request(prompt: Prompt, max_tokens: u32) -> GenerationRequest {
    GenerationRequest {
        prompt,
        params: SamplingParams::greedy(max_tokens),
    }
}

const QUESTIONS: [&str; 4] = [
    "Write a short story about a fisherman and the sea.",
    "Explain how a bicycle stays upright.",
    "Give three tips for growing tomatoes.",
    "What is the capital of France, and why is it famous?",
];

/// A question whose answer is long.
const LONG_ANSWER: &str = "Write a long story about a lighthouse keeper and his dog.";

const OPENINGS: [&str; 4] = [
    "Once upon a time, in a small village by the sea, there lived an old fisherman who",
    "The train left the station at dawn, and the passengers",
    "In the middle of the forest stood a house made of stone, where",
    "The recipe called for flour, eggs and sugar, but the baker",
];

/// Each reply alone, on an engine of one sequence: the reference.
fn alone(path: std::path::PathBuf, n_ctx: u32, requests: &[GenerationRequest]) -> Vec<TracedOutput> {
    let engine = load_undrafted(path, n_ctx);
    requests
        .iter()
        .map(|r| {
            engine.reset_cache().unwrap();
            engine.generate_traced(r.clone(), TRACE_TOP).unwrap()
        })
        .collect()
}

#[test]
fn identical_requests_at_once_give_identical_replies() {
    let _g = serial();
    let engine = parallel(smollm(), 1024);
    let requests = vec![request(chat(QUESTIONS[0]), 48); 4];
    let replies = engine.generate_traced_many(requests, TRACE_TOP).unwrap();
    assert_eq!(replies.len(), 4);
    for (i, reply) in replies.iter().enumerate() {
        assert!(!reply.text.trim().is_empty(), "reply {i} is empty");
        // The same batches round them alike: the same tokens, the same logits.
        assert_eq!(reply.text, replies[0].text, "reply {i}");
        let logits: Vec<f32> = reply.tokens.iter().map(|t| t.logit).collect();
        let first: Vec<f32> = replies[0].tokens.iter().map(|t| t.logit).collect();
        assert_eq!(logits, first, "reply {i}: other logits in the same batch rounds");
        assert_eq!(reply.metrics.prompt_tokens_evaluated, reply.metrics.prompt_tokens);
        // Every step after the prompt decoded the four together. The first token comes
        // from the prompt's step; an end-of-turn token is sampled but not counted as text.
        let m = &reply.metrics;
        let decoded = match m.finish_reason {
            FinishReason::Length => m.completion_tokens - 1,
            _ => m.completion_tokens,
        };
        assert_eq!(m.decode_batch_sequences, [0, 0, 0, decoded], "reply {i}");
    }
}

fn different_requests_match_their_lone_runs(path: std::path::PathBuf, prompts: Vec<Prompt>) {
    let requests: Vec<_> = prompts.into_iter().map(|p| request(p, 40)).collect();
    let references = alone(path.clone(), 1024, &requests);
    let engine = parallel(path, 1024);
    let replies = engine.generate_traced_many(requests, TRACE_TOP).unwrap();
    for (i, (reference, reply)) in references.iter().zip(&replies).enumerate() {
        assert_same_or_near_tie(&format!("request {i} beside 3 others"), true, reference, reply);
        assert_eq!(
            reply.metrics.completion_tokens as usize,
            reply.tokens.len() - usize::from(reply.metrics.finish_reason == FinishReason::Stop)
        );
    }
}

#[test]
fn different_requests_at_once_match_their_lone_runs_smollm2() {
    let _g = serial();
    different_requests_match_their_lone_runs(smollm(), QUESTIONS.iter().map(|q| chat(q)).collect());
}

#[test]
fn different_requests_at_once_match_their_lone_runs_gemma_sliding_window() {
    let _g = serial();
    different_requests_match_their_lone_runs(gemma(), OPENINGS.iter().map(|t| Prompt::Text((*t).into())).collect());
}

#[test]
fn a_reply_that_ends_early_leaves_and_the_others_go_on() {
    let _g = serial();
    let mut requests: Vec<_> = QUESTIONS.iter().map(|q| request(chat(q), 40)).collect();
    requests[1].params.max_tokens = 6;
    let references = alone(smollm(), 1024, &requests);
    let engine = parallel(smollm(), 1024);
    let replies = engine.generate_traced_many(requests, TRACE_TOP).unwrap();
    assert_eq!(replies[1].metrics.completion_tokens, 6);
    assert_eq!(replies[1].metrics.finish_reason, FinishReason::Length);
    for (i, (reference, reply)) in references.iter().zip(&replies).enumerate() {
        assert_same_or_near_tie(
            &format!("request {i}, one leaving after 6 tokens"),
            true,
            reference,
            reply,
        );
    }
}

/// Reads a generation to its end on a thread: its text and how it ended.
fn read_all(events: Receiver<GenerationEvent>) -> std::thread::JoinHandle<(String, Option<GenerationEvent>)> {
    std::thread::spawn(move || {
        let mut text = String::new();
        for event in events.iter() {
            match event {
                GenerationEvent::Delta { text: t } => text.push_str(&t),
                end => return (text, Some(end)),
            }
        }
        (text, None)
    })
}

fn metrics_of(end: Option<GenerationEvent>) -> hearth_core::GenerationMetrics {
    match end {
        Some(GenerationEvent::Done { metrics }) => metrics,
        other => panic!("the reply did not end with its figures: {other:?}"),
    }
}

/// Waits until a step decodes `n` replies together (the scheduler's log, not a sleep);
/// returns the last step logged then. The deadline is a hang's: a step takes tens of ms.
fn until_replying_together(engine: &Engine, n: usize) -> StepPlan {
    let deadline = Instant::now() + HANG;
    loop {
        if let Some(last) = engine.step_plans().pop().filter(|s| s.replying.len() >= n) {
            return last;
        }
        assert!(Instant::now() < deadline, "{n} replies never ran together");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Only a hang takes this long: every wait below is bounded by it, never by a step's time.
const HANG: Duration = Duration::from_secs(120);

/// The sequence whose prompt the steps read most of: a document among questions.
fn most_read(steps: &[StepPlan]) -> (i32, usize) {
    let mut totals = std::collections::BTreeMap::<i32, usize>::new();
    for step in steps {
        for &(seq, n) in &step.reads {
            *totals.entry(seq).or_default() += n;
        }
    }
    totals.into_iter().max_by_key(|&(_, n)| n).expect("a prompt was read")
}

#[test]
fn a_cancelled_stream_stops_at_the_next_step_and_frees_its_slot() {
    let _g = serial();
    let engine = parallel(smollm(), 1024);
    let mut readers = Vec::new();
    let mut cancels = Vec::new();
    for q in QUESTIONS {
        let generation = engine.generate(request(chat(q), 120)).unwrap();
        cancels.push(generation.cancel.clone());
        readers.push(read_all(generation.events));
    }
    // The step logged last before the cancel; the one after it may already be under way.
    let before = until_replying_together(&engine, 4).index;
    cancels[2].cancel();
    let (_, end) = readers.remove(2).join().unwrap();
    let metrics = metrics_of(end);
    assert_eq!(metrics.finish_reason, FinishReason::Cancelled);
    // The reply ends as its step starts; the step is logged once it is decoded.
    let deadline = Instant::now() + HANG;
    while !engine.step_plans().iter().any(|s| !s.cancelled.is_empty()) {
        assert!(Instant::now() < deadline, "no step logged the cancel");
        std::thread::sleep(Duration::from_millis(5));
    }
    let steps = engine.step_plans();
    let ended: Vec<(u64, i32)> = steps
        .iter()
        .flat_map(|s| s.cancelled.iter().map(move |&seq| (s.index, seq)))
        .collect();
    let [(ended_at, seq)] = ended[..] else {
        panic!("one reply is cancelled, in one step: {ended:?}")
    };
    // The cancel is seen at the start of the first step planned after it: the one
    // under way when it came ends as planned, the next leaves the sequence out.
    assert!(
        ended_at <= before + 2,
        "the cancelled reply left at step {ended_at}, cancelled after step {before}"
    );
    assert!(
        steps.iter().all(|s| s.index < ended_at || !s.replying.contains(&seq)),
        "the cancelled sequence {seq} was decoded after it left"
    );
    // The freed slot takes a new request while the others still run: it answers at once.
    let newcomer = engine
        .generate(request(chat("Say hello."), 8))
        .unwrap()
        .collect()
        .unwrap();
    assert!(newcomer.metrics.completion_tokens > 0);
    assert!(
        newcomer.metrics.decode_batch_sequences.len() > 1,
        "the newcomer replied beside the others: {:?}",
        newcomer.metrics
    );
    let steps = engine.step_plans();
    for (i, reader) in readers.into_iter().enumerate() {
        let (text, end) = reader.join().unwrap();
        let metrics = metrics_of(end);
        assert!(!text.trim().is_empty(), "stream {i} is empty");
        assert!(
            matches!(metrics.finish_reason, FinishReason::Length | FinishReason::Stop),
            "stream {i}: {metrics:?}"
        );
    }
    // The others went on: each replying sequence but the cancelled one was decoded in
    // the step that left it out.
    let after = steps.iter().find(|s| s.index == ended_at).expect("the step is logged");
    assert!(after.replying.len() >= 2 && !after.replying.contains(&seq), "{after:?}");
}

/// About 1,500 tokens: a document to summarise.
fn document_to_summarise(max_tokens: u32) -> GenerationRequest {
    let document: String = (0..80)
        .map(|i| format!("Paragraph {i}: the lighthouse keeper wrote down the weather, the ships and the birds. "))
        .collect();
    request(
        chat(&format!("{document}\nSummarise this in one sentence.")),
        max_tokens,
    )
}

#[test]
fn a_short_question_is_answered_while_a_long_prompt_is_read() {
    let _g = serial();
    let engine = parallel(smollm(), 2048);
    let long = document_to_summarise(8);
    let short = request(chat(QUESTIONS[3]), 8);
    let long_tokens = engine.count_tokens(long.prompt.clone()).unwrap();
    let short_tokens = engine.count_tokens(short.prompt.clone()).unwrap();
    // The document comes first; the question joins in the same step.
    let replies = engine
        .generate_traced_many(vec![long.clone(), short.clone()], TRACE_TOP)
        .unwrap();
    let (long_out, short_out) = (&replies[0], &replies[1]);
    // The question is read first and answered while the document is still being read
    // (in steps of about half a second here, not all 1,500 tokens at once): its first
    // token comes from a step before the document's halfway point (the scheduler's
    // log says so, whatever the machine's speed).
    let steps = engine.step_plans();
    let (document, read) = most_read(&steps);
    assert_eq!(read, long_out.metrics.prompt_tokens_evaluated as usize);
    let question_first = steps
        .iter()
        .find(|s| s.sampled.iter().any(|&q| q != document && s.read_by(q) > 0))
        .expect("the question's first token is logged");
    let mut document_read_before = 0;
    for step in steps.iter().take_while(|s| s.index <= question_first.index) {
        document_read_before += step.read_by(document);
    }
    assert!(
        document_read_before * 2 < read,
        "question ({short_tokens} tokens) answered after {document_read_before} of the document's {long_tokens} tokens were read: {question_first:?}"
    );
    assert_eq!(short_out.metrics.prompt_steps, 1, "{:?}", short_out.metrics);
    assert!(long_out.metrics.prompt_steps > 2, "{:?}", long_out.metrics);
    // Both are right: each equals its lone run up to a near-tie.
    let references = alone(smollm(), 2048, &[long, short]);
    for (what, reference, out) in [
        ("document", &references[0], long_out),
        ("question", &references[1], short_out),
    ] {
        assert_same_or_near_tie(what, true, reference, out);
    }
}

#[test]
fn a_long_prompt_is_read_without_freezing_the_streams() {
    let _g = serial();
    let engine = parallel(smollm(), 2048);
    let mut readers = Vec::new();
    // Questions with long answers (greedy SmolLM2 here: 400, 262 and 400 tokens), so that
    // every stream still runs well into the reading (a short answer, such as the
    // tomato tips' 60 tokens, can end before it starts).
    for q in [QUESTIONS[0], QUESTIONS[1], LONG_ANSWER] {
        readers.push(read_all(engine.generate(request(chat(q), 400)).unwrap().events));
    }
    until_replying_together(&engine, 3);
    let long = document_to_summarise(16);
    let long_tokens = engine.count_tokens(long.prompt.clone()).unwrap();
    assert!((1400..2000).contains(&long_tokens), "{long_tokens} tokens");
    let newcomer = engine.generate_traced(long.clone(), TRACE_TOP).unwrap();
    for reader in readers {
        let (_, end) = reader.join().unwrap();
        let m = metrics_of(end);
        assert!(
            matches!(m.finish_reason, FinishReason::Length | FinishReason::Stop),
            "{m:?}"
        );
    }
    // The rules, checked on the scheduler's plan (a busy machine stretches every step,
    // but does not change what a step was planned to hold).
    let steps = engine.step_plans();
    let (document, read) = most_read(&steps);
    assert_eq!(read, newcomer.metrics.prompt_tokens_evaluated as usize);
    let reading: Vec<&StepPlan> = steps.iter().filter(|s| s.read_by(document) > 0).collect();
    assert_eq!(reading.len() as u32, newcomer.metrics.prompt_steps);
    // 1. The document is read in small chunks, not in one go.
    assert!(
        reading.len() >= 20,
        "a document beside replies is read in small chunks: {} steps",
        reading.len()
    );
    // 2. Each step that reads it beside replies holds no more than a document may take
    //    beside them, and is predicted to cost at most 1.75 decode steps: the replies'
    //    next token waits under two decode steps as the pace sees the machine.
    let beside: Vec<&&StepPlan> = reading.iter().filter(|s| !s.replying.is_empty()).collect();
    assert!(
        beside.len() >= 20,
        "the streams ran only {} steps while the document was read",
        beside.len()
    );
    for step in &beside {
        let chunk = step.read_by(document);
        assert!(chunk <= step.beside_budget, "{step:?}");
        let (Some(decode), Some(predicted)) = (step.decode_ms, step.predicted_ms) else {
            panic!("a step beside replies is planned from measured costs: {step:?}")
        };
        assert!(
            chunk <= MIN_PROMPT_CHUNK || predicted <= (1.0 + DOCUMENT_CHUNK_DECODE_STEPS) * decode * (1.0 + 1e-9),
            "a chunk of {chunk} tokens was predicted at {predicted:.1} ms beside a decode step of {decode:.1} ms: {step:?}"
        );
    }
    // 3. Every replying sequence gets a token in every step, and none is left out of a
    //    step while its reply runs (the steps it is decoded in follow one another).
    for step in &steps {
        assert!(step.replying.iter().all(|seq| step.sampled.contains(seq)), "{step:?}");
    }
    let streams: std::collections::BTreeSet<i32> = beside.iter().flat_map(|s| s.replying.iter().copied()).collect();
    assert!(streams.len() >= 2, "streams beside the reading: {streams:?}");
    for &seq in &streams {
        let decoded: Vec<u64> = steps
            .iter()
            .filter(|s| s.replying.contains(&seq))
            .map(|s| s.index)
            .collect();
        let (first, last) = (decoded[0], decoded[decoded.len() - 1]);
        assert_eq!(
            decoded.len() as u64,
            last - first + 1,
            "sequence {seq} was left out of a step while it replied"
        );
    }
    // What the machine did, for the log (the figures belong to `hearth bench serve
    // --long-prompt`, which measures the gaps the streams saw).
    let worst = beside
        .iter()
        .filter_map(|s| Some(s.measured_ms / s.decode_ms?))
        .fold(0.0f64, f64::max);
    eprintln!(
        "read {long_tokens} prompt tokens in {} steps ({} beside replies); the longest took {worst:.1} decode steps",
        reading.len(),
        beside.len()
    );
    // And the newcomer answers as it does alone.
    let reference = alone(smollm(), 2048, &[long]).remove(0);
    assert_same_or_near_tie("the long prompt beside 3 streams", true, &reference, &newcomer);
}

#[test]
fn questions_arriving_beside_a_reply_are_each_read_in_one_step() {
    let _g = serial();
    let requests: Vec<_> = QUESTIONS[1..].iter().map(|q| request(chat(q), 24)).collect();
    let references = alone(smollm(), 1024, &requests);
    let engine = parallel(smollm(), 1024);
    let companion = engine.generate(request(chat(QUESTIONS[0]), 200)).unwrap();
    let mut events = companion.events.iter();
    assert!(
        matches!(events.next(), Some(GenerationEvent::Delta { .. })),
        "the companion is replying"
    );
    // Three questions join while it replies: each is read whole in a step beside it
    // (its asker waits for one step, not for chunks of three quarters of a decode step),
    // as far as the step budget allows.
    let replies = engine.generate_traced_many(requests, TRACE_TOP).unwrap();
    let companion = metrics_of(events.find(|e| !matches!(e, GenerationEvent::Delta { .. })));
    assert!(
        companion.decode_batch_sequences.len() > 1,
        "the questions were answered while the companion replied: {companion:?}"
    );
    // The rule, on the plan: a question the step's budget holds is read in that one
    // step. (The budget is the pace's decision from measured costs: on a machine so
    // busy that a step's measured cost balloons it can fall below a question's length,
    // and then the question is read in budget-sized chunks, which is also checked.)
    let steps = engine.step_plans();
    let beside: Vec<&StepPlan> = steps
        .iter()
        .filter(|s| !s.replying.is_empty() && s.prompt_tokens() > 0)
        .collect();
    let questions: std::collections::BTreeSet<i32> =
        beside.iter().flat_map(|s| s.reads.iter().map(|&(q, _)| q)).collect();
    assert_eq!(
        questions.len(),
        replies.len(),
        "questions read beside the reply: {questions:?}"
    );
    for &q in &questions {
        let reading: Vec<&&StepPlan> = beside.iter().filter(|s| s.read_by(q) > 0).collect();
        let total: usize = reading.iter().map(|s| s.read_by(q)).sum();
        for step in &reading {
            assert!(step.prompt_tokens() <= step.step_budget, "{step:?}");
        }
        if reading.len() > 1 {
            assert!(
                reading[0].step_budget < total,
                "question (sequence {q}, {total} tokens) was split although the step budget held it: {reading:?}"
            );
            eprintln!(
                "question (sequence {q}, {total} tokens) read in {} steps: the busy machine's budget was {}",
                reading.len(),
                reading[0].step_budget
            );
        }
    }
    for (i, (reference, reply)) in references.iter().zip(&replies).enumerate() {
        let m = &reply.metrics;
        assert!(m.prompt_steps >= 1, "question {i}: {m:?}");
        assert_same_or_near_tie(&format!("question {i} beside a reply"), true, reference, reply);
    }
}

#[test]
fn two_chats_alternating_on_two_slots_evaluate_only_their_new_turns() {
    let _g = serial();
    let engine = Engine::load(EngineConfig::new(smollm()).with_n_ctx(2048).with_parallel(2)).unwrap();
    let system = ChatMessage::system("You are a helpful assistant.");
    let mut chats = [vec![system.clone()], vec![system]];
    let turns = [
        ["Name three colours of the rainbow.", "Name three kinds of trees."],
        [
            "Which of them is the colour of the sky?",
            "Which of them loses its leaves?",
        ],
        ["And which one is the colour of grass?", "And which one grows tallest?"],
    ];
    for (turn, pair) in turns.iter().enumerate() {
        for (chat, q) in chats.iter_mut().zip(pair) {
            chat.push(ChatMessage::user(*q));
            let out = engine
                .generate(request(Prompt::Chat(chat.clone()), 24))
                .unwrap()
                .collect()
                .unwrap();
            chat.push(ChatMessage::assistant(out.text.clone()));
            let m = &out.metrics;
            if turn == 0 {
                assert_eq!(m.prompt_tokens_evaluated, m.prompt_tokens, "first turn");
            } else {
                let new_turn = engine.count_tokens(Prompt::Text((*q).to_string())).unwrap();
                assert!(
                    m.prompt_tokens_evaluated <= new_turn + 16,
                    "turn {turn} {q:?}: evaluated {} of {} prompt tokens (the new message is {new_turn})",
                    m.prompt_tokens_evaluated,
                    m.prompt_tokens
                );
            }
        }
    }
}

#[test]
fn bad_requests_are_refused_without_touching_the_streams() {
    let _g = serial();
    let engine = parallel(smollm(), 1024);
    let mut readers = Vec::new();
    for q in &QUESTIONS[..3] {
        readers.push(read_all(engine.generate(request(chat(q), 60)).unwrap().events));
    }
    let long: String = "word ".repeat(1500);
    match engine.generate(request(Prompt::Text(long), 8)) {
        Err(EngineError::ContextOverflow { needed, limit }) => {
            assert_eq!(limit, 1024, "each sequence has the configured context");
            assert!(needed > limit);
        }
        other => panic!("an overflowing prompt was not refused: {other:?}"),
    }
    let mut bad = request(chat("hi"), 8);
    bad.params.temperature = -1.0;
    assert!(matches!(engine.generate(bad), Err(EngineError::InvalidSampling(_))));
    for reader in readers {
        let (text, end) = reader.join().unwrap();
        let metrics = metrics_of(end);
        assert!(!text.is_empty());
        assert!(matches!(
            metrics.finish_reason,
            FinishReason::Length | FinishReason::Stop
        ));
    }
}

/// Prose that repeats: continued by copying, so guesses from the conversation hold.
const PASSAGE: &str = "The lighthouse keeper climbed the spiral stairs every evening just before sunset. \
From the lantern room he could see the fishing boats returning across the grey water. \
Each boat carried a lamp at its bow, and he counted them one by one as they rounded the point.";

#[test]
fn a_sequence_replying_alone_drafts_and_beside_another_too() {
    let _g = serial();
    let copy = request(Prompt::Text(format!("{PASSAGE} {PASSAGE} {PASSAGE}")), 96);
    let reference = alone(smollm(), 1024, std::slice::from_ref(&copy)).remove(0);
    // Every guess is verified (`min_draft`): whether a guess pays is the measured step
    // costs' call, which differs by machine and load (unit tests of `plan_beside` and
    // `lone_length` check it on made-up costs); here, what verifying does to replies.
    let engine = Engine::load(
        EngineConfig::new(smollm())
            .with_n_ctx(1024)
            .with_parallel(SEQUENCES)
            .with_min_draft(hearth_engine::MAX_DRAFT as u32),
    )
    .expect("model loads");
    let out = engine.generate_traced(copy.clone(), TRACE_TOP).unwrap();
    // The drafted reply is the undrafted one up to a near-tie (the rule of issue 8).
    assert_same_or_near_tie("a lone copy on 4 sequences", true, &reference, &out);
    let m = &out.metrics;
    assert_eq!(m.decode_batch_sequences.len(), 1, "alone throughout: {m:?}");
    assert!(
        m.draft_accepted >= 24 && m.draft_accepted <= m.draft_tokens,
        "{} of {} guessed tokens held",
        m.draft_accepted,
        m.draft_tokens
    );

    // Beside another replying sequence a guess's rows widen the batch, each sequence
    // verifying as many; both copy, so both have guesses and they nearly always hold.
    let companion = engine
        .generate(request(Prompt::Text(format!("{PASSAGE} {PASSAGE}")), 320))
        .unwrap();
    let mut events = companion.events.iter();
    assert!(
        matches!(events.next(), Some(GenerationEvent::Delta { .. })),
        "the companion is replying"
    );
    let beside = engine.generate_traced(copy.clone(), TRACE_TOP).unwrap();
    let companion_end = events.find(|e| !matches!(e, GenerationEvent::Delta { .. }));
    let companion = metrics_of(companion_end);
    let m = &beside.metrics;
    eprintln!(
        "beside the companion: {} of {} guessed tokens held, {} tokens decoded; companion {} of {}",
        m.draft_accepted,
        m.draft_tokens,
        m.decode_batch_sequences.iter().sum::<u32>(),
        companion.draft_accepted,
        companion.draft_tokens
    );
    assert_eq!(
        m.decode_batch_sequences.first(),
        Some(&0),
        "the copy always replied beside the companion: {m:?} (companion {companion:?})"
    );
    assert!(
        m.draft_accepted > 0 && m.draft_accepted <= m.draft_tokens,
        "the copy verified guesses beside the companion: {m:?}"
    );
    assert_same_or_near_tie("a copy beside another sequence", true, &reference, &beside);

    // Drafting off (`--draft 0`): a lone reply guesses nothing.
    let undrafted = Engine::load(EngineConfig {
        max_draft: 0,
        ..EngineConfig::new(smollm()).with_n_ctx(1024).with_parallel(SEQUENCES)
    })
    .expect("model loads");
    let plain = undrafted.generate_traced(copy, TRACE_TOP).unwrap();
    assert_eq!(plain.metrics.draft_tokens, 0);
    assert_same_or_near_tie("a lone copy on 4 sequences, undrafted", true, &reference, &plain);
}
