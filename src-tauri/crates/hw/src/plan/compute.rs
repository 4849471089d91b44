//! Compute (scratch) buffers and fixed overheads: the parts of llama.cpp's
//! memory that are not weights or KV cache.
//!
//! llama.cpp sizes each backend's compute buffer by allocating a worst-case
//! graph: one micro-batch of `n_ubatch` tokens, all of them producing logits.
//! The buffer is the peak of tensors alive at once, and two stages compete for
//! that peak: the output stage (normed hidden state + logits, `n_ubatch ×
//! (n_embd + n_vocab)` floats) and a layer's feed-forward stage. With flash
//! attention (llama.cpp's default wherever the backend has it) the attention
//! scores are never materialised, so the context length barely matters here.
//!
//! On a GPU the whole buffer is committed at load. In RAM only the pages that a
//! graph touches become resident: the engine asks for the logits of the last
//! token only, so the `n_ubatch × n_vocab` logits block is reserved address
//! space that real use never touches. The CPU estimates below are what becomes
//! resident, calibrated against measurements of SmolLM2-135M and Gemma 3 270M
//! (`tests/memory_accuracy.rs`).

use super::model::ModelFacts;

const F32: u64 = 4;
const MIB: u64 = 1024 * 1024;

/// A GPU's own fixed cost once llama.cpp uses it: the CUDA context, cuBLAS
/// workspace and the allocator's slack. Typical CUDA 12 contexts take
/// 250-400 MiB with lazy module loading.
pub(crate) const GPU_CONTEXT_BYTES: u64 = 384 * MIB;

/// The process's fixed growth when a model is loaded on the CPU: llama.cpp's
/// backend and thread pool, the GGUF metadata and tensor descriptors, the
/// chat/sampler state. Calibrated (see the module docs).
pub(crate) const CPU_BASE_BYTES: u64 = 8 * MIB;

/// Resident bytes per vocabulary entry: the tokenizer's token strings, maps
/// and scores (llama.cpp's `llama_vocab`), and the metadata array they are
/// read from. Calibrated.
pub(crate) const CPU_BYTES_PER_TOKEN: u64 = 100;

/// The output stage of the worst-case graph: logits for every token of the
/// micro-batch plus the hidden state, its norm and the residual
/// (`n_ubatch × (n_vocab + 3 n_embd)` floats). Against llama.cpp's logged CPU
/// compute buffers: SmolLM2-135M 99.4 MiB + masks vs 102.14 MiB logged at
/// n_ctx 512; Gemma 3 270M 515.8 MiB + masks vs 519.28 MiB.
fn output_stage(f: &ModelFacts, n_ubatch: u64) -> u64 {
    n_ubatch * F32 * (f.n_vocab + 3 * f.n_embd)
}

/// Bytes a layer's feed-forward stage keeps alive: the residual stream and the
/// normed input (`n_embd` each) and the gate, up and activated vectors (`n_ff`
/// each), per token.
fn layer_stage(f: &ModelFacts, n_ubatch: u64) -> u64 {
    n_ubatch * F32 * (2 * f.n_embd + 3 * f.n_ff)
}

/// The attention masks (f16 with flash attention): one row per token of the
/// micro-batch and one column per KV cell, for each cache (an iSWA model has
/// a full and a sliding-window cache). `mask_cells` sums the caches' cells.
/// This is what makes llama.cpp's compute buffer grow with the context:
/// Gemma 3 270M logs 519.28 MiB at n_ctx 512 and 582.28 MiB at 32768.
fn masks(n_ubatch: u64, mask_cells: u64) -> u64 {
    n_ubatch * mask_cells * 2
}

/// Small graph inputs and alignment (positions, output ids, padding): what
/// remains between the terms above and llama.cpp's logged sizes.
const GRAPH_SLACK: u64 = 2 * MIB;

/// The buffer llama.cpp reserves for the worst-case graph on a backend.
fn reserved(f: &ModelFacts, n_ubatch: u64, mask_cells: u64, holds_output: bool) -> u64 {
    let stage = if holds_output {
        output_stage(f, n_ubatch).max(layer_stage(f, n_ubatch))
    } else {
        layer_stage(f, n_ubatch)
    };
    stage + masks(n_ubatch, mask_cells) + GRAPH_SLACK
}

/// A GPU's compute buffer: committed in full at load. `holds_output` when the
/// output layer is on this GPU (llama.cpp offloads it first), `cpu_has_layers`
/// when some layers stay on the CPU: llama.cpp then copies a CPU-resident
/// weight matrix into this buffer to run large batches on the GPU.
pub(crate) fn gpu_compute(
    f: &ModelFacts,
    n_ubatch: u64,
    mask_cells: u64,
    holds_output: bool,
    cpu_has_layers: bool,
) -> u64 {
    let weight_copy = if cpu_has_layers { f.max_layer_tensor_bytes } else { 0 };
    reserved(f, n_ubatch, mask_cells, holds_output) + weight_copy
}

/// What llama.cpp reserves for the CPU compute buffer (address space; for
/// the explanation).
pub(crate) fn cpu_compute_reserved(f: &ModelFacts, n_ubatch: u64, mask_cells: u64, holds_output: bool) -> u64 {
    reserved(f, n_ubatch, mask_cells, holds_output)
}

/// Resident RAM of the CPU's compute and output buffers in real use: one
/// micro-batch of activations through a layer, and logits for one token.
pub(crate) fn cpu_compute_resident(f: &ModelFacts, n_ubatch: u64, holds_output: bool, has_layers: bool) -> u64 {
    let activations = if has_layers {
        layer_stage(f, n_ubatch)
    } else {
        n_ubatch * F32 * f.n_embd
    };
    let logits = if holds_output {
        f.n_vocab * F32 * 2
    } else {
        f.n_vocab * F32
    };
    activations + logits
}

/// The process's fixed growth in RAM.
pub(crate) fn cpu_overhead(f: &ModelFacts) -> u64 {
    CPU_BASE_BYTES + CPU_BYTES_PER_TOKEN * f.n_vocab
}
