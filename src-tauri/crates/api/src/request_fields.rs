//! OpenAI request fields Hearth cannot honour yet, refused by name: a client that asks
//! for tools, a JSON schema or log-probabilities must not get prose that looks like the
//! model's free choice (an agent reads `tool_calls: null` as "the model chose not to
//! call one"). Each is accepted only at its "off" value, which clients send by default.
//! Fields that only label a request for OpenAI's own service (`user`, `metadata`,
//! `store`, `service_tier`, `prompt_cache_key`, `safety_identifier`) change no output
//! and are accepted as they are.

use serde::Deserialize;
use serde_json::Value;

use crate::error::ApiError;

/// The fields a request may carry only at their "off" value, as sent.
#[derive(Debug, Default, Deserialize)]
pub struct RefusedFields {
    tools: Option<Value>,
    tool_choice: Option<Value>,
    functions: Option<Value>,
    function_call: Option<Value>,
    response_format: Option<Value>,
    top_logprobs: Option<Value>,
    suffix: Option<Value>,
    best_of: Option<Value>,
    audio: Option<Value>,
    modalities: Option<Value>,
    prediction: Option<Value>,
    reasoning_effort: Option<Value>,
    verbosity: Option<Value>,
    web_search_options: Option<Value>,
}

impl RefusedFields {
    /// A 400 naming the first field set to something Hearth would not do.
    pub fn check(&self) -> Result<(), ApiError> {
        let off = |v: &Option<Value>, also: &[Value]| match v {
            None | Some(Value::Null) => true,
            Some(v) => also.contains(v),
        };
        let empty_list = || Value::Array(Vec::new());
        let word = |w: &str| Value::String(w.to_owned());
        let checks: [(&str, bool, &str); 14] = [
            ("tools", off(&self.tools, &[empty_list()]), "tool calling is not supported yet: leave `tools` out"),
            ("tool_choice", off(&self.tool_choice, &[word("none"), word("auto")]) || self.tools_off(), "tool calling is not supported yet: leave `tool_choice` out"),
            ("functions", off(&self.functions, &[empty_list()]), "function calling is not supported yet: leave `functions` out"),
            ("function_call", off(&self.function_call, &[word("none"), word("auto")]), "function calling is not supported yet: leave `function_call` out"),
            ("response_format", off(&self.response_format, &[serde_json::json!({"type": "text"})]), "structured output (JSON mode, JSON schemas) is not supported yet: leave `response_format` out"),
            ("top_logprobs", off(&self.top_logprobs, &[Value::from(0)]), "log-probabilities are not supported yet: leave `top_logprobs` out"),
            ("suffix", off(&self.suffix, &[word("")]), "`suffix` (fill in the middle) is not supported yet: send the text before the gap as the prompt"),
            ("best_of", off(&self.best_of, &[Value::from(1)]), "only best_of = 1 is supported"),
            ("audio", off(&self.audio, &[]), "audio output is not supported: leave `audio` out"),
            ("modalities", off(&self.modalities, &[serde_json::json!(["text"])]), "only text output is supported: leave `modalities` out or send [\"text\"]"),
            ("prediction", off(&self.prediction, &[]), "predicted outputs are not supported: leave `prediction` out (Hearth drafts from the conversation by itself)"),
            ("reasoning_effort", off(&self.reasoning_effort, &[]), "reasoning effort is not supported: leave `reasoning_effort` out"),
            ("verbosity", off(&self.verbosity, &[]), "verbosity is not supported: leave `verbosity` out and ask for brevity in the prompt"),
            ("web_search_options", off(&self.web_search_options, &[]), "Hearth runs offline and cannot search the web: leave `web_search_options` out"),
        ];
        match checks.iter().find(|(_, ok, _)| !ok) {
            Some((name, _, why)) => Err(ApiError::invalid_request(Some(name), *why)),
            None => Ok(()),
        }
    }

    /// No tools are offered, so any `tool_choice` changes nothing.
    fn tools_off(&self) -> bool {
        matches!(&self.tools, None | Some(Value::Null))
            || self
                .tools
                .as_ref()
                .is_some_and(|t| t.as_array().is_some_and(Vec::is_empty))
    }
}

/// OpenAI's `logit_bias`: token ids (as the object's keys) to a bias in [-100, 100].
pub fn logit_bias(field: Option<&serde_json::Map<String, Value>>) -> Result<Vec<(i32, f32)>, ApiError> {
    let Some(map) = field else { return Ok(Vec::new()) };
    let mut biases = Vec::with_capacity(map.len());
    for (key, value) in map {
        let token: i32 = key.trim().parse().ok().filter(|t| *t >= 0).ok_or_else(|| {
            ApiError::invalid_request(
                Some("logit_bias"),
                format!("logit_bias keys are token ids (whole numbers, 0 or more); {key:?} is not one"),
            )
        })?;
        let bias = value
            .as_f64()
            .filter(|b| b.is_finite() && (-100.0..=100.0).contains(b))
            .ok_or_else(|| {
                ApiError::invalid_request(
                    Some("logit_bias"),
                    format!("logit_bias[{key}] = {value} must be a number between -100 and 100"),
                )
            })?;
        biases.push((token, bias as f32));
    }
    Ok(biases)
}

#[cfg(test)]
#[path = "request_fields_tests.rs"]
mod tests;
