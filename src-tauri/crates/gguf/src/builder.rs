//! Writes synthetic GGUF headers, for tests of this crate and of anything
//! that plans around a model (memory planner, UI) without shipping
//! gigabytes of weights.
//!
//! [`GgufBuilder::write`] writes the header and then extends the file with
//! `set_len` to the size the tensors claim, so the file is sparse: a
//! 9 GB "model" costs a few MB of disk. [`DecoderShape`] fills in the
//! standard llama.cpp keys and `blk.N.*` tensors of a decoder-only
//! transformer.
//!
//! ```
//! use hearth_gguf::builder::{DecoderShape, GgufBuilder};
//! let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("qwen3-14b.gguf");
//! GgufBuilder::decoder(&DecoderShape::qwen3_14b_q4_k_m()).write(&path).unwrap();
//! let info = hearth_gguf::read(&path).unwrap();
//! assert_eq!(info.block_count, Some(40));
//! assert_eq!(info.head_count_kv_for_layer(0), Some(8));
//! ```

use std::io::{self, Write};
use std::path::Path;

use crate::metadata::{MetaValue, ValueType};
use crate::reader::{align_up, DEFAULT_ALIGNMENT, MAGIC};
use crate::types::GgmlType;

/// A metadata value to write: any value the reader returns ([`MetaValue`], one enum
/// for both), or what only a writer of test files needs.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Meta(MetaValue),
    /// An array of the given element type, of any values (nested arrays included).
    Array(ValueType, Vec<Value>),
    /// A string array of `n` generated tokens (`"t0"`, `"t1"`, ...), so a
    /// 150k-token vocabulary need not be held in memory by the caller.
    Tokens(u64),
    /// Any type number followed by arbitrary bytes, for hostile headers.
    Raw(u32, Vec<u8>),
}

impl From<MetaValue> for Value {
    fn from(value: MetaValue) -> Self {
        Value::Meta(value)
    }
}

impl Value {
    fn type_id(&self) -> u32 {
        match self {
            Value::Meta(m) => m.value_type() as u32,
            Value::Array(..) | Value::Tokens(_) => ValueType::Array as u32,
            Value::Raw(t, _) => *t,
        }
    }

    /// The value's bytes, without its type number.
    fn write_payload(&self, out: &mut Vec<u8>) {
        match self {
            Value::Meta(m) => {
                if let Err(why) = m.write_payload(out) {
                    panic!("GgufBuilder: {why}: give it as Value::Array");
                }
            }
            Value::Array(t, items) => {
                out.extend((*t as u32).to_le_bytes());
                out.extend((items.len() as u64).to_le_bytes());
                for item in items {
                    item.write_payload(out);
                }
            }
            Value::Tokens(n) => {
                out.extend((ValueType::String as u32).to_le_bytes());
                out.extend(n.to_le_bytes());
                for i in 0..*n {
                    write_str(out, &format!("t{i}"));
                }
            }
            Value::Raw(_, bytes) => out.extend(bytes),
        }
    }
}

fn write_str(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as u64).to_le_bytes());
    out.extend(s.as_bytes());
}

#[derive(Debug, Clone)]
struct Tensor {
    name: String,
    dims: Vec<u64>,
    type_id: u32,
    /// `None`: placed after the previous tensor, aligned.
    offset: Option<u64>,
}

/// Builds a GGUF header: metadata entries and tensor descriptions in the
/// order added.
#[derive(Debug, Clone)]
pub struct GgufBuilder {
    version: u32,
    alignment: u64,
    kvs: Vec<(String, Value)>,
    tensors: Vec<Tensor>,
    tensor_count: Option<u64>,
    kv_count: Option<u64>,
}

impl Default for GgufBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl GgufBuilder {
    /// An empty version-3 header.
    pub fn new() -> Self {
        GgufBuilder {
            version: 3,
            alignment: DEFAULT_ALIGNMENT,
            kvs: Vec::new(),
            tensors: Vec::new(),
            tensor_count: None,
            kv_count: None,
        }
    }

    /// Sets the version field (any number, to test rejection).
    pub fn version(mut self, version: u32) -> Self {
        self.version = version;
        self
    }

    /// Writes `general.alignment` and aligns tensor data to it.
    pub fn alignment(mut self, alignment: u32) -> Self {
        self.alignment = u64::from(alignment.max(1));
        self.kv("general.alignment", MetaValue::U32(alignment))
    }

    /// Claims these counts in the header instead of the real ones.
    pub fn override_counts(mut self, tensor_count: Option<u64>, kv_count: Option<u64>) -> Self {
        self.tensor_count = tensor_count;
        self.kv_count = kv_count;
        self
    }

    /// Adds a metadata entry.
    pub fn kv(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.kvs.push((key.to_string(), value.into()));
        self
    }

    pub fn u32(self, key: &str, v: u32) -> Self {
        self.kv(key, MetaValue::U32(v))
    }

    pub fn u64(self, key: &str, v: u64) -> Self {
        self.kv(key, MetaValue::U64(v))
    }

    pub fn f32(self, key: &str, v: f32) -> Self {
        self.kv(key, MetaValue::F32(v))
    }

    pub fn bool(self, key: &str, v: bool) -> Self {
        self.kv(key, MetaValue::Bool(v))
    }

    pub fn string(self, key: &str, v: &str) -> Self {
        self.kv(key, MetaValue::String(v.to_string()))
    }

    /// A u32 array, e.g. per-layer `head_count_kv`.
    pub fn u32_array(self, key: &str, v: &[u32]) -> Self {
        self.kv(
            key,
            Value::Array(ValueType::U32, v.iter().map(|x| MetaValue::U32(*x).into()).collect()),
        )
    }

    /// A bool array, e.g. a per-layer `sliding_window_pattern`.
    pub fn bool_array(self, key: &str, v: &[bool]) -> Self {
        self.kv(
            key,
            Value::Array(ValueType::Bool, v.iter().map(|x| MetaValue::Bool(*x).into()).collect()),
        )
    }

    pub fn string_array(self, key: &str, v: &[&str]) -> Self {
        self.kv(
            key,
            Value::Array(
                ValueType::String,
                v.iter().map(|s| MetaValue::String(s.to_string()).into()).collect(),
            ),
        )
    }

    /// `tokenizer.ggml.tokens` with `n` generated tokens.
    pub fn tokens(self, n: u64) -> Self {
        self.kv("tokenizer.ggml.tokens", Value::Tokens(n))
    }

    /// Adds a tensor placed after the previous one, aligned.
    pub fn tensor(mut self, name: &str, dims: &[u64], ty: GgmlType) -> Self {
        self.tensors.push(Tensor {
            name: name.to_string(),
            dims: dims.to_vec(),
            type_id: ty as u32,
            offset: None,
        });
        self
    }

    /// Adds a tensor with any type number and data offset, for hostile headers.
    pub fn tensor_raw(mut self, name: &str, dims: &[u64], type_id: u32, offset: u64) -> Self {
        self.tensors.push(Tensor {
            name: name.to_string(),
            dims: dims.to_vec(),
            type_id,
            offset: Some(offset),
        });
        self
    }

    /// Each tensor's data offset and byte size (0 for unknown types or
    /// impossible shapes).
    fn layout(&self) -> Vec<(u64, u64)> {
        let mut next = 0u64;
        self.tensors
            .iter()
            .map(|t| {
                let n = t.dims.iter().try_fold(1u64, |a, d| a.checked_mul(*d));
                let bytes = GgmlType::from_u32(t.type_id)
                    .zip(n)
                    .and_then(|(ty, n)| ty.bytes_for(n))
                    .unwrap_or(0);
                let offset = t
                    .offset
                    .unwrap_or_else(|| align_up(next, self.alignment).unwrap_or(next));
                next = offset.saturating_add(bytes);
                (offset, bytes)
            })
            .collect()
    }

    /// The header bytes, padded to where tensor data starts.
    pub fn header_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend(MAGIC);
        out.extend(self.version.to_le_bytes());
        let tensor_count = self.tensor_count.unwrap_or(self.tensors.len() as u64);
        out.extend(tensor_count.to_le_bytes());
        out.extend(self.kv_count.unwrap_or(self.kvs.len() as u64).to_le_bytes());
        for (key, value) in &self.kvs {
            write_str(&mut out, key);
            out.extend(value.type_id().to_le_bytes());
            value.write_payload(&mut out);
        }
        for (t, (offset, _)) in self.tensors.iter().zip(self.layout()) {
            write_str(&mut out, &t.name);
            out.extend((t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                out.extend(d.to_le_bytes());
            }
            out.extend(t.type_id.to_le_bytes());
            out.extend(offset.to_le_bytes());
        }
        if !self.tensors.is_empty() {
            let padded = align_up(out.len() as u64, self.alignment).unwrap_or(0);
            out.resize(usize::try_from(padded).unwrap_or(out.len()), 0);
        }
        out
    }

    /// Bytes of tensor data the header describes (end of the last tensor).
    pub fn data_len(&self) -> u64 {
        self.layout()
            .into_iter()
            .map(|(o, b)| o.saturating_add(b))
            .max()
            .unwrap_or(0)
    }

    /// Writes the header to `path` and extends the file (sparsely) to the
    /// full size the tensors need; returns that size.
    pub fn write(&self, path: &Path) -> io::Result<u64> {
        let header = self.header_bytes();
        let len = (header.len() as u64).saturating_add(self.data_len());
        let mut f = std::fs::File::create(path)?;
        f.write_all(&header)?;
        f.set_len(len)?;
        Ok(len)
    }

    /// A decoder-only transformer header with llama.cpp's standard keys and
    /// tensor names (`token_embd`, `blk.N.attn_q`, ..., `output`).
    pub fn decoder(s: &DecoderShape) -> Self {
        let a = s.architecture.as_str();
        let k = |suffix: &str| format!("{a}.{suffix}");
        let q_dim = s.n_head * s.head_dim;
        let kv_dim = s.n_head_kv * s.head_dim;
        let mut b = GgufBuilder::new()
            .string("general.architecture", a)
            .string("general.name", &s.name)
            .u32("general.file_type", s.file_type)
            .u32("general.quantization_version", 2)
            .u32(&k("context_length"), to_u32(s.context_length))
            .u32(&k("block_count"), to_u32(s.n_layer))
            .u32(&k("embedding_length"), to_u32(s.n_embd))
            .u32(&k("feed_forward_length"), to_u32(s.n_ff))
            .u32(&k("attention.head_count"), to_u32(s.n_head))
            .u32(&k("attention.head_count_kv"), to_u32(s.n_head_kv))
            .u32(&k("attention.key_length"), to_u32(s.head_dim))
            .u32(&k("attention.value_length"), to_u32(s.head_dim))
            .f32(&k("rope.freq_base"), 1_000_000.0)
            .f32(&k("attention.layer_norm_rms_epsilon"), 1e-6);
        if let Some(w) = s.sliding_window {
            b = b.u32(&k("attention.sliding_window"), to_u32(w));
        }
        b = b
            .string("tokenizer.ggml.model", "gpt2")
            .tokens(s.n_vocab)
            .u32("tokenizer.ggml.bos_token_id", 0)
            .u32("tokenizer.ggml.eos_token_id", 1);
        if let Some(t) = &s.chat_template {
            b = b.string("tokenizer.chat_template", t);
        }

        let (e, w) = (s.n_embd, s.weight_type);
        b = b.tensor("token_embd.weight", &[e, s.n_vocab], s.embd_type);
        for l in 0..s.n_layer {
            let n = |t: &str| format!("blk.{l}.{t}.weight");
            b = b
                .tensor(&n("attn_norm"), &[e], GgmlType::F32)
                .tensor(&n("attn_q"), &[e, q_dim], w)
                .tensor(&n("attn_k"), &[e, kv_dim], w)
                .tensor(&n("attn_v"), &[e, kv_dim], w)
                .tensor(&n("attn_output"), &[q_dim, e], w);
            if s.qk_norm {
                b = b.tensor(&n("attn_q_norm"), &[s.head_dim], GgmlType::F32).tensor(
                    &n("attn_k_norm"),
                    &[s.head_dim],
                    GgmlType::F32,
                );
            }
            b = b
                .tensor(&n("ffn_norm"), &[e], GgmlType::F32)
                .tensor(&n("ffn_gate"), &[e, s.n_ff], w)
                .tensor(&n("ffn_up"), &[e, s.n_ff], w)
                .tensor(&n("ffn_down"), &[s.n_ff, e], w);
        }
        b = b.tensor("output_norm.weight", &[e], GgmlType::F32);
        if let Some(out) = s.output_type {
            b = b.tensor("output.weight", &[e, s.n_vocab], out);
        }
        b
    }
}

fn to_u32(v: u64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

/// The shape of a decoder-only transformer for [`GgufBuilder::decoder`].
/// Matrix dimensions must be multiples of the weight type's block size
/// (256 for K-quants).
#[derive(Debug, Clone, PartialEq)]
pub struct DecoderShape {
    pub architecture: String,
    pub name: String,
    pub n_layer: u64,
    pub n_embd: u64,
    pub n_ff: u64,
    pub n_head: u64,
    pub n_head_kv: u64,
    pub head_dim: u64,
    pub n_vocab: u64,
    pub context_length: u64,
    /// `general.file_type` (15 = Q4_K_M).
    pub file_type: u32,
    /// Type of the attention and feed-forward matrices.
    pub weight_type: GgmlType,
    /// Type of `token_embd.weight`.
    pub embd_type: GgmlType,
    /// Type of `output.weight`; `None` for tied embeddings (no output tensor).
    pub output_type: Option<GgmlType>,
    /// Per-head Q/K norms (`attn_q_norm`, `attn_k_norm`), as in Qwen3.
    pub qk_norm: bool,
    pub sliding_window: Option<u64>,
    pub chat_template: Option<String>,
}

impl DecoderShape {
    /// Qwen3-14B at Q4_K_M: 40 layers, 40 heads, 8 KV heads, head dim 128,
    /// vocab 151936. Matrices are Q4_K and the output Q6_K (the real file
    /// also mixes Q6_K into some layers, so it is a few % larger).
    pub fn qwen3_14b_q4_k_m() -> Self {
        DecoderShape {
            architecture: "qwen3".into(),
            name: "Qwen3 14B (synthetic)".into(),
            n_layer: 40,
            n_embd: 5120,
            n_ff: 17408,
            n_head: 40,
            n_head_kv: 8,
            head_dim: 128,
            n_vocab: 151_936,
            context_length: 40_960,
            file_type: 15,
            weight_type: GgmlType::Q4_K,
            embd_type: GgmlType::Q4_K,
            output_type: Some(GgmlType::Q6_K),
            qk_norm: true,
            sliding_window: None,
            chat_template: Some(
                "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}".into(),
            ),
        }
    }
}
