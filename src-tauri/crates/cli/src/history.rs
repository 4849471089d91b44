//! Chat history for the CLI: every turn is saved to the store, one transaction
//! per message, and every generation leaves a performance record.
//!
//! History is a convenience, never a reason to stop chatting: when the database
//! cannot be opened or written (corrupt file, full disk, read-only directory)
//! the error is shown once and the chat goes on with history turned off.

use std::time::Instant;

use anyhow::{bail, Result};
use hearth_core::{ChatMessage, GenerationMetrics, Role};
use hearth_store::{MessageMetadata, NewMessage, NewSession, PerfMetrics, PerfRecord, SessionId, Store, StoreError};

pub const BACKEND: &str = "llama.cpp";

pub struct History {
    store: Option<Store>,
    session: Option<SessionId>,
}

impl History {
    /// Opens the default database; on failure, warns and runs without history.
    pub fn open() -> Self {
        match Store::open_default() {
            Ok(store) => Self {
                store: Some(store),
                session: None,
            },
            Err(e) => {
                warn_disabled(&e);
                Self {
                    store: None,
                    session: None,
                }
            }
        }
    }

    pub fn session(&self) -> Option<&SessionId> {
        self.session.as_ref()
    }

    /// Loads a saved conversation so the chat continues it.
    pub fn resume(&mut self, id: &str) -> Result<Vec<ChatMessage>> {
        let Some(store) = &self.store else {
            bail!("cannot resume session {id}: chat history is unavailable (see the warning above)");
        };
        let id = SessionId::from(id);
        let Some(saved) = store.retrieve_session(&id)? else {
            bail!("no saved session {id}: `hearth db stats` shows what is stored; start a new chat without --session");
        };
        self.session = Some(id);
        Ok(saved
            .messages
            .into_iter()
            .map(|m| ChatMessage::new(m.role, m.content))
            .collect())
    }

    /// Saves a user (or system) turn, creating the session on the first one.
    pub fn save_turn(&mut self, role: Role, content: &str) {
        if self.session.is_none() {
            let title: String = content.chars().take(60).collect();
            let created = self.store.as_ref().map(|s| {
                s.create_session(&NewSession {
                    title,
                    user_id: None,
                    data: None,
                })
            });
            match created {
                Some(Ok(session)) => self.session = Some(session.id),
                Some(Err(e)) => return self.disable(&e),
                None => return,
            }
        }
        self.write(|store, session| {
            store
                .append_message(session, &NewMessage::new(role, content))
                .map(|_| ())
        });
    }

    /// Saves a reply with its metrics and logs the generation's performance, in one transaction.
    pub fn save_reply(&mut self, model: &str, text: &str, metrics: &GenerationMetrics, incomplete: bool) {
        let metadata = MessageMetadata {
            backend: Some(BACKEND.into()),
            model: Some(model.into()),
            metrics: serde_json::to_value(metrics).ok(),
            incomplete,
            ..MessageMetadata::default()
        };
        let message = NewMessage::new(Role::Assistant, text).with_metadata(metadata);
        let record = perf_record(model, metrics);
        let started = Instant::now();
        self.write(|store, session| store.append_message_with_perf(session, &message, &record).map(|_| ()));
        tracing::debug!(save_ms = started.elapsed().as_secs_f64() * 1000.0, "reply saved");
    }

    fn write(&mut self, f: impl FnOnce(&Store, &SessionId) -> Result<(), StoreError>) {
        if let (Some(store), Some(session)) = (&self.store, &self.session) {
            if let Err(e) = f(store, session) {
                self.disable(&e);
            }
        }
    }

    fn disable(&mut self, e: &StoreError) {
        warn_disabled(e);
        self.store = None;
    }
}

fn warn_disabled(e: &StoreError) {
    tracing::warn!(error = %e, "chat history disabled");
    eprintln!("warning: chat history is off for this run: {e}");
}

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
