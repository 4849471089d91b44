//! OpenAI's wire format: the requests this server accepts and the bodies and chunks
//! it sends. Requests are checked here and turned into backend-neutral
//! [`GenerateRequest`]s; fields OpenAI clients send but Hearth cannot honour are
//! refused with a 400 that names them rather than silently ignored.

use hearth_core::{ChatMessage, FinishReason, GenerateRequest, GenerationMetrics, Prompt, Role, SamplingParams};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::extract::parse;
use crate::request_fields::{logit_bias, RefusedFields};

#[derive(Debug)]
pub struct ChatCompletionRequest {
    pub model: String,
    pub messages: Vec<RequestMessage>,
    pub common: CommonParams,
}

#[derive(Debug)]
pub struct CompletionRequest {
    pub model: String,
    pub prompt: PromptParam,
    pub common: CommonParams,
}

/// The route-specific part of a chat request; the rest is [`CommonParams`].
#[derive(Debug, Deserialize)]
struct ChatHead {
    model: String,
    messages: Vec<RequestMessage>,
}

#[derive(Debug, Deserialize)]
struct CompletionHead {
    model: String,
    prompt: PromptParam,
}

impl ChatCompletionRequest {
    pub fn parse(body: &[u8]) -> Result<Self, ApiError> {
        let head: ChatHead = parse(body)?;
        Ok(Self {
            model: head.model,
            messages: head.messages,
            common: parse(body)?,
        })
    }
}

impl CompletionRequest {
    pub fn parse(body: &[u8]) -> Result<Self, ApiError> {
        let head: CompletionHead = parse(body)?;
        Ok(Self {
            model: head.model,
            prompt: head.prompt,
            common: parse(body)?,
        })
    }
}

/// Parameters shared by both routes. llama.cpp's extensions (top_k, min_p,
/// repeat_penalty) are accepted as llama-server accepts them.
#[derive(Debug, Default, Deserialize)]
pub struct CommonParams {
    pub stream: Option<bool>,
    pub stream_options: Option<StreamOptions>,
    pub max_tokens: Option<u32>,
    pub max_completion_tokens: Option<u32>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<i32>,
    pub min_p: Option<f32>,
    pub repeat_penalty: Option<f32>,
    pub seed: Option<i64>,
    pub stop: Option<StopParam>,
    pub n: Option<u32>,
    pub frequency_penalty: Option<f32>,
    pub presence_penalty: Option<f32>,
    pub logit_bias: Option<serde_json::Map<String, serde_json::Value>>,
    pub logprobs: Option<serde_json::Value>,
    pub echo: Option<bool>,
    /// What Hearth cannot honour yet, refused by name.
    #[serde(flatten)]
    pub refused: RefusedFields,
}

#[derive(Debug, Default, Deserialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum StopParam {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum PromptParam {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
pub struct RequestMessage {
    pub role: RequestRole,
    #[serde(default)]
    pub content: Option<MessageContent>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RequestRole {
    System,
    /// OpenAI's newer name for the system role.
    Developer,
    User,
    Assistant,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum MessageContent {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Debug, Deserialize)]
pub struct ContentPart {
    #[serde(rename = "type")]
    pub kind: String,
    pub text: Option<String>,
}

impl CommonParams {
    pub fn stream(&self) -> bool {
        self.stream.unwrap_or(false)
    }

    pub fn include_usage(&self) -> bool {
        self.stream_options.as_ref().is_some_and(|o| o.include_usage)
    }

    /// Sampling parameters from the request, checked; `cap` bounds max_tokens.
    fn params(&self, cap: u32) -> Result<SamplingParams, ApiError> {
        if self.n.is_some_and(|n| n != 1) {
            return Err(ApiError::invalid_request(Some("n"), "only n = 1 is supported"));
        }
        if self
            .logprobs
            .as_ref()
            .is_some_and(|v| !v.is_null() && *v != serde_json::Value::Bool(false))
        {
            return Err(ApiError::invalid_request(
                Some("logprobs"),
                "logprobs are not supported",
            ));
        }
        if self.echo == Some(true) {
            return Err(ApiError::invalid_request(Some("echo"), "echo is not supported"));
        }
        self.refused.check()?;
        let (max_name, max_tokens) = match (self.max_completion_tokens, self.max_tokens) {
            (Some(n), _) => ("max_completion_tokens", n),
            (None, Some(n)) => ("max_tokens", n),
            (None, None) => ("max_tokens", cap),
        };
        if max_tokens == 0 || max_tokens > cap {
            return Err(ApiError::invalid_request(
                Some(max_name),
                format!("{max_name} = {max_tokens} must be between 1 and {cap}"),
            ));
        }
        let defaults = SamplingParams::default();
        let stop = match &self.stop {
            None => Vec::new(),
            Some(StopParam::One(s)) => vec![s.clone()],
            Some(StopParam::Many(v)) => v.clone(),
        };
        if stop.len() > 4 {
            return Err(ApiError::invalid_request(
                Some("stop"),
                "at most 4 stop sequences are allowed",
            ));
        }
        let params = SamplingParams {
            temperature: self.temperature.unwrap_or(defaults.temperature),
            top_k: self.top_k.unwrap_or(defaults.top_k),
            top_p: self.top_p.unwrap_or(defaults.top_p),
            min_p: self.min_p.unwrap_or(defaults.min_p),
            repeat_penalty: self.repeat_penalty.unwrap_or(defaults.repeat_penalty),
            // OpenAI seeds are any integer; llama.cpp takes 32 bits: keep the low ones.
            seed: self
                .seed
                .map_or(defaults.seed, |s| (s as u64 & u64::from(u32::MAX)) as u32),
            max_tokens,
            stop,
            frequency_penalty: self.frequency_penalty.unwrap_or(defaults.frequency_penalty),
            presence_penalty: self.presence_penalty.unwrap_or(defaults.presence_penalty),
            logit_bias: logit_bias(self.logit_bias.as_ref())?,
            ..defaults
        };
        params
            .validate()
            .map_err(|e| ApiError::invalid_request(Some(e.field), e.to_string()))?;
        Ok(params)
    }
}

impl ChatCompletionRequest {
    pub fn to_generate(&self, cap: u32) -> Result<GenerateRequest, ApiError> {
        let params = self.common.params(cap)?;
        if self.messages.is_empty() {
            return Err(ApiError::invalid_request(
                Some("messages"),
                "messages must not be empty",
            ));
        }
        let mut messages = Vec::with_capacity(self.messages.len());
        for (i, m) in self.messages.iter().enumerate() {
            let role = match m.role {
                RequestRole::System | RequestRole::Developer => Role::System,
                RequestRole::User => Role::User,
                RequestRole::Assistant => Role::Assistant,
            };
            let content = match &m.content {
                None => String::new(),
                Some(MessageContent::Text(text)) => text.clone(),
                Some(MessageContent::Parts(parts)) => {
                    let mut text = String::new();
                    for part in parts {
                        match (part.kind.as_str(), &part.text) {
                            ("text", Some(t)) => text.push_str(t),
                            _ => {
                                return Err(ApiError::invalid_request(
                                    Some(&format!("messages[{i}].content")),
                                    format!("content parts of type `{}` are not supported (text only)", part.kind),
                                ))
                            }
                        }
                    }
                    text
                }
            };
            // Valid JSON, but chat templates are C strings that end at a NUL: refused
            // here as the client's mistake rather than failing in the engine as a 500.
            if content.contains('\0') {
                return Err(ApiError::invalid_request(
                    Some(&format!("messages[{i}].content")),
                    format!("messages[{i}].content contains a NUL character (\\u0000), which a chat template cannot take: remove it"),
                ));
            }
            messages.push(ChatMessage::new(role, content));
        }
        Ok(GenerateRequest {
            model: Some(self.model.clone()),
            prompt: Prompt::Chat(messages),
            params,
        })
    }
}

impl CompletionRequest {
    pub fn to_generate(&self, cap: u32) -> Result<GenerateRequest, ApiError> {
        let params = self.common.params(cap)?;
        let text = match &self.prompt {
            PromptParam::One(text) => text.clone(),
            PromptParam::Many(texts) if texts.len() == 1 => texts[0].clone(),
            PromptParam::Many(_) => {
                return Err(ApiError::invalid_request(
                    Some("prompt"),
                    "exactly one prompt is supported per request",
                ))
            }
        };
        if text.is_empty() {
            return Err(ApiError::invalid_request(
                Some("prompt"),
                "the prompt must not be empty",
            ));
        }
        Ok(GenerateRequest {
            model: Some(self.model.clone()),
            prompt: Prompt::Text(text),
            params,
        })
    }
}

/// OpenAI's finish reasons: a cancelled generation reached nobody, an error is sent as an error.
pub fn finish_reason(reason: FinishReason) -> &'static str {
    match reason {
        FinishReason::Length => "length",
        FinishReason::Stop | FinishReason::Cancelled | FinishReason::Error => "stop",
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Usage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub total_tokens: u32,
}

impl From<&GenerationMetrics> for Usage {
    fn from(m: &GenerationMetrics) -> Self {
        Self {
            prompt_tokens: m.prompt_tokens,
            completion_tokens: m.completion_tokens,
            total_tokens: m.prompt_tokens.saturating_add(m.completion_tokens),
        }
    }
}

/// Identity of one response, shared by all its chunks.
#[derive(Debug, Clone)]
pub struct ResponseMeta {
    pub id: String,
    pub created: u64,
    pub model: String,
}

impl ResponseMeta {
    pub fn new(prefix: &str, model: &str) -> Self {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        // Unique enough for a local server: time in nanoseconds plus a process-wide counter.
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Self {
            id: format!("{prefix}-{:x}{n:04x}", now.as_nanos()),
            created: now.as_secs(),
            model: model.to_owned(),
        }
    }
}

/// The `stream: false` body of a chat completion.
pub fn chat_completion(meta: &ResponseMeta, text: &str, metrics: &GenerationMetrics) -> serde_json::Value {
    serde_json::json!({
        "id": meta.id,
        "object": "chat.completion",
        "created": meta.created,
        "model": meta.model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "logprobs": null,
            "finish_reason": finish_reason(metrics.finish_reason),
        }],
        "usage": Usage::from(metrics),
        "hearth_metrics": metrics,
    })
}

/// The `stream: false` body of a text completion.
pub fn text_completion(meta: &ResponseMeta, text: &str, metrics: &GenerationMetrics) -> serde_json::Value {
    serde_json::json!({
        "id": meta.id,
        "object": "text_completion",
        "created": meta.created,
        "model": meta.model,
        "choices": [{
            "index": 0,
            "text": text,
            "logprobs": null,
            "finish_reason": finish_reason(metrics.finish_reason),
        }],
        "usage": Usage::from(metrics),
        "hearth_metrics": metrics,
    })
}

/// Which route a stream answers: the two differ in object names and choice shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Chat,
    Completion,
}

impl Kind {
    fn object(self) -> &'static str {
        match self {
            Kind::Chat => "chat.completion.chunk",
            Kind::Completion => "text_completion",
        }
    }

    /// One choice of a chunk: `delta` for chat (role in the first), `text` for completions.
    fn choice(self, role: bool, text: Option<&str>, finish: Option<&str>) -> serde_json::Value {
        match self {
            Kind::Chat => {
                let mut delta = serde_json::Map::new();
                if role {
                    delta.insert("role".into(), "assistant".into());
                }
                if let Some(text) = text {
                    delta.insert("content".into(), text.into());
                }
                serde_json::json!({"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish})
            }
            Kind::Completion => {
                serde_json::json!({"index": 0, "text": text.unwrap_or(""), "logprobs": null, "finish_reason": finish})
            }
        }
    }

    pub fn chunk(self, meta: &ResponseMeta, role: bool, text: Option<&str>, finish: Option<&str>) -> serde_json::Value {
        serde_json::json!({
            "id": meta.id,
            "object": self.object(),
            "created": meta.created,
            "model": meta.model,
            "choices": [self.choice(role, text, finish)],
        })
    }

    /// The last chunk when the client asked for usage: no choices, the usage, and
    /// Hearth's own figures (ignored by OpenAI clients, read by Hearth's client).
    pub fn usage_chunk(self, meta: &ResponseMeta, metrics: &GenerationMetrics) -> serde_json::Value {
        serde_json::json!({
            "id": meta.id,
            "object": self.object(),
            "created": meta.created,
            "model": meta.model,
            "choices": [],
            "usage": Usage::from(metrics),
            "hearth_metrics": metrics,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(body: &str) -> Result<GenerateRequest, ApiError> {
        ChatCompletionRequest::parse(body.as_bytes())?.to_generate(32_768)
    }

    #[test]
    fn chat_requests_become_generate_requests() {
        let r = chat(r#"{"model":"m","messages":[{"role":"developer","content":"be brief"},{"role":"user","content":[{"type":"text","text":"hi"}]}],"max_tokens":5,"temperature":0,"stop":"\n","seed":-1}"#)
            .expect("valid");
        assert_eq!(r.model.as_deref(), Some("m"));
        assert_eq!(
            r.prompt,
            Prompt::Chat(vec![ChatMessage::system("be brief"), ChatMessage::user("hi")])
        );
        assert_eq!(
            (r.params.max_tokens, r.params.temperature, r.params.seed),
            (5, 0.0, u32::MAX)
        );
        assert_eq!(r.params.stop, vec!["\n".to_owned()]);
    }

    #[test]
    fn bad_values_name_their_param() {
        let param = |body: &str| chat(body).expect_err(body).param;
        let m = r#""model":"m","messages":[{"role":"user","content":"x"}]"#;
        assert_eq!(
            param(&format!("{{{m},\"max_tokens\":0}}")).as_deref(),
            Some("max_tokens")
        );
        assert_eq!(
            param(&format!("{{{m},\"max_tokens\":40000}}")).as_deref(),
            Some("max_tokens")
        );
        assert_eq!(
            param(&format!("{{{m},\"max_tokens\":-3}}")).as_deref(),
            Some("max_tokens")
        );
        assert_eq!(
            param(&format!("{{{m},\"temperature\":-1}}")).as_deref(),
            Some("temperature")
        );
        assert_eq!(
            param(&format!("{{{m},\"temperature\":1e99}}")).as_deref(),
            Some("temperature")
        );
        assert_eq!(param(&format!("{{{m},\"n\":2}}")).as_deref(), Some("n"));
        assert_eq!(param(r#"{"model":"m","messages":[]}"#).as_deref(), Some("messages"));
        assert_eq!(
            param(r#"{"model":"m","messages":[{"role":"tool","content":"x"}]}"#).as_deref(),
            Some("messages[0].role")
        );
        assert_eq!(param(r#"{"messages":[]}"#), None);
        // A NUL is valid JSON but no chat template can take it: the client's to remove.
        assert_eq!(
            param(r#"{"model":"m","messages":[{"role":"user","content":"x"},{"role":"user","content":[{"type":"text","text":"a\u0000"}]}]}"#).as_deref(),
            Some("messages[1].content")
        );
    }

    #[test]
    fn chunks_have_openai_shapes() {
        let meta = ResponseMeta::new("chatcmpl", "m");
        let first = Kind::Chat.chunk(&meta, true, Some(""), None);
        assert_eq!(first["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(first["object"], "chat.completion.chunk");
        let last = Kind::Completion.chunk(&meta, false, None, Some("length"));
        assert_eq!(
            (
                last["choices"][0]["text"].as_str(),
                last["choices"][0]["finish_reason"].as_str()
            ),
            (Some(""), Some("length"))
        );
    }
}
