//! GPU backends as modules loaded at start: one executable, and beside it GGML's
//! Vulkan and CUDA backends built as loadable libraries (`GGML_BACKEND_DL`). A module
//! that is missing, or whose driver is missing or finds no device, is not an error: the
//! engine runs on what is left, and [`gpu_modules`] says what happened to each.
//!
//! The executable never links a GPU library itself (the module does), so it starts on
//! a machine without Vulkan or CUDA.
//!
//! llama-cpp-2 wraps module loading only in builds with every CPU variant as a module
//! (`cpu-variants`); this module calls GGML's registry directly, each call with its
//! safety argument beside it.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde::Serialize;

/// The GPU modules Hearth looks for, in the order `auto` prefers their devices.
pub const GPU_MODULES: [(&str, &str); 2] = [("CUDA", "libggml-cuda.so"), ("Vulkan", "libggml-vulkan.so")];

/// What became of one GPU module at start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GpuModule {
    /// "CUDA" or "Vulkan".
    pub backend: String,
    /// Where it was found; `None` when no folder searched holds it.
    pub path: Option<PathBuf>,
    /// Registered with llama.cpp (its library and driver loaded).
    pub loaded: bool,
    /// Devices it offers (0 when not loaded, or when the driver found none).
    pub devices: usize,
    /// Why it is not in use, in words.
    pub problem: Option<String>,
}

/// The folders searched for modules: `HEARTH_BACKENDS_DIR` alone when set; else the
/// executable's folder (an installed app, a `make` build), its parent (test programs
/// run from `deps/`), and the .deb's library folder.
pub fn module_dirs() -> Vec<PathBuf> {
    if let Some(dir) = std::env::var_os("HEARTH_BACKENDS_DIR") {
        return vec![PathBuf::from(dir)];
    }
    let mut dirs = Vec::new();
    if let Some(exe_dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        if let Some(parent) = exe_dir.parent() {
            let parent = parent.to_path_buf();
            dirs.push(exe_dir);
            dirs.push(parent);
        } else {
            dirs.push(exe_dir);
        }
    }
    dirs.push(PathBuf::from("/usr/lib/hearth"));
    dirs
}

/// The GPU modules, loaded on first call (once per process; before llama.cpp lists
/// its devices).
pub fn gpu_modules() -> &'static [GpuModule] {
    static MODULES: OnceLock<Vec<GpuModule>> = OnceLock::new();
    MODULES.get_or_init(|| {
        let dirs = module_dirs();
        GPU_MODULES
            .iter()
            .map(|(backend, file)| {
                if let Some(module) = registered(backend) {
                    return module;
                }
                if let Some(problem) = no_gpu_to_drive(backend) {
                    return GpuModule {
                        backend: (*backend).to_owned(),
                        path: None,
                        loaded: false,
                        devices: 0,
                        problem: Some(problem),
                    };
                }
                let found = dirs.iter().map(|d| d.join(file)).find(|p| p.is_file());
                let module = match found {
                    Some(path) => load(backend, path),
                    None => GpuModule {
                        backend: (*backend).to_owned(),
                        path: None,
                        loaded: false,
                        devices: 0,
                        problem: Some(format!(
                            "{file} is not installed (searched {})",
                            dirs.iter()
                                .map(|d| d.display().to_string())
                                .collect::<Vec<_>>()
                                .join(", ")
                        )),
                    },
                };
                match &module.problem {
                    Some(problem) => tracing::info!(backend, %problem, "GPU module not in use"),
                    None => tracing::info!(backend, devices = module.devices, "GPU module loaded"),
                }
                module
            })
            .collect()
    })
}

/// Why a module is not worth loading here: no device node a GPU driver would use. A
/// driver's libraries cost memory even when they find nothing (the Vulkan loader and
/// Mesa's drivers add about 60 MB to the process), so a machine without a GPU does not
/// pay for them. `GGML_VK_VISIBLE_DEVICES` asks for Vulkan devices by name (Mesa's
/// lavapipe, which needs no device node), so it loads the module anyway.
fn no_gpu_to_drive(backend: &str) -> Option<String> {
    let has_node = |dir: &str, prefix: &str| {
        std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .flatten()
                    .any(|e| e.file_name().to_string_lossy().starts_with(prefix))
            })
            .unwrap_or(false)
    };
    match backend {
        "CUDA" if !has_node("/dev", "nvidia") => Some("no NVIDIA GPU device (/dev/nvidia*) on this machine".into()),
        "Vulkan"
            if std::env::var_os("GGML_VK_VISIBLE_DEVICES").is_none()
                && !has_node("/dev/dri", "renderD")
                && !has_node("/dev", "nvidia") =>
        {
            Some(
                "no GPU device (/dev/dri/renderD*, /dev/nvidia*) on this machine; GGML_VK_VISIBLE_DEVICES \
                 loads the module anyway (for a software driver such as lavapipe)"
                    .into(),
            )
        }
        _ => None,
    }
}

/// A backend already registered (a build with `cpu-variants` loads every module GGML
/// finds beside the executable): not loaded twice.
fn registered(backend: &str) -> Option<GpuModule> {
    let name = CString::new(backend).ok()?;
    // SAFETY: `name` is NUL-terminated and outlives the call; GGML only reads it.
    let reg = unsafe { llama_cpp_sys_2::ggml_backend_reg_by_name(name.as_ptr()) };
    if reg.is_null() {
        return None;
    }
    // SAFETY: a registration GGML returned stays valid for the life of the process.
    let devices = unsafe { llama_cpp_sys_2::ggml_backend_reg_dev_count(reg) };
    Some(GpuModule {
        backend: backend.to_owned(),
        path: None,
        loaded: true,
        devices,
        problem: (devices == 0).then(|| format!("the {backend} driver found no device ({})", hint_no_device(backend))),
    })
}

fn load(backend: &str, path: PathBuf) -> GpuModule {
    let mut module = GpuModule {
        backend: backend.to_owned(),
        path: Some(path.clone()),
        loaded: false,
        devices: 0,
        problem: None,
    };
    let Ok(c_path) = CString::new(path.as_os_str().as_encoded_bytes()) else {
        module.problem = Some(format!("{} is not a usable path", path.display()));
        return module;
    };
    // SAFETY: `c_path` is a NUL-terminated string that outlives the call. GGML opens
    // the library, checks its API version and registers it; it returns null (and logs
    // why) when the library, or the driver it needs, cannot be loaded.
    let reg = unsafe { llama_cpp_sys_2::ggml_backend_load(c_path.as_ptr()) };
    if reg.is_null() {
        module.problem = Some(format!(
            "{} did not load: its driver ({}) is missing or does not work (llama.cpp's log at debug level says why)",
            path.display(),
            driver_of(backend)
        ));
        return module;
    }
    module.loaded = true;
    // SAFETY: `reg` is the live registration GGML just returned; it stays registered
    // for the life of the process.
    module.devices = unsafe { llama_cpp_sys_2::ggml_backend_reg_dev_count(reg) };
    if module.devices == 0 {
        module.problem = Some(format!(
            "the {backend} driver found no device ({})",
            hint_no_device(backend)
        ));
    }
    module
}

fn driver_of(backend: &str) -> &'static str {
    match backend {
        "CUDA" => "the NVIDIA driver's libcuda.so.1",
        _ => "libvulkan.so.1 and a Vulkan driver for the GPU",
    }
}

fn hint_no_device(backend: &str) -> &'static str {
    match backend {
        "CUDA" => "no NVIDIA GPU, or the driver is not loaded: nvidia-smi shows what it sees",
        // llama.cpp skips Vulkan devices of CPU type (Mesa's lavapipe) unless named.
        _ => "no GPU with a Vulkan driver; CPU-type Vulkan devices count only when GGML_VK_VISIBLE_DEVICES names them",
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn modules_are_searched_beside_the_executable_and_in_the_packaged_folder() {
        let dirs = module_dirs();
        if let Some(dir) = std::env::var_os("HEARTH_BACKENDS_DIR") {
            assert_eq!(dirs, [PathBuf::from(dir)], "the folder asked for, alone");
            return;
        }
        let exe = std::env::current_exe().unwrap();
        assert_eq!(dirs.first().map(PathBuf::as_path), exe.parent());
        assert_eq!(dirs.last().unwrap(), Path::new("/usr/lib/hearth"));
    }
}
