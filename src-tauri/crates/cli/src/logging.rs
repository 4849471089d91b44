//! Logs go to a daily-rotated file in the platform's log dir (kept 7 days) and,
//! with -v, to stderr. llama.cpp's own lines arrive through tracing under the
//! `llama_cpp_2` target and are shown only at debug level (-vv).

use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::{fmt, prelude::*, EnvFilter};

pub fn init(verbose: u8) -> Option<WorkerGuard> {
    let level = match verbose {
        0 | 1 => "info",
        2 => "debug",
        _ => "trace",
    };
    // llama.cpp is chatty at info (every tensor, every buffer): its lines count as debug here.
    let llama_level = if verbose >= 2 { "debug" } else { "warn" };
    let filter = || {
        EnvFilter::try_from_env("HEARTH_LOG")
            .unwrap_or_else(|_| EnvFilter::new(format!("{level},llama_cpp_2={llama_level},llama-cpp-2={llama_level}")))
    };
    let dir = hearth_core::paths::log_dir();
    let file_layer = std::fs::create_dir_all(&dir).ok().and_then(|()| {
        tracing_appender::rolling::Builder::new()
            .rotation(tracing_appender::rolling::Rotation::DAILY)
            .filename_prefix("hearth")
            .filename_suffix("log")
            .max_log_files(7)
            .build(&dir)
            .ok()
    });
    let (file_writer, guard) = match file_layer {
        Some(appender) => {
            let (writer, guard) = tracing_appender::non_blocking(appender);
            (Some(writer), Some(guard))
        }
        None => (None, None),
    };
    let stderr_layer = (verbose > 0).then(|| fmt::layer().with_writer(std::io::stderr).with_filter(filter()));
    let file_layer = file_writer.map(|w| fmt::layer().with_ansi(false).with_writer(w).with_filter(filter()));
    let _ = tracing_subscriber::registry()
        .with(stderr_layer)
        .with(file_layer)
        .try_init();
    guard
}
