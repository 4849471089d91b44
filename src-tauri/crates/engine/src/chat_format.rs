//! How a chat becomes prompt text for the loaded model: its own Jinja template (or the
//! user's, in its place) rendered by `hearth-template`, as llama-server and Hugging Face
//! render it; llama.cpp's built-in formats only where the model's template cannot be
//! followed, said once in the log and in every such reply's metrics.

use hearth_core::PromptFormat;
use hearth_template::{ChatTemplate, Conversation, SpecialTokens};
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::token::LlamaToken;

use crate::engine::Prompt;
use crate::EngineError;

/// The loaded model's way of writing chats.
pub(crate) struct ChatFormat {
    name: String,
    /// The Jinja template, and whether it is the model's or the user's.
    jinja: Option<(ChatTemplate, PromptFormat)>,
    /// The model's template for llama.cpp's pattern matcher: the fallback.
    builtin: Option<LlamaChatTemplate>,
}

impl ChatFormat {
    /// The format for `model`: `user`'s template source in place of the model's when
    /// given (an invalid one is an error: the user chose it), else the model's own.
    pub(crate) fn new(model: &LlamaModel, name: &str, user: Option<&str>) -> Result<Self, EngineError> {
        let builtin = model.chat_template(None).ok();
        let tokens = special_tokens(model);
        let jinja = match user {
            Some(source) => {
                let template = ChatTemplate::new(source, tokens).map_err(|e| EngineError::TemplateFailed {
                    model: name.to_owned(),
                    reason: format!("{e} (in the chat template file you chose)"),
                })?;
                Some((template, PromptFormat::UserTemplate))
            }
            None => builtin
                .as_ref()
                .and_then(|t| t.to_str().ok())
                .and_then(|source| match ChatTemplate::new(source, tokens) {
                    Ok(template) => Some((template, PromptFormat::ModelTemplate)),
                    Err(e) => {
                        tracing::warn!(model = name, error = %e, "the model's chat template cannot be used; chats use llama.cpp's built-in format for it");
                        None
                    }
                }),
        };
        Ok(Self {
            name: name.to_owned(),
            jinja,
            builtin,
        })
    }

    /// Whether chats can be written at all.
    pub(crate) fn has_chat_template(&self) -> bool {
        self.jinja.is_some() || self.builtin.is_some()
    }

    /// The prompt's tokens, and for a chat how it was written.
    pub(crate) fn tokenize(
        &self,
        model: &LlamaModel,
        prompt: &Prompt,
    ) -> Result<(Vec<LlamaToken>, Option<PromptFormat>), EngineError> {
        let vocab = model.vocab();
        let (tokens, format) = match prompt {
            Prompt::Text(text) => (vocab.tokenize(text.as_bytes(), true, false), None),
            Prompt::Chat(messages) => {
                let (text, format) = self.render(model, messages)?;
                // The template writes special tokens as text (<|im_start|> …): parse them.
                (vocab.tokenize(text.as_bytes(), true, true), Some(format))
            }
        };
        if tokens.is_empty() {
            return Err(EngineError::InvalidSettings(
                "the prompt is empty: write something to continue".into(),
            ));
        }
        Ok((tokens, format))
    }

    /// The chat as text: the Jinja template's, or the built-in format's where the
    /// model's template could not be followed.
    fn render(
        &self,
        model: &LlamaModel,
        messages: &[hearth_core::ChatMessage],
    ) -> Result<(String, PromptFormat), EngineError> {
        let failed = |reason: String| EngineError::TemplateFailed {
            model: self.name.clone(),
            reason,
        };
        if let Some((template, format)) = &self.jinja {
            let messages: Vec<serde_json::Value> = messages
                .iter()
                .map(|m| serde_json::json!({"role": m.role.as_str(), "content": m.content}))
                .collect();
            let conversation = Conversation {
                messages: &messages,
                tools: None,
                add_generation_prompt: true,
            };
            match template.render(&conversation) {
                Ok(text) => return Ok((text, *format)),
                Err(e) if *format == PromptFormat::ModelTemplate && e.may_fall_back() => {
                    tracing::warn!(model = %self.name, error = %e, "the model's chat template failed; this reply uses llama.cpp's built-in format");
                }
                Err(e) => return Err(failed(e.to_string())),
            }
        }
        let Some(builtin) = &self.builtin else {
            return Err(EngineError::NoChatTemplate {
                model: self.name.clone(),
            });
        };
        let chat = messages
            .iter()
            .map(|m| LlamaChatMessage::new(m.role.as_str().to_owned(), m.content.clone()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| failed(e.to_string()))?;
        let text = model
            .apply_chat_template(builtin, &chat, true)
            .map_err(|e| failed(e.to_string()))?;
        Ok((text, PromptFormat::Builtin))
    }
}

/// The BOS and EOS text a template writes, and whether the tokenizer adds them itself
/// (llama-server's rule: then the rendered text loses them).
fn special_tokens(model: &LlamaModel) -> SpecialTokens {
    let vocab = model.vocab();
    let piece = |token: LlamaToken| {
        if token.0 < 0 {
            String::new()
        } else {
            String::from_utf8_lossy(&vocab.token_to_piece(token, true, None)).into_owned()
        }
    };
    SpecialTokens {
        bos: piece(vocab.bos()),
        eos: piece(vocab.eos()),
        add_bos: vocab.should_add_bos(),
        add_eos: vocab.should_add_eos(),
    }
}
