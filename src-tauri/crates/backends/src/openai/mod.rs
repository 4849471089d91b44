//! A [`Backend`] for any OpenAI-compatible server: Hearth's own worker, `hearth serve`,
//! llama-server, vLLM. Generations always stream (SSE) so tokens arrive as decoded and
//! a dying server is noticed at once; `stream_options.include_usage` supplies the counts.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use hearth_core::backend::BoxFuture;
use hearth_core::{
    Backend, BackendError, EventStream, FinishReason, GenerateRequest, GenerationEvent, GenerationMetrics, Health,
    ModelDescriptor, Prompt,
};
use serde_json::{json, Value};

use crate::http::error_chain;

mod errors;

pub use errors::upstream_error;
use errors::{retry_after_secs, stream_error};

/// Decides what a broken connection means. The worker's supervisor answers `Crashed`
/// when the process died; plain servers answer `Unavailable`.
pub trait FailureClassifier: Send + Sync {
    fn classify(&self, cause: String) -> BoxFuture<'static, BackendError>;
}

pub struct OpenAiBackend {
    name: String,
    /// The API root including `/v1`, without a trailing slash.
    base: String,
    token: Option<String>,
    http: reqwest::Client,
    /// The model used when a request names none; `load` sets it.
    default_model: Mutex<Option<String>>,
    classifier: Option<Arc<dyn FailureClassifier>>,
    /// How long a stream may go without a byte before it counts as stalled (a transient
    /// failure). `None` waits forever: the worker may think for minutes over a 32K prompt.
    stall_timeout: Option<Duration>,
}

impl OpenAiBackend {
    /// `base_url` is the API root as OpenAI clients take it, e.g. `http://127.0.0.1:8000/v1`.
    pub fn new(name: impl Into<String>, base_url: &str, token: Option<String>) -> Result<Self, BackendError> {
        let name = name.into();
        let http = crate::http::client(&name)?;
        Ok(Self {
            name,
            base: base_url.trim_end_matches('/').to_owned(),
            token,
            http,
            default_model: Mutex::new(None),
            classifier: None,
            stall_timeout: None,
        })
    }

    pub fn with_classifier(mut self, classifier: Arc<dyn FailureClassifier>) -> Self {
        self.classifier = Some(classifier);
        self
    }

    /// Treats a stream that sends nothing for `timeout` as broken (transient), so a hung
    /// server is retried or replaced instead of hanging the reply.
    pub fn with_stall_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.stall_timeout = timeout;
        self
    }

    pub fn with_default_model(self, model: Option<String>) -> Self {
        if let Ok(mut m) = self.default_model.lock() {
            *m = model;
        }
        self
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The server root (without `/v1`), where Hearth and llama-server keep `/health`.
    fn root_url(&self, path: &str) -> String {
        format!("{}{path}", self.base.strip_suffix("/v1").unwrap_or(&self.base))
    }

    fn request(&self, builder: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(token) => builder.bearer_auth(token),
            None => builder,
        }
    }

    async fn broken(&self, cause: String) -> BackendError {
        match &self.classifier {
            Some(classifier) => classifier.classify(cause).await,
            None => BackendError::Unavailable {
                backend: self.name.clone(),
                cause,
            },
        }
    }

    async fn send(&self, builder: reqwest::RequestBuilder) -> Result<reqwest::Response, BackendError> {
        let response = match self.request(builder).send().await {
            Ok(response) => response,
            Err(e) => return Err(self.broken(error_chain(&e)).await),
        };
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status().as_u16();
        let retry_after = retry_after_secs(response.headers());
        let body = response.text().await.unwrap_or_default();
        match (status, retry_after) {
            // The server said when to come back: the retry policy waits at least that long.
            (429 | 503, Some(retry_after_secs)) => Err(BackendError::Busy {
                backend: self.name.clone(),
                retry_after_secs,
            }),
            _ => Err(upstream_error(status, &body)),
        }
    }

    /// Posts a generation `body` and returns the answer, its event stream still unread. A
    /// server that does not answer within the stall timeout counts as broken; a model
    /// the server does not know is named from the body when the server names none.
    async fn post_generation(&self, path: &str, body: &Value) -> Result<reqwest::Response, BackendError> {
        let sent = self.send(self.http.post(self.url(path)).json(body));
        let sent = match self.stall_timeout {
            Some(limit) => match tokio::time::timeout(limit, sent).await {
                Ok(sent) => sent,
                Err(_) => {
                    let cause = format!("no answer within {} ms", limit.as_millis());
                    return Err(self.broken(cause).await);
                }
            },
            None => sent.await,
        };
        match sent {
            Ok(response) => Ok(response),
            Err(BackendError::ModelNotFound { model }) if model.is_empty() => Err(BackendError::ModelNotFound {
                model: body["model"].as_str().unwrap_or("").to_owned(),
            }),
            Err(e) => Err(e),
        }
    }

    /// The model to use when a request names none: the loaded one, else the first the
    /// server lists (vLLM serves exactly one, under the name it was started with).
    async fn model_for(&self, request: &GenerateRequest) -> Result<Option<String>, BackendError> {
        if let Some(model) = request
            .model
            .clone()
            .or_else(|| self.default_model.lock().ok().and_then(|m| m.clone()))
        {
            return Ok(Some(model));
        }
        let first = self.models().await?.into_iter().next().map(|m| m.id);
        if let (Some(model), Ok(mut default)) = (&first, self.default_model.lock()) {
            *default = Some(model.clone());
        }
        Ok(first)
    }

    fn body(&self, request: &GenerateRequest, model: Option<String>) -> Result<(String, Value), BackendError> {
        let Some(model) = model else {
            return Err(BackendError::InvalidRequest {
                param: Some("model".into()),
                message: format!(
                    "{} serves no model: start it with one, or name one in the settings",
                    self.name
                ),
            });
        };
        let p = &request.params;
        let mut body = json!({
            "model": model,
            "stream": true,
            "stream_options": {"include_usage": true},
            "max_tokens": p.max_tokens,
            "temperature": p.temperature,
            "top_p": p.top_p,
            "seed": p.seed,
            // llama.cpp's sampling extensions, understood by Hearth, llama-server and vLLM.
            "top_k": p.top_k,
            "min_p": p.min_p,
            "repeat_penalty": p.repeat_penalty,
        });
        if !p.stop.is_empty() {
            body["stop"] = json!(p.stop);
        }
        if p.frequency_penalty != 0.0 {
            body["frequency_penalty"] = json!(p.frequency_penalty);
        }
        if p.presence_penalty != 0.0 {
            body["presence_penalty"] = json!(p.presence_penalty);
        }
        if !p.logit_bias.is_empty() {
            // OpenAI's shape: token ids as the object's keys.
            let biases: serde_json::Map<String, serde_json::Value> = p
                .logit_bias
                .iter()
                .map(|(token, bias)| (token.to_string(), json!(bias)))
                .collect();
            body["logit_bias"] = serde_json::Value::Object(biases);
        }
        let path = match &request.prompt {
            Prompt::Chat(messages) => {
                body["messages"] = json!(messages);
                "/chat/completions"
            }
            Prompt::Text(text) => {
                body["prompt"] = json!(text);
                "/completions"
            }
        };
        Ok((path.to_owned(), body))
    }
}

/// What the stream has seen so far; turns into the final `Done`.
struct Tally {
    started: Instant,
    first_token_at: Option<Instant>,
    deltas: u32,
    finish: Option<FinishReason>,
    usage: Option<(u32, u32)>,
    server_metrics: Option<GenerationMetrics>,
}

impl Tally {
    fn done(self) -> GenerationEvent {
        if let Some(metrics) = self.server_metrics {
            return GenerationEvent::Done { metrics };
        }
        let now = Instant::now();
        let (prompt_tokens, completion_tokens) = self.usage.unwrap_or((0, self.deltas));
        let decode_secs = self.first_token_at.map_or(0.0, |t| now.duration_since(t).as_secs_f64());
        let decode_tps = if decode_secs > 0.0 && completion_tokens > 1 {
            f64::from(completion_tokens - 1) / decode_secs
        } else {
            0.0
        };
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        GenerationEvent::Done {
            metrics: GenerationMetrics {
                prompt_tokens,
                prompt_tokens_evaluated: prompt_tokens,
                completion_tokens,
                load_ms: 0.0,
                ttft_ms: self.first_token_at.map_or(0.0, |t| ms(t.duration_since(self.started))),
                prompt_tps: 0.0,
                decode_tps,
                total_ms: ms(now.duration_since(self.started)),
                draft_tokens: 0,
                draft_accepted: 0,
                decode_batch_sequences: Vec::new(),
                prompt_steps: 0,
                prompt_format: None,
                finish_reason: self.finish.unwrap_or(FinishReason::Stop),
            },
        }
    }

    /// Reads one chunk; returns its text, if any.
    fn chunk(&mut self, chunk: &Value) -> Option<String> {
        if let Some(usage) = chunk.get("usage").filter(|u| u.is_object()) {
            let n = |k: &str| usage[k].as_u64().and_then(|v| u32::try_from(v).ok()).unwrap_or(0);
            self.usage = Some((n("prompt_tokens"), n("completion_tokens")));
        }
        if let Some(metrics) = chunk.get("hearth_metrics") {
            self.server_metrics = serde_json::from_value(metrics.clone()).ok();
        }
        let choice = &chunk["choices"][0];
        match choice["finish_reason"].as_str() {
            Some("length") => self.finish = Some(FinishReason::Length),
            Some(_) => self.finish = Some(FinishReason::Stop),
            None => {}
        }
        let text = choice["delta"]["content"]
            .as_str()
            .or_else(|| choice["text"].as_str())?;
        if text.is_empty() {
            return None;
        }
        self.first_token_at.get_or_insert_with(Instant::now);
        self.deltas += 1;
        Some(text.to_owned())
    }
}

impl Backend for OpenAiBackend {
    fn name(&self) -> &str {
        &self.name
    }

    fn load<'a>(&'a self, model: &'a str) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move {
            let models = self.models().await?;
            if !models.iter().any(|m| m.id == model) {
                return Err(BackendError::ModelNotFound {
                    model: model.to_owned(),
                });
            }
            if let Ok(mut m) = self.default_model.lock() {
                *m = Some(model.to_owned());
            }
            Ok(())
        })
    }

    fn unload(&self) -> BoxFuture<'_, Result<(), BackendError>> {
        Box::pin(async move {
            if let Ok(mut m) = self.default_model.lock() {
                *m = None;
            }
            Ok(())
        })
    }

    fn models(&self) -> BoxFuture<'_, Result<Vec<ModelDescriptor>, BackendError>> {
        Box::pin(async move {
            let response = self.send(self.http.get(self.url("/models"))).await?;
            let body: Value = response.json().await.map_err(|e| BackendError::Unavailable {
                backend: self.name.clone(),
                cause: format!("unreadable model list: {e}"),
            })?;
            let list = body["data"].as_array().cloned().unwrap_or_default();
            Ok(list
                .iter()
                .filter_map(|m| {
                    let length = m["context_length"].as_u64().or_else(|| m["max_model_len"].as_u64());
                    Some(ModelDescriptor {
                        id: m["id"].as_str()?.to_owned(),
                        owned_by: m["owned_by"].as_str().unwrap_or("unknown").to_owned(),
                        context_length: length.and_then(|l| u32::try_from(l).ok()),
                        has_chat_template: m["has_chat_template"].as_bool(),
                        // Hearth's own server (its worker) says where the model runs.
                        device: m["device"].as_str().map(str::to_owned),
                        gpu_layers: m["gpu_layers"].as_u64().and_then(|l| u32::try_from(l).ok()),
                        layers_total: m["layers_total"].as_u64().and_then(|l| u32::try_from(l).ok()),
                        placement_note: m["placement_note"].as_str().map(str::to_owned),
                    })
                })
                .collect())
        })
    }

    fn health(&self) -> BoxFuture<'_, Health> {
        Box::pin(async move {
            let request = self.request(
                self.http
                    .get(self.root_url("/health/ready"))
                    .timeout(Duration::from_secs(5)),
            );
            match request.send().await {
                Ok(r) if r.status().is_success() => {
                    let body: Value = r.json().await.unwrap_or(Value::Null);
                    let model = body["model"].as_str().map(str::to_owned);
                    Health {
                        ready: true,
                        model,
                        reason: None,
                    }
                }
                Ok(r) if r.status() == reqwest::StatusCode::NOT_FOUND => {
                    // Not Hearth or llama-server: a model list that answers is the best sign.
                    match self.models().await {
                        Ok(models) if !models.is_empty() => Health::ready(models[0].id.clone()),
                        Ok(_) => Health::not_ready(format!("{} serves no model", self.name)),
                        Err(e) => Health::not_ready(e.to_string()),
                    }
                }
                Ok(r) => {
                    let status = r.status();
                    let body: Value = r.json().await.unwrap_or(Value::Null);
                    let reason = body["reason"]
                        .as_str()
                        .map_or_else(|| format!("{} answered {status}", self.name), str::to_owned);
                    Health {
                        ready: false,
                        model: body["model"].as_str().map(str::to_owned),
                        reason: Some(reason),
                    }
                }
                Err(e) => Health::not_ready(format!("{} is unreachable: {}", self.name, error_chain(&e))),
            }
        })
    }

    fn generate(&self, request: GenerateRequest) -> BoxFuture<'_, Result<EventStream, BackendError>> {
        Box::pin(async move {
            let model = self.model_for(&request).await?;
            let (path, body) = self.body(&request, model)?;
            let started = Instant::now();
            let response = self.post_generation(&path, &body).await?;
            let sse = response.bytes_stream().eventsource();
            let tally = Tally {
                started,
                first_token_at: None,
                deltas: 0,
                finish: None,
                usage: None,
                server_metrics: None,
            };
            let name = self.name.clone();
            let classifier = self.classifier.clone();
            let stall = self.stall_timeout;
            let state = (Box::pin(sse), Some(tally), name, classifier);
            let stream =
                futures_util::stream::unfold(state, move |(mut sse, mut tally, name, classifier)| async move {
                    tally.as_ref()?;
                    loop {
                        let next = match stall {
                            Some(limit) => match tokio::time::timeout(limit, sse.next()).await {
                                Ok(next) => next,
                                Err(_) => {
                                    let cause = format!("the stream stalled: nothing for {} ms", limit.as_millis());
                                    let error = classify(classifier.as_ref(), &name, cause).await;
                                    return Some((Err(error), (sse, None, name, classifier)));
                                }
                            },
                            None => sse.next().await,
                        };
                        let item = match next {
                            Some(Ok(event)) => event,
                            Some(Err(e)) => {
                                let cause = format!("the connection broke mid-stream: {}", error_chain(&e));
                                let error = classify(classifier.as_ref(), &name, cause).await;
                                return Some((Err(error), (sse, None, name, classifier)));
                            }
                            None => {
                                let cause = "the stream ended before [DONE]".to_owned();
                                let error = classify(classifier.as_ref(), &name, cause).await;
                                return Some((Err(error), (sse, None, name, classifier)));
                            }
                        };
                        if item.data.trim() == "[DONE]" {
                            let done = tally.take().map(Tally::done)?;
                            return Some((Ok(done), (sse, None, name, classifier)));
                        }
                        let Ok(chunk) = serde_json::from_str::<Value>(&item.data) else {
                            continue; // Not JSON (a comment-like line): skip it, as OpenAI's clients do.
                        };
                        if let Some(error) = chunk.get("error").filter(|e| e.is_object()) {
                            // A generation that failed is an error event with the server's
                            // code; a server that broke (crashed, went away) an `Err`.
                            let item = match stream_error(&name, error) {
                                BackendError::Failed { code, message } => Ok(GenerationEvent::Error { code, message }),
                                broken => Err(broken),
                            };
                            return Some((item, (sse, None, name, classifier)));
                        }
                        if let Some(text) = tally.as_mut()?.chunk(&chunk) {
                            return Some((Ok(GenerationEvent::Delta { text }), (sse, tally, name, classifier)));
                        }
                    }
                });
            Ok(Box::pin(stream) as EventStream)
        })
    }
}

async fn classify(classifier: Option<&Arc<dyn FailureClassifier>>, name: &str, cause: String) -> BackendError {
    match classifier {
        Some(c) => c.classify(cause).await,
        None => BackendError::Unavailable {
            backend: name.to_owned(),
            cause,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mid_stream_error_keeps_the_server_s_code() {
        let error = |body: serde_json::Value| stream_error("worker", &body);
        let decode = error(serde_json::json!({"message": "llama_decode returned 1", "code": "decode_failed"}));
        assert_eq!(
            decode,
            BackendError::Failed {
                code: hearth_core::ErrorCode::DecodeFailed,
                message: "llama_decode returned 1".into()
            }
        );
        let crashed = error(serde_json::json!({"message": "gone", "code": "backend_crashed"}));
        assert!(matches!(crashed, BackendError::Crashed { ref backend, .. } if backend == "worker"));
        let foreign = error(serde_json::json!({"message": "quota", "code": "insufficient_quota"}));
        assert_eq!(foreign.code(), hearth_core::ErrorCode::UpstreamError);
        let bare = error(serde_json::json!({"message": "?"}));
        assert_eq!(bare.code(), hearth_core::ErrorCode::UpstreamError);
    }

    #[test]
    fn error_bodies_keep_status_and_code() {
        let e = upstream_error(
            400,
            r#"{"error":{"message":"bad","type":"invalid_request_error","param":"top_p","code":"invalid_request"}}"#,
        );
        assert_eq!(
            e,
            BackendError::Upstream {
                status: 400,
                code: Some("invalid_request".into()),
                kind: Some("invalid_request_error".into()),
                param: Some("top_p".into()),
                message: "bad".into()
            }
        );
        let flat = upstream_error(
            400,
            r#"{"object":"error","message":"too long","type":"BadRequestError","code":400}"#,
        );
        assert!(matches!(flat, BackendError::Upstream { status: 400, code: Some(c), .. } if c == "400"));
        let vllm = upstream_error(
            400,
            r#"{"object":"error","message":"This model's maximum context length is 2048 tokens. However, you requested 3000 tokens (2900 in the messages, 100 in the completion). Please reduce the length of the messages or completion.","type":"BadRequestError","param":null,"code":400}"#,
        );
        assert_eq!(
            vllm,
            BackendError::ContextOverflow {
                needed: 3000,
                limit: 2048
            }
        );
        // Hearth's API: the figures are fields; the words are for people and not parsed.
        let hearth = upstream_error(
            400,
            r#"{"error":{"message":"(any wording)","type":"invalid_request_error","code":"context_length_exceeded","needed":5000,"limit":4096}}"#,
        );
        assert_eq!(
            hearth,
            BackendError::ContextOverflow {
                needed: 5000,
                limit: 4096
            }
        );
        let garbage = upstream_error(502, "<html>");
        assert!(matches!(garbage, BackendError::Upstream { status: 502, message, .. } if message.contains("<html>")));
    }
}
