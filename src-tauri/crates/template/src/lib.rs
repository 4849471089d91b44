//! A model's chat template, rendered as the model's authors meant it.
//!
//! GGUF files carry the Jinja2 template their model was trained with
//! (`tokenizer.chat_template`): the turn markers, a default system prompt, how tools and
//! tool results are written. Hugging Face's `apply_chat_template` and llama-server
//! render it with a Jinja engine; llama.cpp's built-in pattern matcher only guesses the
//! family and drops the rest. This crate renders it the way they do (minijinja, with
//! `trim_blocks` and `lstrip_blocks`, the Python string and dict methods templates call,
//! `tojson` as Python's `json.dumps` writes, `raise_exception`, `strftime_now`, and the
//! usual variables), so a prompt here is token for token llama-server's.
//!
//! Templates are untrusted input (anyone can publish a GGUF file): nothing in one can
//! reach a file or the network (no loader: `include` and `import` find nothing), its
//! work is bounded (fuel, recursion) and so is what it writes, and Python internals
//! (`''.__class__`) are refused before it runs. Every failure is a [`TemplateError`]
//! that says what happened; none hangs.

mod env;
mod json;
mod limits;

use minijinja::{Environment, ErrorKind, Value};
use serde::Deserialize;

pub use limits::Limits;

/// The special tokens a template may write, and whether the tokenizer adds them itself.
///
/// A template that writes `{{ bos_token }}` for a tokenizer that also adds one would
/// give the model two: as llama-server does, the rendered text then loses its leading
/// BOS (and its trailing EOS where the tokenizer appends one).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpecialTokens {
    pub bos: String,
    pub eos: String,
    pub add_bos: bool,
    pub add_eos: bool,
}

/// What a template renders: the conversation as JSON objects (`role`, `content`, and
/// whatever else the API carries, such as `tool_calls`), the tools offered, and whether
/// to open the assistant's turn.
#[derive(Debug, Clone, Copy)]
pub struct Conversation<'a> {
    pub messages: &'a [serde_json::Value],
    /// `None`: the variable is not defined at all (templates test `tools is defined`).
    pub tools: Option<&'a [serde_json::Value]>,
    pub add_generation_prompt: bool,
}

/// Why a template could not write a prompt.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("the chat template is not valid Jinja: {0}")]
    Syntax(String),
    #[error("the chat template reaches into Python internals (`{0}`), which Hearth never runs")]
    Unsafe(String),
    /// The template's own `raise_exception`: the conversation breaks one of its rules
    /// (for example, roles that do not alternate).
    #[error("the chat template refused this conversation: {0}")]
    Raised(String),
    #[error("the chat template did not finish within {0} steps: it loops or is far too complex")]
    TooLong(u64),
    #[error("the chat template wrote more than {0} bytes: it loops or is hostile")]
    TooLarge(usize),
    /// Anything else a template can get wrong while rendering (an unknown filter, a
    /// type error): what a fallback may cover.
    #[error("the chat template failed: {0}")]
    Failed(String),
}

impl TemplateError {
    /// Whether the template itself could not be followed (a construct or method this
    /// engine lacks, a syntax error), as opposed to a conversation it refused or a limit
    /// it broke: the model's template then falls back to the built-in formats.
    pub fn may_fall_back(&self) -> bool {
        matches!(self, TemplateError::Syntax(_) | TemplateError::Failed(_))
    }
}

/// A compiled chat template, ready to render any number of conversations.
pub struct ChatTemplate {
    env: Environment<'static>,
    tokens: SpecialTokens,
    limits: Limits,
}

const NAME: &str = "chat_template";

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("tokens", &self.tokens)
            .finish_non_exhaustive()
    }
}

impl ChatTemplate {
    /// Checks and compiles `source` with the default [`Limits`].
    pub fn new(source: &str, tokens: SpecialTokens) -> Result<Self, TemplateError> {
        Self::with_limits(source, tokens, Limits::default())
    }

    /// Checks and compiles `source`; every render is bounded by `limits`.
    pub fn with_limits(source: &str, tokens: SpecialTokens, limits: Limits) -> Result<Self, TemplateError> {
        limits::check_source(source)?;
        let mut env = env::environment(&limits);
        env.add_template_owned(NAME, source.to_owned())
            .map_err(|e| TemplateError::Syntax(describe(&e)))?;
        Ok(Self { env, tokens, limits })
    }

    /// The prompt for `conversation`, as text with the special tokens written out.
    pub fn render(&self, conversation: &Conversation) -> Result<String, TemplateError> {
        let template = self
            .env
            .get_template(NAME)
            .map_err(|e| TemplateError::Failed(describe(&e)))?;
        let context = self.context(conversation);
        let mut out = limits::CappedWriter::new(self.limits.max_output_bytes);
        template
            .render_captured_to(context, &mut out)
            .map_err(|e| self.error(&e))?;
        let mut text = String::from_utf8(out.into_inner())
            .map_err(|_| TemplateError::Failed("it wrote text that is not UTF-8".into()))?;
        let SpecialTokens {
            bos,
            eos,
            add_bos,
            add_eos,
        } = &self.tokens;
        if *add_bos && !bos.is_empty() && text.starts_with(bos.as_str()) {
            text.drain(..bos.len());
        }
        if *add_eos && !eos.is_empty() && text.ends_with(eos.as_str()) {
            text.truncate(text.len() - eos.len());
        }
        Ok(text)
    }

    /// The variables llama-server passes (Hugging Face passes the same, less
    /// `enable_thinking`, which templates read as "on" when it is missing).
    fn context(&self, c: &Conversation) -> Value {
        let mut vars = serde_json::Map::new();
        vars.insert("messages".into(), serde_json::Value::Array(c.messages.to_vec()));
        if let Some(tools) = c.tools {
            vars.insert("tools".into(), serde_json::Value::Array(tools.to_vec()));
        }
        vars.insert("add_generation_prompt".into(), c.add_generation_prompt.into());
        vars.insert("bos_token".into(), self.tokens.bos.clone().into());
        vars.insert("eos_token".into(), self.tokens.eos.clone().into());
        vars.insert("enable_thinking".into(), true.into());
        // serde_json's values read into minijinja's (its serde support is a deserializer).
        Value::deserialize(serde_json::Value::Object(vars)).unwrap_or_default()
    }

    fn error(&self, e: &minijinja::Error) -> TemplateError {
        if let Some(raised) = env::raised(e) {
            return TemplateError::Raised(raised);
        }
        match e.kind() {
            ErrorKind::OutOfFuel => TemplateError::TooLong(self.limits.fuel),
            ErrorKind::WriteFailure => TemplateError::TooLarge(self.limits.max_output_bytes),
            _ => TemplateError::Failed(describe(e)),
        }
    }
}

/// minijinja's message with the line it points at, on one line.
fn describe(e: &minijinja::Error) -> String {
    let mut text = e.kind().to_string();
    if let Some(detail) = e.detail() {
        text = format!("{text}: {detail}");
    }
    if let Some(line) = e.line() {
        text = format!("{text} (line {line})");
    }
    text
}
