//! Where Hearth keeps things, by the platform's conventions (XDG on Linux),
//! each overridable by an environment variable. Nothing is written next to the
//! binary.

use std::path::{Path, PathBuf};

fn project_dirs() -> Option<directories::ProjectDirs> {
    directories::ProjectDirs::from("", "", "hearth")
}

fn from_env(var: &str) -> Option<PathBuf> {
    std::env::var_os(var).filter(|v| !v.is_empty()).map(PathBuf::from)
}

/// `HEARTH_DATA_DIR`, else `~/.local/share/hearth`: the database and the models.
pub fn data_dir() -> PathBuf {
    from_env("HEARTH_DATA_DIR")
        .or_else(|| project_dirs().map(|d| d.data_dir().to_path_buf()))
        .unwrap_or_else(|| PathBuf::from(".hearth"))
}

/// `HEARTH_MODELS_DIR`, else `<data dir>/models`: where `make models` installs GGUF files.
pub fn models_dir() -> PathBuf {
    from_env("HEARTH_MODELS_DIR").unwrap_or_else(|| data_dir().join("models"))
}

/// `HEARTH_LOG_DIR`, else `~/.local/state/hearth/logs` (XDG state dir).
pub fn log_dir() -> PathBuf {
    from_env("HEARTH_LOG_DIR")
        .or_else(|| {
            project_dirs()
                .and_then(|d| d.state_dir().map(|s| s.to_path_buf()))
                .map(|s| s.join("logs"))
        })
        .unwrap_or_else(|| data_dir().join("logs"))
}

/// `HEARTH_CONFIG_DIR`, else `~/.config/hearth`: the settings file.
pub fn config_dir() -> PathBuf {
    from_env("HEARTH_CONFIG_DIR")
        .or_else(|| project_dirs().map(|d| d.config_dir().to_path_buf()))
        .unwrap_or_else(|| data_dir().join("config"))
}

/// `HEARTH_SETTINGS`, else `<config dir>/settings.toml`.
pub fn settings_file() -> PathBuf {
    from_env("HEARTH_SETTINGS").unwrap_or_else(|| config_dir().join("settings.toml"))
}

/// The `.gguf` files in `dir`, sorted; none when it does not exist. The one lister of
/// model files: the CLI, the worker, the manager's resolver and the app all use it.
pub fn gguf_files_in(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x.eq_ignore_ascii_case("gguf")))
        .collect();
    paths.sort();
    Ok(paths)
}

/// Bytes the current user may still write in the file system that holds `dir` (statvfs:
/// the blocks left to unprivileged users). The one reading of free space: downloads and
/// quantization check it before they write.
pub fn available_space(dir: &Path) -> std::io::Result<u64> {
    let stat = nix::sys::statvfs::statvfs(dir).map_err(std::io::Error::from)?;
    // Both are `fsblkcnt_t`/`c_ulong`, 64 bits on the targets Hearth builds for.
    Ok(stat.blocks_available().saturating_mul(stat.fragment_size()))
}

/// The default chat model `make models` installs.
pub const DEFAULT_CHAT_MODEL: &str = "SmolLM2-135M-Instruct-Q4_1.gguf";
/// The second default model: a base model without a chat template.
pub const DEFAULT_BASE_MODEL: &str = "gemma-3-270m-Q4_K_M.gguf";
