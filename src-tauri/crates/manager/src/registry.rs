//! Every kind of backend Hearth drives, registered once: the name settings, logs, the
//! API and the UI use; the label a person reads; whether the settings configure it;
//! whether a change to them needs a reload; and the factory that creates it. The
//! settings, the manager, the desktop shell (tray, menus) and the UI (the generated
//! `SCHEMA` constant and `BackendKind` type in `bindings.ts`) all take the kinds from
//! here: adding a backend is one more [`BackendKind`] variant, its entry in [`REGISTRY`]
//! and its arms below, with its settings section.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hearth_backends::{OllamaBackend, OllamaOptions, OpenAiBackend, Supervisor, WorkerConfig};
use hearth_core::{Backend, BackendError};
use serde::Serialize;

use crate::models::{resolve_model_file, with_quantization};
use crate::settings::schema::{self, FieldValue, FormGroup, SettingField, FIELD};
use crate::settings::{BackendKind, Settings, DEFAULT_DEVICE};
use crate::types::{ManagerError, ManagerOptions, Placement};

/// What a person and the UI know of a backend kind.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, specta::Type)]
#[serde(rename_all = "camelCase")]
pub struct BackendSpec {
    pub kind: BackendKind,
    /// In menus and the tray.
    pub label: &'static str,
    /// One line under the label in the settings.
    pub description: &'static str,
    /// Whether it needs a server's address in the settings before it can be used.
    pub needs_url: bool,
    /// Its section of the settings (`[embedded]`, `[ollama]`, `[vllm]`).
    pub section: &'static [SettingField],
}

/// Every backend kind, in the order menus show them.
pub const REGISTRY: [BackendSpec; 3] = [
    BackendSpec {
        kind: BackendKind::Embedded,
        label: "Embedded (llama.cpp)",
        description: "A GGUF model run by llama.cpp in Hearth's own worker process",
        needs_url: false,
        section: EMBEDDED_SECTION,
    },
    BackendSpec {
        kind: BackendKind::Ollama,
        label: "Ollama",
        description: "An Ollama server's models (its URL and model name)",
        needs_url: true,
        section: OLLAMA_SECTION,
    },
    BackendSpec {
        kind: BackendKind::Vllm,
        label: "vLLM",
        description: "vLLM or any OpenAI-compatible server (its URL, model and API key)",
        needs_url: true,
        section: VLLM_SECTION,
    },
];

/// `[embedded]`: the model llama.cpp runs in Hearth's worker, and how.
const EMBEDDED_SECTION: &[SettingField] = &[
    SettingField {
        name: "model",
        key: "embedded.model",
        env: Some("HEARTH_MODEL"),
        value: FieldValue::Model,
        default: hearth_core::paths::DEFAULT_CHAT_MODEL,
        label: "Model",
        hint: "name an installed model or a .gguf path",
        form: Some(FormGroup::Backend),
        required: true,
        ..FIELD
    },
    SettingField {
        name: "ctx",
        key: "embedded.ctx",
        env: Some("HEARTH_CTX"),
        value: schema::CONTEXT,
        default: "4096",
        label: "Context (tokens)",
        form: Some(FormGroup::Backend),
        ..FIELD
    },
    SettingField {
        name: "gpuLayers",
        key: "embedded.gpu_layers",
        env: Some("HEARTH_GPU_LAYERS"),
        value: FieldValue::AutoOrCount {
            min: 0,
            max: 100_000,
            auto_most: None,
        },
        default: "auto",
        label: "GPU layers",
        help: "\"auto\" lets the fit planner choose; 0 runs on the CPU.",
        placeholder: "auto",
        form: Some(FormGroup::Backend),
        ..FIELD
    },
    SettingField {
        name: "device",
        key: "embedded.device",
        env: Some("HEARTH_DEVICE"),
        value: FieldValue::Device,
        default: DEFAULT_DEVICE,
        label: "Device",
        help: "Where the model runs, with what fits on each GPU. Changing it reloads the model.",
        hint: "use auto, cpu or a device `hearth hw` lists, e.g. vulkan0",
        form: Some(FormGroup::Backend),
        required: true,
        ..FIELD
    },
    SettingField {
        name: "threads",
        key: "embedded.threads",
        env: Some("HEARTH_THREADS"),
        value: FieldValue::Integer {
            min: 1,
            max: 512,
            step: 1,
        },
        label: "Threads",
        help: "Decode threads; absent: one per physical core.",
        ..FIELD
    },
    // Shown with the local API: with the API off the chat is the only client, and the
    // engine keeps one sequence (drafting, a cache that grows).
    SettingField {
        name: "parallel",
        key: "embedded.parallel",
        env: Some("HEARTH_PARALLEL"),
        value: FieldValue::AutoOrCount {
            min: 1,
            max: hearth_core::MAX_PARALLEL,
            auto_most: Some(hearth_core::AUTO_PARALLEL_MOST),
        },
        default: "auto",
        label: "Replies at once",
        help: "Each shares the machine's speed.",
        placeholder: "auto",
        form: Some(FormGroup::Api),
        ..FIELD
    },
];

/// `[ollama]`: an Ollama server and its model.
const OLLAMA_SECTION: &[SettingField] = &[
    SettingField {
        name: "ollamaUrl",
        key: "ollama.url",
        env: Some("HEARTH_OLLAMA_URL"),
        value: FieldValue::Url {
            example: "http://127.0.0.1:11434",
        },
        label: "Ollama URL",
        hint: "the Ollama server's URL, e.g. http://127.0.0.1:11434",
        placeholder: "http://127.0.0.1:11434",
        form: Some(FormGroup::Backend),
        required: true,
        ..FIELD
    },
    SettingField {
        name: "ollamaModel",
        key: "ollama.model",
        env: Some("HEARTH_OLLAMA_MODEL"),
        label: "Ollama model",
        hint: "name a model pulled in Ollama, e.g. llama3.2",
        placeholder: "llama3.2",
        form: Some(FormGroup::Backend),
        required: true,
        ..FIELD
    },
    SettingField {
        name: "ollamaNumCtx",
        key: "ollama.num_ctx",
        env: Some("HEARTH_OLLAMA_NUM_CTX"),
        value: schema::CONTEXT,
        default: "4096",
        label: "Ollama context (tokens)",
        help: "Sent with every request: Ollama otherwise cuts the prompt to its own default.",
        ..FIELD
    },
];

/// `[vllm]`: vLLM or any OpenAI-compatible server.
const VLLM_SECTION: &[SettingField] = &[
    SettingField {
        name: "vllmUrl",
        key: "vllm.url",
        env: Some("HEARTH_VLLM_URL"),
        value: FieldValue::Url {
            example: "http://127.0.0.1:8000/v1",
        },
        label: "Server URL",
        hint: "the server's API root, e.g. http://127.0.0.1:8000/v1",
        placeholder: "http://127.0.0.1:8000/v1",
        form: Some(FormGroup::Backend),
        required: true,
        ..FIELD
    },
    SettingField {
        name: "vllmModel",
        key: "vllm.model",
        env: Some("HEARTH_VLLM_MODEL"),
        label: "Served model",
        help: "Empty: the model the server lists first.",
        form: Some(FormGroup::Backend),
        ..FIELD
    },
    SettingField {
        name: "vllmApiKey",
        key: "vllm.api_key",
        env: Some("HEARTH_VLLM_API_KEY"),
        value: FieldValue::Token,
        label: "API key",
        help: "Sent as a bearer token; never logged.",
        ..FIELD
    },
    SettingField {
        name: "vllmStallMs",
        key: "vllm.stall_timeout_ms",
        value: FieldValue::Integer {
            min: 10,
            max: 3_600_000,
            step: 1000,
        },
        default: "120000",
        label: "Stall timeout (ms)",
        help: "A server silent this long counts as a transient failure: retried, then the next backend.",
        ..FIELD
    },
];

impl BackendKind {
    /// This kind's entry in the registry.
    pub fn spec(self) -> &'static BackendSpec {
        REGISTRY.iter().find(|s| s.kind == self).unwrap_or(&REGISTRY[0])
    }
}

/// Whether `settings` configure `kind` (the embedded engine needs nothing).
pub(crate) fn configured(kind: BackendKind, settings: &Settings) -> bool {
    match kind {
        BackendKind::Embedded => true,
        BackendKind::Ollama => settings.ollama.is_some(),
        BackendKind::Vllm => settings.vllm.is_some(),
    }
}

/// Whether `kind`'s section differs between `old` and `new` (its backend then reloads).
pub(crate) fn section_changed(kind: BackendKind, old: &Settings, new: &Settings) -> bool {
    match kind {
        // The API's switch decides how many sequences the worker decodes at once.
        BackendKind::Embedded => old.embedded != new.embedded || old.api.enabled != new.api.enabled,
        BackendKind::Ollama => old.ollama != new.ollama,
        BackendKind::Vllm => old.vllm != new.vllm,
    }
}

/// The worker's `--parallel`: the setting while the app's API is on (the chat and API
/// clients then decode side by side); otherwise 1, since the chat sends one reply at a
/// time and one sequence keeps drafting and a cache that grows with the conversation.
pub(crate) fn worker_parallel(settings: &Settings) -> String {
    if settings.api.enabled {
        settings.embedded.parallel.trim().to_ascii_lowercase()
    } else {
        "1".into()
    }
}

/// The worker's `--device`: the setting as written (llama.cpp's device names have case;
/// the worker matches them in any case and names the devices there are if it is wrong).
pub(crate) fn worker_device(settings: &Settings) -> String {
    settings.embedded.device.trim().to_owned()
}

/// What to load a backend with: the model (settings' when `None`), for the embedded
/// engine the quantization among installed files and where its layers go.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct LoadChoice<'a> {
    pub model: Option<&'a str>,
    pub quantization: Option<&'a str>,
    pub placement: Option<Placement>,
}

/// How the embedded engine's worker is started: the settings as its command line
/// (`placement`, when given, instead of the GPU layers setting).
fn worker_config(
    settings: &Settings,
    options: &ManagerOptions,
    placement: Option<Placement>,
    database: &Path,
) -> WorkerConfig {
    let s = &settings.embedded;
    let placement = placement.unwrap_or_else(|| Placement::from_setting(&s.gpu_layers));
    let mut config = WorkerConfig::new(&options.worker_program);
    config.ready_timeout = options.worker_ready_timeout;
    config.args = vec!["--ctx".into(), s.ctx.to_string().into()];
    config
        .args
        .extend(["--gpu-layers".into(), placement.worker_arg().into()]);
    config.args.extend(["--device".into(), worker_device(settings).into()]);
    config
        .args
        .extend(["--parallel".into(), worker_parallel(settings).into()]);
    if let Some(threads) = s.threads {
        config.args.extend(["--threads".into(), threads.to_string().into()]);
    }
    // Its load record goes where this process keeps its own (the app's may differ).
    config.args.extend(["--db".into(), database.as_os_str().to_owned()]);
    config
}

/// Creates `kind`'s backend from `settings`; returns it with the model to load into it.
pub(crate) async fn create(
    kind: BackendKind,
    settings: &Settings,
    options: &ManagerOptions,
    choice: LoadChoice<'_>,
    database: &Path,
) -> Result<(Arc<dyn Backend>, String), ManagerError> {
    let fail = |error| ManagerError::Backend { backend: kind, error };
    let name = kind.as_str();
    Ok(match kind {
        BackendKind::Embedded => {
            let s = &settings.embedded;
            let model = choice.model.unwrap_or(&s.model);
            let path = resolve_model_file(&options.models_dir, model, choice.quantization).map_err(fail)?;
            let config = worker_config(settings, options, choice.placement, database);
            (Arc::new(Supervisor::new(config)), path.to_string_lossy().into_owned())
        }
        BackendKind::Ollama => {
            let s = settings.ollama.as_ref().ok_or(ManagerError::NotConfigured(kind))?;
            let ollama_options = OllamaOptions {
                num_ctx: s.num_ctx,
                ..OllamaOptions::default()
            };
            let backend = OllamaBackend::new(name, &s.url, ollama_options).map_err(fail)?;
            let model = with_quantization(choice.model.unwrap_or(&s.model), choice.quantization);
            (Arc::new(backend), model)
        }
        BackendKind::Vllm => {
            let s = settings.vllm.as_ref().ok_or(ManagerError::NotConfigured(kind))?;
            let key = s.api_key.as_ref().map(|k| k.expose().to_owned());
            let backend = OpenAiBackend::new(name, &s.url, key)
                .map_err(fail)?
                .with_stall_timeout(Some(Duration::from_millis(s.stall_timeout_ms)));
            let model = match choice.model.map(str::to_owned).or_else(|| s.model.clone()) {
                Some(model) => model,
                // vLLM serves one model, under the name it was started with.
                None => backend
                    .models()
                    .await
                    .map_err(fail)?
                    .into_iter()
                    .next()
                    .map(|m| m.id)
                    .ok_or_else(|| {
                        fail(BackendError::Unavailable {
                            backend: name.into(),
                            cause: format!("{} lists no model", s.url),
                        })
                    })?,
            };
            (Arc::new(backend), model)
        }
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn every_kind_is_registered_once_under_the_name_serde_gives_it() {
        assert_eq!(REGISTRY.len(), BackendKind::ALL.len());
        for kind in BackendKind::ALL {
            assert_eq!(REGISTRY.iter().filter(|s| s.kind == kind).count(), 1, "{kind}");
            assert_eq!(kind.spec().kind, kind);
            let json = serde_json::to_value(kind).unwrap();
            assert_eq!(json, kind.as_str(), "the settings file and the API spell it alike");
            assert_eq!(BackendKind::parse(kind.as_str()), Some(kind));
        }
    }

    #[test]
    fn the_worker_decodes_several_sequences_only_while_the_api_is_on() {
        let mut settings = Settings::default();
        assert_eq!(worker_parallel(&settings), "1");
        settings.api.enabled = true;
        assert_eq!(worker_parallel(&settings), "auto");
        settings.embedded.parallel = " 6 ".into();
        assert_eq!(worker_parallel(&settings), "6");
        let mut off = settings.clone();
        off.api.enabled = false;
        assert!(
            section_changed(BackendKind::Embedded, &settings, &off),
            "the worker restarts with one sequence"
        );
        let mut new_port = settings.clone();
        new_port.api.port += 1;
        assert!(
            !section_changed(BackendKind::Embedded, &settings, &new_port),
            "a new port does not reload the model"
        );
    }

    #[test]
    fn the_worker_runs_on_the_device_the_settings_name_and_a_new_device_reloads_it() {
        let mut settings = Settings::default();
        assert_eq!(worker_device(&settings), "auto");
        let mut on_gpu = settings.clone();
        on_gpu.embedded.device = " Vulkan0 ".into();
        assert_eq!(worker_device(&on_gpu), "Vulkan0");
        assert!(
            section_changed(BackendKind::Embedded, &settings, &on_gpu),
            "the worker restarts on the new device"
        );
        assert!(!section_changed(BackendKind::Ollama, &settings, &on_gpu));
        settings.embedded.device = "Vulkan0".into();
        on_gpu.embedded.device = "Vulkan0".into();
        assert!(!section_changed(BackendKind::Embedded, &settings, &on_gpu));
    }

    #[test]
    fn the_worker_is_started_with_the_device_setting() {
        let mut settings = Settings::default();
        settings.embedded.device = "CUDA0".into();
        settings.embedded.gpu_layers = "12".into();
        let options = ManagerOptions::new("/opt/hearth/hearth-app");
        let args = |placement| -> Vec<String> {
            worker_config(&settings, &options, placement, Path::new("/tmp/hearth.db"))
                .args
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect()
        };
        let after = |args: &[String], flag: &str| {
            let at = args.iter().position(|a| a == flag)?;
            args.get(at + 1).cloned()
        };
        let from_settings = args(None);
        assert_eq!(
            after(&from_settings, "--device").as_deref(),
            Some("CUDA0"),
            "{from_settings:?}"
        );
        assert_eq!(
            after(&from_settings, "--gpu-layers").as_deref(),
            Some("12"),
            "{from_settings:?}"
        );
        // A load that chooses its own layers (the CPU) still names the device setting.
        let on_cpu = args(Some(Placement::Cpu));
        assert_eq!(after(&on_cpu, "--gpu-layers").as_deref(), Some("0"), "{on_cpu:?}");
        assert_eq!(after(&on_cpu, "--device").as_deref(), Some("CUDA0"), "{on_cpu:?}");
    }

    #[test]
    fn only_the_servers_need_a_section() {
        let settings = Settings::default();
        for spec in REGISTRY {
            assert_eq!(configured(spec.kind, &settings), !spec.needs_url, "{}", spec.label);
        }
    }
}
