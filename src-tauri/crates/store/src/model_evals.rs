//! Model measurements: what `hearth eval` (and the app's Quantize… flow) found for a
//! model file: its perplexity on a text, and against a reference the KL divergence and
//! how often both rank the same token first, with what the file costs to run. The model
//! list shows a file's latest measurement beside its size and fit.

use std::path::Path;
use std::time::UNIX_EPOCH;

use rusqlite::{params, OptionalExtension, Row};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::Result;
use crate::{now_ms, Store};

/// The file a measurement is about: its content hash, and where and what it was when
/// measured (so that the model list finds the measurement without hashing the file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelFile {
    /// Lowercase hex SHA-256 of the file's bytes.
    pub hash: String,
    pub path: String,
    pub bytes: u64,
    /// Modification time, Unix milliseconds.
    pub mtime_ms: i64,
}

impl ModelFile {
    /// Hashes `path` (reads the whole file: seconds for gigabytes) and records its
    /// size and modification time.
    pub fn identify(path: &Path) -> std::io::Result<ModelFile> {
        let (bytes, mtime_ms) = size_and_mtime(path)?;
        Ok(ModelFile {
            hash: file_sha256(path)?,
            path: path.display().to_string(),
            bytes,
            mtime_ms,
        })
    }
}

/// Size and modification time (Unix ms) of a file: how the model list recognises a
/// measured file without reading it.
pub fn size_and_mtime(path: &Path) -> std::io::Result<(u64, i64)> {
    let meta = std::fs::metadata(path)?;
    let mtime_ms = meta
        .modified()?
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    Ok((meta.len(), mtime_ms))
}

/// What was measured against a reference model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReferenceComparison {
    /// The reference's SHA-256.
    pub hash: String,
    /// The reference's file name.
    pub name: String,
    pub perplexity: f64,
    /// Mean KL divergence from the reference, nats per token.
    pub kl_mean: f64,
    pub kl_p99: f64,
    /// Percent of positions where both rank the same token first.
    pub same_top_percent: f64,
}

/// One measurement of one model file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelEval {
    /// Assigned by the store; 0 in a measurement not yet recorded.
    #[serde(default)]
    pub id: i64,
    pub file: ModelFile,
    /// The GGUF's dominant tensor type ("Q4_K_M", "F16"...).
    pub quant_type: Option<String>,
    pub bits_per_weight: f64,
    pub ram_after_load_bytes: Option<u64>,
    pub decode_tps: Option<f64>,
    /// SHA-256 of the scored text: perplexities compare only on the same text.
    pub text_hash: String,
    /// Tokens per window.
    pub window: u32,
    pub tokens_scored: u64,
    pub perplexity: f64,
    pub reference: Option<ReferenceComparison>,
    /// Unix milliseconds; 0 in a measurement not yet recorded (the store sets now).
    #[serde(default)]
    pub measured_at: i64,
}

const COLUMNS: &str = "id, file_hash, file_path, file_bytes, file_mtime_ms, quant_type, bits_per_weight, \
     ram_after_load_bytes, decode_tps, text_hash, window, tokens_scored, perplexity, reference_hash, \
     reference_name, reference_perplexity, kl_mean, kl_p99, same_top_percent, measured_at";

fn from_row(row: &Row<'_>) -> rusqlite::Result<ModelEval> {
    let reference = match row.get::<_, Option<String>>(13)? {
        Some(hash) => Some(ReferenceComparison {
            hash,
            name: row.get(14)?,
            perplexity: row.get(15)?,
            kl_mean: row.get(16)?,
            kl_p99: row.get(17)?,
            same_top_percent: row.get(18)?,
        }),
        None => None,
    };
    Ok(ModelEval {
        id: row.get(0)?,
        file: ModelFile {
            hash: row.get(1)?,
            path: row.get(2)?,
            bytes: row.get::<_, i64>(3)?.max(0) as u64,
            mtime_ms: row.get(4)?,
        },
        quant_type: row.get(5)?,
        bits_per_weight: row.get(6)?,
        ram_after_load_bytes: row.get::<_, Option<i64>>(7)?.map(|b| b.max(0) as u64),
        decode_tps: row.get(8)?,
        text_hash: row.get(9)?,
        window: row.get(10)?,
        tokens_scored: row.get::<_, i64>(11)?.max(0) as u64,
        perplexity: row.get(12)?,
        reference,
        measured_at: row.get(19)?,
    })
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Store {
    /// Records a measurement; returns it as stored (its id and time set).
    pub fn record_model_eval(&self, eval: &ModelEval) -> Result<ModelEval> {
        let measured_at = if eval.measured_at > 0 {
            eval.measured_at
        } else {
            now_ms()
        };
        let r = eval.reference.as_ref();
        let id = self.write(|tx| {
            tx.execute(
                "INSERT INTO model_evals (file_hash, file_path, file_bytes, file_mtime_ms, quant_type, \
                 bits_per_weight, ram_after_load_bytes, decode_tps, text_hash, window, tokens_scored, \
                 perplexity, reference_hash, reference_name, reference_perplexity, kl_mean, kl_p99, \
                 same_top_percent, measured_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)",
                params![
                    eval.file.hash,
                    eval.file.path,
                    to_i64(eval.file.bytes),
                    eval.file.mtime_ms,
                    eval.quant_type,
                    eval.bits_per_weight,
                    eval.ram_after_load_bytes.map(to_i64),
                    eval.decode_tps,
                    eval.text_hash,
                    eval.window,
                    to_i64(eval.tokens_scored),
                    eval.perplexity,
                    r.map(|r| &r.hash),
                    r.map(|r| &r.name),
                    r.map(|r| r.perplexity),
                    r.map(|r| r.kl_mean),
                    r.map(|r| r.kl_p99),
                    r.map(|r| r.same_top_percent),
                    measured_at,
                ],
            )?;
            Ok(tx.last_insert_rowid())
        })?;
        Ok(ModelEval {
            id,
            measured_at,
            ..eval.clone()
        })
    }

    /// Every measurement of the file with this SHA-256, newest first.
    pub fn model_evals(&self, file_hash: &str) -> Result<Vec<ModelEval>> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM model_evals WHERE file_hash = ?1 ORDER BY measured_at DESC, id DESC"
            ))?;
            let rows = stmt.query_map(params![file_hash], from_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    /// The latest measurement of the file at `path`, if it was measured as it is now
    /// (same size and modification time; a file changed since is not the one measured).
    /// Reads only the file's metadata. Measurements against a reference are preferred:
    /// they say more.
    pub fn latest_model_eval_at(&self, path: &Path) -> Result<Option<ModelEval>> {
        let Ok((bytes, mtime_ms)) = size_and_mtime(path) else {
            return Ok(None);
        };
        let path = path.display().to_string();
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM model_evals \
                 WHERE file_path = ?1 AND file_bytes = ?2 AND file_mtime_ms = ?3 \
                 ORDER BY reference_hash IS NULL, measured_at DESC, id DESC LIMIT 1"
            ))?;
            Ok(stmt
                .query_row(params![path, to_i64(bytes), mtime_ms], from_row)
                .optional()?)
        })
    }
}

/// Lowercase hex SHA-256 of a measured text: which text a record was measured on.
pub fn text_sha256(text: &str) -> String {
    hex(&Sha256::digest(text.as_bytes()))
}

/// Lowercase hex SHA-256 of a file, streamed (a model is not loaded into memory).
fn file_sha256(path: &Path) -> std::io::Result<String> {
    let mut hasher = Sha256::new();
    std::io::copy(&mut std::fs::File::open(path)?, &mut hasher)?;
    Ok(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_sha256_in_lowercase_hex() {
        // FIPS 180-2's example.
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(text_sha256("abc"), abc);
        let dir = tempfile::tempdir().expect("a temporary folder");
        let path = dir.path().join("m.gguf");
        std::fs::write(&path, "abc").expect("write");
        let file = ModelFile::identify(&path).expect("identify");
        assert_eq!((file.hash.as_str(), file.bytes), (abc, 3));
    }
}
