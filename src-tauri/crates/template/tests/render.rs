//! The Jinja constructs real chat templates use, rendered as Hugging Face's
//! `apply_chat_template` (Jinja2 with `trim_blocks` and `lstrip_blocks`) renders them.
//! Each expected text is what Jinja2 3.1 writes for the same template and variables.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use hearth_template::{ChatTemplate, Conversation, SpecialTokens, TemplateError};
use serde_json::{json, Value};

fn tokens() -> SpecialTokens {
    SpecialTokens {
        bos: "<s>".into(),
        eos: "</s>".into(),
        add_bos: false,
        add_eos: false,
    }
}

fn render_with(
    source: &str,
    tokens: SpecialTokens,
    messages: &[Value],
    tools: Option<&[Value]>,
) -> Result<String, TemplateError> {
    let template = ChatTemplate::new(source, tokens)?;
    template.render(&Conversation {
        messages,
        tools,
        add_generation_prompt: true,
    })
}

fn render(source: &str, messages: &[Value]) -> String {
    render_with(source, tokens(), messages, None).unwrap_or_else(|e| panic!("{e}"))
}

fn chat() -> Vec<Value> {
    vec![
        json!({"role": "system", "content": "  Be brief.  "}),
        json!({"role": "user", "content": "Hi there"}),
        json!({"role": "assistant", "content": "Hello!"}),
        json!({"role": "user", "content": "Name three colours."}),
    ]
}

#[test]
fn the_chatml_family_renders_with_block_whitespace_trimmed() {
    let source = include_str!("fixtures/chatml.jinja");
    // Expression lines keep their indentation and newline: only block tags are trimmed.
    assert_eq!(
        render(source, &chat()),
        "    <|im_start|>system\nBe brief.<|im_end|>\n\n    <|im_start|>user\nHi there<|im_end|>\n\n    \
         <|im_start|>assistant\nHello!<|im_end|>\n\n    <|im_start|>user\nName three colours.<|im_end|>\n\n    \
         <|im_start|>assistant\n\n"
    );
}

#[test]
fn a_default_system_prompt_is_added_when_the_conversation_has_none() {
    let source = include_str!("fixtures/chatml.jinja");
    let text = render(source, &[json!({"role": "user", "content": "Hi"})]);
    assert_eq!(
        text,
        "        <|im_start|>system\nYou are a helpful assistant.<|im_end|>\n\n    <|im_start|>user\nHi<|im_end|>\n\n    <|im_start|>assistant\n\n"
    );
}

#[test]
fn python_string_methods_namespace_and_loop_controls_work() {
    let source = "{% set ns = namespace(words=0, last='') %}\
        {% for m in messages %}{% if m.role == 'assistant' %}{% continue %}{% endif %}\
        {% set ns.words = ns.words + (m.content.strip().split(' ') | length) %}\
        {% set ns.last = m.content.upper().replace(' ', '_') %}\
        {% if loop.index > 3 %}{% break %}{% endif %}{% endfor %}\
        {{ ns.words }} {{ ns.last }} {{ 'a,b'.split(',') | join('+') }} {{ messages[1].content.startswith('Hi') }}";
    assert_eq!(render(source, &chat()), "7 NAME_THREE_COLOURS. a+b True");
}

#[test]
fn tojson_writes_what_pythons_json_dumps_writes() {
    let tools = vec![json!({
        "type": "function",
        "function": {"name": "get_weather", "description": "Weather in a city, °C",
                     "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer", "maximum": 7.5}},
                                    "required": ["city"]}}
    })];
    let one_line = render_with("{{ tools[0] | tojson }}", tokens(), &[], Some(&tools)).unwrap();
    // json.dumps(tool, ensure_ascii=False): ", " and ": ", keys in their order, "°" kept.
    assert_eq!(
        one_line,
        r#"{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city, °C", "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer", "maximum": 7.5}}, "required": ["city"]}}}"#
    );
    let indented = render_with(
        "{{ tools[0].function.parameters.required | tojson(indent=2) }}",
        tokens(),
        &[],
        Some(&tools),
    )
    .unwrap();
    assert_eq!(indented, "[\n  \"city\"\n]");
    let ascii = render_with(
        "{{ tools[0].function.description | tojson(ensure_ascii=True) }}",
        tokens(),
        &[],
        Some(&tools),
    )
    .unwrap();
    assert_eq!(ascii, r#""Weather in a city, \u00b0C""#);
    let compact = render_with(
        "{{ {'b': 1, 'a': [1.0, none, true, '<x>\n']} | tojson(separators=(',', ':'), sort_keys=True) }}",
        tokens(),
        &[],
        None,
    )
    .unwrap();
    assert_eq!(compact, r#"{"a":[1.0,null,true,"<x>\n"],"b":1}"#);
}

#[test]
fn tools_are_undefined_unless_offered() {
    let source = "{% if tools is defined %}{{ tools | length }} tools{% else %}no tools{% endif %}";
    assert_eq!(render(source, &[]), "no tools");
    let tools = vec![json!({"type": "function", "function": {"name": "f"}})];
    assert_eq!(render_with(source, tokens(), &[], Some(&tools)).unwrap(), "1 tools");
}

#[test]
fn the_bos_a_tokenizer_adds_itself_is_not_written_twice() {
    let source = "{{ bos_token }}{% for m in messages %}{{ m.content }}{% endfor %}{{ eos_token }}";
    let messages = [json!({"role": "user", "content": "x"})];
    assert_eq!(render_with(source, tokens(), &messages, None).unwrap(), "<s>x</s>");
    let adds = SpecialTokens {
        add_bos: true,
        add_eos: true,
        ..tokens()
    };
    assert_eq!(render_with(source, adds, &messages, None).unwrap(), "x");
}

#[test]
fn a_template_that_raises_says_why_in_its_own_words() {
    let source = "{% for m in messages %}{% if (m.role == 'user') != (loop.index0 % 2 == 0) %}\
        {{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% endfor %}";
    let err = render_with(source, tokens(), &[json!({"role": "assistant", "content": "x"})], None).unwrap_err();
    assert_eq!(
        err,
        TemplateError::Raised("Conversation roles must alternate user/assistant/user/assistant/...".into())
    );
    assert!(!err.may_fall_back());
    assert!(err.to_string().contains("roles must alternate"), "{err}");
}

#[test]
fn strftime_now_writes_todays_date() {
    let text = render("{{ strftime_now('%d %b %Y') }}", &[]);
    let today = chrono::Local::now().format("%d %b %Y").to_string();
    // Around midnight the render and the check may see different days.
    let yesterday = (chrono::Local::now() - chrono::Duration::days(1))
        .format("%d %b %Y")
        .to_string();
    assert!(text == today || text == yesterday, "{text} vs {today}");
    let err = render_with("{{ strftime_now('%Q') }}", tokens(), &[], None).unwrap_err();
    assert!(err.to_string().contains("not a strftime format"), "{err}");
}

#[test]
fn syntax_errors_and_unknown_filters_are_failures_a_fallback_may_cover() {
    let err = ChatTemplate::new("{% for m in messages %}", tokens()).unwrap_err();
    assert!(matches!(err, TemplateError::Syntax(_)), "{err:?}");
    assert!(err.may_fall_back());
    let err = render_with("{{ messages | no_such_filter }}", tokens(), &[], None).unwrap_err();
    assert!(matches!(err, TemplateError::Failed(_)), "{err:?}");
    assert!(err.may_fall_back());
}
