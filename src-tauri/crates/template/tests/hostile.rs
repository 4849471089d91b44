//! Templates are untrusted input: a hostile or broken one fails with a clear error,
//! never a hang, an escape or an exhausted memory.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use hearth_template::{ChatTemplate, Conversation, Limits, SpecialTokens, TemplateError};

fn render(source: &str) -> Result<String, TemplateError> {
    let template = ChatTemplate::new(source, SpecialTokens::default())?;
    template.render(&Conversation {
        messages: &[],
        tools: None,
        add_generation_prompt: true,
    })
}

#[test]
fn an_endless_loop_runs_out_of_fuel() {
    // 10^10 iterations: without a bound this would run for hours.
    let err = render("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}").unwrap_err();
    assert_eq!(err, TemplateError::TooLong(Limits::default().fuel));
    assert!(!err.may_fall_back());
}

#[test]
fn a_gigabyte_of_output_stops_at_the_output_limit() {
    // 100,000 × 10,000 bytes = 1 GB.
    let err = render("{% for i in range(100000) %}{{ 'x' * 10000 }}{% endfor %}").unwrap_err();
    assert_eq!(err, TemplateError::TooLarge(Limits::default().max_output_bytes));
    assert!(err.to_string().contains("more than 8388608 bytes"), "{err}");
}

#[test]
fn one_huge_string_is_refused_by_the_engine() {
    let err = render("{{ 'x' * 1000000000 }}").unwrap_err();
    assert!(
        matches!(err, TemplateError::Failed(ref m) if m.contains("too large")),
        "{err:?}"
    );
}

#[test]
fn python_internals_are_refused_before_the_template_runs() {
    for source in [
        "{{ ''.__class__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ messages['__init__'] }}",
        "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
        "{{ x | attr('__dict__') }}",
    ] {
        let err = ChatTemplate::new(source, SpecialTokens::default()).unwrap_err();
        assert!(matches!(err, TemplateError::Unsafe(_)), "{source}: {err:?}");
        assert!(err.to_string().contains("Python internals"), "{err}");
    }
    // Double underscores elsewhere are fine.
    assert_eq!(
        render("{{ '__init__' }}{% set a__b = 1 %}{{ a__b }}").unwrap(),
        "__init__1"
    );
}

#[test]
fn files_cannot_be_read_and_recursion_is_bounded() {
    for source in [
        "{% include '/etc/passwd' %}",
        "{% import 'x.jinja' as x %}",
        "{% extends '/etc/hosts' %}",
    ] {
        let err = render(source).unwrap_err();
        assert!(
            matches!(err, TemplateError::Failed(ref m) if m.contains("not found")),
            "{source}: {err:?}"
        );
    }
    let err = render("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}").unwrap_err();
    assert!(
        matches!(err, TemplateError::Failed(ref m) if m.contains("recursion")),
        "{err:?}"
    );
}

#[test]
fn limits_can_be_tightened() {
    let limits = Limits {
        fuel: 1_000,
        max_output_bytes: 10,
    };
    let template = ChatTemplate::with_limits("{{ 'x' * 11 }}", SpecialTokens::default(), limits).unwrap();
    let err = template
        .render(&Conversation {
            messages: &[],
            tools: None,
            add_generation_prompt: false,
        })
        .unwrap_err();
    assert_eq!(err, TemplateError::TooLarge(10));
}
