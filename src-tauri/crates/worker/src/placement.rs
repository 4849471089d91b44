//! Where a model runs: the device a choice resolves to, the fit plan made against that
//! device's free memory as llama.cpp's backend reports it (what its allocations come
//! from, the same figure on every GPU vendor), and the device memory a load really took.
//!
//! The one owner of "plan against a device": `--gpu-layers auto`, `hearth plan`,
//! `hearth bench --device`, the settings' device picker and a load's VRAM check all
//! come here.

use hearth_engine::{Device, DeviceChoice};
use hearth_gguf::GgufInfo;
use hearth_hw::{FitPlan, GpuInfo, GpuVendor, PlanRequest, Snapshot, Verdict};
use serde::{Deserialize, Serialize};

const MIB: u64 = 1024 * 1024;

/// Caps the free memory Hearth plans for on a GPU, in MiB: room kept for games and other
/// programs, or a small device simulated (the tests use it on lavapipe).
pub const GPU_MEMORY_ENV: &str = "HEARTH_GPU_MEMORY_MB";

/// [`GPU_MEMORY_ENV`], read; a value that is not a number is an error that says so.
pub fn gpu_memory_cap() -> anyhow::Result<Option<u64>> {
    match std::env::var(GPU_MEMORY_ENV) {
        Err(_) => Ok(None),
        Ok(v) if v.trim().is_empty() => Ok(None),
        Ok(v) => v
            .trim()
            .parse::<u64>()
            .map(|mb| Some(mb.saturating_mul(MIB)))
            .map_err(|_| anyhow::anyhow!("{GPU_MEMORY_ENV}={v:?} is not a number of MiB: unset it or give e.g. 4096")),
    }
}

/// Free memory on `device` now, capped by [`GPU_MEMORY_ENV`].
fn capped_free(device: &Device, cap: Option<u64>) -> u64 {
    cap.map_or(device.memory_free_bytes, |cap| device.memory_free_bytes.min(cap))
}

/// `device` as the planner's GPU.
fn as_gpu(device: &Device, cap: Option<u64>) -> GpuInfo {
    let text = format!("{} {}", device.backend, device.description).to_ascii_lowercase();
    let vendor = if device.backend == "CUDA" || text.contains("nvidia") {
        GpuVendor::Nvidia
    } else if text.contains("amd") || text.contains("radeon") {
        GpuVendor::Amd
    } else {
        GpuVendor::Other
    };
    let free = capped_free(device, cap);
    GpuInfo {
        index: 0,
        vendor,
        name: format!("{}: {}", device.name, device.description),
        uuid: None,
        vram_total_bytes: device.memory_total_bytes,
        vram_free_bytes: free,
        vram_used_bytes: device.memory_total_bytes.saturating_sub(device.memory_free_bytes),
        compute_capability: None,
        driver_version: None,
        utilization_percent: None,
        temperature_c: None,
        power_watts: None,
    }
}

/// This machine now (RAM read live), with `device` as its only GPU (none for the CPU):
/// a load uses one device, and llama.cpp's view of it is the one its allocations meet.
pub fn snapshot_for(device: Option<&Device>) -> anyhow::Result<Snapshot> {
    let cap = gpu_memory_cap()?;
    let mut snapshot = hearth_hw::Probe::new().sample();
    snapshot.gpus = device.map(|d| as_gpu(d, cap)).into_iter().collect();
    Ok(snapshot)
}

/// The fit plan for `header` at `request` on `device` (`None`: the CPU).
pub fn plan_on(header: &GgufInfo, request: &PlanRequest, device: Option<&Device>) -> anyhow::Result<FitPlan> {
    Ok(hearth_hw::plan(header, request, &snapshot_for(device)?))
}

/// The device `choice` loads on and the plan against it.
pub fn plan_for_choice(
    header: &GgufInfo,
    request: &PlanRequest,
    choice: &DeviceChoice,
) -> anyhow::Result<(Option<Device>, FitPlan)> {
    let device = hearth_engine::resolve_device(choice)?;
    let plan = plan_on(header, request, device.as_ref())?;
    Ok((device, plan))
}

/// GGML's free memory on the device named `name` now (uncapped: what is really there).
pub fn device_free_bytes(name: &str) -> Option<u64> {
    hearth_engine::devices()
        .ok()?
        .into_iter()
        .find(|d| d.name == name)
        .map(|d| d.memory_free_bytes)
}

/// What the plan puts on its GPU (nothing on the CPU), in bytes.
pub fn planned_gpu_bytes(plan: &FitPlan) -> u64 {
    plan.gpus.iter().map(|g| g.total_bytes()).sum()
}

/// One device the settings can choose, with the planner's verdict for a model on it:
/// the one device record, from `hearth-app devices` (its JSON line) to the settings'
/// device picker (exported to TypeScript).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, specta::Type)]
#[serde(rename_all = "camelCase")]
pub struct DeviceOption {
    /// What `device = …` takes: "cpu", or llama.cpp's name ("Vulkan0", "CUDA0").
    pub value: String,
    /// llama.cpp's name ("CPU", "Vulkan0").
    pub name: String,
    pub description: String,
    /// "CPU", "Vulkan", "CUDA".
    pub backend: String,
    /// "cpu" (a software Vulkan driver too), "gpu", "igpu".
    pub kind: String,
    pub memory_total_bytes: u64,
    /// Free now, capped by `HEARTH_GPU_MEMORY_MB` on a GPU.
    pub memory_free_bytes: u64,
    /// Whether `auto` picks this device.
    pub auto: bool,
    /// The plan for the model asked about on this device; `null` when no model was
    /// given (or it cannot be read).
    pub verdict: Option<Verdict>,
    /// llama.cpp's `n_gpu_layers` the plan chose (0 on the CPU).
    pub n_gpu_layers: Option<u32>,
    /// Of the model's layers, plus its output layer.
    pub n_layers_total: Option<u32>,
    /// The plan's reason, in words.
    pub reason: Option<String>,
}

/// Every device llama.cpp sees (the CPU first), each with the plan for `model` on it.
pub fn device_options(model: Option<&GgufInfo>, request: &PlanRequest) -> anyhow::Result<Vec<DeviceOption>> {
    let cap = gpu_memory_cap()?;
    let auto = hearth_engine::resolve_device(&DeviceChoice::Auto)?;
    let mut options = Vec::new();
    for d in hearth_engine::devices()? {
        let on_cpu = d.backend == "CPU";
        let plan = match model {
            Some(header) => Some(plan_on(header, request, (!on_cpu).then_some(&d))?),
            None => None,
        };
        options.push(DeviceOption {
            value: if on_cpu { "cpu".into() } else { d.name.clone() },
            auto: auto.as_ref().map_or(on_cpu, |a| a.name == d.name),
            memory_free_bytes: if on_cpu {
                d.memory_free_bytes
            } else {
                capped_free(&d, cap)
            },
            name: d.name,
            description: d.description,
            backend: d.backend,
            kind: d.kind.to_owned(),
            memory_total_bytes: d.memory_total_bytes,
            verdict: plan.as_ref().map(|p| p.verdict),
            n_gpu_layers: plan.as_ref().map(|p| p.n_gpu_layers),
            n_layers_total: plan.as_ref().map(|p| p.n_layer + 1),
            reason: plan.map(|p| p.reason),
        });
    }
    Ok(options)
}

/// A load's device memory: measured (free before the load minus free after it, on the
/// device the model went to) beside the plan's figure for that device.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VramCheck {
    pub measured_bytes: u64,
    pub planned_bytes: u64,
}

impl VramCheck {
    /// Measured against planned, as a fraction of planned (0.1 = 10% more).
    pub fn error(&self) -> f64 {
        (self.measured_bytes as f64 - self.planned_bytes as f64) / (self.planned_bytes.max(1) as f64)
    }

    /// Over 10% apart: logged as a warning naming both figures.
    pub fn off_plan(&self) -> bool {
        self.error().abs() > 0.10
    }

    pub fn measured_mib(&self) -> f64 {
        self.measured_bytes as f64 / MIB as f64
    }

    pub fn planned_mib(&self) -> f64 {
        self.planned_bytes as f64 / MIB as f64
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn device(name: &str, backend: &str, description: &str) -> Device {
        Device {
            index: 1,
            name: name.into(),
            description: description.into(),
            backend: backend.into(),
            kind: "gpu",
            memory_total_bytes: 24 << 30,
            memory_free_bytes: 20 << 30,
        }
    }

    #[test]
    fn a_device_becomes_the_planners_only_gpu_with_its_free_memory_capped() {
        let d = device("Vulkan0", "Vulkan", "NVIDIA GeForce RTX 4090");
        let gpu = as_gpu(&d, None);
        assert_eq!(gpu.vendor, GpuVendor::Nvidia);
        assert_eq!(gpu.vram_free_bytes, 20 << 30);
        assert_eq!(gpu.vram_used_bytes, 4 << 30);
        assert_eq!(gpu.name, "Vulkan0: NVIDIA GeForce RTX 4090");
        assert_eq!(as_gpu(&d, Some(100 * MIB)).vram_free_bytes, 100 * MIB);
        assert_eq!(
            as_gpu(&device("Vulkan1", "Vulkan", "AMD Radeon RX 7900"), None).vendor,
            GpuVendor::Amd
        );
        assert_eq!(as_gpu(&device("CUDA0", "CUDA", "H200"), None).vendor, GpuVendor::Nvidia);
        assert_eq!(
            as_gpu(&device("Vulkan0", "Vulkan", "llvmpipe"), None).vendor,
            GpuVendor::Other
        );
    }

    #[test]
    fn a_load_more_than_a_tenth_off_its_plan_is_off_plan() {
        let check = |measured: u64, planned: u64| VramCheck {
            measured_bytes: measured,
            planned_bytes: planned,
        };
        assert!(!check(105, 100).off_plan());
        assert!(!check(91, 100).off_plan());
        assert!(check(111, 100).off_plan());
        assert!(check(89, 100).off_plan());
        assert!((check(150, 100).error() - 0.5).abs() < 1e-9);
        assert_eq!(check(3 * MIB, 2 * MIB).measured_mib(), 3.0);
    }
}
