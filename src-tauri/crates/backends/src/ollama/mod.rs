//! A [`Backend`] for a local Ollama server (`ollama serve`, by default on
//! `http://127.0.0.1:11434`). Ollama loads models on demand; Hearth names the model,
//! the context size and every sampling option on each call, because Ollama otherwise
//! takes the Modelfile's defaults and silently cuts prompts to its own default context.
//!
//! Requests are built with ollama-rs's types and `/api/tags`, `/api/show` go through
//! its client; the reply stream is read in [`reply`] (see [`reply::Reply`] for why).

use std::pin::Pin;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use futures_util::stream::{self, Stream, StreamExt};
use hearth_core::backend::BoxFuture;
use hearth_core::{
    Backend, BackendError, ChatMessage, ErrorCode, EventStream, FinishReason, GenerateRequest, GenerationEvent,
    GenerationMetrics, Health, ModelDescriptor, Prompt, Role, SamplingParams,
};
use ollama_rs::error::OllamaError;
use ollama_rs::generation::chat::request::ChatMessageRequest;
use ollama_rs::generation::chat::{ChatMessage as OllamaMessage, MessageRole};
use ollama_rs::generation::completion::request::GenerationRequest;
pub use ollama_rs::generation::parameters::KeepAlive;
use ollama_rs::models::{LocalModel, ModelOptions};
use ollama_rs::Ollama;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::http::error_chain;

mod errors;
mod reply;
use errors::{error_message, no_logit_bias, ollama_error, truncated};
use reply::{Body, Reply};

/// How Hearth asks Ollama to run models.
#[derive(Debug, Clone, PartialEq)]
pub struct OllamaOptions {
    /// Context window in tokens, sent as `num_ctx` with every request (Ollama caps it at
    /// what the model was trained for).
    pub num_ctx: u32,
    /// How long Ollama keeps a model in memory after its last reply; `None` keeps
    /// Ollama's own default (5 minutes).
    pub keep_alive: Option<KeepAlive>,
}

impl Default for OllamaOptions {
    fn default() -> Self {
        Self {
            num_ctx: 4096,
            keep_alive: None,
        }
    }
}

pub struct OllamaBackend {
    name: String,
    /// The server root, ending in `/` so that `api/…` paths append to it.
    base: String,
    options: OllamaOptions,
    http: reqwest::Client,
    /// ollama-rs's client over the same `http`, for the answers it parses completely.
    client: Ollama,
    /// The model used when a request names none; `load` sets it.
    default_model: Mutex<Option<String>>,
}

impl OllamaBackend {
    /// `base_url` is the server root, e.g. `http://127.0.0.1:11434`.
    pub fn new(name: impl Into<String>, base_url: &str, options: OllamaOptions) -> Result<Self, BackendError> {
        let name = name.into();
        let url = parse_base_url(base_url)?;
        if options.num_ctx == 0 {
            return Err(BackendError::InvalidRequest {
                param: Some("num_ctx".into()),
                message: "num_ctx must be at least 1 token".into(),
            });
        }
        let http = crate::http::client(&name)?;
        let client = Ollama::builder().url(url.clone()).reqwest_client(http.clone()).build();
        Ok(Self {
            name,
            base: url.to_string(),
            options,
            http,
            client,
            default_model: Mutex::new(None),
        })
    }

    fn endpoint(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The URL as users write it, for messages.
    fn at(&self) -> &str {
        self.base.trim_end_matches('/')
    }

    fn default_model(&self) -> Option<String> {
        self.default_model.lock().ok().and_then(|m| m.clone())
    }

    fn unreachable(&self, e: &reqwest::Error) -> BackendError {
        BackendError::Unavailable {
            backend: self.name.clone(),
            cause: format!("Ollama at {} is not reachable: {}", self.at(), error_chain(e)),
        }
    }

    /// Sends a request; an error answer is mapped as concerning `model`.
    async fn send(&self, builder: reqwest::RequestBuilder, model: &str) -> Result<reqwest::Response, BackendError> {
        let response = builder.send().await.map_err(|e| self.unreachable(&e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = response.text().await.unwrap_or_default();
        let message = error_message(Some(status.as_u16()), &body);
        Err(ollama_error(&self.name, Some(status.as_u16()), message, model))
    }

    /// Maps an error of ollama-rs's own calls.
    fn library_error(&self, e: OllamaError, model: &str) -> BackendError {
        match e {
            OllamaError::ReqwestError(e) => self.unreachable(&e),
            // ollama-rs keeps the body of an error answer but not its status.
            OllamaError::Other(body) => ollama_error(&self.name, None, error_message(None, &body), model),
            OllamaError::JsonError(e) => BackendError::Failed {
                code: ErrorCode::OllamaBadResponse,
                message: format!("Ollama at {} answered with JSON Hearth cannot read: {e}", self.at()),
            },
            other => BackendError::Failed {
                code: ErrorCode::OllamaError,
                message: other.to_string(),
            },
        }
    }

    async fn pulled(&self) -> Result<Vec<LocalModel>, BackendError> {
        self.client
            .list_local_models()
            .await
            .map_err(|e| self.library_error(e, ""))
    }

    /// The context the model was trained for, from `/api/show`; `None` when Ollama does not say.
    async fn trained_context(&self, model: &str) -> Option<u32> {
        let info = match self.client.show_model_info(model.to_owned()).await {
            Ok(info) => info,
            Err(e) => {
                tracing::debug!(model, error = %e, "ollama: /api/show failed");
                return None;
            }
        };
        let keys = &info.model_info;
        let arch_key = keys
            .get("general.architecture")
            .and_then(Value::as_str)
            .map(|arch| format!("{arch}.context_length"));
        let value = arch_key.and_then(|k| keys.get(&k)).or_else(|| {
            keys.iter()
                .find(|(k, _)| k.ends_with(".context_length"))
                .map(|(_, v)| v)
        })?;
        u32::try_from(value.as_u64()?).ok()
    }

    /// Asks Ollama to load (`keep_alive` as configured) or free (`keep_alive` 0) a model:
    /// `/api/generate` with an empty prompt does only that.
    async fn schedule(
        &self,
        model: &str,
        options: Option<ModelOptions>,
        keep_alive: Option<KeepAlive>,
    ) -> Result<(), BackendError> {
        let mut request = GenerationRequest::new(model.to_owned(), "");
        request.options = options;
        request.keep_alive = keep_alive;
        let body = with_stream(&request, false)?;
        self.send(self.http.post(self.endpoint("api/generate")).json(&body), model)
            .await?;
        Ok(())
    }

    /// Every option explicitly: what Ollama is not told comes from the Modelfile or its defaults.
    fn model_options(&self, p: &SamplingParams) -> ModelOptions {
        let options = ModelOptions::default()
            .num_ctx(u64::from(self.options.num_ctx))
            .temperature(p.temperature)
            // validate() rejected negative values.
            .top_k(u32::try_from(p.top_k).unwrap_or(0))
            .top_p(p.top_p)
            .min_p(p.min_p)
            .repeat_penalty(p.repeat_penalty)
            .repeat_last_n(p.repeat_last_n)
            .num_predict(i32::try_from(p.max_tokens).unwrap_or(i32::MAX))
            // ModelOptions::seed takes an i32; Ollama takes any integer, so the u32 goes unchanged.
            .extra("seed", p.seed)
            .extra("frequency_penalty", p.frequency_penalty) // OpenAI's penalties, by their names
            .extra("presence_penalty", p.presence_penalty);
        // An empty list would replace the Modelfile's stop strings (the template's end-of-turn
        // markers) with none, so it is only sent when there is something to stop at.
        if p.stop.is_empty() {
            options
        } else {
            options.stop(p.stop.clone())
        }
    }

    fn request_body(&self, model: &str, request: &GenerateRequest) -> Result<(&'static str, Value), BackendError> {
        let options = self.model_options(&request.params);
        let keep_alive = self.options.keep_alive.clone();
        match &request.prompt {
            Prompt::Chat(messages) => {
                let mut chat = ChatMessageRequest::new(model.to_owned(), messages.iter().map(to_ollama).collect());
                chat.options = Some(options);
                chat.keep_alive = keep_alive;
                Ok(("api/chat", with_stream(&chat, true)?))
            }
            Prompt::Text(text) => {
                // raw: the text is continued as is, without the model's template.
                let mut generate = GenerationRequest::new(model.to_owned(), text.as_str()).raw(true);
                generate.options = Some(options);
                generate.keep_alive = keep_alive;
                Ok(("api/generate", with_stream(&generate, true)?))
            }
        }
    }

    /// `/api/version` answers only if an Ollama server is there.
    async fn probe_version(&self) -> Result<String, String> {
        let response = self
            .http
            .get(self.endpoint("api/version"))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .map_err(|e| format!("Ollama at {} is not reachable: {}", self.at(), error_chain(&e)))?;
        let status = response.status();
        let not_ollama = |why: String| format!("{} does not look like Ollama: /api/version {why}", self.at());
        if !status.is_success() {
            return Err(not_ollama(format!("answered {status}")));
        }
        let body: Value = response
            .json()
            .await
            .map_err(|e| not_ollama(format!("is not JSON: {e}")))?;
        body["version"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| not_ollama("has no version".into()))
    }
}

/// Checks the URL now, so that a typo is reported by name rather than as a connection error later.
fn parse_base_url(base_url: &str) -> Result<reqwest::Url, BackendError> {
    let invalid = |why: String| BackendError::InvalidRequest {
        param: Some("url".into()),
        message: format!("`{base_url}` is not a valid Ollama URL ({why}); expected e.g. http://127.0.0.1:11434"),
    };
    let mut url = reqwest::Url::parse(base_url.trim()).map_err(|e| invalid(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(invalid("it needs http:// or https:// and a host".into()));
    }
    url.set_query(None);
    url.set_fragment(None);
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

/// ollama-rs sets `stream` only inside its own send methods (the field is private), so
/// the request is serialised here and the flag set on the JSON.
fn with_stream(request: &impl Serialize, stream: bool) -> Result<Value, BackendError> {
    let mut body = serde_json::to_value(request).map_err(|e| BackendError::Failed {
        code: ErrorCode::OllamaRequest,
        message: format!("cannot encode the Ollama request: {e}"),
    })?;
    if let Some(object) = body.as_object_mut() {
        object.insert("stream".into(), Value::Bool(stream));
    }
    Ok(body)
}

fn to_ollama(message: &ChatMessage) -> OllamaMessage {
    let role = match message.role {
        Role::System => MessageRole::System,
        Role::User => MessageRole::User,
        Role::Assistant => MessageRole::Assistant,
    };
    OllamaMessage::new(role, message.content.clone())
}

/// Ollama resolves a name without a tag to `:latest`: `llama3.2` is `llama3.2:latest`.
fn same_model(listed: &str, wanted: &str) -> bool {
    listed == wanted || (!wanted.contains(':') && listed.strip_suffix(":latest") == Some(wanted))
}

impl Backend for OllamaBackend {
    fn name(&self) -> &str {
        &self.name
    }

    fn load<'a>(&'a self, model: &'a str) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move {
            let pulled = self.pulled().await?;
            let Some(found) = pulled.into_iter().find(|m| same_model(&m.name, model)) else {
                return Err(BackendError::ModelNotFound {
                    model: model.to_owned(),
                });
            };
            // Loaded now, with the context every request will ask for: the first reply does
            // not pay for the load, and a model that does not fit fails here, not mid-chat.
            let options = ModelOptions::default().num_ctx(u64::from(self.options.num_ctx));
            self.schedule(&found.name, Some(options), self.options.keep_alive.clone())
                .await?;
            if let Ok(mut m) = self.default_model.lock() {
                *m = Some(found.name);
            }
            Ok(())
        })
    }

    fn unload(&self) -> BoxFuture<'_, Result<(), BackendError>> {
        Box::pin(async move {
            let Some(model) = self.default_model.lock().ok().and_then(|mut m| m.take()) else {
                return Ok(());
            };
            // Ollama would keep the model in memory for keep_alive; keep_alive 0 frees it now.
            match self.schedule(&model, None, Some(KeepAlive::UnloadOnCompletion)).await {
                Ok(()) | Err(BackendError::ModelNotFound { .. }) => Ok(()),
                Err(e) => Err(e),
            }
        })
    }

    fn models(&self) -> BoxFuture<'_, Result<Vec<ModelDescriptor>, BackendError>> {
        Box::pin(async move {
            let pulled = self.pulled().await?;
            let trained = join_all(pulled.iter().map(|m| self.trained_context(&m.name))).await;
            Ok(pulled
                .into_iter()
                .zip(trained)
                .map(|(m, trained)| ModelDescriptor {
                    id: m.name,
                    owned_by: "ollama".into(),
                    // What a request gets: num_ctx, capped by Ollama at the trained context.
                    context_length: trained.map(|t| t.min(self.options.num_ctx)),
                    // Ollama applies the model's template to every chat.
                    has_chat_template: Some(true),
                    device: None,
                    gpu_layers: None,
                    layers_total: None,
                    placement_note: None,
                })
                .collect())
        })
    }

    fn health(&self) -> BoxFuture<'_, Health> {
        Box::pin(async move {
            match self.probe_version().await {
                Ok(version) => tracing::debug!(backend = %self.name, version, "ollama: reachable"),
                Err(reason) => return Health::not_ready(reason),
            }
            let pulled = match self.pulled().await {
                Ok(pulled) => pulled,
                Err(e) => return Health::not_ready(e.to_string()),
            };
            match self.default_model() {
                Some(model) if pulled.iter().any(|m| same_model(&m.name, &model)) => Health::ready(model),
                Some(model) => Health::not_ready(format!(
                    "model {model} is not pulled in Ollama: run `ollama pull {model}`"
                )),
                None if pulled.is_empty() => Health::not_ready(format!(
                    "Ollama at {} has no models: run `ollama pull <model>`",
                    self.at()
                )),
                // Ollama loads models on demand: a request naming any of them is served.
                None => Health {
                    ready: true,
                    model: None,
                    reason: None,
                },
            }
        })
    }

    fn generate(&self, request: GenerateRequest) -> BoxFuture<'_, Result<EventStream, BackendError>> {
        Box::pin(async move {
            request.params.validate()?;
            if !request.params.logit_bias.is_empty() {
                return Err(no_logit_bias(&self.name));
            }
            let model = request
                .model
                .clone()
                .or_else(|| self.default_model())
                .ok_or(BackendError::NotLoaded)?;
            let (path, body) = self.request_body(&model, &request)?;
            let started = Instant::now();
            let response = self
                .send(self.http.post(self.endpoint(path)).json(&body), &model)
                .await?;
            let body: Body<_, _> = Box::pin(response.bytes_stream());
            Ok(Reply::new(body, self.name.clone(), model, started).into_events())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_logit_bias_is_refused_before_anything_is_sent() {
        // Nothing listens on port 9: a request that went out would fail differently.
        let backend = OllamaBackend::new("ollama", "http://127.0.0.1:9", OllamaOptions::default()).expect("backend");
        let mut request = GenerateRequest {
            model: Some("m".into()),
            prompt: Prompt::Text("hi".into()),
            params: SamplingParams::greedy(1),
        };
        request.params.logit_bias = vec![(1, 5.0)];
        let Err(err) = backend.generate(request).await else {
            panic!("a logit_bias went to Ollama");
        };
        assert!(
            matches!(&err, BackendError::InvalidRequest { param: Some(p), message } if p == "logit_bias" && message.contains("Ollama has no logit_bias")),
            "{err:?}"
        );
    }

    #[test]
    fn errors_are_mapped_by_message_and_status() {
        let map = |status, message: &str| ollama_error("ollama", status, message.to_owned(), "m");
        let missing = "model \"m\" not found, try pulling it first";
        assert_eq!(
            map(Some(404), missing),
            BackendError::ModelNotFound { model: "m".into() }
        );
        assert_eq!(map(None, missing), BackendError::ModelNotFound { model: "m".into() });
        assert_eq!(
            map(
                Some(400),
                "the input length (9000 tokens) exceeds the context length (4096)"
            ),
            BackendError::ContextOverflow {
                needed: 9000,
                limit: 4096
            }
        );
        let overflow = map(None, "the input length exceeds the context length");
        assert_eq!(overflow.code(), ErrorCode::ContextLengthExceeded);
        assert!(matches!(
            map(Some(400), "invalid options"),
            BackendError::InvalidRequest { .. }
        ));
        let runner = map(Some(500), "llama runner process has terminated");
        assert!(matches!(runner, BackendError::Upstream { status: 500, .. }) && runner.is_transient());
        assert!(matches!(
            map(Some(503), "server busy, please try again"),
            BackendError::Busy { .. }
        ));
        assert_eq!(map(None, "CUDA error").code(), ErrorCode::OllamaError);
        assert_eq!(
            error_message(Some(502), "<html>bad gateway"),
            "HTTP 502: <html>bad gateway"
        );
    }

    #[test]
    fn urls_and_names() {
        assert_eq!(
            parse_base_url("http://127.0.0.1:11434").map(|u| u.to_string()),
            Ok("http://127.0.0.1:11434/".to_owned())
        );
        assert_eq!(
            parse_base_url("https://h/ollama").map(|u| u.to_string()),
            Ok("https://h/ollama/".to_owned())
        );
        for bad in ["127.0.0.1:11434", "localhost:11434", "ftp://h", ""] {
            let e = parse_base_url(bad).expect_err(bad);
            assert!(
                matches!(&e, BackendError::InvalidRequest { param: Some(p), message } if p == "url" && message.contains(bad)),
                "{e:?}"
            );
        }
        assert!(same_model("llama3.2:latest", "llama3.2"));
        assert!(same_model("llama3.2:1b", "llama3.2:1b"));
        assert!(!same_model("llama3.2:1b", "llama3.2"));
    }
}
