//! GPUs: NVIDIA through NVML, AMD through the amdgpu driver's sysfs files.
//!
//! NVML is a shared library that ships with the NVIDIA driver, opened at run
//! time: Hearth must start on machines without it, so a failure to load it is
//! a note in the snapshot, never an error.

use std::path::{Path, PathBuf};

use nvml_wrapper::enum_wrappers::device::TemperatureSensor;
use nvml_wrapper::Nvml;

use crate::snapshot::{GpuInfo, GpuVendor};

/// PCI vendor id of AMD in `/sys/class/drm/card*/device/vendor`.
const AMD_PCI_VENDOR: &str = "0x1002";

enum NvmlState {
    /// Not tried yet: loading the library costs a few ms and maps it into the
    /// process, so it waits for the first sample that needs it.
    Untried,
    Loaded(Box<Nvml>),
    /// Tried and failed; the reason is repeated in every snapshot's notes.
    Unavailable(String),
}

pub(crate) struct GpuProbe {
    nvml: NvmlState,
    drm_root: PathBuf,
}

impl GpuProbe {
    pub(crate) fn new() -> GpuProbe {
        GpuProbe {
            nvml: NvmlState::Untried,
            drm_root: PathBuf::from("/sys/class/drm"),
        }
    }

    /// All GPUs found, and notes on sources that found nothing.
    pub(crate) fn sample(&mut self) -> (Vec<GpuInfo>, Vec<String>) {
        let mut notes = Vec::new();
        let mut gpus = match self.nvml() {
            Ok(nvml) => nvidia_gpus(nvml, &mut notes),
            Err(reason) => {
                notes.push(format!("NVIDIA: {reason}"));
                Vec::new()
            }
        };
        gpus.extend(amd_gpus(&self.drm_root));
        (gpus, notes)
    }

    fn nvml(&mut self) -> Result<&Nvml, String> {
        if matches!(self.nvml, NvmlState::Untried) {
            self.nvml = match load_nvml() {
                Ok(nvml) => NvmlState::Loaded(Box::new(nvml)),
                Err(reason) => NvmlState::Unavailable(reason),
            };
        }
        match &self.nvml {
            NvmlState::Loaded(nvml) => Ok(nvml),
            NvmlState::Unavailable(reason) => Err(reason.clone()),
            NvmlState::Untried => Err("NVML was not loaded".to_string()),
        }
    }
}

/// `libnvidia-ml.so` (what `Nvml::init` opens) is only installed with the
/// driver's development files on many distributions; the runtime package has
/// just the versioned `libnvidia-ml.so.1`.
fn load_nvml() -> Result<Nvml, String> {
    match Nvml::init() {
        Ok(nvml) => Ok(nvml),
        Err(first) => {
            #[cfg(target_os = "linux")]
            {
                Nvml::builder()
                    .lib_path(std::ffi::OsStr::new("libnvidia-ml.so.1"))
                    .init()
                    .map_err(|e| {
                        let (first, second) = (first.to_string(), e.to_string());
                        if first == second {
                            format!("no NVIDIA driver found ({first})")
                        } else {
                            format!("no NVIDIA driver found ({first}; {second})")
                        }
                    })
            }
            #[cfg(not(target_os = "linux"))]
            {
                Err(format!("no NVIDIA driver found (NVML: {first})"))
            }
        }
    }
}

fn nvidia_gpus(nvml: &Nvml, notes: &mut Vec<String>) -> Vec<GpuInfo> {
    let count = match nvml.device_count() {
        Ok(n) => n,
        Err(e) => {
            notes.push(format!("NVIDIA: could not count GPUs: {e}"));
            return Vec::new();
        }
    };
    let driver = nvml.sys_driver_version().ok();
    let mut gpus = Vec::new();
    for index in 0..count {
        let device = match nvml.device_by_index(index) {
            Ok(d) => d,
            Err(e) => {
                notes.push(format!("NVIDIA GPU {index}: {e}"));
                continue;
            }
        };
        // Each query may be unsupported on some boards (power on laptops,
        // utilization under MIG): a missing value is null, not a lost GPU.
        let memory = device.memory_info();
        if let Err(e) = &memory {
            notes.push(format!("NVIDIA GPU {index}: memory not readable: {e}"));
        }
        let (total, free, used) = memory.map_or((0, 0, 0), |m| (m.total, m.free, m.used));
        gpus.push(GpuInfo {
            index,
            vendor: GpuVendor::Nvidia,
            name: device.name().unwrap_or_else(|_| format!("NVIDIA GPU {index}")),
            uuid: device.uuid().ok(),
            vram_total_bytes: total,
            vram_free_bytes: free,
            vram_used_bytes: used,
            compute_capability: device
                .cuda_compute_capability()
                .ok()
                .map(|c| format!("{}.{}", c.major, c.minor)),
            driver_version: driver.clone(),
            utilization_percent: device.utilization_rates().ok().map(|u| u.gpu),
            temperature_c: device.temperature(TemperatureSensor::Gpu).ok(),
            power_watts: device.power_usage().ok().map(|mw| mw as f32 / 1000.0),
        });
    }
    gpus
}

/// AMD GPUs driven by amdgpu: `cardN/device/mem_info_vram_*`. Other DRM
/// cards (integrated Intel, virtual displays) have no such files and are skipped.
pub(crate) fn amd_gpus(drm_root: &Path) -> Vec<GpuInfo> {
    let Ok(entries) = std::fs::read_dir(drm_root) else {
        return Vec::new();
    };
    let mut cards: Vec<(u32, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            // card0, card1... but not connectors such as card0-DP-1.
            let n: u32 = name.strip_prefix("card")?.parse().ok()?;
            Some((n, e.path().join("device")))
        })
        .collect();
    cards.sort();
    cards.into_iter().filter_map(|(n, dev)| amd_gpu(n, &dev)).collect()
}

fn amd_gpu(index: u32, dev: &Path) -> Option<GpuInfo> {
    let read = |name: &str| {
        std::fs::read_to_string(dev.join(name))
            .ok()
            .map(|s| s.trim().to_string())
    };
    let number = |name: &str| read(name).and_then(|s| s.parse::<u64>().ok());
    if read("vendor").as_deref() != Some(AMD_PCI_VENDOR) {
        return None;
    }
    let total = number("mem_info_vram_total")?;
    let used = number("mem_info_vram_used").unwrap_or(0);
    let hwmon = hwmon_dir(dev);
    let hw = |name: &str| {
        hwmon
            .as_ref()
            .and_then(|h| std::fs::read_to_string(h.join(name)).ok())
            .and_then(|s| s.trim().parse::<u64>().ok())
    };
    let name = read("product_name")
        .filter(|s| !s.is_empty())
        .or_else(|| read("device").map(|id| format!("AMD GPU {id}")))
        .unwrap_or_else(|| format!("AMD GPU {index}"));
    Some(GpuInfo {
        index,
        vendor: GpuVendor::Amd,
        name,
        uuid: read("unique_id").filter(|s| !s.is_empty()),
        vram_total_bytes: total,
        vram_free_bytes: total.saturating_sub(used),
        vram_used_bytes: used,
        compute_capability: None,
        driver_version: std::fs::read_to_string("/sys/module/amdgpu/version")
            .ok()
            .map(|s| s.trim().to_string()),
        utilization_percent: number("gpu_busy_percent").and_then(|v| u32::try_from(v).ok()),
        // hwmon reports millidegrees and microwatts.
        temperature_c: hw("temp1_input").and_then(|m| u32::try_from(m / 1000).ok()),
        power_watts: hw("power1_average")
            .or_else(|| hw("power1_input"))
            .map(|uw| uw as f32 / 1e6),
    })
}

fn hwmon_dir(dev: &Path) -> Option<PathBuf> {
    std::fs::read_dir(dev.join("hwmon"))
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amd_cards_are_read_from_sysfs_and_others_skipped() -> std::io::Result<()> {
        let root = tempfile::tempdir()?;
        let amd = root.path().join("card1/device");
        std::fs::create_dir_all(amd.join("hwmon/hwmon3"))?;
        std::fs::write(amd.join("vendor"), "0x1002\n")?;
        std::fs::write(amd.join("mem_info_vram_total"), "17163091968\n")?;
        std::fs::write(amd.join("mem_info_vram_used"), "1163091968\n")?;
        std::fs::write(amd.join("gpu_busy_percent"), "7\n")?;
        std::fs::write(amd.join("product_name"), "Radeon RX 7800 XT\n")?;
        std::fs::write(amd.join("hwmon/hwmon3/temp1_input"), "45000\n")?;
        std::fs::write(amd.join("hwmon/hwmon3/power1_average"), "21000000\n")?;
        let intel = root.path().join("card0/device");
        std::fs::create_dir_all(&intel)?;
        std::fs::write(intel.join("vendor"), "0x8086\n")?;
        std::fs::create_dir_all(root.path().join("card1-DP-1"))?;

        let gpus = amd_gpus(root.path());
        assert_eq!(gpus.len(), 1, "{gpus:?}");
        let g = &gpus[0];
        assert_eq!(
            (g.index, g.vendor, g.name.as_str()),
            (1, GpuVendor::Amd, "Radeon RX 7800 XT")
        );
        assert_eq!(g.vram_total_bytes, 17_163_091_968);
        assert_eq!(g.vram_free_bytes, 16_000_000_000);
        assert_eq!((g.utilization_percent, g.temperature_c), (Some(7), Some(45)));
        assert_eq!(g.power_watts, Some(21.0));
        Ok(())
    }

    #[test]
    fn missing_drm_directory_means_no_amd_gpus() {
        assert!(amd_gpus(Path::new("/nonexistent/drm")).is_empty());
    }
}
