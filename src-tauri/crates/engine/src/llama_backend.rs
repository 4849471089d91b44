//! llama.cpp's process-wide backend: initialised once, with GGML's CPU variants and
//! GPU modules loaded first.

use std::path::PathBuf;
use std::sync::OnceLock;

use llama_cpp_2::llama_backend::LlamaBackend;

use crate::EngineError;

/// llama.cpp's backend may be initialised once per process.
pub(crate) fn backend() -> Result<&'static LlamaBackend, EngineError> {
    static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            // llama.cpp logs through tracing (target llama_cpp_2), filtered like our own logs.
            llama_cpp_2::send_logs_to_tracing(llama_cpp_2::LogOptions::default());
            load_cpu_variants();
            crate::modules::gpu_modules();
            LlamaBackend::init().map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| EngineError::LoadFailed {
            path: PathBuf::new(),
            reason: format!("llama.cpp backend failed to start: {e}"),
        })
}

/// Distributable builds (`cpu-variants`) carry GGML's CPU code compiled for several
/// x86-64 levels as loadable modules; GGML picks the best one this CPU supports.
/// `HEARTH_BACKENDS_DIR` points at them when they are not where the build put them.
#[cfg(feature = "cpu-variants")]
fn load_cpu_variants() {
    match std::env::var_os("HEARTH_BACKENDS_DIR") {
        Some(dir) => llama_cpp_2::llama_backend::load_backends_from_path(std::path::Path::new(&dir)),
        None => llama_cpp_2::llama_backend::load_backends(),
    }
}

/// Native builds (the default) compile GGML for this machine's CPU: nothing to load.
#[cfg(not(feature = "cpu-variants"))]
fn load_cpu_variants() {}

/// Whether this llama.cpp build can offload layers to a GPU (CUDA, Vulkan, Metal …).
/// A CPU-only build ignores `n_gpu_layers`, so callers plan for the CPU.
pub fn gpu_offload_supported() -> bool {
    backend().map(|b| b.supports_gpu_offload()).unwrap_or(false)
}
