//! Performance records of the commands that are not a saved chat (`hearth generate`,
//! model loads, recorded by `hearth-worker`): written to the store, and a failure is logged, never fatal. (`hearth
//! chat` saves through the backend manager, which records each reply with its message.)

use hearth_core::GenerationMetrics;
use hearth_store::{PerfRecord, Store};

pub const BACKEND: &str = hearth_worker::options::ENGINE_BACKEND;

pub fn perf_record(model: &str, m: &GenerationMetrics) -> PerfRecord {
    PerfRecord::generation(BACKEND, model, m)
}

/// Logs a generation that is not part of a saved chat (`hearth generate`).
pub fn log_generation(model: &str, metrics: &GenerationMetrics) {
    save_record(&perf_record(model, metrics));
}

/// A performance record outside a chat: opened, written, closed; a failure is logged, never fatal.
/// A database that cannot be used (damaged, read-only, full) is also told on stderr, with
/// what to do: the user would otherwise not know why the records stop.
fn save_record(record: &PerfRecord) {
    if let Err(e) = Store::open_default().and_then(|store| store.log_perf(record)) {
        tracing::warn!(error = %e, operation = %record.operation, "performance record not saved");
        if e.is_history_disabling() {
            eprintln!("warning: the performance record was not saved: {e}");
        }
    }
}
