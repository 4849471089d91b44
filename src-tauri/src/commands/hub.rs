//! The Get models page: Hugging Face (or the mirror `HF_ENDPOINT` names) searched,
//! a repository's GGUF files each judged for this machine from its header (read
//! remotely, a few hundred kilobytes), and one download at a time with progress on a
//! channel. Stopping keeps the part file: the same download later resumes it.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use hearth_core::ErrorCode;
use hearth_hub::{Hub, HubConfig, HubError, PullTarget, RepoFile};
use hearth_hw::{FitPlan, PlanRequest, Verdict};
use serde::Serialize;
use tauri::ipc::Channel;
use tauri::State;

use super::models::{describe, snapshot, ModelView};
use crate::error::{AppError, AppResult};
use crate::state::AppState;

#[derive(Debug, Clone, PartialEq, Serialize, specta::Type)]
#[serde(rename_all = "camelCase")]
pub struct RepoView {
    pub id: String,
    pub downloads: u64,
    pub likes: u64,
}

/// Where a file would run here, as a badge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, specta::Type)]
#[serde(rename_all = "camelCase")]
pub enum FitBadge {
    Gpu,
    PartialGpu,
    Cpu,
    TooLarge,
    Unknown,
}

impl From<Verdict> for FitBadge {
    fn from(v: Verdict) -> Self {
        match v {
            Verdict::FitsOnGpu => Self::Gpu,
            Verdict::PartialOffload => Self::PartialGpu,
            Verdict::CpuOnly => Self::Cpu,
            Verdict::DoesNotFit => Self::TooLarge,
        }
    }
}

/// One GGUF file of a repository, judged for this machine.
#[derive(Debug, Clone, PartialEq, Serialize, specta::Type)]
#[serde(rename_all = "camelCase")]
pub struct RemoteFileView {
    pub repo: String,
    pub file: String,
    pub size_bytes: u64,
    pub quantization: Option<String>,
    pub badge: FitBadge,
    /// "fits on GPU", "CPU only"… and why, or why the header could not be read.
    pub fit: String,
    pub reason: String,
    /// The best file of the repository for this machine: the largest that runs fully
    /// on the GPU, else the largest that fits in memory at all.
    pub recommended: bool,
    /// Already in the models folder.
    pub installed: bool,
    /// Bytes fetched to read its header.
    pub header_bytes_read: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, specta::Type)]
#[serde(rename_all = "camelCase")]
pub struct DownloadProgressView {
    pub file: String,
    pub done_bytes: u64,
    pub total_bytes: u64,
    pub bytes_per_sec: f64,
    /// Seconds left at the current rate; `null` before a rate is known.
    pub eta_secs: Option<f64>,
    /// Bytes that were already on disk from an earlier, stopped download.
    pub resumed_from: u64,
}

fn hub(state: &AppState) -> AppResult<Hub> {
    let enabled = state.manager.settings().downloads.enabled;
    HubConfig::from_env(enabled).and_then(Hub::new).map_err(hub_error)
}

/// One code per condition the page handles; the words come from the hub crate.
pub(crate) fn hub_error(e: HubError) -> AppError {
    let code = match &e {
        HubError::Disabled { .. } => ErrorCode::DownloadsOff,
        HubError::Unauthorized { .. } => ErrorCode::Unauthorized,
        HubError::NotFound { .. } | HubError::NoMatch { .. } => ErrorCode::NotFound,
        HubError::Network { .. } | HubError::Status { .. } => ErrorCode::Network,
        HubError::NoSpace { .. } => ErrorCode::DiskFull,
        HubError::HashMismatch { .. } | HubError::SizeMismatch { .. } => ErrorCode::CorruptDownload,
        HubError::Cancelled { .. } => ErrorCode::Cancelled,
        _ => ErrorCode::DownloadFailed,
    };
    AppError::new(code, e.to_string())
}

/// GGUF model repositories matching `query`, most downloaded first.
#[tauri::command]
#[specta::specta]
pub async fn search_models(state: State<'_, AppState>, query: String) -> AppResult<Vec<RepoView>> {
    let found = hub(&state)?.search(query.trim(), 30).await.map_err(hub_error)?;
    Ok(found
        .into_iter()
        .map(|r| RepoView {
            id: r.id,
            downloads: r.downloads,
            likes: r.likes,
        })
        .collect())
}

/// The GGUF model files of `repo`, each with the fit planner's verdict for this machine.
#[tauri::command]
#[specta::specta]
pub async fn repo_files(state: State<'_, AppState>, repo: String) -> AppResult<Vec<RemoteFileView>> {
    let hub = hub(&state)?;
    let files = hub.list_files(&repo, "main").await.map_err(hub_error)?;
    let request = PlanRequest {
        n_ctx: state.manager.settings().embedded.ctx,
        ..PlanRequest::default()
    };
    let hw = snapshot(&state);
    let bandwidth = bandwidth(&state).await;
    let mut views = Vec::new();
    for file in files.iter().filter(|f| f.is_gguf() && !f.is_projector()) {
        let header = hub.read_header(&target(&repo, file)).await;
        let plan = header.as_ref().ok().map(|h| hearth_hw::plan(&h.info, &request, &hw));
        views.push(view(
            &repo,
            file,
            plan.as_ref(),
            header.as_ref().map(|h| h.bytes_read),
            &state,
            bandwidth,
        ));
    }
    mark_recommended(&mut views);
    Ok(views)
}

fn target(repo: &str, file: &RepoFile) -> PullTarget {
    PullTarget {
        repo: repo.to_owned(),
        revision: "main".into(),
        file: file.path.clone(),
    }
}

/// This machine's memory read bandwidth, read once per run (about a quarter of a second).
async fn bandwidth(state: &AppState) -> f64 {
    if let Some(bw) = state.bandwidth.get() {
        return *bw;
    }
    let threads = hearth_engine::default_threads() as usize;
    let bw = tauri::async_runtime::spawn_blocking(move || hearth_hw::membw::quick_read_bandwidth(threads))
        .await
        .unwrap_or(0.0);
    *state.bandwidth.get_or_init(|| bw)
}

fn view(
    repo: &str,
    file: &RepoFile,
    plan: Option<&FitPlan>,
    header: Result<u64, &HubError>,
    state: &AppState,
    bandwidth: f64,
) -> RemoteFileView {
    let name = file.path.rsplit('/').next().unwrap_or(&file.path);
    let (badge, fit, reason) = match (plan, &header) {
        (Some(plan), _) => (
            FitBadge::from(plan.verdict),
            plan.fit_words(hearth_hw::membw::cpu_decode_ceiling_tps(plan, bandwidth)),
            plan.reason.clone(),
        ),
        (None, Err(e)) => (FitBadge::Unknown, "unknown".to_owned(), e.to_string()),
        (None, Ok(_)) => (FitBadge::Unknown, "unknown".to_owned(), String::new()),
    };
    RemoteFileView {
        repo: repo.to_owned(),
        file: file.path.clone(),
        size_bytes: file.size,
        quantization: file.quantization.clone(),
        badge,
        fit,
        reason,
        recommended: false,
        installed: state.paths.models_dir.join(name).is_file(),
        header_bytes_read: header.unwrap_or(0),
    }
}

/// Marks the largest file that runs wholly on the GPU, else the largest that fits at all.
fn mark_recommended(views: &mut [RemoteFileView]) {
    let best = |badges: &[FitBadge]| {
        views
            .iter()
            .enumerate()
            .filter(|(_, v)| badges.contains(&v.badge))
            .max_by_key(|(_, v)| v.size_bytes)
            .map(|(i, _)| i)
    };
    let pick = best(&[FitBadge::Gpu]).or_else(|| best(&[FitBadge::PartialGpu, FitBadge::Cpu]));
    if let Some(i) = pick {
        views[i].recommended = true;
    }
}

/// Chat models tried for the first run's recommendations, largest first: one file of
/// each (Q4_K_M where there is one) is judged for this machine from its header.
pub const RECOMMENDATION_CANDIDATES: &[&str] = &[
    "bartowski/Qwen2.5-14B-Instruct-GGUF",
    "bartowski/Qwen2.5-7B-Instruct-GGUF",
    "bartowski/Llama-3.2-3B-Instruct-GGUF",
    "bartowski/Qwen2.5-1.5B-Instruct-GGUF",
    "bartowski/SmolLM2-1.7B-Instruct-GGUF",
    "bartowski/SmolLM2-360M-Instruct-GGUF",
    "bartowski/SmolLM2-135M-Instruct-GGUF",
];

/// The file of a candidate repository to judge: its Q4_K_M (the usual balance of size
/// and accuracy), else its smallest model file.
fn candidate_file(files: &[RepoFile]) -> Option<&RepoFile> {
    let models: Vec<&RepoFile> = files.iter().filter(|f| f.is_gguf() && !f.is_projector()).collect();
    models
        .iter()
        .find(|f| f.quantization.as_deref() == Some("Q4_K_M"))
        .or_else(|| models.iter().min_by_key(|f| f.size))
        .copied()
}

/// Two or three chat models for this machine: of the candidates the Hub has, those the
/// planner says run here, the ones wholly on the GPU first, larger before smaller.
#[tauri::command]
#[specta::specta]
pub async fn recommended_models(state: State<'_, AppState>) -> AppResult<Vec<RemoteFileView>> {
    let hub = hub(&state)?;
    let request = PlanRequest {
        n_ctx: state.manager.settings().embedded.ctx,
        ..PlanRequest::default()
    };
    let hw = snapshot(&state);
    let bandwidth = bandwidth(&state).await;
    let mut judged = Vec::new();
    for repo in RECOMMENDATION_CANDIDATES {
        let files = match hub.list_files(repo, "main").await {
            Ok(files) => files,
            // Not on this Hub (a mirror may lack it), or the network is down: the others decide.
            Err(HubError::Disabled { endpoint }) => return Err(hub_error(HubError::Disabled { endpoint })),
            Err(e) => {
                tracing::debug!(%repo, error = %e, "recommendation candidate skipped");
                continue;
            }
        };
        let Some(file) = candidate_file(&files) else { continue };
        let Ok(header) = hub.read_header(&target(repo, file)).await else {
            continue;
        };
        let plan = hearth_hw::plan(&header.info, &request, &hw);
        judged.push(view(repo, file, Some(&plan), Ok(header.bytes_read), &state, bandwidth));
    }
    Ok(pick_recommendations(judged))
}

/// At most three that run here: on the GPU before partly before CPU, larger first.
fn pick_recommendations(mut judged: Vec<RemoteFileView>) -> Vec<RemoteFileView> {
    let rank = |b: FitBadge| match b {
        FitBadge::Gpu => 0,
        FitBadge::PartialGpu => 1,
        FitBadge::Cpu => 2,
        FitBadge::TooLarge | FitBadge::Unknown => 3,
    };
    judged.retain(|v| rank(v.badge) < 3);
    judged.sort_by_key(|v| (rank(v.badge), std::cmp::Reverse(v.size_bytes)));
    judged.truncate(3);
    if let Some(first) = judged.first_mut() {
        first.recommended = true;
    }
    judged
}

/// Removes what a stopped download of `file` left (its part file and record).
#[tauri::command]
#[specta::specta]
pub async fn discard_download(state: State<'_, AppState>, file: String) -> AppResult<()> {
    if state.downloading() {
        return Err(AppError::new(
            ErrorCode::Busy,
            "Stop the download first, then discard it",
        ));
    }
    hearth_hub::discard_partial(&state.paths.models_dir, &file).map_err(hub_error)
}

/// Downloads `file` of `repo` into the models folder (one at a time), resuming a part
/// an earlier, stopped download left. Progress goes to `on_event`.
#[tauri::command]
#[specta::specta]
pub async fn download_model(
    state: State<'_, AppState>,
    repo: String,
    file: String,
    on_event: Channel<DownloadProgressView>,
) -> AppResult<ModelView> {
    let hub = hub(&state)?;
    let Some(_running) = state.begin_download() else {
        return Err(AppError::new(
            ErrorCode::Busy,
            "A download is already running: wait for it or stop it first",
        ));
    };
    let cancel = Arc::clone(&state.download_cancel);
    let target = PullTarget {
        repo,
        revision: "main".into(),
        file,
    };
    let dir = state.paths.models_dir.clone();
    let mut send = |p: &hearth_hub::Progress| {
        let _ = on_event.send(DownloadProgressView {
            file: p.file.clone(),
            done_bytes: p.done,
            total_bytes: p.total,
            bytes_per_sec: p.bytes_per_sec,
            eta_secs: p.eta().map(|d| d.as_secs_f64()),
            resumed_from: p.resumed_from,
        });
    };
    let pulled = hub.pull(&target, &dir, &cancel, &mut send).await.map_err(hub_error)?;
    let (hw, n_ctx, store) = (
        snapshot(&state),
        state.manager.settings().embedded.ctx,
        state.manager.store().clone(),
    );
    tauri::async_runtime::spawn_blocking(move || describe(&pulled.path, &hw, n_ctx, store.blocking()))
        .await
        .map_err(AppError::internal)
}

/// Stops the download in progress, keeping what arrived; nothing when none runs.
#[tauri::command]
#[specta::specta]
pub async fn cancel_download(state: State<'_, AppState>) -> AppResult<()> {
    state.download_cancel.store(true, Ordering::Relaxed);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(size: u64, badge: FitBadge) -> RemoteFileView {
        RemoteFileView {
            repo: "o/r".into(),
            file: format!("m-{size}.gguf"),
            size_bytes: size,
            quantization: None,
            badge,
            fit: String::new(),
            reason: String::new(),
            recommended: false,
            installed: false,
            header_bytes_read: 0,
        }
    }

    fn recommended(views: &[RemoteFileView]) -> Vec<u64> {
        views.iter().filter(|v| v.recommended).map(|v| v.size_bytes).collect()
    }

    #[test]
    fn the_largest_file_on_the_gpu_is_recommended_else_the_largest_that_fits() {
        let mut views = vec![
            file(1, FitBadge::Gpu),
            file(5, FitBadge::Gpu),
            file(8, FitBadge::PartialGpu),
            file(20, FitBadge::TooLarge),
        ];
        mark_recommended(&mut views);
        assert_eq!(recommended(&views), [5]);
        let mut views = vec![
            file(3, FitBadge::Cpu),
            file(8, FitBadge::Cpu),
            file(20, FitBadge::TooLarge),
        ];
        mark_recommended(&mut views);
        assert_eq!(recommended(&views), [8]);
        let mut views = vec![file(20, FitBadge::TooLarge), file(2, FitBadge::Unknown)];
        mark_recommended(&mut views);
        assert!(recommended(&views).is_empty());
    }

    #[test]
    fn recommendations_prefer_the_gpu_then_size_and_leave_out_what_does_not_run() {
        let picked = pick_recommendations(vec![
            file(2, FitBadge::Cpu),
            file(9, FitBadge::Cpu),
            file(4, FitBadge::Gpu),
            file(30, FitBadge::TooLarge),
            file(1, FitBadge::Unknown),
            file(3, FitBadge::Gpu),
        ]);
        let sizes: Vec<u64> = picked.iter().map(|v| v.size_bytes).collect();
        assert_eq!(sizes, [4, 3, 9]);
        assert!(picked[0].recommended && !picked[1].recommended);
        assert!(pick_recommendations(vec![file(30, FitBadge::TooLarge)]).is_empty());
    }

    #[test]
    fn a_candidate_is_judged_by_its_q4_k_m_else_its_smallest_file() {
        let repo_file = |path: &str, size: u64| RepoFile {
            path: path.into(),
            size,
            sha256: None,
            quantization: hearth_hub::quantization_of(path),
        };
        let files = [
            repo_file("m-Q8_0.gguf", 8),
            repo_file("m-Q4_K_M.gguf", 5),
            repo_file("m-Q2_K.gguf", 3),
        ];
        assert_eq!(candidate_file(&files).map(|f| f.path.as_str()), Some("m-Q4_K_M.gguf"));
        let files = [
            repo_file("m-Q8_0.gguf", 8),
            repo_file("m-Q4_1.gguf", 4),
            repo_file("mmproj-m.gguf", 1),
        ];
        assert_eq!(candidate_file(&files).map(|f| f.path.as_str()), Some("m-Q4_1.gguf"));
    }

    #[test]
    fn hub_errors_keep_their_words_under_a_code() {
        let e = hub_error(HubError::Disabled {
            endpoint: "https://huggingface.co/".into(),
        });
        assert_eq!(e.code, ErrorCode::DownloadsOff);
        assert!(e.message.contains("turned off"));
    }
}
