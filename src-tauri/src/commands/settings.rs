//! Settings as the UI edits them: one flat view over the manager's settings
//! (`settings.toml`) and the UI's own (`ui-settings.json`: sampling, system prompt).
//! Saving validates everything first (errors name the field as the UI calls it),
//! writes both files, and applies the result without a restart.

use hearth_core::ErrorCode;
use hearth_core::SamplingParams;
use hearth_manager::settings::{schema, OllamaSettings, Secret, VllmSettings};
use hearth_manager::{ApiSettings, Settings, SettingsError};
use serde::{Deserialize, Serialize};
use tauri::State;

use crate::commands::{broadcast_status, current_status, parse_backend, AppStatus};
use crate::error::{AppError, AppResult};
use crate::state::{AppState, UiSettings};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, specta::Type)]
#[serde(rename_all = "camelCase")]
pub struct SettingsView {
    /// `embedded`, `ollama` or `vllm`.
    pub backend: String,
    /// The embedded engine's model: an installed model's file name, or a .gguf path.
    pub model: String,
    pub ctx: u32,
    /// `auto` (the fit planner decides) or a number of layers.
    pub gpu_layers: String,
    /// Where the model runs: `auto`, `cpu` or a device `list_devices` gives (`Vulkan0`).
    pub device: String,
    /// Empty or absent: Ollama is not configured.
    pub ollama_url: Option<String>,
    pub ollama_model: Option<String>,
    /// Empty or absent: vLLM is not configured.
    pub vllm_url: Option<String>,
    pub vllm_model: Option<String>,
    pub temperature: f32,
    pub top_p: f32,
    pub max_tokens: u32,
    pub system_prompt: Option<String>,
    /// Serve the OpenAI-compatible API on 127.0.0.1 (editors, scripts).
    pub api_enabled: bool,
    /// Its port (0: any free port).
    pub api_port: u16,
    /// The bearer token clients must send; empty or absent: none.
    pub api_token: Option<String>,
    /// Sequences decoded at once while the API is on: `auto` or a number.
    pub parallel: String,
}

impl SettingsView {
    pub fn from_parts(settings: &Settings, ui: &UiSettings) -> Self {
        Self {
            backend: settings.active.to_string(),
            model: settings.embedded.model.clone(),
            ctx: settings.embedded.ctx,
            gpu_layers: settings.embedded.gpu_layers.clone(),
            device: settings.embedded.device.clone(),
            ollama_url: settings.ollama.as_ref().map(|o| o.url.clone()),
            ollama_model: settings.ollama.as_ref().map(|o| o.model.clone()),
            vllm_url: settings.vllm.as_ref().map(|v| v.url.clone()),
            vllm_model: settings.vllm.as_ref().and_then(|v| v.model.clone()),
            temperature: ui.temperature,
            top_p: ui.top_p,
            max_tokens: ui.max_tokens,
            system_prompt: ui.system_prompt.clone(),
            api_enabled: settings.api.enabled,
            api_port: settings.api.port,
            api_token: settings.api.token.as_ref().map(|t| t.expose().to_owned()),
            parallel: settings.embedded.parallel.clone(),
        }
    }

    /// The manager's settings and the UI's, checked: `current` supplies what the view
    /// does not show (threads, retries, cooldown, API key, …).
    pub fn to_parts(&self, current: &Settings) -> AppResult<(Settings, UiSettings)> {
        let mut settings = current.clone();
        settings.active = parse_backend(&self.backend)?;
        settings.embedded.model = self.model.trim().to_owned();
        settings.embedded.ctx = self.ctx;
        settings.embedded.gpu_layers = self.gpu_layers.trim().to_owned();
        settings.embedded.device = self.device.trim().to_owned();
        settings.embedded.parallel = self.parallel.trim().to_ascii_lowercase();
        settings.api = ApiSettings {
            enabled: self.api_enabled,
            port: self.api_port,
            token: self
                .api_token
                .as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(Secret::new),
        };
        let given = |v: &Option<String>| v.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned);
        settings.ollama = match (given(&self.ollama_url), given(&self.ollama_model)) {
            (None, _) => None,
            (Some(_), None) => {
                return Err(AppError::invalid_field(
                    "ollamaModel",
                    "name the Ollama model to use (e.g. llama3.2:1b), or clear the Ollama URL",
                ))
            }
            (Some(url), Some(model)) => Some(OllamaSettings {
                url,
                model,
                num_ctx: current.ollama.as_ref().map_or(self.ctx, |o| o.num_ctx),
            }),
        };
        settings.vllm = given(&self.vllm_url).map(|url| VllmSettings {
            url,
            model: given(&self.vllm_model),
            api_key: current.vllm.as_ref().and_then(|v| v.api_key.clone()),
            stall_timeout_ms: current.vllm.as_ref().map_or(120_000, |v| v.stall_timeout_ms),
        });
        // A fallback to a backend no longer configured would fail validation for a
        // field the view does not show: drop it instead.
        let configured: Vec<_> = settings
            .fallback
            .iter()
            .copied()
            .filter(|k| settings.is_configured(*k))
            .collect();
        settings.fallback = configured;
        settings.validate().map_err(|problems| SettingsError {
            file: std::path::PathBuf::from("(settings)"),
            problems,
        })?;
        let ui = UiSettings {
            temperature: self.temperature,
            top_p: self.top_p,
            max_tokens: self.max_tokens,
            system_prompt: self
                .system_prompt
                .as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
        };
        check_ui(&ui)?;
        Ok((settings, ui))
    }
}

/// The app's own settings (sampling) against their entries in the settings table.
fn check_ui(ui: &UiSettings) -> AppResult<()> {
    use toml::Value;
    let values = [
        ("temperature", Value::Float(f64::from(ui.temperature))),
        ("topP", Value::Float(f64::from(ui.top_p))),
        ("maxTokens", Value::Integer(i64::from(ui.max_tokens))),
    ];
    for (name, value) in values {
        let Some(field) = schema::named(name) else { continue };
        schema::check(field, &value).map_err(|problem| AppError::invalid_field(name, problem))?;
    }
    Ok(())
}

/// The settings as the UI shows them.
#[tauri::command]
#[specta::specta]
pub async fn get_settings(state: State<'_, AppState>) -> AppResult<SettingsView> {
    Ok(SettingsView::from_parts(
        &state.manager.settings(),
        &state.ui_settings(),
    ))
}

/// Validates, saves and applies `settings`; a changed backend is switched to at once,
/// keeping the conversation. The local API is started (or moved) first: a port that
/// cannot be used fails the save, and nothing is written.
#[tauri::command]
#[specta::specta]
pub async fn save_settings(state: State<'_, AppState>, settings: SettingsView) -> AppResult<AppStatus> {
    let current = state.manager.settings();
    let (new, ui) = settings.to_parts(&current)?;
    state.local_api.apply(&new.api).await?;
    new.save(&state.paths.settings_file).map_err(|e| {
        AppError::new(
            ErrorCode::SettingsNotSaved,
            format!(
                "{} cannot be written ({e}): check the folder's permissions",
                state.paths.settings_file.display()
            ),
        )
    })?;
    ui.save(&state.paths.ui_settings_file)?;
    state.set_ui_settings(ui);
    let switch = new.active != state.manager.active();
    state.manager.apply_settings(new.clone()).await?;
    if switch {
        crate::commands::switch_to(&state, new.active).await.map_err(|e| {
            AppError::new(
                e.code,
                format!("Settings saved, but {} cannot answer yet: {}", new.active, e.message),
            )
        })?;
    } else if current_status(&state).await.model.is_none() {
        // The active backend's configuration changed and it was unloaded: load it again.
        if let Some(hooks) = state.hooks() {
            (hooks.load_active)();
        }
    } else {
        broadcast_status(&state).await;
    }
    Ok(current_status(&state).await)
}

/// The sampling parameters a reply uses now.
pub fn sampling(state: &AppState) -> SamplingParams {
    state.ui_settings().sampling()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_device_goes_to_the_embedded_engine_and_a_bad_one_is_named_by_its_field() {
        let current = Settings::default();
        let mut view = SettingsView::from_parts(&current, &UiSettings::default());
        assert_eq!(view.device, "auto");
        view.device = " Vulkan0 ".into();
        let (settings, _) = view.to_parts(&current).expect("valid");
        assert_eq!(settings.embedded.device, "Vulkan0");
        assert_eq!(
            SettingsView::from_parts(&settings, &UiSettings::default()).device,
            "Vulkan0"
        );

        view.device = "NVIDIA GeForce".into();
        let e = view.to_parts(&current).expect_err("two words");
        assert_eq!(e.code, ErrorCode::InvalidSettings);
        assert_eq!(e.field.as_deref(), Some("device"), "{e:?}");
        assert!(e.message.starts_with("`device`:"), "{}", e.message);
        assert!(e.message.contains("e.g. vulkan0"), "{}", e.message);
        assert_eq!(schema::view_name("HEARTH_DEVICE"), "device");
    }
}
