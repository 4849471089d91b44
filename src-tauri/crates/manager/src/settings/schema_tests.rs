//! The settings table against the settings types: every setting in it once, its
//! defaults the types' own, and each kind of value checked as the table says.

use std::collections::BTreeSet;

use super::*;
use crate::settings::{BackendKind, OllamaSettings, Secret, Settings, VllmSettings};

/// Every leaf key of `table`, dotted.
fn leaf_keys(table: &toml::Table, prefix: &str, out: &mut BTreeSet<String>) {
    for (key, value) in table {
        let dotted = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match value {
            toml::Value::Table(inner) => leaf_keys(inner, &dotted, out),
            _ => {
                out.insert(dotted);
            }
        }
    }
}

/// `settings` as the file holds them.
fn table_of(settings: Settings) -> toml::Table {
    match toml::Value::try_from(settings).expect("serializes") {
        toml::Value::Table(table) => table,
        other => panic!("not a table: {other}"),
    }
}

/// Settings with every optional part set, so that every key appears.
fn everything() -> Settings {
    let mut s = Settings::default();
    s.embedded.threads = Some(4);
    s.api.token = Some(Secret::new("t"));
    s.ollama = Some(OllamaSettings {
        url: "http://127.0.0.1:11434".into(),
        model: "llama3.2".into(),
        num_ctx: 4096,
    });
    s.vllm = Some(VllmSettings {
        url: "http://127.0.0.1:8000/v1".into(),
        model: Some("m".into()),
        api_key: Some(Secret::new("k")),
        stall_timeout_ms: 120_000,
    });
    s.fallback = vec![BackendKind::Ollama];
    s
}

#[test]
fn every_setting_is_in_the_table_once() {
    let table = table_of(everything());
    let mut in_file = BTreeSet::new();
    leaf_keys(&table, "", &mut in_file);
    let in_table: BTreeSet<String> = fields()
        .filter(|f| !f.key.starts_with("ui."))
        .map(|f| f.key.to_owned())
        .collect();
    assert_eq!(in_file, in_table, "settings.toml's keys and the table's");
    let names: Vec<&str> = fields().map(|f| f.name).collect();
    let unique: BTreeSet<&str> = names.iter().copied().collect();
    assert_eq!(unique.len(), names.len(), "names once: {names:?}");
    let envs: Vec<&str> = fields().filter_map(|f| f.env).collect();
    assert_eq!(envs.iter().collect::<BTreeSet<_>>().len(), envs.len(), "{envs:?}");
    assert!(envs.iter().all(|e| e.starts_with("HEARTH_")), "{envs:?}");
    // A backend's section is its own: its keys are under its name.
    for spec in REGISTRY.iter() {
        for field in spec.section {
            assert!(field.key.starts_with(&format!("{}.", spec.kind)), "{}", field.key);
        }
    }
}

#[test]
fn the_defaults_are_the_types_own() {
    let table = table_of(everything());
    let defaults = table_of(Settings::default());
    for field in fields().filter(|f| !f.key.starts_with("ui.")) {
        let Some(value) = lookup(&defaults, field.key).or_else(|| lookup(&table, field.key)) else {
            continue;
        };
        let text = match value {
            toml::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        // Absent by default (automatic, none) is an empty default in the table.
        let absent_by_default =
            lookup(&defaults, field.key).is_none() && !matches!(field.key, "ollama.num_ctx" | "vllm.stall_timeout_ms");
        if absent_by_default || field.value == FieldValue::BackendList {
            assert_eq!(field.default, "", "{}", field.key);
        } else {
            assert_eq!(field.default, text, "{}", field.key);
        }
    }
    let sampling = hearth_core::SamplingParams::default();
    let default_of = |name| named(name).expect(name).default;
    assert_eq!(default_of("temperature"), sampling.temperature.to_string());
    assert_eq!(default_of("topP"), sampling.top_p.to_string());
    assert_eq!(default_of("maxTokens"), sampling.max_tokens.to_string());
}

#[test]
fn each_value_is_checked_as_the_table_says() {
    use toml::Value;
    let ctx = field("embedded.ctx").expect("ctx");
    assert!(check(ctx, &Value::Integer(4096)).is_ok());
    let e = check(ctx, &Value::Integer(100)).expect_err("too small");
    assert_eq!(e, "100 is out of range (256 to 1048576)");
    let parallel = field("HEARTH_PARALLEL").expect("by its variable");
    assert_eq!(parallel.name, "parallel");
    for good in ["auto", "AUTO", "1", "64"] {
        assert!(check(parallel, &Value::String(good.into())).is_ok(), "{good}");
    }
    for bad in ["0", "65", "many"] {
        let e = check(parallel, &Value::String(bad.into())).expect_err(bad);
        assert!(e.contains("from 1 to 64"), "{e}");
    }
    let device = named("device").expect("device");
    assert!(check(device, &Value::String("Vulkan0".into())).is_ok());
    let e = check(device, &Value::String("vulkan 0".into())).expect_err("two words");
    assert!(e.ends_with("e.g. vulkan0"), "{e}");
    let url = field("ollama.url").expect("url");
    assert!(check(url, &Value::String("http://127.0.0.1:11434".into())).is_ok());
    let e = check(url, &Value::String("ftp://x".into())).expect_err("ftp");
    assert!(e.contains("not an http(s) URL"), "{e}");
    let model = field("embedded.model").expect("model");
    let e = check(model, &Value::String("  ".into())).expect_err("empty");
    assert_eq!(e, "is empty: name an installed model or a .gguf path");
    let top_p = named("topP").expect("topP");
    assert!(check(top_p, &Value::Float(1.0)).is_ok());
    assert!(check(top_p, &Value::Float(0.0)).is_err(), "above 0");
    let temperature = named("temperature").expect("temperature");
    assert!(check(temperature, &Value::Float(0.0)).is_ok());
    assert!(check(temperature, &Value::Float(f64::NAN)).is_err());
    let token = named("apiToken").expect("token");
    assert!(check(token, &Value::String("two words".into())).is_err());
}

#[test]
fn environment_text_is_typed_like_its_setting() {
    use toml::Value;
    let parse = |key: &str, raw: &str| parse_env(field(key).expect(key), raw);
    assert_eq!(parse("HEARTH_CTX", " 8192 "), Ok(Value::Integer(8192)));
    assert!(parse("HEARTH_CTX", "lots").is_err());
    assert_eq!(parse("HEARTH_API_SERVER", "on"), Ok(Value::Boolean(true)));
    assert!(parse("HEARTH_DOWNLOADS", "maybe").is_err());
    assert_eq!(
        parse("HEARTH_FALLBACK", "Vllm, embedded,"),
        Ok(Value::Array(vec![
            Value::String("vllm".into()),
            Value::String("embedded".into())
        ]))
    );
    assert_eq!(parse("HEARTH_DEVICE", " Vulkan0 "), Ok(Value::String("Vulkan0".into())));
    assert_eq!(view_name("HEARTH_DEVICE"), "device");
    assert_eq!(view_name("ollama.url"), "ollamaUrl");
    assert_eq!(view_name("retry.unknown"), "retry.unknown");
}
