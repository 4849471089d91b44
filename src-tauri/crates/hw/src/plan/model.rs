//! What the planner needs from a GGUF header, in llama.cpp's terms: bytes of
//! each layer's weights, the KV cache a layer needs per token, and the sizes
//! that drive the compute buffers.

use hearth_gguf::{GgmlType, GgufInfo};
use serde::{Deserialize, Serialize};

/// The KV cache's element type (llama.cpp's `type_k`/`type_v`, both the same
/// here). Quantized caches need flash attention, which llama.cpp turns on by
/// itself where the backend supports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum KvCacheType {
    #[default]
    F16,
    Q8_0,
    Q4_0,
}

impl KvCacheType {
    pub const ALL: [KvCacheType; 3] = [KvCacheType::F16, KvCacheType::Q8_0, KvCacheType::Q4_0];

    pub fn name(self) -> &'static str {
        match self {
            KvCacheType::F16 => "f16",
            KvCacheType::Q8_0 => "q8_0",
            KvCacheType::Q4_0 => "q4_0",
        }
    }

    pub fn ggml_type(self) -> GgmlType {
        match self {
            KvCacheType::F16 => GgmlType::F16,
            KvCacheType::Q8_0 => GgmlType::Q8_0,
            KvCacheType::Q4_0 => GgmlType::Q4_0,
        }
    }

    /// Bytes of `n` elements; rows whose length is not a multiple of the
    /// 32-element block cannot be quantized by llama.cpp, which then refuses
    /// the context, so they count as f16 here (an over- not under-estimate).
    pub fn bytes(self, n: u64) -> u64 {
        self.ggml_type().bytes_for(n).unwrap_or(n.saturating_mul(2))
    }
}

impl std::str::FromStr for KvCacheType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        KvCacheType::ALL
            .into_iter()
            .find(|t| t.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unknown KV cache type {s:?}: use f16, q8_0 or q4_0"))
    }
}

impl std::fmt::Display for KvCacheType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The model facts the estimates use.
#[derive(Debug, Clone)]
pub(crate) struct ModelFacts {
    pub name: String,
    pub n_layer: u32,
    pub n_ctx_train: Option<u32>,
    pub n_embd: u64,
    pub n_ff: u64,
    pub n_vocab: u64,
    pub parameter_count: u64,
    /// Bytes of `blk.{i}.*` for each layer.
    pub layer_weights: Vec<u64>,
    /// K and V elements per token for each layer (KV heads × key/value length):
    /// grouped-query attention shrinks the cache by heads / KV heads.
    pub layer_kv_elements: Vec<(u64, u64)>,
    /// True for sliding-window layers.
    pub layer_swa: Vec<bool>,
    pub sliding_window: u64,
    /// `token_embd.weight`: always kept in RAM (llama.cpp never offloads the input layer).
    pub token_embd_bytes: u64,
    /// The output layer's weights (`output.weight`, `output_norm`); with tied
    /// embeddings (no `output.weight`) a GPU holding the output needs its own
    /// copy of `token_embd`, counted here too.
    pub output_bytes_gpu: u64,
    /// The same on the CPU, where a tied output shares `token_embd`.
    pub output_bytes_cpu: u64,
    /// Other non-layer tensors (positional embeddings, rope factors...), kept in RAM.
    pub other_bytes: u64,
    /// Bytes of each layer's matrices that llama.cpp's CPU backend repacks
    /// into its interleaved layout (a copy in anonymous memory; see
    /// [`repacked_types`]). Zero when the layer's types are not repacked here.
    pub layer_repack: Vec<u64>,
    /// The same for `output.weight` (a tied output shares `token_embd`, which
    /// is looked up by row and never repacked).
    pub output_repack: u64,
    /// The largest single weight matrix in a layer: llama.cpp copies a
    /// CPU-resident matrix into the GPU's compute buffer to run big batches there.
    pub max_layer_tensor_bytes: u64,
}

impl ModelFacts {
    /// `simd` is the CPU's extensions ([`crate::CpuInfo::simd`]): they decide
    /// which weights the CPU backend repacks.
    pub(crate) fn from_info(info: &GgufInfo, simd: &[String]) -> ModelFacts {
        let repack = repacked_types(simd);
        let repacked = |t: &hearth_gguf::TensorInfo| {
            let rows_ok = t.dims.len() >= 2 && t.dims[1].is_multiple_of(8);
            if rows_ok && repack.contains(&t.ggml_type) {
                t.n_bytes
            } else {
                0
            }
        };
        let n_layer = info.block_count.unwrap_or(0);
        let n_embd = info.embedding_length.unwrap_or(0);
        let layers: Vec<u64> = (0..n_layer).collect();
        let kv = layers
            .iter()
            .map(|&l| {
                let kv_heads = info
                    .head_count_kv_for_layer(l)
                    .or(info.head_count_for_layer(l))
                    .unwrap_or(0);
                let k = kv_heads.saturating_mul(info.key_length.unwrap_or(0));
                let v = kv_heads.saturating_mul(info.value_length.unwrap_or(0));
                (k, v)
            })
            .collect();
        let bytes_of = |name: &str| info.tensors.iter().find(|t| t.name == name).map(|t| t.n_bytes);
        let token_embd = bytes_of("token_embd.weight").unwrap_or(0);
        let output_norm = bytes_of("output_norm.weight").unwrap_or(0);
        let (output_gpu, output_cpu) = match bytes_of("output.weight") {
            Some(out) => (out + output_norm, out + output_norm),
            None => (token_embd + output_norm, output_norm),
        };
        let other = info
            .non_layer_tensor_bytes()
            .saturating_sub(token_embd + output_norm + bytes_of("output.weight").unwrap_or(0));
        let max_tensor = info
            .tensors
            .iter()
            .filter(|t| t.layer().is_some())
            .map(|t| t.n_bytes)
            .max()
            .unwrap_or(0);
        ModelFacts {
            name: info
                .name
                .clone()
                .or_else(|| info.path.file_name().map(|n| n.to_string_lossy().into_owned()))
                .unwrap_or_else(|| "model".to_string()),
            n_layer: u32::try_from(n_layer).unwrap_or(u32::MAX),
            n_ctx_train: info
                .context_length
                .and_then(|c| u32::try_from(c).ok())
                .filter(|c| *c > 0),
            n_embd,
            n_ff: info.feed_forward_length.as_ref().map_or(4 * n_embd, |f| f.max()),
            n_vocab: info.vocab_size.unwrap_or(0),
            parameter_count: info.parameter_count,
            layer_weights: layers.iter().map(|&l| info.layer_tensor_bytes(l)).collect(),
            layer_kv_elements: kv,
            layer_swa: layers.iter().map(|&l| info.is_sliding_window_layer(l)).collect(),
            layer_repack: layers
                .iter()
                .map(|&l| info.tensors.iter().filter(|t| t.layer() == Some(l)).map(repacked).sum())
                .collect(),
            output_repack: info
                .tensors
                .iter()
                .find(|t| t.name == "output.weight")
                .map_or(0, repacked),
            sliding_window: info.sliding_window.unwrap_or(0),
            token_embd_bytes: token_embd,
            output_bytes_gpu: output_gpu,
            output_bytes_cpu: output_cpu,
            other_bytes: other,
            max_layer_tensor_bytes: max_tensor,
        }
    }

    /// Weights of all repeating layers plus the non-layer tensors.
    pub(crate) fn total_weights(&self) -> u64 {
        self.layer_weights.iter().sum::<u64>() + self.token_embd_bytes + self.output_bytes_cpu + self.other_bytes
    }
}

/// Weight types GGML's CPU backend repacks for this CPU
/// (`ggml_repack_get_optimal_repack_type` in ggml-cpu/repack.cpp): their
/// matrices get an interleaved copy in anonymous memory, while the mmapped
/// file pages they were read from stay resident until the kernel needs the
/// memory (they are clean page cache, so they count in RSS but not against
/// what is available).
pub(crate) fn repacked_types(simd: &[String]) -> Vec<GgmlType> {
    let has = |f: &str| simd.iter().any(|s| s == f);
    if has("avx2") {
        let mut types = vec![GgmlType::Q4_0, GgmlType::Q4_K, GgmlType::IQ4_NL, GgmlType::MXFP4];
        if has("avx512f") {
            types.push(GgmlType::Q2_K);
        }
        types
    } else if has("neon") && (has("dotprod") || has("i8mm")) {
        vec![
            GgmlType::Q4_0,
            GgmlType::Q4_K,
            GgmlType::Q5_K,
            GgmlType::Q6_K,
            GgmlType::Q8_0,
            GgmlType::IQ4_NL,
            GgmlType::MXFP4,
        ]
    } else {
        Vec::new()
    }
}

/// llama.cpp rounds the context up to a multiple of 256 cells.
pub(crate) const CTX_PAD: u32 = 256;

pub(crate) fn pad(n: u64, to: u64) -> u64 {
    n.div_ceil(to) * to
}

/// KV cells each layer holds, as llama.cpp sizes them (`llama_kv_cache_iswa`):
/// full-attention layers hold the whole (padded) context; sliding-window
/// layers hold `window + n_ubatch` rounded up to 256, at most the context,
/// unless `swa_full` (llama.cpp's default) gives them the full size too.
pub(crate) fn layer_cells(facts: &ModelFacts, n_ctx_padded: u64, n_ubatch: u64, swa_full: bool) -> Vec<u64> {
    let swa_cells = pad(facts.sliding_window + n_ubatch, u64::from(CTX_PAD)).min(n_ctx_padded);
    facts
        .layer_swa
        .iter()
        .map(|&swa| {
            if swa && !swa_full && facts.sliding_window > 0 {
                swa_cells
            } else {
                n_ctx_padded
            }
        })
        .collect()
}

/// Bytes of KV cache for each layer.
pub(crate) fn layer_kv_bytes(facts: &ModelFacts, cells: &[u64], kv: KvCacheType) -> Vec<u64> {
    facts
        .layer_kv_elements
        .iter()
        .zip(cells)
        .map(|(&(k, v), &c)| kv.bytes(k.saturating_mul(c)) + kv.bytes(v.saturating_mul(c)))
        .collect()
}
