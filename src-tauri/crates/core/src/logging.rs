//! The one logging set-up, for every Hearth executable (the CLI, the desktop app, their
//! workers and job children): a daily-rotated file in the platform's log dir (kept 7
//! days) named after the process, and stderr too with `-v` or when `HEARTH_LOG` is set.
//! `HEARTH_LOG` takes an `EnvFilter` (e.g. `debug`, `hearth_manager=trace`). llama.cpp's
//! own lines arrive through tracing under the `llama_cpp_2` target; it is chatty at info
//! (every tensor, every buffer), so they count as debug here (`-vv` shows them).

use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::{fmt, prelude::*, EnvFilter};

/// The filter for `verbose` (`-v` count) unless `HEARTH_LOG` gives one.
fn filter(verbose: u8) -> EnvFilter {
    let level = match verbose {
        0 | 1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let llama_level = if verbose >= 2 { "debug" } else { "warn" };
    EnvFilter::try_from_env("HEARTH_LOG")
        .unwrap_or_else(|_| EnvFilter::new(format!("{level},llama_cpp_2={llama_level},llama-cpp-2={llama_level}")))
}

/// Starts logging to `<log dir>/<file_prefix>.YYYY-MM-DD.log` (and stderr, see the
/// module's note). Keep the guard alive: dropping it flushes the file. A log dir that
/// cannot be created costs the file, not the program.
pub fn init(file_prefix: &str, verbose: u8) -> Option<WorkerGuard> {
    let dir = crate::paths::log_dir();
    let appender = std::fs::create_dir_all(&dir).ok().and_then(|()| {
        tracing_appender::rolling::Builder::new()
            .rotation(tracing_appender::rolling::Rotation::DAILY)
            .filename_prefix(file_prefix)
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
    let to_stderr = verbose > 0 || std::env::var_os("HEARTH_LOG").is_some();
    let stderr = to_stderr.then(|| fmt::layer().with_writer(std::io::stderr).with_filter(filter(verbose)));
    let file = writer.map(|w| {
        fmt::layer()
            .with_ansi(false)
            .with_writer(w)
            .with_filter(filter(verbose))
    });
    let _ = tracing_subscriber::registry().with(stderr).with(file).try_init();
    guard
}
