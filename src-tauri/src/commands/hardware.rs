//! The dashboard: live CPU, RAM and GPU readings, the model's memory, and recent
//! replies' speed.

use hearth_hw::Snapshot;
use serde::Serialize;
use tauri::State;

use crate::error::{AppError, AppResult};
use crate::state::AppState;

#[derive(Debug, Clone, PartialEq, Serialize, specta::Type)]
#[serde(rename_all = "camelCase")]
pub struct GpuView {
    pub name: String,
    pub util_percent: Option<f64>,
    pub vram_used_bytes: u64,
    pub vram_total_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, specta::Type)]
#[serde(rename_all = "camelCase")]
pub struct HardwareView {
    pub cpu_percent: f64,
    pub ram_used_bytes: u64,
    pub ram_total_bytes: u64,
    pub gpus: Vec<GpuView>,
    /// Resident memory of the engine worker process (the loaded model, its KV cache
    /// and buffers); `null` when no embedded model is loaded (or off Linux).
    pub model_memory_bytes: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, specta::Type)]
#[serde(rename_all = "camelCase")]
pub struct PerfView {
    /// Unix milliseconds.
    pub timestamp: i64,
    pub backend: String,
    pub model: String,
    pub decode_tps: Option<f64>,
    pub ttft_ms: Option<f64>,
}

impl HardwareView {
    fn from_snapshot(s: &Snapshot) -> Self {
        Self {
            cpu_percent: f64::from(s.cpu.usage_percent),
            ram_used_bytes: s.memory.total_bytes.saturating_sub(s.memory.available_bytes),
            ram_total_bytes: s.memory.total_bytes,
            gpus: s
                .gpus
                .iter()
                .map(|g| GpuView {
                    name: g.name.clone(),
                    util_percent: g.utilization_percent.map(f64::from),
                    vram_used_bytes: g.vram_used_bytes,
                    vram_total_bytes: g.vram_total_bytes,
                })
                .collect(),
            model_memory_bytes: worker_resident_bytes().map(|b| b as f64),
        }
    }
}

/// The resident memory of this process's engine workers (children started as `… worker`).
#[cfg(target_os = "linux")]
fn worker_resident_bytes() -> Option<u64> {
    let me = std::process::id().to_string();
    let mut total = None;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let dir = entry.path();
        let Ok(stat) = std::fs::read_to_string(dir.join("stat")) else {
            continue;
        };
        // The fields after the parenthesised name: state, ppid, …
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1));
        if ppid != Some(me.as_str()) {
            continue;
        }
        let cmdline = std::fs::read(dir.join("cmdline")).unwrap_or_default();
        if !cmdline.split(|b| *b == 0).any(|arg| arg == b"worker") {
            continue;
        }
        let status = std::fs::read_to_string(dir.join("status")).unwrap_or_default();
        if let Some(rss) = hearth_hw::proc_files::parse_status(&status).vm_rss {
            total = Some(total.unwrap_or(0) + rss);
        }
    }
    total
}

#[cfg(not(target_os = "linux"))]
fn worker_resident_bytes() -> Option<u64> {
    None
}

/// The latest hardware reading (the sampler's, else one taken now).
#[tauri::command]
#[specta::specta]
pub async fn hardware_snapshot(state: State<'_, AppState>) -> AppResult<HardwareView> {
    let latest = state.sampler.as_ref().and_then(hearth_hw::SamplerHandle::latest);
    tauri::async_runtime::spawn_blocking(move || {
        let snapshot = latest.unwrap_or_else(Snapshot::capture);
        HardwareView::from_snapshot(&snapshot)
    })
    .await
    .map_err(AppError::internal)
}

/// The last `limit` replies' speed, newest first.
#[tauri::command]
#[specta::specta]
pub async fn recent_performance(state: State<'_, AppState>, limit: u32) -> AppResult<Vec<PerfView>> {
    let limit = usize::try_from(limit.clamp(1, 1000)).unwrap_or(1000);
    let records = state
        .manager
        .store()
        .recent_perf(Some("generate".into()), limit)
        .await?;
    Ok(records
        .into_iter()
        .map(|r| PerfView {
            timestamp: r.timestamp.unwrap_or_default(),
            backend: r.backend,
            model: r.model,
            decode_tps: r.metrics.decode_tps,
            ttft_ms: r.metrics.ttft_ms,
        })
        .collect())
}
