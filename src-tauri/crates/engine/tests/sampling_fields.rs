//! OpenAI's sampling fields change a greedy reply where they should: a bias against
//! the pick, and penalties on a reply that repeats itself. Each comparison is between
//! two runs of the same shapes (undrafted, one sequence), so any difference is the
//! field's.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{shared_smollm, TRACE_TOP};
use hearth_core::{ErrorCode, SamplingParams};
use hearth_engine::{GenerationRequest, Prompt, TracedOutput};

fn traced(prompt: &str, params: SamplingParams) -> TracedOutput {
    shared_smollm()
        .generate_traced(
            GenerationRequest {
                prompt: Prompt::Text(prompt.into()),
                params,
            },
            TRACE_TOP,
        )
        .unwrap()
}

#[test]
fn a_bias_against_the_greedy_pick_gives_the_runner_up_and_one_for_a_token_forces_it() {
    let prompt = "The capital of France is";
    let plain = traced(prompt, SamplingParams::greedy(1));
    let first = &plain.tokens[0];
    let runner_up = first.top[1].0;
    let banned = traced(
        prompt,
        SamplingParams {
            logit_bias: vec![(first.token, -100.0)],
            ..SamplingParams::greedy(1)
        },
    );
    assert_eq!(
        banned.tokens[0].token, runner_up,
        "the best of the rest: {:?}",
        first.top
    );

    let unlikely = first.top[TRACE_TOP - 1].0;
    let forced = traced(
        prompt,
        SamplingParams {
            logit_bias: vec![(unlikely, 100.0)],
            ..SamplingParams::greedy(1)
        },
    );
    assert_eq!(forced.tokens[0].token, unlikely);
}

/// The first position of `reply` where a penalty of `penalty` on the tokens it already
/// holds must change the pick: the pick is one of them, and a candidate that is not is
/// within `penalty` of it (by half a logit to spare, for rounding on other machines).
fn first_sure_change(reply: &TracedOutput, penalty: f32) -> Option<usize> {
    (1..reply.tokens.len()).find(|&i| {
        let before: Vec<i32> = reply.tokens[..i].iter().map(|t| t.token).collect();
        let pick = &reply.tokens[i];
        before.contains(&pick.token)
            && pick
                .top
                .iter()
                .any(|&(c, logit)| !before.contains(&c) && pick.logit - logit < penalty - 0.5)
    })
}

#[test]
fn penalties_change_a_reply_where_its_logits_say_they_must() {
    let prompt = "The sea is calm today. The sea is blue and the sky is blue. The sea";
    let plain = traced(prompt, SamplingParams::greedy(48));
    let at = first_sure_change(&plain, 2.0);
    assert!(
        at.is_some(),
        "the test needs a reply whose picks repeat near a tie: {:?}",
        plain.text
    );
    // Identical up to that position (same shapes, same machine), then the penalised pick
    // is below the unpenalised candidate: the replies differ there or before.
    for params in [
        SamplingParams {
            frequency_penalty: 2.0,
            ..SamplingParams::greedy(48)
        },
        SamplingParams {
            presence_penalty: 2.0,
            ..SamplingParams::greedy(48)
        },
    ] {
        let penalised = traced(prompt, params.clone());
        let ids = |r: &TracedOutput| r.tokens.iter().map(|t| t.token).collect::<Vec<_>>();
        assert_ne!(
            ids(&penalised),
            ids(&plain),
            "{params:?} changed nothing: {:?}",
            penalised.text
        );
    }
}

#[test]
fn a_bias_for_a_token_the_model_does_not_have_is_refused() {
    let err = shared_smollm()
        .generate_text(GenerationRequest {
            prompt: Prompt::Text("Hi".into()),
            params: SamplingParams {
                logit_bias: vec![(10_000_000, 5.0)],
                ..SamplingParams::greedy(1)
            },
        })
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidSampling);
    assert!(err.to_string().contains("logit_bias"), "{err}");
}
