//! What the app holds while it runs: the backend manager (which owns the store and the
//! conversation), the stop signal of the reply in progress, the app-level flags the UI
//! and the tray show, the UI's own settings and the hardware sampler.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use hearth_core::ErrorCode;
use hearth_core::SamplingParams;
use hearth_manager::{BackendManager, ManagerOptions, Settings, StopSignal};
use hearth_store::{AsyncStore, StoreOptions};
use serde::{Deserialize, Serialize};

use crate::commands::AppStatus;
use crate::error::{AppError, AppResult};
use crate::local_api::LocalApi;

/// Where the app reads and writes. [`AppPaths::from_environment`] for the real app
/// (the platform directories, `HEARTH_*` overrides); tests pass temporary ones.
#[derive(Debug, Clone)]
pub struct AppPaths {
    /// The backend manager's settings (`settings.toml`).
    pub settings_file: PathBuf,
    /// The UI's own settings, next to it: sampling and the system prompt (see [`UiSettings`]).
    pub ui_settings_file: PathBuf,
    pub models_dir: PathBuf,
    pub db_path: PathBuf,
    /// Where exported conversations are saved: the user's Downloads folder in the real
    /// app (`HEARTH_EXPORT_DIR` overrides it), else `exports` beside the database.
    pub exports_dir: PathBuf,
}

impl AppPaths {
    pub fn from_environment() -> Self {
        let mut paths = Self::with_settings_file(
            hearth_core::paths::settings_file(),
            hearth_core::paths::models_dir(),
            hearth_store::default_db_path(),
        );
        let downloads = directories::UserDirs::new().and_then(|d| d.download_dir().map(Path::to_path_buf));
        if let Some(dir) = std::env::var_os("HEARTH_EXPORT_DIR").map(PathBuf::from).or(downloads) {
            paths.exports_dir = dir;
        }
        paths
    }

    /// `ui-settings.json` goes next to `settings_file`.
    pub fn with_settings_file(settings_file: PathBuf, models_dir: PathBuf, db_path: PathBuf) -> Self {
        let ui_settings_file = settings_file
            .parent()
            .unwrap_or_else(|| Path::new("."))
            .join(UI_SETTINGS_FILE);
        let exports_dir = db_path.parent().unwrap_or_else(|| Path::new(".")).join("exports");
        Self {
            settings_file,
            ui_settings_file,
            models_dir,
            db_path,
            exports_dir,
        }
    }
}

pub const UI_SETTINGS_FILE: &str = "ui-settings.json";

/// What the chat view controls and the manager's settings do not: how replies are
/// sampled and the system prompt new conversations open with. Kept in
/// `ui-settings.json` beside `settings.toml`, so the CLI's settings file stays the
/// manager's alone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct UiSettings {
    pub temperature: f32,
    pub top_p: f32,
    pub max_tokens: u32,
    pub system_prompt: Option<String>,
}

impl Default for UiSettings {
    fn default() -> Self {
        let sampling = SamplingParams::default();
        Self {
            temperature: sampling.temperature,
            top_p: sampling.top_p,
            max_tokens: sampling.max_tokens,
            system_prompt: None,
        }
    }
}

impl UiSettings {
    pub fn sampling(&self) -> SamplingParams {
        SamplingParams {
            temperature: self.temperature,
            top_p: self.top_p,
            max_tokens: self.max_tokens,
            ..SamplingParams::default()
        }
    }

    /// The file, or defaults when it is missing or unreadable (logged: a broken UI
    /// settings file must not keep the app from starting).
    pub fn load(path: &Path) -> Self {
        match std::fs::read_to_string(path) {
            Ok(text) => serde_json::from_str(&text).unwrap_or_else(|e| {
                tracing::warn!(file = %path.display(), error = %e, "UI settings unreadable: using defaults");
                Self::default()
            }),
            Err(_) => Self::default(),
        }
    }

    /// Written whole to a temporary file, then renamed over the old one.
    pub fn save(&self, path: &Path) -> AppResult<()> {
        let text = serde_json::to_string_pretty(self).map_err(AppError::internal)?;
        write_atomically(path, text.as_bytes()).map_err(|e| {
            AppError::new(
                ErrorCode::SettingsNotSaved,
                format!(
                    "{} cannot be written ({e}): check the folder's permissions",
                    path.display()
                ),
            )
        })
    }
}

pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Called with the new status and the settings (which backends the tray may offer).
pub type StatusHook = Box<dyn Fn(&AppStatus, &Settings) + Send + Sync>;

/// What the state asks of the app around it, installed once the app exists
/// ([`crate::connect`]): commands stay free of the Tauri runtime type, so the same ones
/// run in the real app and under the mock runtime.
pub struct Hooks {
    /// The status changed: tell the windows and the tray.
    pub on_status: StatusHook,
    /// Load the active backend in the background.
    pub load_active: Box<dyn Fn() + Send + Sync>,
}

pub struct AppState {
    pub manager: Arc<BackendManager>,
    /// The OpenAI-compatible API on 127.0.0.1, when the settings turn it on.
    pub local_api: LocalApi,
    pub paths: AppPaths,
    /// Stops the reply in progress; the manager resets it when a reply starts.
    pub stop: StopSignal,
    generating: AtomicBool,
    loading: AtomicBool,
    last_decode_tps: Mutex<Option<f64>>,
    /// The status last told to the windows and the tray: a change of the app's own
    /// flags (a reply starting) is told from it without asking the backends again.
    last_status: Mutex<Option<AppStatus>>,
    ui: RwLock<UiSettings>,
    /// Why the app is not as configured: the settings file was invalid (defaults are
    /// used), or the history database could not be opened (a scratch one is used).
    startup_problems: Vec<String>,
    /// Set when the database could not be opened: history is off for this run.
    history_problem: Option<String>,
    /// Live CPU/RAM/GPU readings for the dashboard; absent if sampling cannot start.
    pub sampler: Option<hearth_hw::SamplerHandle>,
    hooks: OnceLock<Hooks>,
    /// The executable that runs the jobs' child processes (`… quantize-worker`,
    /// `… measure-worker`): the app itself.
    pub job_program: PathBuf,
    /// Stops the quantization in progress (the app runs one at a time).
    pub quantize_cancel: Arc<hearth_worker::jobs::Cancel>,
    quantizing: AtomicBool,
    /// Stops the download in progress, keeping its part file (one download at a time).
    pub download_cancel: Arc<AtomicBool>,
    downloading: AtomicBool,
    /// Memory read bandwidth (bytes/s), read once when a download list first needs it.
    pub bandwidth: OnceLock<f64>,
    _scratch: Option<tempfile::TempDir>,
}

impl AppState {
    /// Reads the settings and opens the database. Never fails for a bad settings file
    /// or database: the app starts with defaults or without history and says why.
    /// `worker_program` is the executable that runs `… worker` (the app itself).
    pub async fn open(paths: AppPaths, worker_program: PathBuf) -> AppResult<Self> {
        let mut startup_problems = Vec::new();
        let settings = match Settings::load(&paths.settings_file, |name| std::env::var(name).ok()) {
            Ok(settings) => settings,
            Err(e) => {
                tracing::warn!(error = %e, "settings invalid: starting with defaults");
                startup_problems.push(format!("{e}; using the defaults until it is fixed in Settings"));
                Settings::default()
            }
        };
        let (store, scratch, history_problem) = match AsyncStore::open(&paths.db_path, StoreOptions::default()).await {
            Ok(store) => (store, None, None),
            Err(e) => {
                tracing::warn!(error = %e, "chat history disabled");
                let dir = tempfile::tempdir().map_err(AppError::internal)?;
                let store = AsyncStore::open(dir.path().join("scratch.db"), StoreOptions::default()).await?;
                (store, Some(dir), Some(e.to_string()))
            }
        };
        let options = ManagerOptions {
            models_dir: paths.models_dir.clone(),
            ..ManagerOptions::new(worker_program.clone())
        };
        let manager = Arc::new(BackendManager::new(settings, options, store));
        let ui = UiSettings::load(&paths.ui_settings_file);
        let sampler = hearth_hw::Sampler::start(Duration::from_secs(1), 60)
            .map_err(|e| tracing::warn!(error = %e, "hardware sampler not started"))
            .ok();
        Ok(Self {
            local_api: LocalApi::new(Arc::clone(&manager)),
            manager,
            paths,
            stop: StopSignal::default(),
            generating: AtomicBool::new(false),
            loading: AtomicBool::new(false),
            last_decode_tps: Mutex::new(None),
            last_status: Mutex::new(None),
            ui: RwLock::new(ui),
            startup_problems,
            history_problem,
            sampler,
            hooks: OnceLock::new(),
            job_program: worker_program,
            quantize_cancel: Arc::new(hearth_worker::jobs::Cancel::new()),
            quantizing: AtomicBool::new(false),
            download_cancel: Arc::new(AtomicBool::new(false)),
            downloading: AtomicBool::new(false),
            bandwidth: OnceLock::new(),
            _scratch: scratch,
        })
    }

    /// Installs the hooks; later calls are ignored.
    pub fn set_hooks(&self, hooks: Hooks) {
        if self.hooks.set(hooks).is_err() {
            tracing::debug!("app hooks already installed");
        }
    }

    pub fn hooks(&self) -> Option<&Hooks> {
        self.hooks.get()
    }

    pub fn ui_settings(&self) -> UiSettings {
        self.ui
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub fn set_ui_settings(&self, settings: UiSettings) {
        *self.ui.write().unwrap_or_else(std::sync::PoisonError::into_inner) = settings;
    }

    pub fn generating(&self) -> bool {
        self.generating.load(Ordering::Acquire)
    }

    /// Claims the one reply slot; `None` when a reply is already running. The slot is
    /// given back when the guard drops, however the reply ended.
    pub fn begin_generation(&self) -> Option<GeneratingGuard<'_>> {
        GeneratingGuard::claim(&self.generating)
    }

    pub fn quantizing(&self) -> bool {
        self.quantizing.load(Ordering::Acquire)
    }

    /// Claims the one quantization slot (its cancel reset for the new job); `None` when
    /// one is running. Given back when the guard drops.
    pub fn begin_quantization(&self) -> Option<GeneratingGuard<'_>> {
        let guard = GeneratingGuard::claim(&self.quantizing)?;
        self.quantize_cancel.reset();
        Some(guard)
    }

    pub fn downloading(&self) -> bool {
        self.downloading.load(Ordering::Acquire)
    }

    /// Claims the one download slot (its stop flag cleared); `None` when one is running.
    pub fn begin_download(&self) -> Option<GeneratingGuard<'_>> {
        let guard = GeneratingGuard::claim(&self.downloading)?;
        self.download_cancel.store(false, Ordering::Release);
        Some(guard)
    }

    pub fn loading(&self) -> bool {
        self.loading.load(Ordering::Acquire)
    }

    pub fn set_loading(&self, loading: bool) {
        self.loading.store(loading, Ordering::Release);
    }

    pub fn last_decode_tps(&self) -> Option<f64> {
        *self
            .last_decode_tps
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn set_last_decode_tps(&self, tps: f64) {
        *self
            .last_decode_tps
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(tps);
    }

    /// Remembers `status` as the one last told.
    pub fn remember_status(&self, status: &AppStatus) {
        *self
            .last_status
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(status.clone());
    }

    /// The status last told, with the app's own flags as they are now; `None` before
    /// any was told.
    pub fn status_with_flags(&self) -> Option<AppStatus> {
        let last = self
            .last_status
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()?;
        Some(AppStatus {
            loading: self.loading(),
            generating: self.generating(),
            last_decode_tps: self.last_decode_tps(),
            session: self.manager.conversation().session().map(|s| s.as_str().to_owned()),
            ..last
        })
    }

    pub fn startup_problems(&self) -> &[String] {
        &self.startup_problems
    }

    pub fn history_problem(&self) -> Option<&str> {
        self.history_problem.as_deref()
    }
}

/// Holds a one-at-a-time slot (a reply, a quantization, a download) until dropped.
pub struct GeneratingGuard<'a>(&'a AtomicBool);

impl<'a> GeneratingGuard<'a> {
    /// Takes the slot `flag` stands for; `None` when it is already taken.
    fn claim(flag: &'a AtomicBool) -> Option<Self> {
        flag.compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .ok()
            .map(|_| Self(flag))
    }
}

impl Drop for GeneratingGuard<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}
