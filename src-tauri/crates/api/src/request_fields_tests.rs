//! Every field of OpenAI's chat and completion requests: honoured (and how), accepted
//! with no effect by design, or refused with a 400 that names it.
#![allow(clippy::unwrap_used)]

use serde_json::{json, Value};

use crate::openai::{ChatCompletionRequest, CompletionRequest};
use hearth_core::{GenerateRequest, SamplingParams};

const CAP: u32 = 4096;

fn chat_with(field: &str, value: Value) -> Result<GenerateRequest, crate::error::ApiError> {
    let mut body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
    body[field] = value;
    ChatCompletionRequest::parse(&serde_json::to_vec(&body).unwrap())?.to_generate(CAP)
}

fn completion_with(field: &str, value: Value) -> Result<GenerateRequest, crate::error::ApiError> {
    let mut body = json!({"model": "m", "prompt": "hi"});
    body[field] = value;
    CompletionRequest::parse(&serde_json::to_vec(&body).unwrap())?.to_generate(CAP)
}

fn params(result: Result<GenerateRequest, crate::error::ApiError>) -> SamplingParams {
    match result {
        Ok(request) => request.params,
        Err(e) => panic!("refused: {} ({:?})", e.message, e.param),
    }
}

fn refused(field: &str, result: Result<GenerateRequest, crate::error::ApiError>) -> String {
    match result {
        Ok(_) => panic!("{field} was accepted"),
        Err(e) => {
            assert_eq!(e.status, 400, "{field}");
            assert_eq!(e.param.as_deref(), Some(field), "{}", e.message);
            e.message
        }
    }
}

#[test]
fn sampling_fields_are_honoured() {
    let p = params(chat_with("frequency_penalty", json!(0.5)));
    assert_eq!(p.frequency_penalty, 0.5);
    let p = params(chat_with("presence_penalty", json!(-1.25)));
    assert_eq!(p.presence_penalty, -1.25);
    let p = params(chat_with("logit_bias", json!({"15": -100, "42": 2.5})));
    assert_eq!(p.logit_bias, [(15, -100.0), (42, 2.5)]);
    let p = params(completion_with("logit_bias", json!({"7": 100})));
    assert_eq!(p.logit_bias, [(7, 100.0)]);
    for (field, value, check) in [
        (
            "temperature",
            json!(0.25),
            (|p: &SamplingParams| p.temperature == 0.25) as fn(&SamplingParams) -> bool,
        ),
        ("top_p", json!(0.5), |p| p.top_p == 0.5),
        ("seed", json!(7), |p| p.seed == 7),
        ("max_tokens", json!(9), |p| p.max_tokens == 9),
        ("max_completion_tokens", json!(11), |p| p.max_tokens == 11),
        ("stop", json!(["\n"]), |p| p.stop == ["\n"]),
        ("n", json!(1), |p| p.max_tokens == CAP),
    ] {
        assert!(check(&params(chat_with(field, value.clone()))), "{field} = {value}");
    }
}

#[test]
fn labels_for_openais_own_service_are_accepted_and_change_nothing() {
    let plain = params(chat_with("user", Value::Null));
    for (field, value) in [
        ("user", json!("u-1")),
        ("metadata", json!({"k": "v"})),
        ("store", json!(true)),
        ("service_tier", json!("auto")),
        ("prompt_cache_key", json!("k")),
        ("safety_identifier", json!("s")),
        ("parallel_tool_calls", json!(true)),
        ("stream", json!(true)),
        ("stream_options", json!({"include_usage": true})),
    ] {
        assert_eq!(params(chat_with(field, value)), plain, "{field}");
    }
}

#[test]
fn what_cannot_be_honoured_yet_is_refused_by_name_and_its_off_value_is_accepted() {
    let tool = json!([{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]);
    for (field, on, off) in [
        ("tools", tool.clone(), json!([])),
        ("functions", json!([{"name": "f"}]), json!([])),
        ("function_call", json!({"name": "f"}), json!("none")),
        (
            "response_format",
            json!({"type": "json_object"}),
            json!({"type": "text"}),
        ),
        ("top_logprobs", json!(3), json!(0)),
        ("logprobs", json!(true), json!(false)),
        ("audio", json!({"voice": "alloy", "format": "wav"}), Value::Null),
        ("modalities", json!(["text", "audio"]), json!(["text"])),
        ("prediction", json!({"type": "content", "content": "x"}), Value::Null),
        ("reasoning_effort", json!("high"), Value::Null),
        ("verbosity", json!("low"), Value::Null),
        ("web_search_options", json!({}), Value::Null),
        ("n", json!(2), json!(1)),
    ] {
        let message = refused(field, chat_with(field, on));
        assert!(!message.is_empty());
        params(chat_with(field, off));
    }
    for (field, on, off) in [
        ("suffix", json!("}"), json!("")),
        ("best_of", json!(3), json!(1)),
        ("echo", json!(true), json!(false)),
    ] {
        refused(field, completion_with(field, on));
        params(completion_with(field, off));
    }
    // tool_choice means nothing without tools; with them it is refused with them.
    params(chat_with("tool_choice", json!("required")));
    let mut body =
        json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "tools": tool, "tool_choice": "auto"});
    let err = ChatCompletionRequest::parse(&serde_json::to_vec(&body).unwrap())
        .and_then(|r| r.to_generate(CAP))
        .unwrap_err();
    assert_eq!(err.param.as_deref(), Some("tools"));
    body["tools"] = json!([]);
    body["tool_choice"] = json!({"type": "function", "function": {"name": "f"}});
    ChatCompletionRequest::parse(&serde_json::to_vec(&body).unwrap())
        .and_then(|r| r.to_generate(CAP))
        .expect("no tools: nothing to choose");
}

#[test]
fn bad_penalties_and_biases_say_what_is_allowed() {
    let message = refused("frequency_penalty", chat_with("frequency_penalty", json!(2.5)));
    assert!(message.contains("between -2 and 2"), "{message}");
    for bad in [json!({"x": 1}), json!({"-3": 1}), json!({"5": 101}), json!({"5": "a"})] {
        let message = refused("logit_bias", chat_with("logit_bias", bad));
        assert!(message.contains("logit_bias"), "{message}");
    }
}
