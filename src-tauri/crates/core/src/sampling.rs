use serde::{Deserialize, Serialize};

/// How the next token is chosen, and when generation stops.
///
/// The defaults are llama.cpp's own (temperature 0.8, top-k 40, top-p 0.95,
/// min-p 0.05, no repeat penalty) so a reply here matches what users see in
/// llama-server for the same model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SamplingParams {
    /// 0 means greedy: always the most likely token, so output is reproducible.
    pub temperature: f32,
    /// Keep only the k most likely tokens; 0 disables.
    pub top_k: i32,
    /// Nucleus sampling; 1.0 disables.
    pub top_p: f32,
    /// Drop tokens less likely than min_p × the top token's probability; 0 disables.
    pub min_p: f32,
    /// Penalty for repeating recent tokens; 1.0 disables.
    pub repeat_penalty: f32,
    /// How many recent tokens the repeat penalty looks at.
    pub repeat_last_n: i32,
    /// Seed for the random sampler; the same seed and prompt give the same text.
    pub seed: u32,
    /// Upper bound on generated tokens; the reply ends with `FinishReason::Length` when reached.
    pub max_tokens: u32,
    /// Generation ends when any of these appears; the stop string is not part of the reply.
    pub stop: Vec<String>,
    /// OpenAI's: a token's logit is lowered by this much for each time it already
    /// appears in the reply's last `repeat_last_n` tokens (llama.cpp's penalties
    /// sampler, as llama-server maps it); negative values encourage repeats; 0 disables.
    pub frequency_penalty: f32,
    /// OpenAI's: a token's logit is lowered by this much once it appears there at all.
    pub presence_penalty: f32,
    /// Added to a token's logit before sampling, by token id (OpenAI's `logit_bias`:
    /// -100 all but bans a token, 100 all but forces it).
    pub logit_bias: Vec<(i32, f32)>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            seed: 0xC0FFEE,
            max_tokens: 512,
            stop: Vec::new(),
            frequency_penalty: 0.0,
            presence_penalty: 0.0,
            logit_bias: Vec::new(),
        }
    }
}

/// A sampling parameter outside the range that makes sense; names the field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid sampling parameter `{field}` = {value}: {expected}")]
pub struct SamplingParamsError {
    pub field: &'static str,
    pub value: String,
    pub expected: &'static str,
}

impl SamplingParams {
    /// Greedy decoding: what tests and benchmarks use so runs compare.
    pub fn greedy(max_tokens: u32) -> Self {
        Self {
            temperature: 0.0,
            max_tokens,
            ..Self::default()
        }
    }

    /// Checks every field; the error names the field and the allowed range.
    pub fn validate(&self) -> Result<(), SamplingParamsError> {
        fn bad(field: &'static str, value: impl ToString, expected: &'static str) -> SamplingParamsError {
            SamplingParamsError {
                field,
                value: value.to_string(),
                expected,
            }
        }
        if !self.temperature.is_finite() || self.temperature < 0.0 || self.temperature > 10.0 {
            return Err(bad(
                "temperature",
                self.temperature,
                "must be between 0 (greedy) and 10",
            ));
        }
        if self.top_k < 0 {
            return Err(bad("top_k", self.top_k, "must be 0 (disabled) or positive"));
        }
        if !self.top_p.is_finite() || self.top_p <= 0.0 || self.top_p > 1.0 {
            return Err(bad("top_p", self.top_p, "must be in (0, 1]"));
        }
        if !self.min_p.is_finite() || !(0.0..=1.0).contains(&self.min_p) {
            return Err(bad("min_p", self.min_p, "must be in [0, 1]"));
        }
        if !self.repeat_penalty.is_finite() || self.repeat_penalty <= 0.0 || self.repeat_penalty > 10.0 {
            return Err(bad(
                "repeat_penalty",
                self.repeat_penalty,
                "must be in (0, 10]; 1 disables",
            ));
        }
        if self.repeat_last_n < -1 {
            return Err(bad(
                "repeat_last_n",
                self.repeat_last_n,
                "must be -1 (whole context), 0 or positive",
            ));
        }
        if self.max_tokens == 0 {
            return Err(bad("max_tokens", self.max_tokens, "must be at least 1"));
        }
        if self.stop.iter().any(String::is_empty) {
            return Err(bad("stop", "\"\"", "stop strings must not be empty"));
        }
        for (field, value) in [
            ("frequency_penalty", self.frequency_penalty),
            ("presence_penalty", self.presence_penalty),
        ] {
            if !value.is_finite() || !(-2.0..=2.0).contains(&value) {
                return Err(bad(field, value, "must be between -2 and 2; 0 disables"));
            }
        }
        if let Some(&(token, bias)) = self
            .logit_bias
            .iter()
            .find(|(token, bias)| *token < 0 || !bias.is_finite() || !(-100.0..=100.0).contains(bias))
        {
            return Err(bad(
                "logit_bias",
                format!("{token}: {bias}"),
                "token ids must be 0 or more and biases between -100 and 100",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(SamplingParams::default().validate(), Ok(()));
        assert_eq!(SamplingParams::greedy(1).validate(), Ok(()));
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            SamplingParams {
                temperature: f32::NAN,
                ..Default::default()
            },
            SamplingParams {
                temperature: -1.0,
                ..Default::default()
            },
            SamplingParams {
                top_p: 0.0,
                ..Default::default()
            },
            SamplingParams {
                min_p: 2.0,
                ..Default::default()
            },
            SamplingParams {
                top_k: -3,
                ..Default::default()
            },
            SamplingParams {
                repeat_penalty: 0.0,
                ..Default::default()
            },
            SamplingParams {
                repeat_last_n: -2,
                ..Default::default()
            },
            SamplingParams {
                max_tokens: 0,
                ..Default::default()
            },
            SamplingParams {
                stop: vec![String::new()],
                ..Default::default()
            },
            SamplingParams {
                frequency_penalty: 2.5,
                ..Default::default()
            },
            SamplingParams {
                presence_penalty: f32::INFINITY,
                ..Default::default()
            },
            SamplingParams {
                logit_bias: vec![(7, 1.0), (-1, 1.0)],
                ..Default::default()
            },
            SamplingParams {
                logit_bias: vec![(7, -101.0)],
                ..Default::default()
            },
        ];
        let fields = [
            "temperature",
            "temperature",
            "top_p",
            "min_p",
            "top_k",
            "repeat_penalty",
            "repeat_last_n",
            "max_tokens",
            "stop",
            "frequency_penalty",
            "presence_penalty",
            "logit_bias",
            "logit_bias",
        ];
        for (params, field) in cases.iter().zip(fields) {
            let err = params.validate().expect_err(field);
            assert_eq!(err.field, field);
            assert!(err.to_string().contains(field));
        }
    }

    #[test]
    fn missing_fields_take_defaults_when_deserialised() {
        let p: SamplingParams = serde_json::from_str(r#"{"temperature":0}"#).expect("parse");
        assert_eq!(p.temperature, 0.0);
        assert_eq!(p.max_tokens, SamplingParams::default().max_tokens);
    }
}
