//! One reading of the machine: CPU, memory, this process, GPUs.
//!
//! The JSON form is a stable schema (the dashboard and `hearth hw --json`
//! read it): every field is always present, unknown values are `null` rather
//! than missing, and `tests/snapshot_keys.txt` pins the set of keys. Add a
//! field only together with that file and [`SCHEMA_VERSION`].

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sysinfo::{CpuRefreshKind, MemoryRefreshKind, Pid, ProcessRefreshKind, ProcessesToUpdate, RefreshKind, System};

use crate::gpu::GpuProbe;
use crate::proc_files;

/// Bumped when a field is added, renamed or changes meaning.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub schema_version: u32,
    /// When it was taken, milliseconds since the Unix epoch.
    pub taken_at_ms: u64,
    pub cpu: CpuInfo,
    pub memory: MemoryInfo,
    pub process: ProcessInfo,
    /// Empty when no GPU (or no driver to ask) was found.
    pub gpus: Vec<GpuInfo>,
    /// Why a GPU source gave nothing, in words (e.g. "NVML: library not
    /// found"): shown by `hearth hw` so a user can tell "no GPU" from "no driver".
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CpuInfo {
    pub model: String,
    pub vendor: Option<String>,
    pub physical_cores: u32,
    pub logical_cores: u32,
    /// SIMD extensions present (`avx2`, `avx512f`, `neon`...), which decide
    /// which GGML kernels run.
    pub simd: Vec<String>,
    /// Whole-machine CPU use since the previous reading, 0-100.
    pub usage_percent: f32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemoryInfo {
    pub total_bytes: u64,
    /// What can be allocated without swapping (Linux `MemAvailable`): the
    /// figure the fit planner budgets against.
    pub available_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessInfo {
    pub pid: u32,
    pub rss_bytes: u64,
    /// Anonymous resident memory (Linux): heap, KV cache, compute buffers.
    pub rss_anon_bytes: Option<u64>,
    /// File-backed resident memory (Linux): mmapped weights once touched.
    pub rss_file_bytes: Option<u64>,
    /// CPU use since the previous reading, in % of one core (can exceed 100).
    pub cpu_percent: f32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GpuVendor {
    Nvidia,
    Amd,
    Other,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuInfo {
    /// Position in the vendor's enumeration (NVML index, DRM card number).
    pub index: u32,
    pub vendor: GpuVendor,
    pub name: String,
    pub uuid: Option<String>,
    pub vram_total_bytes: u64,
    pub vram_free_bytes: u64,
    pub vram_used_bytes: u64,
    /// CUDA compute capability, "8.9".
    pub compute_capability: Option<String>,
    pub driver_version: Option<String>,
    pub utilization_percent: Option<u32>,
    pub temperature_c: Option<u32>,
    pub power_watts: Option<f32>,
}

impl Snapshot {
    /// Takes one snapshot. CPU percentages need two readings, so this waits
    /// sysinfo's minimum interval (about 200 ms) between them; a
    /// [`Probe`] kept between calls does not.
    pub fn capture() -> Snapshot {
        let mut probe = Probe::new();
        std::thread::sleep(sysinfo::MINIMUM_CPU_UPDATE_INTERVAL);
        probe.sample()
    }

    /// Total free VRAM over all GPUs.
    pub fn vram_free_bytes(&self) -> u64 {
        self.gpus.iter().map(|g| g.vram_free_bytes).fold(0, u64::saturating_add)
    }
}

/// Reusable state for repeated snapshots: sysinfo's previous CPU counters and
/// the loaded NVML library. Creating it is the expensive part; [`Probe::sample`]
/// only re-reads counters.
pub struct Probe {
    system: System,
    pid: Option<Pid>,
    gpu: GpuProbe,
    cpu_static: CpuStatic,
}

impl std::fmt::Debug for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Probe").field("pid", &self.pid).finish_non_exhaustive()
    }
}

/// What does not change while the program runs.
#[derive(Debug, Clone)]
struct CpuStatic {
    model: String,
    vendor: Option<String>,
    physical_cores: u32,
    logical_cores: u32,
    simd: Vec<String>,
}

impl Default for Probe {
    fn default() -> Self {
        Self::new()
    }
}

impl Probe {
    pub fn new() -> Probe {
        let system = System::new_with_specifics(
            RefreshKind::nothing()
                .with_cpu(CpuRefreshKind::nothing().with_cpu_usage())
                .with_memory(MemoryRefreshKind::nothing().with_ram()),
        );
        let pid = sysinfo::get_current_pid().ok();
        let cpu_static = cpu_static(&system);
        let mut probe = Probe {
            system,
            pid,
            gpu: GpuProbe::new(),
            cpu_static,
        };
        // The first reading only primes the CPU counters.
        probe.refresh();
        probe
    }

    fn refresh(&mut self) {
        self.system.refresh_cpu_usage();
        self.system
            .refresh_memory_specifics(MemoryRefreshKind::nothing().with_ram());
        if let Some(pid) = self.pid {
            self.system.refresh_processes_specifics(
                ProcessesToUpdate::Some(&[pid]),
                false,
                ProcessRefreshKind::nothing().with_cpu().with_memory(),
            );
        }
    }

    /// A snapshot now; CPU percentages cover the time since the previous one.
    pub fn sample(&mut self) -> Snapshot {
        self.refresh();
        let process = self.pid.and_then(|pid| self.system.process(pid));
        let status = proc_files::self_status_memory().unwrap_or_default();
        let (gpus, notes) = self.gpu.sample();
        let c = &self.cpu_static;
        Snapshot {
            schema_version: SCHEMA_VERSION,
            taken_at_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or(Duration::ZERO)
                .as_millis()
                .try_into()
                .unwrap_or(u64::MAX),
            cpu: CpuInfo {
                model: c.model.clone(),
                vendor: c.vendor.clone(),
                physical_cores: c.physical_cores,
                logical_cores: c.logical_cores,
                simd: c.simd.clone(),
                usage_percent: self.system.global_cpu_usage(),
            },
            memory: MemoryInfo {
                total_bytes: self.system.total_memory(),
                available_bytes: self.system.available_memory(),
            },
            process: ProcessInfo {
                pid: self.pid.map_or(std::process::id(), |p| p.as_u32()),
                rss_bytes: status.vm_rss.or(process.map(|p| p.memory())).unwrap_or(0),
                rss_anon_bytes: status.rss_anon,
                rss_file_bytes: status.rss_file,
                cpu_percent: process.map_or(0.0, |p| p.cpu_usage()),
            },
            gpus,
            notes,
        }
    }
}

fn cpu_static(system: &System) -> CpuStatic {
    let facts = std::fs::read_to_string("/proc/cpuinfo")
        .map(|t| proc_files::parse_cpuinfo(&t))
        .unwrap_or_default();
    let first = system.cpus().first();
    let logical = u32::try_from(system.cpus().len()).unwrap_or(u32::MAX);
    let logical = if logical > 0 { logical } else { facts.logical.max(1) };
    let physical = facts
        .physical
        .or_else(|| System::physical_core_count().and_then(|n| u32::try_from(n).ok()))
        .unwrap_or(logical);
    let brand = first.map(|c| c.brand().trim().to_string()).filter(|b| !b.is_empty());
    let vendor = first
        .map(|c| c.vendor_id().trim().to_string())
        .filter(|v| !v.is_empty());
    CpuStatic {
        model: brand.or(facts.model).unwrap_or_else(|| "unknown CPU".to_string()),
        vendor: vendor.or(facts.vendor),
        physical_cores: physical,
        logical_cores: logical,
        simd: simd_features(&facts.flags),
    }
}

/// SIMD extensions: from `/proc/cpuinfo` on Linux (it also reports what the
/// OS enabled, e.g. AVX-512 state saving); from CPUID elsewhere.
fn simd_features(cpuinfo_flags: &[String]) -> Vec<String> {
    if !cpuinfo_flags.is_empty() {
        return proc_files::simd_from_flags(cpuinfo_flags);
    }
    detected_simd()
}

#[cfg(target_arch = "x86_64")]
fn detected_simd() -> Vec<String> {
    let checks = [
        ("sse3", std::arch::is_x86_feature_detected!("sse3")),
        ("ssse3", std::arch::is_x86_feature_detected!("ssse3")),
        ("sse4_1", std::arch::is_x86_feature_detected!("sse4.1")),
        ("sse4_2", std::arch::is_x86_feature_detected!("sse4.2")),
        ("avx", std::arch::is_x86_feature_detected!("avx")),
        ("f16c", std::arch::is_x86_feature_detected!("f16c")),
        ("fma", std::arch::is_x86_feature_detected!("fma")),
        ("avx2", std::arch::is_x86_feature_detected!("avx2")),
    ];
    checks
        .iter()
        .filter(|(_, on)| *on)
        .map(|(n, _)| (*n).to_string())
        .collect()
}

#[cfg(not(target_arch = "x86_64"))]
fn detected_simd() -> Vec<String> {
    Vec::new()
}
