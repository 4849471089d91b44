//! Every setting, once: its name in the settings view and the UI, its key in
//! `settings.toml` (or in the app's `ui-settings.json`, keys `ui.…`), the environment
//! variable that overrides it, the values it takes, its default, the words the form
//! shows, and where the form shows it. A backend's own section is its registry entry's
//! ([`crate::registry::BackendSpec::section`]); the rest are [`SETTINGS`].
//!
//! From this table the settings take their environment variables and check every
//! value ([`check`]), the app maps an error's key to the field it names, and the UI
//! builds its form and its checks before a save (the table is exported to TypeScript
//! with the backend registry, as `SCHEMA`).

use serde::Serialize;

use crate::registry::REGISTRY;

/// One setting.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, specta::Type)]
#[serde(rename_all = "camelCase")]
pub struct SettingField {
    /// Its name in the settings view and the UI (`gpuLayers`).
    pub name: &'static str,
    /// Where it is kept: a dotted key of `settings.toml` (`embedded.gpu_layers`), or
    /// `ui.…` for the app's own (`ui-settings.json`).
    pub key: &'static str,
    /// The environment variable that overrides it, if any.
    pub env: Option<&'static str>,
    pub value: FieldValue,
    /// The default as written in the file; empty where absent means automatic or none.
    pub default: &'static str,
    /// Its label in the form.
    pub label: &'static str,
    /// One line under the field in the form.
    pub help: &'static str,
    /// What to write instead of an empty or wrong value, in a few words: errors, in
    /// Rust and in the form, end with it.
    pub hint: &'static str,
    /// Shown greyed in an empty field.
    pub placeholder: &'static str,
    /// Where the form shows it; `None`: the file and the environment only.
    pub form: Option<FormGroup>,
    /// Must not be empty where its section is used.
    pub required: bool,
}

/// The values a setting takes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, specta::Type)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum FieldValue {
    /// One backend kind of the registry.
    Backend,
    /// Backend kinds, in order, each once.
    BackendList,
    /// An installed model's name or a .gguf path.
    Model,
    /// `auto`, `cpu` or a device llama.cpp names (one word; which exist is the worker's
    /// to say).
    Device,
    /// A whole number in `min..=max`.
    Integer { min: u64, max: u64, step: u64 },
    /// A number in `min..=max` (above `min` when `above_min`).
    #[serde(rename_all = "camelCase")]
    Decimal {
        min: f64,
        max: f64,
        step: f64,
        above_min: bool,
    },
    /// `auto` or a whole number in `min..=max`; `auto` goes up to `auto_most` where set.
    #[serde(rename_all = "camelCase")]
    AutoOrCount { min: u32, max: u32, auto_most: Option<u32> },
    /// An http(s) URL like `example`.
    Url { example: &'static str },
    /// A secret word without spaces (a bearer token); never shown in logs.
    Token,
    /// On or off.
    Toggle,
    /// Free text on one line.
    Text,
    /// Free text on several lines.
    LongText,
}

/// Where the form shows a setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, specta::Type)]
#[serde(rename_all = "camelCase")]
pub enum FormGroup {
    /// The backend choice, at the top.
    General,
    /// Its backend's section (shown while that backend is chosen).
    Backend,
    /// How replies are sampled.
    Sampling,
    /// The app's local API.
    Api,
}

/// A field's usual shape; the tables below say what differs.
pub(crate) const FIELD: SettingField = SettingField {
    name: "",
    key: "",
    env: None,
    value: FieldValue::Text,
    default: "",
    label: "",
    help: "",
    hint: "",
    placeholder: "",
    form: None,
    required: false,
};

/// A context size in tokens.
pub const CONTEXT: FieldValue = FieldValue::Integer {
    min: 256,
    max: 1 << 20,
    step: 256,
};

/// The settings that belong to no backend.
pub const SETTINGS: &[SettingField] = &[
    SettingField {
        name: "backend",
        key: "active",
        env: Some("HEARTH_BACKEND"),
        value: FieldValue::Backend,
        default: "embedded",
        label: "Backend",
        help: "Where replies come from.",
        form: Some(FormGroup::General),
        required: true,
        ..FIELD
    },
    SettingField {
        name: "fallback",
        key: "fallback",
        env: Some("HEARTH_FALLBACK"),
        value: FieldValue::BackendList,
        label: "Fallback",
        help: "Backends tried in order when the chosen one fails (each configured, each once).",
        ..FIELD
    },
    SettingField {
        name: "temperature",
        key: "ui.temperature",
        value: FieldValue::Decimal {
            min: 0.0,
            max: 2.0,
            step: 0.05,
            above_min: false,
        },
        default: "0.8",
        label: "Temperature",
        help: "0 always picks the likeliest word; higher varies more.",
        form: Some(FormGroup::Sampling),
        ..FIELD
    },
    SettingField {
        name: "topP",
        key: "ui.top_p",
        value: FieldValue::Decimal {
            min: 0.0,
            max: 1.0,
            step: 0.01,
            above_min: true,
        },
        default: "0.95",
        label: "Top-p",
        help: "Samples among the likeliest words that make up this share of the chance.",
        form: Some(FormGroup::Sampling),
        ..FIELD
    },
    SettingField {
        name: "maxTokens",
        key: "ui.max_tokens",
        value: FieldValue::Integer {
            min: 1,
            max: 1 << 20,
            step: 1,
        },
        default: "512",
        label: "Max tokens",
        help: "The longest reply, in tokens.",
        form: Some(FormGroup::Sampling),
        ..FIELD
    },
    SettingField {
        name: "systemPrompt",
        key: "ui.system_prompt",
        value: FieldValue::LongText,
        label: "System prompt",
        help: "Opens every new chat; empty: none.",
        form: Some(FormGroup::Sampling),
        ..FIELD
    },
    SettingField {
        name: "apiEnabled",
        key: "api.enabled",
        env: Some("HEARTH_API_SERVER"),
        value: FieldValue::Toggle,
        default: "false",
        label: "Serve the API",
        help: "OpenAI-compatible, on 127.0.0.1 only: editors and scripts use the loaded model while you chat (base URL http://127.0.0.1:PORT/v1). Turning it on or off reloads the model.",
        form: Some(FormGroup::Api),
        ..FIELD
    },
    SettingField {
        name: "apiPort",
        key: "api.port",
        env: Some("HEARTH_API_PORT"),
        value: FieldValue::Integer {
            min: 0,
            max: 65535,
            step: 1,
        },
        default: "8080",
        label: "Port",
        help: "0 picks any free port.",
        form: Some(FormGroup::Api),
        ..FIELD
    },
    SettingField {
        name: "apiToken",
        key: "api.token",
        env: Some("HEARTH_API_TOKEN"),
        value: FieldValue::Token,
        label: "Token",
        help: "If set, clients must send it as a bearer token (api_key in OpenAI's clients).",
        placeholder: "none",
        form: Some(FormGroup::Api),
        ..FIELD
    },
    SettingField {
        name: "retries",
        key: "retry.retries",
        env: Some("HEARTH_RETRIES"),
        value: FieldValue::Integer { min: 0, max: 10, step: 1 },
        default: "3",
        label: "Retries",
        help: "Tries again after a transient failure before the reply's first word.",
        ..FIELD
    },
    SettingField {
        name: "retryDelayMs",
        key: "retry.first_delay_ms",
        env: Some("HEARTH_RETRY_DELAY_MS"),
        value: FieldValue::Integer {
            min: 0,
            max: 60_000,
            step: 100,
        },
        default: "1000",
        label: "First retry after (ms)",
        help: "Each later wait doubles.",
        ..FIELD
    },
    SettingField {
        name: "cooldownFailures",
        key: "cooldown.failures",
        env: Some("HEARTH_COOLDOWN_FAILURES"),
        value: FieldValue::Integer {
            min: 1,
            max: 1000,
            step: 1,
        },
        default: "3",
        label: "Failures before a cooldown",
        help: "Failed replies within the window that put a backend on cooldown.",
        ..FIELD
    },
    SettingField {
        name: "cooldownWindowSecs",
        key: "cooldown.window_secs",
        env: Some("HEARTH_COOLDOWN_WINDOW_SECS"),
        value: FieldValue::Integer {
            min: 1,
            max: 86_400,
            step: 1,
        },
        default: "60",
        label: "Failure window (s)",
        ..FIELD
    },
    SettingField {
        name: "cooldownSecs",
        key: "cooldown.cooldown_secs",
        env: Some("HEARTH_COOLDOWN_SECS"),
        value: FieldValue::Integer {
            min: 0,
            max: 86_400,
            step: 1,
        },
        default: "30",
        label: "Cooldown (s)",
        help: "How long a backend that keeps failing is skipped.",
        ..FIELD
    },
    SettingField {
        name: "downloads",
        key: "downloads.enabled",
        env: Some("HEARTH_DOWNLOADS"),
        value: FieldValue::Toggle,
        default: "true",
        label: "Downloads",
        help: "Off: Hearth never contacts a model hub, whatever is asked of it.",
        ..FIELD
    },
];

/// The backend kinds with their sections, and the settings of no backend: what the UI
/// is generated from (one constant, so that the generated file has one order).
#[derive(Debug, Clone, Copy, Serialize, specta::Type)]
pub struct Schema {
    pub backends: &'static [crate::registry::BackendSpec],
    pub settings: &'static [SettingField],
}

pub const SCHEMA: Schema = Schema {
    backends: &REGISTRY,
    settings: SETTINGS,
};

/// Every setting: [`SETTINGS`], then each backend's section in registry order.
pub fn fields() -> impl Iterator<Item = &'static SettingField> {
    SETTINGS
        .iter()
        .chain(REGISTRY.iter().flat_map(|spec| spec.section.iter()))
}

/// The setting kept under `key` (`embedded.ctx`) or overridden by the environment
/// variable `key` (`HEARTH_CTX`).
pub fn field(key: &str) -> Option<&'static SettingField> {
    fields().find(|f| f.key == key || f.env == Some(key))
}

/// The setting named `name` in the view (`gpuLayers`).
pub fn named(name: &str) -> Option<&'static SettingField> {
    fields().find(|f| f.name == name)
}

/// The view's name for a settings key or variable (`ollama.url` → `ollamaUrl`), or the
/// key itself for one the table does not know.
pub fn view_name(key: &str) -> String {
    field(key).map_or_else(|| key.to_owned(), |f| f.name.to_owned())
}

/// Environment variables that override a setting, and the key each sets.
pub fn env_keys() -> impl Iterator<Item = (&'static str, &'static str)> {
    fields().filter_map(|f| f.env.map(|env| (env, f.key)))
}

/// What is wrong with `value` for `field`, if anything, as the rest of a sentence after
/// the key (`is empty: …`, `300 is out of range (…)`).
pub fn check(field: &SettingField, value: &toml::Value) -> Result<(), String> {
    use toml::Value;
    let text = value.as_str().map(str::trim);
    if field.required && text == Some("") {
        return Err(format!("is empty: {}", field.hint));
    }
    match (field.value, value) {
        (FieldValue::Integer { min, max, .. }, Value::Integer(n)) => {
            let ok = u64::try_from(*n).is_ok_and(|n| (min..=max).contains(&n));
            ok.then_some(())
                .ok_or_else(|| format!("{n} is out of range ({min} to {max})"))
        }
        (
            FieldValue::Decimal {
                min, max, above_min, ..
            },
            value,
        ) => {
            let x = value
                .as_float()
                .or_else(|| value.as_integer().map(|n| n as f64))
                .unwrap_or(f64::NAN);
            let low_ok = if above_min { x > min } else { x >= min };
            let above = if above_min { "above" } else { "from" };
            (x.is_finite() && low_ok && x <= max)
                .then_some(())
                .ok_or_else(|| format!("{value} is out of range ({above} {min} to {max})"))
        }
        (FieldValue::AutoOrCount { min, max, .. }, Value::String(s)) => {
            let s = s.trim();
            let ok = s.eq_ignore_ascii_case("auto") || s.parse::<u32>().is_ok_and(|n| (min..=max).contains(&n));
            ok.then_some(())
                .ok_or_else(|| format!("must be `auto` or a whole number from {min} to {max}, not {s:?}"))
        }
        (FieldValue::Device, Value::String(s)) => match s.trim() {
            "" => Err(format!("is empty: {}", field.hint)),
            d if d.chars().any(char::is_whitespace) => {
                Err(format!("{d:?} is not a device name (it has spaces): {}", field.hint))
            }
            _ => Ok(()),
        },
        (FieldValue::Url { example }, Value::String(s)) => check_url(s, example),
        (FieldValue::Token, Value::String(s)) => {
            let ok = !s.is_empty() && !s.chars().any(char::is_whitespace);
            ok.then_some(())
                .ok_or_else(|| "must be one word without spaces (or absent for none)".to_owned())
        }
        _ => Ok(()),
    }
}

fn check_url(value: &str, example: &str) -> Result<(), String> {
    match url::Url::parse(value) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => Ok(()),
        Ok(url) => Err(format!(
            "{value:?} is not an http(s) URL (scheme {:?}); e.g. {example}",
            url.scheme()
        )),
        Err(e) => Err(format!("{value:?} is not a URL ({e}); e.g. {example}")),
    }
}

/// An environment variable's text as the setting's TOML value.
pub(crate) fn parse_env(field: &SettingField, raw: &str) -> Result<toml::Value, String> {
    use toml::Value;
    let raw = raw.trim();
    Ok(match field.value {
        FieldValue::BackendList => Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| Value::String(s.to_ascii_lowercase()))
                .collect(),
        ),
        FieldValue::Backend => Value::String(raw.to_ascii_lowercase()),
        FieldValue::Toggle => match raw.to_ascii_lowercase().as_str() {
            "on" | "true" | "1" | "yes" => Value::Boolean(true),
            "off" | "false" | "0" | "no" => Value::Boolean(false),
            _ => return Err(format!("{raw:?} is neither on nor off")),
        },
        FieldValue::Integer { .. } => raw
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .map(Value::Integer)
            .ok_or_else(|| format!("{raw:?} is not a whole number"))?,
        FieldValue::Decimal { .. } => raw
            .parse::<f64>()
            .map(Value::Float)
            .map_err(|_| format!("{raw:?} is not a number"))?,
        _ => Value::String(raw.to_owned()),
    })
}

/// The value under a dotted `key` of `table`, if there is one.
pub(crate) fn lookup<'t>(table: &'t toml::Table, key: &str) -> Option<&'t toml::Value> {
    let (section, rest) = match key.split_once('.') {
        Some((section, rest)) => (Some(section), rest),
        None => (None, key),
    };
    match section {
        Some(section) => table.get(section)?.as_table()?.get(rest),
        None => table.get(rest),
    }
}

#[cfg(test)]
#[path = "schema_tests.rs"]
mod tests;
