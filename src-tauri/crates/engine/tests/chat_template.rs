//! Chats are written with the model's own Jinja template, token for token as the
//! reference renders it; a template of the user's takes its place; a broken or hostile
//! one is a clear error.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{gemma, shared_smollm, smollm};
use hearth_core::{ChatMessage, ErrorCode, PromptFormat, SamplingParams};
use hearth_engine::{Engine, EngineConfig, EngineError, GenerationRequest, Prompt};

/// A template that writes `text` verbatim: tokenizing it gives llama.cpp's tokens for
/// exactly that text, special tokens parsed as a chat template's are.
fn verbatim(text: &str) -> String {
    format!("{{{{ {} }}}}", serde_json::to_string(text).unwrap())
}

fn load_with_template(path: std::path::PathBuf, template: String) -> Result<Engine, EngineError> {
    Engine::load(EngineConfig {
        max_draft: 0,
        chat_template: Some(template),
        ..EngineConfig::new(path).with_n_ctx(1024)
    })
}

fn one_question() -> Vec<ChatMessage> {
    vec![ChatMessage::user("Say hello in three words.")]
}

fn a_conversation() -> Vec<ChatMessage> {
    vec![
        ChatMessage::system("You answer in French."),
        ChatMessage::user("Hi!"),
        ChatMessage::assistant("Bonjour !"),
        ChatMessage::user("Name a colour."),
    ]
}

/// What Jinja2 3.1 renders from SmolLM2's `tokenizer.chat_template` with Hugging
/// Face's settings (`ImmutableSandboxedEnvironment(trim_blocks=True,
/// lstrip_blocks=True)`, `add_generation_prompt=True`), read from the GGUF file with the
/// `gguf` Python package: the model's default system prompt is added where the
/// conversation has none.
const SMOLLM_ONE_QUESTION: &str = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nSay hello in three words.<|im_end|>\n<|im_start|>assistant\n";
const SMOLLM_CONVERSATION: &str = "<|im_start|>system\nYou answer in French.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\nBonjour !<|im_end|>\n<|im_start|>user\nName a colour.<|im_end|>\n<|im_start|>assistant\n";

#[test]
fn smollm_chats_are_its_own_template_token_for_token() {
    let engine = shared_smollm();
    let reference = load_with_template(
        smollm(),
        format!(
            "{{% if messages | length == 1 %}}{}{{% else %}}{}{{% endif %}}",
            verbatim(SMOLLM_ONE_QUESTION),
            verbatim(SMOLLM_CONVERSATION)
        ),
    )
    .unwrap();
    for chat in [one_question(), a_conversation()] {
        let ours = engine.tokenize(Prompt::Chat(chat.clone())).unwrap();
        let expected = reference.tokenize(Prompt::Chat(chat)).unwrap();
        assert_eq!(ours, expected);
    }
    // llama-server (Jinja, its default) counts 36 prompt tokens for the one question;
    // llama.cpp's built-in format, without the default system prompt, 15.
    assert_eq!(engine.count_tokens(Prompt::Chat(one_question())).unwrap(), 36);
}

#[test]
fn a_reply_says_how_its_prompt_was_written() {
    let engine = shared_smollm();
    let chat = engine
        .generate_text(GenerationRequest {
            prompt: Prompt::Chat(one_question()),
            params: SamplingParams::greedy(4),
        })
        .unwrap();
    assert_eq!(chat.metrics.prompt_format, Some(PromptFormat::ModelTemplate));
    assert_eq!(chat.metrics.prompt_tokens, 36);
    let text = engine
        .generate_text(GenerationRequest {
            prompt: Prompt::Text("Once upon a time".into()),
            params: SamplingParams::greedy(4),
        })
        .unwrap();
    assert_eq!(text.metrics.prompt_format, None);
}

#[test]
fn a_template_of_the_users_gives_a_base_model_chats() {
    let engine = load_with_template(
        gemma(),
        "{% for m in messages %}{{ m.role | upper }}: {{ m.content }}\n{% endfor %}ASSISTANT:".into(),
    )
    .unwrap();
    assert!(engine.info().has_chat_template);
    let out = engine
        .generate_text(GenerationRequest {
            prompt: Prompt::Chat(one_question()),
            params: SamplingParams::greedy(4),
        })
        .unwrap();
    assert_eq!(out.metrics.prompt_format, Some(PromptFormat::UserTemplate));
    assert!(out.metrics.completion_tokens > 0);
}

#[test]
fn a_base_model_without_a_template_refuses_chats_and_says_what_to_do() {
    let engine = common::shared_gemma();
    assert!(!engine.info().has_chat_template);
    let err = engine.count_tokens(Prompt::Chat(one_question())).unwrap_err();
    assert_eq!(err.code(), ErrorCode::NoChatTemplate);
    assert!(err.to_string().contains("plain completion"), "{err}");
}

#[test]
fn a_broken_template_of_the_users_fails_the_load_and_a_hostile_one_fails_the_request() {
    let err = load_with_template(smollm(), "{% for m in messages %}".into()).unwrap_err();
    assert_eq!(err.code(), ErrorCode::TemplateFailed);
    assert!(err.to_string().contains("chat template file you chose"), "{err}");

    let err = load_with_template(smollm(), "{{ ''.__class__ }}".into()).unwrap_err();
    assert!(err.to_string().contains("Python internals"), "{err}");

    let looping = load_with_template(
        smollm(),
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}".into(),
    )
    .unwrap();
    let err = looping.count_tokens(Prompt::Chat(one_question())).unwrap_err();
    assert_eq!(err.code(), ErrorCode::TemplateFailed);
    assert!(err.to_string().contains("did not finish"), "{err}");

    let raising = load_with_template(
        smollm(),
        "{% if messages[0].role != 'system' %}{{ raise_exception('A system message must come first') }}{% endif %}x"
            .into(),
    )
    .unwrap();
    let err = raising
        .generate_text(GenerationRequest {
            prompt: Prompt::Chat(one_question()),
            params: SamplingParams::greedy(4),
        })
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::TemplateFailed);
    assert!(err.to_string().contains("A system message must come first"), "{err}");
}
