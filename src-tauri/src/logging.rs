//! Logs go to a daily-rotated file in the platform's log dir (kept 7 days), and to
//! stderr too when `HEARTH_LOG` is set. llama.cpp's own lines (in the worker) show
//! only at debug level.

use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::{fmt, prelude::*, EnvFilter};

/// Starts logging to `<log dir>/<prefix>.YYYY-MM-DD.log`; keep the guard alive.
pub fn init(prefix: &str) -> Option<WorkerGuard> {
    let filter = || {
        EnvFilter::try_from_env("HEARTH_LOG")
            .unwrap_or_else(|_| EnvFilter::new("info,llama_cpp_2=warn,llama-cpp-2=warn"))
    };
    let dir = hearth_core::paths::log_dir();
    let appender = std::fs::create_dir_all(&dir).ok().and_then(|()| {
        tracing_appender::rolling::Builder::new()
            .rotation(tracing_appender::rolling::Rotation::DAILY)
            .filename_prefix(prefix)
            .filename_suffix("log")
            .max_log_files(7)
            .build(&dir)
            .ok()
    });
    let (writer, guard) = match appender {
        Some(appender) => {
            let (writer, guard) = tracing_appender::non_blocking(appender);
            (Some(writer), Some(guard))
        }
        None => (None, None),
    };
    let stderr = std::env::var_os("HEARTH_LOG")
        .is_some()
        .then(|| fmt::layer().with_writer(std::io::stderr).with_filter(filter()));
    let file = writer.map(|w| fmt::layer().with_ansi(false).with_writer(w).with_filter(filter()));
    let _ = tracing_subscriber::registry().with(stderr).with(file).try_init();
    guard
}
