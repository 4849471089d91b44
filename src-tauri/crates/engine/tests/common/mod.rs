//! Shared helpers for the real-model tests: the models `make models` installs.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, OnceLock};

use hearth_engine::{Engine, EngineConfig};

pub fn model_path(file: &str) -> PathBuf {
    let path = hearth_core::paths::models_dir().join(file);
    assert!(
        path.exists(),
        "{} is missing: run `make models` (tests use the real default models)",
        path.display()
    );
    path
}

pub fn smollm() -> PathBuf {
    model_path(hearth_core::paths::DEFAULT_CHAT_MODEL)
}

pub fn gemma() -> PathBuf {
    model_path(hearth_core::paths::DEFAULT_BASE_MODEL)
}

/// Tests that time things run one at a time: two decode loops on 2 cores would
/// measure each other.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

pub fn load(path: PathBuf, n_ctx: u32) -> Engine {
    Engine::load(EngineConfig::new(path).with_n_ctx(n_ctx)).expect("model loads")
}

/// An engine that never drafts: every reply step is one token, so two replies from the
/// same cache state run in the same batch shapes and are identical by construction.
/// (With drafting, the draft lengths follow step times measured as the engine runs, so
/// two runs may batch differently; `drafting.rs` tests what that may change.)
pub fn load_undrafted(path: PathBuf, n_ctx: u32) -> Engine {
    Engine::load(EngineConfig {
        max_draft: 0,
        ..EngineConfig::new(path).with_n_ctx(n_ctx)
    })
    .expect("model loads")
}

/// One engine per model for the whole test binary; the engine serialises requests.
/// Undrafted, so that replies from the same cache state compare exactly.
pub fn shared_smollm() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| load_undrafted(smollm(), 4096))
}

pub fn shared_gemma() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| load_undrafted(gemma(), 4096))
}

/// Candidates kept per token when a test traces a reply.
pub const TRACE_TOP: usize = 8;

/// How much rounding may move the logits of one context between two ways of computing
/// it: a draft verified in a batch, a prompt read in one batch or from a reused cache, a
/// grown KV cache, and GGML's AVX2 or AVX-512 kernels. Logits are compared as the
/// difference between two candidates, because a shift of every logit by the same amount
/// changes no pick (softmax and argmax ignore it).
///
/// Measured with `TRACE_STATS=1` over every token these tests compare (about 850
/// positions a run; the best logit is 22-32 on both models), on an AMD EPYC with AVX-512:
/// the lead of the pick over the runner-up moved by at most 0.32 on SmolLM2 and 0.70 on
/// Gemma with the native (AVX-512) kernels, and by at most 1.0 (SmolLM2, a follow-up on a
/// cache filled by drafted steps; Gemma 0.93) with GGML built for AVX2 only
/// (`make test-engine-avx2`). The two best candidates are usually further apart than
/// that (10th percentile 2.2 on SmolLM2, 3.6 on Gemma), and the replies that did part
/// here parted where they were 0.006 (AVX-512) and 0.29 (AVX2) apart. 2.0 is twice the
/// largest movement seen on either kernel path, for CPUs whose kernels differ again.
pub const MAX_PAIR_DRIFT: f32 = 2.0;

/// A single logit moves more than a lead does (rounding in the final norm shifts the
/// whole row): at most 0.54 on SmolLM2 and 1.04 on Gemma on either kernel path here. A
/// sanity bound (about three times that): the same context was computed.
pub const MAX_LOGIT_DRIFT: f32 = 3.0;

/// Where two traced replies to the same request parted, and by how much.
#[derive(Debug, Clone, PartialEq)]
pub struct Divergence {
    pub at: usize,
    pub reference: String,
    pub other: String,
    /// How far the reference's pick was ahead of the other's pick in the reference run.
    pub gap: f32,
}

/// The change between two runs in how far `a` is ahead of `b`.
fn pair_drift(x: &hearth_engine::TokenTrace, y: &hearth_engine::TokenTrace, a: i32, b: i32) -> Option<f32> {
    Some(((x.logit_of(a)? - x.logit_of(b)?) - (y.logit_of(a)? - y.logit_of(b)?)).abs())
}

/// Checks that `other` is the reply `reference` is, up to rounding:
/// - at every token both picked alike, the same context was computed: the picked
///   token's logit moved by at most [`MAX_LOGIT_DRIFT`] and its lead over the
///   reference's runner-up by at most [`MAX_PAIR_DRIFT`];
/// - if they part, everything before is equal and the two picks were near-tied. Greedy:
///   each run's pick led the other run's pick by at most [`MAX_PAIR_DRIFT`] (rounding
///   swapped their order, so the two leads add up to how far rounding moved the pair).
///   Sampled: the pair moved by at most [`MAX_PAIR_DRIFT`], so the draw saw the same
///   distribution up to rounding.
///
/// Equal replies also have equal text, length and finish. Returns where they parted, and
/// prints it for the log.
pub fn assert_same_or_near_tie(
    what: &str,
    greedy: bool,
    reference: &hearth_engine::TracedOutput,
    other: &hearth_engine::TracedOutput,
) -> Option<Divergence> {
    for out in [reference, other] {
        assert_reply_is_its_picks(what, out);
    }
    let (a, b) = (&reference.tokens, &other.tokens);
    let (mut logit_drift, mut pair) = (0.0f32, 0.0f32);
    let stats = std::env::var_os("TRACE_STATS").is_some();
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        if x.token == y.token {
            let d = (x.logit - y.logit).abs();
            let runner_up = x.top.iter().map(|(t, _)| *t).find(|t| *t != x.token);
            let p = runner_up.and_then(|r| pair_drift(x, y, x.token, r)).unwrap_or(0.0);
            if stats {
                eprintln!(
                    "STAT {what:.20} pos {i} logit {d:.4} pair {p:.4} best {:.2} gap {:.3}",
                    x.logit,
                    x.top_gap().unwrap_or(f32::NAN)
                );
            }
            assert!(
                d <= MAX_LOGIT_DRIFT && p <= MAX_PAIR_DRIFT,
                "{what}: token {i} ({:?}) has logit {} in one run and {} in the other, its lead \
                 over the runner-up moved by {p}: not the same context (bounds {MAX_LOGIT_DRIFT}, {MAX_PAIR_DRIFT})",
                x.piece,
                x.logit,
                y.logit
            );
            logit_drift = logit_drift.max(d);
            pair = pair.max(p);
            continue;
        }
        let text_before: String = a[..i].iter().map(|t| t.piece.as_str()).collect();
        let (Some(ref_of_other), Some(other_of_ref)) = (x.logit_of(y.token), y.logit_of(x.token)) else {
            panic!(
                "{what}: the replies part at token {i} after {text_before:?}: {:?} vs {:?}, \
                 and neither was among the other run's {TRACE_TOP} best candidates",
                x.piece, y.piece
            );
        };
        let gap = x.logit - ref_of_other;
        let moved = pair_drift(x, y, x.token, y.token).unwrap_or(f32::INFINITY);
        if greedy {
            let other_gap = y.logit - other_of_ref;
            assert!(
                gap <= MAX_PAIR_DRIFT && other_gap <= MAX_PAIR_DRIFT,
                "{what}: the replies part at token {i} after {text_before:?}: {:?} vs {:?} \
                 with leads of {gap} and {other_gap}: not a near-tie (bound {MAX_PAIR_DRIFT})",
                x.piece,
                y.piece
            );
        } else {
            assert!(
                moved <= MAX_PAIR_DRIFT,
                "{what}: the sampled replies part at token {i} after {text_before:?}: {:?} vs {:?}, \
                 and their logits moved by {moved} relative to each other (bound {MAX_PAIR_DRIFT})",
                x.piece,
                y.piece
            );
        }
        eprintln!(
            "{what}: parted at token {i} of {}: {:?} vs {:?}, lead {gap:.4} in the reference run \
             (bound {MAX_PAIR_DRIFT}); before it, logits moved by at most {logit_drift:.4}, leads by {pair:.4}",
            a.len(),
            x.piece,
            y.piece
        );
        return Some(Divergence {
            at: i,
            reference: x.piece.clone(),
            other: y.piece.clone(),
            gap,
        });
    }
    assert_eq!(a.len(), b.len(), "{what}: the same tokens, but one reply is longer");
    assert_eq!(reference.text, other.text, "{what}: the same tokens, but other text");
    assert_eq!(reference.metrics.completion_tokens, other.metrics.completion_tokens);
    assert_eq!(reference.metrics.finish_reason, other.metrics.finish_reason);
    eprintln!(
        "{what}: the same {} tokens; logits moved by at most {logit_drift:.4}, leads by {pair:.4}",
        a.len()
    );
    None
}

/// The reply's text is the sampler's picks, in order: no token got into the reply that
/// the sampler did not pick at its position (a draft is only a guess until it is).
/// Pieces that split a character are decoded lossily, so such replies are not compared.
pub fn assert_reply_is_its_picks(what: &str, out: &hearth_engine::TracedOutput) {
    let picks: String = out.tokens.iter().map(|t| t.piece.as_str()).collect();
    if picks.contains('\u{FFFD}') {
        return;
    }
    assert!(
        picks.starts_with(&out.text),
        "{what}: the reply is not what the sampler picked:\n reply {:?}\n picks {:?}",
        out.text,
        picks
    );
    // Picks beyond the text: an end-of-generation token, or a stop string (not shown).
    let rest = &picks[out.text.len()..];
    assert!(
        rest.is_empty() || out.metrics.finish_reason == hearth_core::FinishReason::Stop,
        "{what}: picks beyond the reply: {rest:?} ({:?})",
        out.metrics.finish_reason
    );
}

/// A traced reply from an empty cache.
pub fn traced_cold(
    engine: &Engine,
    prompt: &hearth_engine::Prompt,
    params: &hearth_core::SamplingParams,
) -> hearth_engine::TracedOutput {
    engine.reset_cache().unwrap();
    traced(engine, prompt, params)
}

/// A traced reply from whatever the engine has cached.
pub fn traced(
    engine: &Engine,
    prompt: &hearth_engine::Prompt,
    params: &hearth_core::SamplingParams,
) -> hearth_engine::TracedOutput {
    engine
        .generate_traced(
            hearth_engine::GenerationRequest {
                prompt: prompt.clone(),
                params: params.clone(),
            },
            TRACE_TOP,
        )
        .unwrap()
}
