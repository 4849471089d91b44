//! The devices the embedded engine can run on, for the settings' device picker: each
//! with its free memory and the fit planner's verdict for the model on it. They are
//! listed by `hearth-app devices` in a child process (see [`crate::devices`]): GPU
//! drivers loaded into this process would keep their memory until the app quits. Its
//! answer is read with the child protocol's reader (`hearth_child::read_answer`).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use hearth_child::ReadError;
use hearth_core::ErrorCode;
use tauri::State;
use tokio::io::AsyncReadExt;
use tokio::time::Instant;

use crate::devices::DevicesArgs;
use crate::error::{AppError, AppResult};
use crate::state::AppState;

/// Loading the GPU drivers is the slow part (seconds; longer the first time a CUDA
/// module prepares its kernels). A driver that hangs must not hang the settings.
const LIST_TIMEOUT: Duration = Duration::from_secs(30);

/// Lines of the child's stderr an error quotes: the end is where llama.cpp and the
/// drivers say what went wrong.
const STDERR_LINES: usize = 6;

/// A device the settings' `device` can name: the one device record, as
/// `hearth-app devices` prints it (`hearth_worker::placement::DeviceOption`).
pub use hearth_worker::placement::DeviceOption;

fn unavailable(message: String) -> AppError {
    AppError::new(ErrorCode::DevicesUnavailable, message)
}

/// The last lines of a child's stderr, for an error message.
fn stderr_tail(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    lines[lines.len().saturating_sub(STDERR_LINES)..].join(" | ")
}

fn timed_out(timeout: Duration) -> AppError {
    unavailable(format!(
        "listing the devices took over {} s (a GPU driver may be stuck): type the device instead, or choose auto",
        timeout.as_secs()
    ))
}

/// Runs `program args` (the app as `hearth-app devices …`) and reads its device list,
/// killing it after `timeout`.
pub async fn run_lister(program: &Path, args: &[OsString], timeout: Duration) -> AppResult<Vec<DeviceOption>> {
    let deadline = Instant::now() + timeout;
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Dropped on the timeout below: the child must not outlive the question.
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            unavailable(format!(
                "{} could not be started to list the devices ({e}): reinstall Hearth, or type the device (auto, cpu or a name from `hearth hw`)",
                program.display()
            ))
        })?;
    // Read all along, so that a chatty driver cannot block the child on a full pipe.
    let stderr = child.stderr.take().map(|mut pipe| {
        tokio::spawn(async move {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes).await;
            bytes
        })
    });
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| unavailable("no stdout pipe".into()))?;
    let answer = hearth_child::read_answer::<Vec<DeviceOption>, _>(stdout, timeout, |_| {}).await;
    match answer {
        Ok(devices) => {
            // Let it exit (its drivers give their memory back); one stuck in a driver
            // past the deadline is killed when dropped.
            let _ = tokio::time::timeout_at(deadline, child.wait()).await;
            Ok(devices)
        }
        Err(ReadError::Failed { code, message }) => Err(AppError::new(
            code,
            format!(
                "listing the devices failed: {message}. Type the device instead (auto, cpu or a name from `hearth hw`)"
            ),
        )),
        Err(ReadError::TimedOut(_)) => Err(timed_out(timeout)),
        Err(ReadError::Closed) => Err(stopped(&mut child, stderr, deadline, timeout).await),
    }
}

/// The error for a lister that stopped without answering: its exit status and the end
/// of its stderr, where llama.cpp and the drivers say what went wrong.
async fn stopped(
    child: &mut tokio::process::Child,
    stderr: Option<tokio::task::JoinHandle<Vec<u8>>>,
    deadline: Instant,
    timeout: Duration,
) -> AppError {
    let status = match tokio::time::timeout_at(deadline, child.wait()).await {
        Ok(status) => status,
        Err(_) => return timed_out(timeout),
    };
    let status = match status {
        Ok(status) => status.to_string(),
        Err(e) => format!("its exit was not seen: {e}"),
    };
    let stderr = match stderr {
        Some(task) => tokio::time::timeout_at(deadline, task)
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default(),
        None => Vec::new(),
    };
    let tail = stderr_tail(&stderr);
    let said = if tail.is_empty() {
        String::new()
    } else {
        format!(": {tail}")
    };
    unavailable(format!(
        "listing the devices failed ({status}){said}. Type the device instead (auto, cpu or a name from `hearth hw`)"
    ))
}

/// The file `model` (a settings model: a path or an installed model's name) names, if
/// it is a model the planner can read; otherwise the devices come without verdicts.
fn plannable_model(models_dir: &Path, model: &str) -> Option<PathBuf> {
    let path = hearth_manager::resolve_model_file(models_dir, model, None).ok()?;
    hearth_gguf::read(&path).ok().map(|_| path)
}

/// The devices the embedded engine can run on, each with the plan for `model` (the
/// settings' model when absent) at `ctx` tokens (the settings' context when absent).
#[tauri::command]
#[specta::specta]
pub async fn list_devices(
    state: State<'_, AppState>,
    model: Option<String>,
    ctx: Option<u32>,
) -> AppResult<Vec<DeviceOption>> {
    let settings = state.manager.settings().embedded;
    let model = model.filter(|m| !m.trim().is_empty()).unwrap_or(settings.model);
    let models_dir = state.paths.models_dir.clone();
    let model = tauri::async_runtime::spawn_blocking(move || plannable_model(&models_dir, &model))
        .await
        .map_err(AppError::internal)?;
    let args = DevicesArgs {
        model,
        ctx: ctx.unwrap_or(settings.ctx),
    };
    run_lister(&state.job_program, &args.command_line(), LIST_TIMEOUT).await
}

#[cfg(test)]
mod tests {
    use super::*;

    const CPU_AND_GPU: &str = r#"[{"value":"cpu","name":"CPU","description":"AMD Ryzen 9 7950X","backend":"CPU","kind":"cpu","memoryTotalBytes":68719476736,"memoryFreeBytes":34359738368,"auto":false,"verdict":"cpu_only","nGpuLayers":0,"nLayersTotal":19,"reason":"runs on the CPU"},{"value":"Vulkan0","name":"Vulkan0","description":"NVIDIA GeForce RTX 4090","backend":"Vulkan","kind":"gpu","memoryTotalBytes":25769803776,"memoryFreeBytes":22870392832,"auto":true,"verdict":"fits_on_gpu","nGpuLayers":19,"nLayersTotal":19,"reason":"fits"}]"#;

    fn sh(script: &str) -> Vec<OsString> {
        vec!["-c".into(), script.into()]
    }

    /// What `hearth-app devices` prints: its answer line.
    fn done_line() -> String {
        format!(r#"{{"event":"done","result":{CPU_AND_GPU}}}"#)
    }

    #[tokio::test]
    async fn the_child_is_run_and_its_list_read_past_the_drivers_prints() {
        let script = format!(
            "echo 'loading drivers' >&2; echo 'ggml_vulkan: Found 1 Vulkan devices'; echo '{}'",
            done_line()
        );
        let devices = run_lister(Path::new("/bin/sh"), &sh(&script), LIST_TIMEOUT)
            .await
            .expect("listed");
        assert_eq!(
            devices.iter().map(|d| d.value.as_str()).collect::<Vec<_>>(),
            ["cpu", "Vulkan0"]
        );
        assert!(devices[1].auto);
        assert_eq!(devices[1].verdict, Some(hearth_hw::Verdict::FitsOnGpu));
        assert_eq!(
            (devices[1].n_gpu_layers, devices[1].n_layers_total),
            (Some(19), Some(19))
        );
        let json = serde_json::to_value(&devices[1]).expect("JSON");
        assert_eq!(
            json["memoryFreeBytes"], 22_870_392_832u64,
            "camelCase for the UI: {json}"
        );
    }

    #[tokio::test]
    async fn the_child_s_error_answer_keeps_its_code() {
        let script = r#"echo '{"event":"error","code":"invalid_model","message":"the model /m.gguf cannot be planned for"}'; exit 1"#;
        let e = run_lister(Path::new("/bin/sh"), &sh(script), LIST_TIMEOUT)
            .await
            .expect_err("failed");
        assert_eq!(e.code, ErrorCode::InvalidModel);
        assert!(
            e.message.contains("the model /m.gguf cannot be planned for"),
            "{}",
            e.message
        );
        assert!(e.message.contains("Type the device instead"), "{}", e.message);
    }

    #[tokio::test]
    async fn a_listing_without_an_answer_line_is_an_error() {
        // A bare list (what the lister printed before the child protocol) is no answer.
        let script = format!("echo '{CPU_AND_GPU}'");
        let e = run_lister(Path::new("/bin/sh"), &sh(&script), LIST_TIMEOUT)
            .await
            .expect_err("no answer");
        assert_eq!(e.code, ErrorCode::DevicesUnavailable);
        assert!(
            e.message.contains("listing the devices failed (exit status: 0)"),
            "{}",
            e.message
        );
    }

    #[tokio::test]
    async fn a_failed_child_is_an_error_with_the_end_of_its_stderr() {
        let script = "for i in 1 2 3 4 5 6 7 8; do echo \"line $i\" >&2; done; echo 'error: ggml_cuda_init: out of memory' >&2; exit 3";
        let e = run_lister(Path::new("/bin/sh"), &sh(script), LIST_TIMEOUT)
            .await
            .expect_err("failed");
        assert_eq!(e.code, ErrorCode::DevicesUnavailable);
        assert!(
            e.message.contains("error: ggml_cuda_init: out of memory"),
            "{}",
            e.message
        );
        assert!(e.message.contains("exit status: 3"), "{}", e.message);
        assert!(!e.message.contains("line 1 "), "only the end: {}", e.message);
        assert!(e.message.contains("Type the device instead"), "{}", e.message);
    }

    #[tokio::test]
    async fn a_child_that_hangs_is_stopped_at_the_timeout() {
        // Without the timeout the child would end in 30 s with no answer, a different error.
        let e = run_lister(Path::new("/bin/sh"), &sh("exec sleep 30"), Duration::from_millis(200))
            .await
            .expect_err("timed out");
        assert_eq!(e.code, ErrorCode::DevicesUnavailable);
        assert!(e.message.contains("listing the devices took over"), "{}", e.message);
        let missing = run_lister(Path::new("/nonexistent/hearth-app"), &[], LIST_TIMEOUT)
            .await
            .expect_err("no such program");
        assert!(
            missing.message.contains("/nonexistent/hearth-app"),
            "{}",
            missing.message
        );
    }
}
