//! Performance logs: one record per measured operation (a generation, a model
//! load, an embedding batch...), and their aggregation per backend and model.

use std::time::Duration;

use rusqlite::{params, Transaction};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{Result, StoreError};
use crate::messages::MessageId;
use crate::{now_ms, Store};

/// The metrics of one record (the `metrics` JSON column). `decode_tps` and
/// `ttft_ms` are also copied into indexed columns of their own, which is what
/// [`Store::perf_summary`] aggregates.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PerfMetrics {
    /// Generated tokens per second (decode phase).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decode_tps: Option<f64>,
    /// Time to first token, milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttft_ms: Option<f64>,
    /// Prompt tokens per second (prefill phase).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tps: Option<f64>,
    /// Anything else the engine measured; kept as is.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One performance record to log.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PerfRecord {
    /// What was measured: "generate", "load_model", "embed", ...
    pub operation: String,
    /// Wall-clock duration of the operation.
    pub latency_ms: f64,
    #[serde(default)]
    pub tokens_processed: Option<i64>,
    /// Empty when not applicable.
    #[serde(default)]
    pub backend: String,
    #[serde(default)]
    pub model: String,
    /// Unix milliseconds; `None` means now.
    #[serde(default)]
    pub timestamp: Option<i64>,
    #[serde(default)]
    pub metrics: PerfMetrics,
}

impl PerfRecord {
    /// The record of one generation: its engine figures, by backend and model.
    pub fn generation(backend: &str, model: &str, m: &hearth_core::GenerationMetrics) -> PerfRecord {
        let mut metrics = PerfMetrics {
            decode_tps: Some(m.decode_tps),
            ttft_ms: Some(m.ttft_ms),
            prompt_tps: Some(m.prompt_tps),
            ..PerfMetrics::default()
        };
        for (key, value) in [
            ("prompt_tokens", serde_json::json!(m.prompt_tokens)),
            ("prompt_tokens_evaluated", serde_json::json!(m.prompt_tokens_evaluated)),
            ("finish_reason", serde_json::json!(m.finish_reason.as_str())),
        ] {
            metrics.extra.insert(key.into(), value);
        }
        PerfRecord {
            operation: "generate".into(),
            latency_ms: m.total_ms,
            tokens_processed: Some(i64::from(m.completion_tokens)),
            backend: backend.into(),
            model: model.into(),
            timestamp: None,
            metrics,
        }
    }
}

/// A time range `[since_ms, until_ms)` in Unix milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeWindow {
    pub since_ms: i64,
    pub until_ms: i64,
}

impl TimeWindow {
    /// The last `span` up to now.
    pub fn last(span: Duration) -> TimeWindow {
        let now = now_ms();
        let span = i64::try_from(span.as_millis()).unwrap_or(i64::MAX);
        TimeWindow {
            since_ms: now.saturating_sub(span),
            until_ms: now.saturating_add(1),
        }
    }

    /// All of time.
    pub fn all() -> TimeWindow {
        TimeWindow {
            since_ms: i64::MIN,
            until_ms: i64::MAX,
        }
    }
}

/// Aggregate of one backend+model over a window. Percentiles are nearest-rank
/// over the records that have the metric; `None` when none has it. For
/// throughput the *low* percentiles are the bad ones: `decode_tps_p5` is the
/// slow tail, `decode_tps_p95` the best case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PerfSummary {
    pub backend: String,
    pub model: String,
    /// Records in the window (for the operation filter, if any).
    pub count: u64,
    pub decode_tps_p5: Option<f64>,
    pub decode_tps_p50: Option<f64>,
    pub decode_tps_p95: Option<f64>,
    pub ttft_ms_p50: Option<f64>,
    pub ttft_ms_p95: Option<f64>,
    pub latency_ms_p50: Option<f64>,
    pub latency_ms_p95: Option<f64>,
}

/// A record with its metrics already encoded (outside the write lock).
pub(crate) struct PreparedRecord<'a> {
    record: &'a PerfRecord,
    metrics: String,
}

impl<'a> PreparedRecord<'a> {
    pub(crate) fn new(record: &'a PerfRecord) -> Result<PreparedRecord<'a>> {
        if !record.latency_ms.is_finite() {
            return Err(StoreError::InvalidInput("latency_ms must be a finite number".into()));
        }
        Ok(PreparedRecord {
            record,
            metrics: serde_json::to_string(&record.metrics)?,
        })
    }
}

pub(crate) fn insert_record(
    tx: &Transaction<'_>,
    prepared: &PreparedRecord<'_>,
    message: Option<MessageId>,
) -> Result<i64> {
    let r = prepared.record;
    tx.prepare_cached(
        "INSERT INTO performance_logs
           (operation, latency_ms, tokens_processed, timestamp, metrics, backend, model,
            message_id, decode_tps, ttft_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        r.operation,
        r.latency_ms,
        r.tokens_processed,
        r.timestamp.unwrap_or_else(now_ms),
        prepared.metrics,
        r.backend,
        r.model,
        message.map(|m| m.0),
        r.metrics.decode_tps.filter(|v| v.is_finite()),
        r.metrics.ttft_ms.filter(|v| v.is_finite())
    ])?;
    Ok(tx.last_insert_rowid())
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

#[derive(Default)]
struct Group {
    count: u64,
    decode: Vec<f64>,
    ttft: Vec<f64>,
    latency: Vec<f64>,
}

impl Group {
    fn finish(mut self, backend: String, model: String) -> PerfSummary {
        for v in [&mut self.decode, &mut self.ttft, &mut self.latency] {
            v.sort_by(f64::total_cmp);
        }
        PerfSummary {
            backend,
            model,
            count: self.count,
            decode_tps_p5: percentile(&self.decode, 5.0),
            decode_tps_p50: percentile(&self.decode, 50.0),
            decode_tps_p95: percentile(&self.decode, 95.0),
            ttft_ms_p50: percentile(&self.ttft, 50.0),
            ttft_ms_p95: percentile(&self.ttft, 95.0),
            latency_ms_p50: percentile(&self.latency, 50.0),
            latency_ms_p95: percentile(&self.latency, 95.0),
        }
    }
}

impl Store {
    /// Logs one performance record; returns its id.
    pub fn log_perf(&self, record: &PerfRecord) -> Result<i64> {
        let prepared = PreparedRecord::new(record)?;
        self.write(|tx| insert_record(tx, &prepared, None))
    }

    /// The last `limit` records, newest first (only those of `operation` when given),
    /// each with its timestamp set.
    pub fn recent_perf(&self, operation: Option<&str>, limit: usize) -> Result<Vec<PerfRecord>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT operation, latency_ms, tokens_processed, timestamp, metrics, backend, model
                 FROM performance_logs
                 WHERE (?1 IS NULL OR operation = ?1)
                 ORDER BY timestamp DESC, id DESC LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![operation, limit], |row| {
                Ok(PerfRecord {
                    operation: row.get(0)?,
                    latency_ms: row.get(1)?,
                    tokens_processed: row.get(2)?,
                    timestamp: Some(row.get(3)?),
                    metrics: crate::json_col(row, 4)?,
                    backend: row.get(5)?,
                    model: row.get(6)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    /// Count and percentiles per backend+model for the records in `window`
    /// (only those of `operation` when given), sorted by backend then model.
    ///
    /// Reads only a covering index (`performance_logs_by_time`); percentiles are
    /// computed here because SQLite has no percentile function. A metric stored
    /// with a non-numeric JSON value is ignored, not an error.
    pub fn perf_summary(&self, window: TimeWindow, operation: Option<&str>) -> Result<Vec<PerfSummary>> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT backend, model,
                   CASE WHEN typeof(decode_tps) IN ('integer', 'real') THEN decode_tps END,
                   CASE WHEN typeof(ttft_ms) IN ('integer', 'real') THEN ttft_ms END,
                   latency_ms
                 FROM performance_logs
                 WHERE timestamp >= ?1 AND timestamp < ?2 AND (?3 IS NULL OR operation = ?3)
                 ORDER BY backend, model",
            )?;
            let mut rows = stmt.query(params![window.since_ms, window.until_ms, operation])?;
            let mut out = Vec::new();
            let mut current: Option<(String, String, Group)> = None;
            while let Some(row) = rows.next()? {
                let backend: String = row.get(0)?;
                let model: String = row.get(1)?;
                let same = matches!(&current, Some((b, m, _)) if *b == backend && *m == model);
                if !same {
                    if let Some((b, m, g)) = current.take() {
                        out.push(g.finish(b, m));
                    }
                    current = Some((backend, model, Group::default()));
                }
                if let Some((_, _, group)) = current.as_mut() {
                    group.count += 1;
                    let values = [row.get(2)?, row.get(3)?, row.get::<_, Option<f64>>(4)?];
                    for (value, into) in
                        values
                            .into_iter()
                            .zip([&mut group.decode, &mut group.ttft, &mut group.latency])
                    {
                        if let Some(v) = value.filter(|v: &f64| v.is_finite()) {
                            into.push(v);
                        }
                    }
                }
            }
            if let Some((b, m, g)) = current.take() {
                out.push(g.finish(b, m));
            }
            Ok(out)
        })
    }
}
