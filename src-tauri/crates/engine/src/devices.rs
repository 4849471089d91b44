//! The devices llama.cpp can run a model on, and which one a load uses: `auto` (a CUDA
//! GPU, else a Vulkan one, else the CPU), `cpu`, or a device by llama.cpp's name
//! ("Vulkan0", "CUDA0"). Naming a device that is not there is an error that says what
//! is missing; `auto` without a GPU runs on the CPU and says so.

use std::str::FromStr;

use serde::Serialize;

use crate::modules::{gpu_modules, GPU_MODULES};
use crate::EngineError;

/// A device llama.cpp can run a model on, as it reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Device {
    /// llama.cpp's index (what a load's device list takes).
    pub index: usize,
    /// llama.cpp's name: "CPU", "Vulkan0", "CUDA0" (what `device = …` names).
    pub name: String,
    /// What it is: the GPU's or CPU's model.
    pub description: String,
    /// The backend that drives it: "CPU", "Vulkan", "CUDA".
    pub backend: String,
    /// "cpu" (also a software Vulkan driver such as lavapipe), "gpu", "igpu"
    /// (integrated), "accel" or "unknown".
    pub kind: &'static str,
    pub memory_total_bytes: u64,
    pub memory_free_bytes: u64,
}

/// The devices llama.cpp sees, with the GPU modules loaded first.
pub fn devices() -> Result<Vec<Device>, crate::EngineError> {
    crate::engine::backend()?;
    Ok(llama_cpp_2::list_llama_ggml_backend_devices()
        .into_iter()
        .map(|d| {
            let kind = match d.device_type {
                // GGML registers every Vulkan device as a GPU; Mesa's lavapipe and
                // Google's SwiftShader are the CPU drawing through Vulkan, slower than
                // the CPU backend, so `auto` must not choose them.
                _ if software_vulkan(&d.description) => "cpu",
                llama_cpp_2::LlamaBackendDeviceType::Cpu => "cpu",
                llama_cpp_2::LlamaBackendDeviceType::Gpu => "gpu",
                llama_cpp_2::LlamaBackendDeviceType::IntegratedGpu => "igpu",
                llama_cpp_2::LlamaBackendDeviceType::Accelerator => "accel",
                _ => "unknown",
            };
            Device {
                index: d.index,
                name: d.name,
                description: d.description,
                backend: d.backend,
                kind,
                memory_total_bytes: d.memory_total as u64,
                memory_free_bytes: d.memory_free as u64,
            }
        })
        .collect())
}

/// A Vulkan device that is the CPU in disguise (a software driver).
fn software_vulkan(description: &str) -> bool {
    description.starts_with("llvmpipe") || description.contains("SwiftShader")
}

/// Which device a model is loaded on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum DeviceChoice {
    /// A CUDA GPU, else a Vulkan GPU, else the CPU.
    #[default]
    Auto,
    /// The CPU only: no layer, cache or operation goes to a GPU.
    Cpu,
    /// A device by llama.cpp's name (any case): "Vulkan0", "CUDA1".
    Named(String),
}

impl FromStr for DeviceChoice {
    type Err = EngineError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "" => Err(EngineError::InvalidSettings(
                "the device is empty: use auto, cpu or a device `hearth hw` lists (e.g. vulkan0)".into(),
            )),
            s if s.eq_ignore_ascii_case("auto") => Ok(Self::Auto),
            s if s.eq_ignore_ascii_case("cpu") => Ok(Self::Cpu),
            s => Ok(Self::Named(s.to_owned())),
        }
    }
}

impl std::fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::Cpu => f.write_str("cpu"),
            Self::Named(name) => f.write_str(name),
        }
    }
}

/// The device a load uses: its llama.cpp index (none for the CPU) and name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChosenDevice {
    pub index: Option<usize>,
    pub name: String,
}

impl ChosenDevice {
    fn cpu() -> Self {
        Self {
            index: None,
            name: "CPU".into(),
        }
    }
}

/// Resolves `choice` against `devices` (as [`devices`] lists them).
pub(crate) fn choose(choice: &DeviceChoice, devices: &[Device]) -> Result<ChosenDevice, EngineError> {
    let gpu = |d: &&Device| d.kind == "gpu" || d.kind == "igpu";
    match choice {
        DeviceChoice::Cpu => Ok(ChosenDevice::cpu()),
        DeviceChoice::Auto => {
            let preferred = GPU_MODULES
                .iter()
                .find_map(|(backend, _)| devices.iter().filter(gpu).find(|d| d.backend == *backend));
            Ok(match preferred {
                Some(d) => ChosenDevice {
                    index: Some(d.index),
                    name: d.name.clone(),
                },
                None => {
                    tracing::info!("no GPU device found: the model runs on the CPU (`hearth hw` says why)");
                    ChosenDevice::cpu()
                }
            })
        }
        DeviceChoice::Named(name) => match devices.iter().find(|d| d.name.eq_ignore_ascii_case(name)) {
            // The CPU backend's own device; a software Vulkan device named is used as asked.
            Some(d) if d.backend == "CPU" => Ok(ChosenDevice::cpu()),
            Some(d) => Ok(ChosenDevice {
                index: Some(d.index),
                name: d.name.clone(),
            }),
            None => Err(EngineError::InvalidSettings(missing_device(name, devices))),
        },
    }
}

/// The device `choice` loads on now: `None` for the CPU backend (no GPU at all).
/// What the engine does at load, for planning before it: the fit planner sizes a load
/// against this device's free memory.
pub fn resolve_device(choice: &DeviceChoice) -> Result<Option<Device>, EngineError> {
    let all = devices()?;
    let chosen = choose(choice, &all)?;
    Ok(chosen.index.and_then(|i| all.into_iter().find(|d| d.index == i)))
}

/// Why a named device is not there, in words: what llama.cpp found, and what became
/// of the module that would drive it.
fn missing_device(name: &str, devices: &[Device]) -> String {
    let found: Vec<&str> = devices.iter().map(|d| d.name.as_str()).collect();
    let mut message = format!(
        "device {name:?} not found; llama.cpp found {} (choose one, cpu or auto)",
        found.join(", ")
    );
    let lower = name.to_ascii_lowercase();
    for m in gpu_modules() {
        if lower.starts_with(&m.backend.to_ascii_lowercase()) {
            let why = m
                .problem
                .clone()
                .unwrap_or_else(|| format!("the {} driver offers {} device(s)", m.backend, m.devices));
            message.push_str(&format!(". {}: {why}", m.backend));
        }
    }
    message
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_cpu_is_always_a_device() {
        let devices = devices().unwrap();
        let cpu = devices.iter().find(|d| d.backend == "CPU").expect("the CPU backend");
        assert_eq!(cpu.kind, "cpu");
        assert!(cpu.memory_total_bytes > 0, "{cpu:?}");
        // Every GPU module was looked for, and says why it is not in use if it is not.
        let modules = gpu_modules();
        assert_eq!(modules.len(), GPU_MODULES.len());
        for m in modules {
            assert!(m.problem.is_some() || m.devices > 0, "{m:?}");
        }
    }

    fn device(index: usize, name: &str, backend: &str, kind: &'static str) -> Device {
        Device {
            index,
            name: name.into(),
            description: String::new(),
            backend: backend.into(),
            kind,
            memory_total_bytes: 1 << 30,
            memory_free_bytes: 1 << 30,
        }
    }

    #[test]
    fn auto_prefers_cuda_then_vulkan_then_the_cpu() {
        let cpu = device(0, "CPU", "CPU", "cpu");
        let vulkan = device(1, "Vulkan0", "Vulkan", "gpu");
        let cuda = device(2, "CUDA0", "CUDA", "gpu");
        let all = [cpu.clone(), vulkan.clone(), cuda];
        assert_eq!(choose(&DeviceChoice::Auto, &all).unwrap().name, "CUDA0");
        assert_eq!(choose(&DeviceChoice::Auto, &all[..2]).unwrap().index, Some(1));
        assert_eq!(choose(&DeviceChoice::Auto, &all[..1]).unwrap(), ChosenDevice::cpu());
        // A CPU-type Vulkan device (Mesa's lavapipe) is never chosen by auto.
        let lavapipe = device(1, "Vulkan0", "Vulkan", "cpu");
        assert_eq!(
            choose(&DeviceChoice::Auto, &[cpu, lavapipe]).unwrap(),
            ChosenDevice::cpu()
        );
        assert_eq!(choose(&DeviceChoice::Cpu, &all).unwrap(), ChosenDevice::cpu());
    }

    #[test]
    fn a_device_is_named_in_any_case_and_a_missing_one_says_what_is_missing() {
        let all = [device(0, "CPU", "CPU", "cpu"), device(1, "Vulkan0", "Vulkan", "gpu")];
        assert_eq!(choose(&"vulkan0".parse().unwrap(), &all).unwrap().index, Some(1));
        let err = choose(&"vulkan1".parse().unwrap(), &all).unwrap_err().to_string();
        assert!(err.contains("\"vulkan1\" not found"), "{err}");
        assert!(err.contains("CPU, Vulkan0"), "{err}");
        // On this machine's build: what became of the CUDA module is said.
        let err = choose(&"cuda0".parse().unwrap(), &all[..1]).unwrap_err().to_string();
        assert!(err.contains("CUDA: "), "{err}");
        assert!("".parse::<DeviceChoice>().is_err());
        assert!(software_vulkan("llvmpipe (LLVM 15.0.6, 256 bits)"));
        assert!(!software_vulkan("NVIDIA GeForce RTX 4090"));
        assert_eq!("AUTO".parse::<DeviceChoice>().unwrap(), DeviceChoice::Auto);
        assert_eq!("Cpu".parse::<DeviceChoice>().unwrap().to_string(), "cpu");
    }
}
