//! Which backends Hearth may use, where they are, and how patiently it treats them:
//! `settings.toml` (in the config dir; `HEARTH_SETTINGS` names another file) with
//! `HEARTH_*` environment variables on top. Everything is checked at start, and each
//! problem names the key (or variable) to fix, so a typo never surfaces later as a
//! confusing connection error.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub mod schema;
mod validate;

/// The backend kinds Hearth drives (each described once in [`crate::registry::REGISTRY`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, specta::Type)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// llama.cpp in Hearth's supervised worker process.
    Embedded,
    /// An Ollama server.
    Ollama,
    /// vLLM or any OpenAI-compatible server.
    Vllm,
}

impl BackendKind {
    pub const ALL: [BackendKind; 3] = [BackendKind::Embedded, BackendKind::Ollama, BackendKind::Vllm];

    /// The name used in settings, logs and the UI.
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Embedded => "embedded",
            BackendKind::Ollama => "ollama",
            BackendKind::Vllm => "vllm",
        }
    }

    pub fn parse(name: &str) -> Option<BackendKind> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == name.trim().to_ascii_lowercase())
    }
}

impl std::fmt::Display for BackendKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A value that must never reach a log: its `Debug` shows only whether it is set.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// The backend replies come from.
    pub active: BackendKind,
    /// Where to go, in order, when the active backend fails (it is skipped here).
    pub fallback: Vec<BackendKind>,
    pub embedded: EmbeddedSettings,
    pub ollama: Option<OllamaSettings>,
    pub vllm: Option<VllmSettings>,
    pub retry: RetrySettings,
    pub cooldown: CooldownSettings,
    pub downloads: DownloadSettings,
    pub api: ApiSettings,
}

/// The desktop app's OpenAI-compatible API (`hearth serve` has flags of its own): off
/// unless turned on, on 127.0.0.1 only, answered by the model the app has loaded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiSettings {
    pub enabled: bool,
    /// 0: any free port (the app shows which).
    pub port: u16,
    /// Bearer token clients must send; absent: any program on this machine may call it.
    pub token: Option<Secret>,
}

impl Default for ApiSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            port: DEFAULT_API_PORT,
            token: None,
        }
    }
}

/// The app's API port unless set (`hearth serve`'s default too).
pub const DEFAULT_API_PORT: u16 = 8080;

/// Getting models from the Hub (`hearth pull`, the app's Get models page).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DownloadSettings {
    /// False: Hearth never contacts a model hub, whatever is asked of it.
    pub enabled: bool,
}

impl Default for DownloadSettings {
    fn default() -> Self {
        Self { enabled: true }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            active: BackendKind::Embedded,
            fallback: Vec::new(),
            embedded: EmbeddedSettings::default(),
            ollama: None,
            vllm: None,
            retry: RetrySettings::default(),
            cooldown: CooldownSettings::default(),
            downloads: DownloadSettings::default(),
            api: ApiSettings::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmbeddedSettings {
    /// A .gguf path or the name of an installed model.
    pub model: String,
    pub ctx: u32,
    /// `auto` (the fit planner decides) or a number of layers.
    pub gpu_layers: String,
    /// Where the model runs: `auto` (a CUDA GPU, else a Vulkan GPU, else the CPU), `cpu`,
    /// or a device by llama.cpp's name as `hearth hw` lists it (`vulkan0`, any case).
    /// Checked for its form only: the worker says when the device is not there.
    pub device: String,
    /// Decode threads; absent: one per physical core.
    pub threads: Option<u32>,
    /// Sequences the engine decodes at once while the app's API is on: `auto` (as many
    /// as fit, at most 4) or a number. With the API off the chat is the only client and
    /// the engine keeps one sequence (prompt-lookup drafting, a cache that grows).
    pub parallel: String,
}

impl Default for EmbeddedSettings {
    fn default() -> Self {
        Self {
            model: hearth_core::paths::DEFAULT_CHAT_MODEL.into(),
            ctx: 4096,
            gpu_layers: "auto".into(),
            device: DEFAULT_DEVICE.into(),
            threads: None,
            parallel: "auto".into(),
        }
    }
}

/// `embedded.device` unless set: the worker picks the best device itself.
pub const DEFAULT_DEVICE: &str = "auto";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OllamaSettings {
    /// e.g. `http://127.0.0.1:11434`.
    pub url: String,
    pub model: String,
    /// Sent with every request: Ollama otherwise cuts the prompt to its own default.
    #[serde(default = "default_num_ctx")]
    pub num_ctx: u32,
}

fn default_num_ctx() -> u32 {
    4096
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VllmSettings {
    /// The API root, e.g. `http://127.0.0.1:8000/v1`.
    pub url: String,
    /// Absent: the model the server lists first (vLLM serves one).
    #[serde(default)]
    pub model: Option<String>,
    /// Sent as a bearer token; never logged.
    #[serde(default)]
    pub api_key: Option<Secret>,
    /// A server silent this long (before its answer or within a stream) counts as a
    /// transient failure: retried, then the next backend.
    #[serde(default = "default_stall_ms")]
    pub stall_timeout_ms: u64,
}

fn default_stall_ms() -> u64 {
    120_000
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetrySettings {
    /// Retries after the first try, for transient failures before the first token.
    pub retries: u32,
    /// The first wait; each next one doubles (1 s, 2 s, 4 s).
    pub first_delay_ms: u64,
}

impl Default for RetrySettings {
    fn default() -> Self {
        Self {
            retries: 3,
            first_delay_ms: 1000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CooldownSettings {
    /// Failed replies within `window_secs` that put a backend on cooldown.
    pub failures: u32,
    pub window_secs: u64,
    /// How long a cooling backend is skipped.
    pub cooldown_secs: u64,
}

impl Default for CooldownSettings {
    fn default() -> Self {
        Self {
            failures: 3,
            window_secs: 60,
            cooldown_secs: 30,
        }
    }
}

/// One thing wrong, with the key (`ollama.url`) or variable (`HEARTH_OLLAMA_URL`) to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} in the settings ({}): {}", plural(problems.len()), file.display(), list(problems))]
pub struct SettingsError {
    /// The settings file read (the environment may have contributed too).
    pub file: PathBuf,
    pub problems: Vec<Problem>,
}

fn plural(n: usize) -> String {
    if n == 1 {
        "a problem".into()
    } else {
        format!("{n} problems")
    }
}

fn list(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("`{}`: {}", p.key, p.message))
        .collect::<Vec<_>>()
        .join("; ")
}

impl Settings {
    /// The settings file (if it exists) with the process environment on top, validated.
    pub fn load_default() -> Result<Settings, SettingsError> {
        Self::load(&hearth_core::paths::settings_file(), |name| std::env::var(name).ok())
    }

    /// `file` (absent: defaults) with `env` on top, validated.
    pub fn load(file: &Path, env: impl Fn(&str) -> Option<String>) -> Result<Settings, SettingsError> {
        let fail = |problems| SettingsError {
            file: file.to_path_buf(),
            problems,
        };
        let mut table = match std::fs::read_to_string(file) {
            Ok(text) => text.parse::<toml::Table>().map_err(|e| {
                fail(vec![Problem {
                    key: "(file)".into(),
                    message: format!("not valid TOML: {}", e.message()),
                }])
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => toml::Table::new(),
            Err(e) => {
                return Err(fail(vec![Problem {
                    key: "(file)".into(),
                    message: format!("cannot be read: {e}"),
                }]))
            }
        };
        let mut problems = Vec::new();
        for (var, key) in schema::env_keys() {
            if let Some(value) = env(var).filter(|v| !v.trim().is_empty()) {
                if let Err(message) = set_key(&mut table, key, &value) {
                    problems.push(Problem {
                        key: (*var).into(),
                        message,
                    });
                }
            }
        }
        if !problems.is_empty() {
            return Err(fail(problems));
        }
        // Deserialized from text, not the table, so that an error comes with the span of
        // the offending value, which names its key.
        let merged = toml::to_string(&table).map_err(|e| {
            fail(vec![Problem {
                key: "(file)".into(),
                message: e.to_string(),
            }])
        })?;
        let settings: Settings = toml::from_str(&merged).map_err(|e| {
            let key = e
                .span()
                .and_then(|span| key_at(&merged, span.start))
                .unwrap_or_else(|| "(file)".into());
            fail(vec![Problem {
                key,
                message: e.message().to_owned(),
            }])
        })?;
        settings.validate().map_err(fail)?;
        Ok(settings)
    }

    pub fn is_configured(&self, kind: BackendKind) -> bool {
        crate::registry::configured(kind, self)
    }

    /// Writes the settings (the desktop app's settings panel saves through this).
    pub fn save(&self, file: &Path) -> std::io::Result<()> {
        let text = toml::to_string_pretty(self).map_err(std::io::Error::other)?;
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir)?;
        }
        // Write then rename: a crash leaves the old file or the new one, never half of one.
        let tmp = file.with_extension("toml.tmp");
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, file)
    }
}

/// The dotted key whose line holds byte `offset` of `text` (TOML as `toml` writes it:
/// `[section]` headers, then `key = value` lines).
fn key_at(text: &str, offset: usize) -> Option<String> {
    let before = text.get(..offset)?;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next()?.trim();
    let section = before[..line_start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('[') && l.ends_with(']'))
        .map(|l| l.trim_matches(['[', ']']).to_owned());
    let key = if line.starts_with('[') {
        return Some(line.trim_matches(['[', ']']).to_owned());
    } else {
        line.split('=').next()?.trim().trim_matches('"').to_owned()
    };
    Some(match section {
        Some(section) => format!("{section}.{key}"),
        None => key,
    })
}

/// Sets `dotted.key` in `table` from an environment string, typed like the setting.
fn set_key(table: &mut toml::Table, key: &str, raw: &str) -> Result<(), String> {
    let field = schema::field(key).ok_or_else(|| format!("`{key}` is not a setting"))?;
    let value = schema::parse_env(field, raw)?;
    let mut parts = key.split('.').peekable();
    let mut current = table;
    while let Some(part) = parts.next() {
        if parts.peek().is_none() {
            current.insert(part.to_owned(), value);
            return Ok(());
        }
        let entry = current
            .entry(part.to_owned())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        current = entry
            .as_table_mut()
            .ok_or_else(|| format!("`{part}` in the settings file is not a table"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(file_text: Option<&str>, env: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("settings.toml");
        if let Some(text) = file_text {
            std::fs::write(&file, text).expect("write");
        }
        Settings::load(&file, |name| {
            env.iter().find(|(k, _)| *k == name).map(|(_, v)| (*v).to_owned())
        })
    }

    #[test]
    fn downloads_can_be_turned_off() {
        assert!(load(None, &[]).expect("defaults").downloads.enabled);
        assert!(
            !load(Some("[downloads]\nenabled = false\n"), &[])
                .expect("file")
                .downloads
                .enabled
        );
        assert!(
            !load(None, &[("HEARTH_DOWNLOADS", "off")])
                .expect("env")
                .downloads
                .enabled
        );
        let err = load(None, &[("HEARTH_DOWNLOADS", "maybe")]).expect_err("not a switch");
        assert!(err.to_string().contains("HEARTH_DOWNLOADS"), "{err}");
    }

    #[test]
    fn the_apps_api_is_off_until_turned_on() {
        let defaults = load(None, &[]).expect("defaults");
        assert_eq!(defaults.api, ApiSettings::default());
        assert!(!defaults.api.enabled);
        let on = load(
            Some("[api]\nenabled = true\nport = 1234\n[embedded]\nparallel = \"3\"\n"),
            &[("HEARTH_API_TOKEN", "s3cret")],
        )
        .expect("file and env");
        assert!(on.api.enabled);
        assert_eq!(on.api.port, 1234);
        assert_eq!(on.embedded.parallel, "3");
        assert_eq!(on.api.token.as_ref().map(Secret::expose), Some("s3cret"));
        assert!(!format!("{on:?}").contains("s3cret"), "the token never reaches a log");
        let env = load(
            None,
            &[
                ("HEARTH_API_SERVER", "on"),
                ("HEARTH_API_PORT", "0"),
                ("HEARTH_PARALLEL", "auto"),
            ],
        )
        .expect("env");
        assert!(env.api.enabled);
        assert_eq!(env.api.port, 0, "0: any free port");

        let bad = load(
            Some("[api]\ntoken = \"two words\"\nport = 70000\n[embedded]\nparallel = \"65\"\n"),
            &[],
        )
        .expect_err("invalid");
        assert_eq!(bad.problems[0].key, "api.port", "{bad}");
        let bad = load(
            Some("[api]\ntoken = \"two words\"\n[embedded]\nparallel = \"65\"\n"),
            &[],
        )
        .expect_err("invalid");
        let keys: Vec<&str> = bad.problems.iter().map(|p| p.key.as_str()).collect();
        // In the settings table's order: the settings of no backend, then each section.
        assert_eq!(keys, ["api.token", "embedded.parallel"], "{bad}");
        assert!(bad.to_string().contains("from 1 to 64"), "{bad}");
        let bad_env = load(None, &[("HEARTH_API_SERVER", "sometimes")]).expect_err("not a switch");
        assert_eq!(bad_env.problems[0].key, "HEARTH_API_SERVER");
    }

    #[test]
    fn no_file_means_the_embedded_engine_alone() {
        let settings = load(None, &[]).expect("defaults");
        assert_eq!(settings, Settings::default());
        assert_eq!(settings.active, BackendKind::Embedded);
        assert!(settings.fallback.is_empty(), "{:?}", settings.fallback);
    }

    #[test]
    fn a_file_and_the_environment_combine() {
        let settings = load(
            Some("active = \"ollama\"\nfallback = [\"embedded\"]\n[ollama]\nurl = \"http://127.0.0.1:11434\"\nmodel = \"llama3.2\"\n"),
            &[("HEARTH_OLLAMA_NUM_CTX", "8192"), ("HEARTH_VLLM_URL", "http://10.0.0.2:8000/v1"), ("HEARTH_FALLBACK", "vllm, embedded")],
        )
        .expect("valid");
        assert_eq!(settings.active, BackendKind::Ollama);
        assert_eq!(settings.ollama.as_ref().map(|o| o.num_ctx), Some(8192));
        assert_eq!(settings.fallback, [BackendKind::Vllm, BackendKind::Embedded]);
    }

    #[test]
    fn each_problem_names_its_key() {
        let err = load(
            Some("active = \"vllm\"\n[ollama]\nurl = \"localhost:11434\"\nmodel = \"\"\n[embedded]\ngpu_layers = \"many\"\n"),
            &[],
        )
        .expect_err("invalid");
        let keys: Vec<&str> = err.problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            ["active", "embedded.gpu_layers", "ollama.url", "ollama.model"],
            "{err}"
        );
        assert!(err.to_string().contains("e.g. http://127.0.0.1:11434"), "{err}");

        let typo = load(Some("[retry]\nretires = 3\n"), &[]).expect_err("unknown key");
        assert!(typo.to_string().contains("retires"), "{typo}");
        let wrong_type = load(Some("[embedded]\nctx = \"big\"\n"), &[]).expect_err("wrong type");
        assert_eq!(wrong_type.problems[0].key, "embedded.ctx", "{wrong_type}");
        let bad_env = load(None, &[("HEARTH_CTX", "lots")]).expect_err("bad env");
        assert_eq!(bad_env.problems[0].key, "HEARTH_CTX");
        let unknown_kind = load(None, &[("HEARTH_BACKEND", "gpt5")]).expect_err("unknown backend");
        assert_eq!(unknown_kind.problems[0].key, "active", "{unknown_kind}");
        let garbage = load(Some("this is = = not toml"), &[]).expect_err("garbage");
        assert_eq!(garbage.problems[0].key, "(file)");
    }

    #[test]
    fn the_device_is_auto_unless_the_file_or_the_environment_names_one() {
        let defaults = load(None, &[]).expect("defaults");
        assert_eq!(defaults.embedded.device, "auto");
        assert_eq!(defaults.embedded.device, DEFAULT_DEVICE);
        // A file written before the setting existed still loads, on `auto`.
        let older = load(Some("[embedded]\ngpu_layers = \"20\"\n"), &[]).expect("older file");
        assert_eq!(older.embedded.device, "auto");
        assert_eq!(older.embedded.gpu_layers, "20");

        let file = load(Some("[embedded]\ndevice = \"Vulkan0\"\n"), &[]).expect("file");
        assert_eq!(
            file.embedded.device, "Vulkan0",
            "kept as written: llama.cpp's names have case"
        );
        let env = load(
            Some("[embedded]\ndevice = \"Vulkan0\"\n"),
            &[("HEARTH_DEVICE", " cpu ")],
        )
        .expect("env");
        assert_eq!(env.embedded.device, "cpu", "the environment wins, trimmed");
        let blank_env = load(Some("[embedded]\ndevice = \"CUDA0\"\n"), &[("HEARTH_DEVICE", "  ")]).expect("blank");
        assert_eq!(blank_env.embedded.device, "CUDA0", "an empty variable changes nothing");
    }

    #[test]
    fn a_device_must_be_one_word_and_the_error_says_what_to_use() {
        for bad in ["", "   ", "vulkan 0", "NVIDIA GeForce RTX 4090"] {
            let err = load(Some(&format!("[embedded]\ndevice = {bad:?}\n")), &[]).expect_err(bad);
            assert_eq!(err.problems.len(), 1, "{err}");
            assert_eq!(err.problems[0].key, "embedded.device", "{err}");
            let message = &err.problems[0].message;
            assert!(
                message.contains("use auto, cpu or a device `hearth hw` lists, e.g. vulkan0"),
                "{message}"
            );
        }
        let err = load(None, &[("HEARTH_DEVICE", "vulkan 1")]).expect_err("two words");
        assert_eq!(err.problems[0].key, "embedded.device", "{err}");
        assert!(
            err.to_string().contains("\"vulkan 1\""),
            "the value is quoted back: {err}"
        );
        for good in ["auto", "AUTO", "cpu", "Vulkan0", "cuda1"] {
            let settings = load(None, &[("HEARTH_DEVICE", good)]).expect(good);
            assert_eq!(settings.embedded.device, good);
        }
    }

    #[test]
    fn the_api_key_never_reaches_debug_output() {
        let settings = load(
            None,
            &[
                ("HEARTH_VLLM_URL", "http://127.0.0.1:8000/v1"),
                ("HEARTH_VLLM_API_KEY", "sk-very-secret"),
            ],
        )
        .expect("valid");
        let debug = format!("{settings:?}");
        assert!(!debug.contains("sk-very-secret"), "{debug}");
        assert_eq!(
            settings.vllm.and_then(|v| v.api_key).map(|k| k.expose().to_owned()),
            Some("sk-very-secret".into())
        );
    }

    #[test]
    fn saved_settings_load_back_unchanged() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("nested").join("settings.toml");
        let settings = Settings {
            active: BackendKind::Ollama,
            fallback: vec![BackendKind::Embedded],
            ollama: Some(OllamaSettings {
                url: "http://127.0.0.1:11434".into(),
                model: "llama3.2".into(),
                num_ctx: 2048,
            }),
            ..Settings::default()
        };
        settings.save(&file).expect("save");
        assert_eq!(Settings::load(&file, |_| None).expect("load"), settings);
    }
}
