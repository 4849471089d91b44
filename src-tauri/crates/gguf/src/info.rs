//! The typed summary of a GGUF header.
//!
//! llama.cpp stores hyperparameters under architecture-prefixed keys
//! (`llama.context_length`, `gemma3.block_count`), with integer widths and
//! scalar-vs-per-layer shapes that vary between converters. This module reads
//! them once, tolerantly, so the UI and the memory planner see plain fields.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Serialize, Serializer};

use crate::metadata::MetaValue;
use crate::reader::RawHeader;
use crate::types::{file_type_name, GgmlType};

/// One tensor's description; its data is not loaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TensorInfo {
    pub name: String,
    /// Dimensions, innermost first (ggml order: `[n_embd, n_vocab]` for the
    /// token embedding).
    pub dims: Vec<u64>,
    pub ggml_type: GgmlType,
    /// Byte offset from the start of the data section.
    pub offset: u64,
    /// Bytes of data, from the type's block layout.
    pub n_bytes: u64,
}

impl TensorInfo {
    /// Number of elements (product of the dimensions; checked when read).
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().fold(1u64, |a, d| a.saturating_mul(*d))
    }

    /// The layer of a `blk.N.*` tensor, `None` for embeddings, output, etc.
    pub fn layer(&self) -> Option<u64> {
        let rest = self.name.strip_prefix("blk.")?;
        let (n, _) = rest.split_once('.')?;
        n.parse().ok()
    }
}

/// A hyperparameter that is either one value for all layers or one per
/// layer (e.g. `head_count_kv` in models that mix attention layer shapes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum PerLayer {
    Uniform(u64),
    PerLayer(Vec<u64>),
}

impl PerLayer {
    /// The value for `layer`; `None` past the end of a per-layer list.
    pub fn for_layer(&self, layer: u64) -> Option<u64> {
        match self {
            PerLayer::Uniform(v) => Some(*v),
            PerLayer::PerLayer(v) => usize::try_from(layer).ok().and_then(|i| v.get(i).copied()),
        }
    }

    /// The largest value over all layers (what sizes a worst-case buffer).
    pub fn max(&self) -> u64 {
        match self {
            PerLayer::Uniform(v) => *v,
            PerLayer::PerLayer(v) => v.iter().copied().max().unwrap_or(0),
        }
    }
}

/// Where a [`SlidingWindowPattern`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PatternSource {
    /// `{arch}.attention.sliding_window_pattern` in the file.
    File,
    /// Not in the file: llama.cpp's built-in default for the architecture
    /// (e.g. gemma3: every 6th layer is global).
    ArchitectureDefault,
}

/// Which layers use sliding-window attention (their KV cache holds only
/// `sliding_window` tokens) and which are global (full context).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SlidingWindowPattern {
    /// With `dense_first == false`, layers `period-1, 2*period-1, ...` are
    /// global; with `dense_first`, layers `0, period, 2*period, ...` are.
    /// 0 means every layer slides. `None` when `layers` is given.
    pub period: Option<u64>,
    pub dense_first: bool,
    /// Explicit per-layer flags from the file (true = sliding window).
    pub layers: Option<Vec<bool>>,
    pub source: PatternSource,
}

impl SlidingWindowPattern {
    /// True when `layer` uses the sliding window (llama.cpp's `is_swa`).
    pub fn is_sliding(&self, layer: u64) -> bool {
        if let Some(layers) = &self.layers {
            return usize::try_from(layer)
                .ok()
                .and_then(|i| layers.get(i).copied())
                .unwrap_or(false);
        }
        match self.period {
            None => false,
            Some(0) => true,
            Some(n) if self.dense_first => layer % n != 0,
            Some(n) => layer % n < n - 1,
        }
    }
}

/// llama.cpp's default sliding-window periods (`load_swa_pattern` calls in
/// `src/models/*.cpp`): `(architecture, period, dense_first)`.
const SWA_DEFAULTS: &[(&str, u64, bool)] = &[
    ("gemma2", 2, false),
    ("gemma3", 6, false),
    ("gemma3n", 5, false),
    ("gemma-embedding", 6, false),
    ("cohere2", 4, false),
    ("cohere2moe", 4, true),
    ("exaone4", 4, false),
    ("exaone-moe", 4, false),
    ("olmo2", 4, false),
    ("llama4", 4, false),
    ("gpt-oss", 2, false),
    ("plamo3", 8, false),
    ("smallthinker", 4, true),
    ("afmoe", 4, false),
    ("phi3", 1, false),
];

/// Everything Hearth needs to know about a model file without loading it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GgufInfo {
    #[serde(serialize_with = "lossy_path")]
    pub path: PathBuf,
    pub file_size: u64,
    /// GGUF format version (2 or 3).
    pub version: u32,
    pub tensor_count: u64,
    pub metadata_count: u64,
    /// Alignment of tensor data (`general.alignment`, default 32).
    pub alignment: u64,
    /// Where tensor data starts in the file.
    pub data_offset: u64,

    /// `general.architecture` ("llama", "gemma3", "qwen3"...).
    pub architecture: Option<String>,
    /// `general.name`.
    pub name: Option<String>,
    /// `general.file_type` (`enum llama_ftype`).
    pub file_type: Option<u32>,
    /// llama.cpp's name for `file_type` ("Q4_K_M").
    pub file_type_name: Option<&'static str>,
    /// `file_type_name`, or the most common tensor type by bytes when the
    /// file type is absent or unknown.
    pub quantization: Option<String>,
    /// Sum of all tensors' element counts.
    pub parameter_count: u64,

    pub context_length: Option<u64>,
    /// Number of transformer layers (`blk.N`).
    pub block_count: Option<u64>,
    pub embedding_length: Option<u64>,
    pub feed_forward_length: Option<PerLayer>,
    pub head_count: Option<PerLayer>,
    pub head_count_kv: Option<PerLayer>,
    /// Per-head K size; defaults to `embedding_length / head_count`.
    pub key_length: Option<u64>,
    /// Per-head V size; defaults to `embedding_length / head_count`.
    pub value_length: Option<u64>,
    /// Tokens a sliding-window layer attends to.
    pub sliding_window: Option<u64>,
    /// Present when `sliding_window` is, and the pattern is in the file or
    /// llama.cpp has a default for the architecture.
    pub sliding_window_pattern: Option<SlidingWindowPattern>,
    /// Length of `tokenizer.ggml.tokens` (or `{arch}.vocab_size`).
    pub vocab_size: Option<u64>,
    /// `tokenizer.chat_template`, if present and not oversized.
    pub chat_template: Option<String>,
    pub bos_token_id: Option<u32>,
    pub eos_token_id: Option<u32>,

    /// Every metadata entry; arrays summarised.
    pub metadata: BTreeMap<String, MetaValue>,
    pub tensors: Vec<TensorInfo>,
}

fn lossy_path<S: Serializer>(p: &std::path::Path, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&p.to_string_lossy())
}

impl GgufInfo {
    pub(crate) fn from_raw(path: PathBuf, file_size: u64, raw: RawHeader) -> GgufInfo {
        let mut info = GgufInfo {
            path,
            file_size,
            version: raw.version,
            tensor_count: raw.tensors.len() as u64,
            metadata_count: raw.kv_count,
            alignment: raw.alignment,
            data_offset: raw.data_offset,
            architecture: None,
            name: None,
            file_type: None,
            file_type_name: None,
            quantization: None,
            parameter_count: raw.tensors.iter().fold(0u64, |a, t| a.saturating_add(t.n_elements())),
            context_length: None,
            block_count: None,
            embedding_length: None,
            feed_forward_length: None,
            head_count: None,
            head_count_kv: None,
            key_length: None,
            value_length: None,
            sliding_window: None,
            sliding_window_pattern: None,
            vocab_size: None,
            chat_template: None,
            bos_token_id: None,
            eos_token_id: None,
            metadata: raw.metadata,
            tensors: raw.tensors,
        };
        info.summarise();
        info
    }

    fn summarise(&mut self) {
        self.architecture = self.string("general.architecture");
        self.name = self.string("general.name");
        self.file_type = self.u64("general.file_type").and_then(|v| u32::try_from(v).ok());
        self.file_type_name = self.file_type.and_then(file_type_name);
        self.quantization = self
            .file_type_name
            .map(str::to_string)
            .or_else(|| self.dominant_type().map(|t| t.name().to_string()));

        self.context_length = self.arch_u64("context_length");
        self.block_count = self.arch_u64("block_count");
        self.embedding_length = self.arch_u64("embedding_length");
        self.feed_forward_length = self.arch_per_layer("feed_forward_length");
        self.head_count = self.arch_per_layer("attention.head_count");
        self.head_count_kv = self.arch_per_layer("attention.head_count_kv");
        let default_head_dim = match (self.embedding_length, self.head_count.as_ref()) {
            (Some(e), Some(h)) => h.for_layer(0).filter(|h| *h > 0).map(|h| e / h),
            _ => None,
        };
        self.key_length = self.arch_u64("attention.key_length").or(default_head_dim);
        self.value_length = self.arch_u64("attention.value_length").or(default_head_dim);
        self.sliding_window = self.arch_u64("attention.sliding_window");
        self.sliding_window_pattern = self.swa_pattern();

        self.vocab_size = self
            .metadata
            .get("tokenizer.ggml.tokens")
            .and_then(MetaValue::as_array)
            .map(|a| a.len)
            .or_else(|| self.arch_u64("vocab_size"));
        self.chat_template = self.string("tokenizer.chat_template");
        self.bos_token_id = self.u32("tokenizer.ggml.bos_token_id");
        self.eos_token_id = self.u32("tokenizer.ggml.eos_token_id");
    }

    /// A metadata value by its full key.
    pub fn get(&self, key: &str) -> Option<&MetaValue> {
        self.metadata.get(key)
    }

    /// A metadata value by its key under the architecture prefix:
    /// `arch_get("context_length")` reads `llama.context_length`.
    pub fn arch_get(&self, suffix: &str) -> Option<&MetaValue> {
        let arch = self.architecture.as_deref()?;
        self.metadata.get(&format!("{arch}.{suffix}"))
    }

    fn string(&self, key: &str) -> Option<String> {
        self.get(key).and_then(MetaValue::as_str).map(str::to_string)
    }

    fn u64(&self, key: &str) -> Option<u64> {
        self.get(key).and_then(MetaValue::as_u64)
    }

    fn u32(&self, key: &str) -> Option<u32> {
        self.u64(key).and_then(|v| u32::try_from(v).ok())
    }

    pub(crate) fn arch_u64(&self, suffix: &str) -> Option<u64> {
        self.arch_get(suffix).and_then(MetaValue::as_u64)
    }

    pub(crate) fn arch_per_layer(&self, suffix: &str) -> Option<PerLayer> {
        let v = self.arch_get(suffix)?;
        if let Some(n) = v.as_u64() {
            return Some(PerLayer::Uniform(n));
        }
        let values = v.as_array()?.values.as_ref()?.as_u64s()?;
        Some(PerLayer::PerLayer(values))
    }

    fn swa_pattern(&self) -> Option<SlidingWindowPattern> {
        if self.sliding_window.unwrap_or(0) == 0 {
            return None;
        }
        let arch = self.architecture.as_deref()?;
        let default = SWA_DEFAULTS.iter().find(|(a, _, _)| *a == arch);
        let dense_first = default.is_some_and(|d| d.2);
        match self.arch_get("attention.sliding_window_pattern") {
            Some(v) => {
                if let Some(flags) = v
                    .as_array()
                    .and_then(|a| a.values.as_ref())
                    .and_then(|vals| vals.as_bools())
                {
                    return Some(SlidingWindowPattern {
                        period: None,
                        dense_first,
                        layers: Some(flags.to_vec()),
                        source: PatternSource::File,
                    });
                }
                v.as_u64().map(|n| SlidingWindowPattern {
                    period: Some(n),
                    dense_first,
                    layers: None,
                    source: PatternSource::File,
                })
            }
            None => default.map(|&(_, n, dense_first)| SlidingWindowPattern {
                period: Some(n),
                dense_first,
                layers: None,
                source: PatternSource::ArchitectureDefault,
            }),
        }
    }

    /// The tensor type holding the most bytes among matrices (2+ dims):
    /// the quantization a file without `general.file_type` effectively has.
    fn dominant_type(&self) -> Option<GgmlType> {
        let mut by_type: BTreeMap<GgmlType, u64> = BTreeMap::new();
        for t in self.tensors.iter().filter(|t| t.dims.len() >= 2) {
            *by_type.entry(t.ggml_type).or_default() += t.n_bytes;
        }
        by_type.into_iter().max_by_key(|(_, b)| *b).map(|(t, _)| t)
    }

    /// Bytes of all tensor data: the weights' size in memory.
    pub fn tensor_bytes_total(&self) -> u64 {
        self.tensors.iter().map(|t| t.n_bytes).fold(0, u64::saturating_add)
    }

    /// Bytes of the tensors of layer `layer` (`blk.{layer}.*`): what
    /// offloading that layer to the GPU costs.
    pub fn layer_tensor_bytes(&self, layer: u64) -> u64 {
        self.tensors
            .iter()
            .filter(|t| t.layer() == Some(layer))
            .map(|t| t.n_bytes)
            .fold(0, u64::saturating_add)
    }

    /// Bytes of tensors outside any layer (embeddings, output head, norms).
    pub fn non_layer_tensor_bytes(&self) -> u64 {
        self.tensors
            .iter()
            .filter(|t| t.layer().is_none())
            .map(|t| t.n_bytes)
            .fold(0, u64::saturating_add)
    }

    /// KV heads of `layer`, if known.
    pub fn head_count_kv_for_layer(&self, layer: u64) -> Option<u64> {
        self.head_count_kv.as_ref()?.for_layer(layer)
    }

    /// Attention heads of `layer`, if known.
    pub fn head_count_for_layer(&self, layer: u64) -> Option<u64> {
        self.head_count.as_ref()?.for_layer(layer)
    }

    /// True when `layer` uses sliding-window attention (false when the
    /// model has no sliding window or its pattern is unknown).
    pub fn is_sliding_window_layer(&self, layer: u64) -> bool {
        self.sliding_window_pattern
            .as_ref()
            .is_some_and(|p| p.is_sliding(layer))
    }
}
