//! Performance records of the commands that are not a saved chat (`hearth generate`,
//! model loads): written to the store, and a failure is logged, never fatal. (`hearth
//! chat` saves through the backend manager, which records each reply with its message.)

use hearth_core::GenerationMetrics;
use hearth_store::{PerfMetrics, PerfRecord, Store};

pub const BACKEND: &str = "llama.cpp";

pub fn perf_record(model: &str, m: &GenerationMetrics) -> PerfRecord {
    PerfRecord::generation(BACKEND, model, m)
}

/// Logs a generation that is not part of a saved chat (`hearth generate`).
pub fn log_generation(model: &str, metrics: &GenerationMetrics) {
    save_record(&perf_record(model, metrics));
}

/// A performance record outside a chat: opened, written, closed; a failure is logged, never fatal.
fn save_record(record: &PerfRecord) {
    if let Err(e) = Store::open_default().and_then(|store| store.log_perf(record)) {
        tracing::warn!(error = %e, operation = %record.operation, "performance record not saved");
    }
}

/// Keeps each load's measured memory beside the planner's prediction, so the
/// planner's accuracy on real machines can be checked over time.
pub fn log_load(info: &hearth_engine::ModelInfo, predicted_ram_mib: f64, measured_ram_mib: f64) {
    let mut metrics = PerfMetrics::default();
    for (key, value) in [
        ("n_ctx", serde_json::json!(info.n_ctx)),
        ("n_gpu_layers", serde_json::json!(info.n_gpu_layers)),
        ("threads", serde_json::json!(info.threads)),
        ("predicted_ram_mib", serde_json::json!(predicted_ram_mib)),
        ("measured_ram_mib", serde_json::json!(measured_ram_mib)),
    ] {
        metrics.extra.insert(key.into(), value);
    }
    let record = PerfRecord {
        operation: "load_model".into(),
        latency_ms: info.load_ms,
        tokens_processed: None,
        backend: BACKEND.into(),
        model: info.name.clone(),
        timestamp: None,
        metrics,
    };
    save_record(&record);
}
