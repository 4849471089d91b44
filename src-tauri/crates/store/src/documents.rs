//! Document cache: the chunks (and metadata) produced from a file, keyed by the
//! SHA-256 of the file's bytes, so the same content is never processed twice
//! whatever its name or location.

use std::io::Read;
use std::path::Path;

use rusqlite::{params, OptionalExtension};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::{Result, StoreError};
use crate::{json_col, now_ms, Store};

/// One chunk of a processed document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DocumentChunk {
    /// Position of the chunk in the document, from 0.
    pub index: u32,
    pub text: String,
    /// Whatever the processor records per chunk (page, byte range, heading...).
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub metadata: Value,
}

/// A cached, processed document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CachedDocument {
    /// Lowercase hex SHA-256 of the file's bytes ([`document_hash`]).
    pub file_hash: String,
    pub file_name: String,
    /// Unix milliseconds.
    pub processed_at: i64,
    pub chunks: Vec<DocumentChunk>,
    pub metadata: Value,
}

/// Lowercase hex SHA-256 of `bytes`: the document cache key.
pub fn document_hash(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// [`document_hash`] of a file's contents, streamed (the file is not loaded
/// into memory).
pub fn document_hash_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

fn check_hash(file_hash: &str) -> Result<()> {
    let ok = file_hash.len() == 64
        && file_hash
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if ok {
        Ok(())
    } else {
        Err(StoreError::InvalidInput(format!(
            "document hash must be 64 lowercase hex digits (SHA-256), got {file_hash:?}"
        )))
    }
}

impl Store {
    /// Caches the processing result of the file whose SHA-256 is `file_hash`,
    /// replacing any earlier entry for the same content. `processed_at` is now.
    pub fn put_document(
        &self,
        file_hash: &str,
        file_name: &str,
        chunks: &[DocumentChunk],
        metadata: &Value,
    ) -> Result<CachedDocument> {
        check_hash(file_hash)?;
        let chunks_text = serde_json::to_string(chunks)?;
        let metadata_text = serde_json::to_string(metadata)?;
        let processed_at = now_ms();
        self.write(|tx| {
            tx.prepare_cached(
                "INSERT INTO document_cache (file_hash, file_name, processed_at, chunks, metadata)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (file_hash) DO UPDATE SET file_name = excluded.file_name,
                   processed_at = excluded.processed_at, chunks = excluded.chunks,
                   metadata = excluded.metadata",
            )?
            .execute(params![file_hash, file_name, processed_at, chunks_text, metadata_text])?;
            Ok(())
        })?;
        Ok(CachedDocument {
            file_hash: file_hash.to_owned(),
            file_name: file_name.to_owned(),
            processed_at,
            chunks: chunks.to_vec(),
            metadata: metadata.clone(),
        })
    }

    /// [`Store::put_document`] keyed by the hash of `bytes`.
    pub fn put_document_bytes(
        &self,
        bytes: &[u8],
        file_name: &str,
        chunks: &[DocumentChunk],
        metadata: &Value,
    ) -> Result<CachedDocument> {
        self.put_document(&document_hash(bytes), file_name, chunks, metadata)
    }

    /// The cached entry for the content with SHA-256 `file_hash`, if any.
    pub fn get_document(&self, file_hash: &str) -> Result<Option<CachedDocument>> {
        check_hash(file_hash)?;
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT file_hash, file_name, processed_at, chunks, metadata
                 FROM document_cache WHERE file_hash = ?1",
            )?;
            Ok(stmt
                .query_row([file_hash], |row| {
                    Ok(CachedDocument {
                        file_hash: row.get(0)?,
                        file_name: row.get(1)?,
                        processed_at: row.get(2)?,
                        chunks: json_col(row, 3)?,
                        metadata: json_col(row, 4)?,
                    })
                })
                .optional()?)
        })
    }

    /// The cached entry for `bytes`, if any.
    pub fn get_document_bytes(&self, bytes: &[u8]) -> Result<Option<CachedDocument>> {
        self.get_document(&document_hash(bytes))
    }

    /// Removes a cached entry; returns whether there was one.
    pub fn delete_document(&self, file_hash: &str) -> Result<bool> {
        check_hash(file_hash)?;
        self.write(|tx| {
            let n = tx
                .prepare_cached("DELETE FROM document_cache WHERE file_hash = ?1")?
                .execute([file_hash])?;
            Ok(n > 0)
        })
    }
}
