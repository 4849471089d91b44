//! A worker that dies because its GPU ran out of memory mid-reply (a longer context, a
//! wider batch, another program taking VRAM) is restarted with fewer layers on the GPU,
//! and finally on the CPU, as Ollama does: the same layers would die again. The worker's
//! stderr is passed through to ours, and its last lines are kept to tell such a death
//! from others (only GGML's own words say it was memory).

use std::collections::VecDeque;
use std::ffi::OsString;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::ChildStderr;

/// Lines of the worker's stderr kept to explain its death.
const TAIL_LINES: usize = 64;

/// The last lines a worker wrote to stderr.
#[derive(Clone, Default)]
pub(crate) struct StderrTail {
    lines: Arc<Mutex<VecDeque<String>>>,
    /// Set once the pipe closed (every line read).
    ended: Arc<tokio::sync::watch::Sender<bool>>,
}

impl StderrTail {
    /// Copies `stderr` to this process's stderr, line by line, keeping the last lines.
    pub(crate) fn follow(stderr: ChildStderr) -> Self {
        let tail = Self::default();
        let kept = tail.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("{line}");
                kept.push(line);
            }
            kept.ended.send_replace(true);
        });
        tail
    }

    /// Waits (at most `within`) until the last lines of a process that exited are read:
    /// its exit and the end of its pipe arrive separately.
    pub(crate) async fn drained(&self, within: std::time::Duration) {
        let mut ended = self.ended.subscribe();
        let _ = tokio::time::timeout(within, ended.wait_for(|e| *e)).await;
    }

    fn push(&self, line: String) {
        if let Ok(mut lines) = self.lines.lock() {
            if lines.len() == TAIL_LINES {
                lines.pop_front();
            }
            lines.push_back(line);
        }
    }

    /// Whether the worker said its GPU ran out of memory (CUDA's and Vulkan's words
    /// as GGML prints them).
    pub(crate) fn ran_out_of_gpu_memory(&self) -> bool {
        self.lines
            .lock()
            .map(|lines| lines.iter().any(|l| says_gpu_out_of_memory(l)))
            .unwrap_or(false)
    }
}

fn says_gpu_out_of_memory(line: &str) -> bool {
    let line = line.to_ascii_lowercase();
    line.contains("erroroutofdevicememory")
        || line.contains("cudaerrormemoryallocation")
        || (line.contains("cuda") && line.contains("out of memory"))
        || (line.contains("ggml_vulkan") && line.contains("memory allocation") && line.contains("failed"))
}

/// `args` with `--gpu-layers layers` (replacing the value there), and `--device cpu`
/// when no layer is left for the GPU.
pub(crate) fn with_gpu_layers(args: &[OsString], layers: u32) -> Vec<OsString> {
    let mut out = replace_flag(args, "--gpu-layers", &layers.to_string());
    if layers == 0 {
        out = replace_flag(&out, "--device", "cpu");
    }
    out
}

fn replace_flag(args: &[OsString], flag: &str, value: &str) -> Vec<OsString> {
    let mut out = Vec::with_capacity(args.len() + 2);
    let mut replaced = false;
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        if arg == flag {
            iter.next();
            out.extend([OsString::from(flag), OsString::from(value)]);
            replaced = true;
        } else if arg.to_str().is_some_and(|a| a.starts_with(&format!("{flag}="))) {
            out.push(OsString::from(format!("{flag}={value}")));
            replaced = true;
        } else {
            out.push(arg.clone());
        }
    }
    if !replaced {
        out.extend([OsString::from(flag), OsString::from(value)]);
    }
    out
}

/// What the user is told, once, after such a restart.
pub(crate) fn restart_note(device: &str, had: u32, next: u32) -> String {
    if next == 0 {
        format!("{device} ran out of memory during a reply with {had} layers on it: the model now runs on the CPU")
    } else {
        format!("{device} ran out of memory during a reply with {had} layers on it: restarted with {next}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn ggml_s_out_of_memory_lines_are_recognised_and_others_are_not() {
        for line in [
            "ggml_vulkan: Device memory allocation of size 140544 failed.",
            "ggml_vulkan: Requested buffer size exceeds device buffer size limit: ErrorOutOfDeviceMemory",
            "CUDA error: out of memory",
            "ggml_backend_cuda_buffer_type_alloc_buffer: allocating 512.00 MiB on device 0: cudaMalloc failed: cudaErrorMemoryAllocation",
        ] {
            assert!(says_gpu_out_of_memory(line), "{line}");
        }
        for line in ["llama_decode: failed to decode", "out of memory", "worker serving"] {
            assert!(!says_gpu_out_of_memory(line), "{line}");
        }
        let tail = StderrTail::default();
        tail.push("loading".into());
        assert!(!tail.ran_out_of_gpu_memory());
        tail.push("CUDA error: out of memory".into());
        assert!(tail.ran_out_of_gpu_memory());
        for i in 0..TAIL_LINES {
            tail.push(format!("line {i}"));
        }
        assert!(!tail.ran_out_of_gpu_memory(), "only the last lines are kept");
    }

    #[test]
    fn the_layers_are_replaced_and_none_means_the_cpu() {
        let before = args(&["--ctx", "4096", "--gpu-layers", "auto", "--device", "Vulkan0"]);
        assert_eq!(
            with_gpu_layers(&before, 15),
            args(&["--ctx", "4096", "--gpu-layers", "15", "--device", "Vulkan0"])
        );
        assert_eq!(
            with_gpu_layers(&before, 0),
            args(&["--ctx", "4096", "--gpu-layers", "0", "--device", "cpu"])
        );
        assert_eq!(with_gpu_layers(&args(&[]), 7), args(&["--gpu-layers", "7"]));
        assert_eq!(
            with_gpu_layers(&args(&["--gpu-layers=31"]), 3),
            args(&["--gpu-layers=3"])
        );
        assert!(restart_note("CUDA0", 31, 15).ends_with("restarted with 15"));
        assert!(restart_note("CUDA0", 1, 0).ends_with("now runs on the CPU"));
    }
}
