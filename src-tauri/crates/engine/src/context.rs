//! How big the KV cache is, and how it grows.
//!
//! llama.cpp allocates (and zero-fills) the whole KV cache when a context is made, so
//! a 4096-token context for SmolLM2 holds 90 MB from the moment the model loads, even
//! for a chat of three lines. Hearth starts smaller and grows the context when a
//! request needs more room, up to the size the user chose (the ceiling, which the
//! fit planner sized and every limit check uses). Growing copies the cached
//! conversation into the new context (llama.cpp's sequence state), so nothing is
//! evaluated again.

use std::num::NonZeroU32;

use llama_cpp_2::context::params::LlamaContextParams;

/// What the engine allocates at load when the ceiling is larger: enough for most
/// chats (a system prompt, a few turns and a 512-token reply).
pub const INITIAL_CONTEXT: u32 = 2048;

/// llama.cpp rounds every context up to a multiple of this many tokens.
const LLAMA_CTX_PAD: u32 = 256;

/// The size llama.cpp will really allocate for a request of `n` tokens.
pub(crate) fn padded(n: u32) -> u32 {
    n.max(1).div_ceil(LLAMA_CTX_PAD).saturating_mul(LLAMA_CTX_PAD)
}

/// The context allocated at load. With layers on a GPU it is the whole context: the
/// fit planner reserved that VRAM, and growing would need the old and the new cache
/// in VRAM at once for a moment.
pub(crate) fn initial_size(initial: u32, ceiling: u32, n_gpu_layers: u32) -> u32 {
    if n_gpu_layers > 0 {
        ceiling
    } else {
        padded(initial).min(ceiling)
    }
}

/// The next context size for a request needing `wanted` tokens (prompt + reply), or
/// `None` when `current` already holds it. Doubling keeps regrowth rare; the ceiling
/// is never passed.
pub(crate) fn next_size(current: u32, wanted: u32, ceiling: u32) -> Option<u32> {
    let wanted = wanted.min(ceiling);
    (wanted > current).then(|| current.saturating_mul(2).max(padded(wanted)).min(ceiling))
}

/// Everything about a context except its size, so it can be made again larger.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ContextShape {
    pub n_batch: u32,
    pub threads: u32,
    pub threads_batch: u32,
}

impl ContextShape {
    pub(crate) fn params(&self, n_ctx: u32) -> LlamaContextParams {
        let n_batch = self.n_batch.min(n_ctx);
        LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(n_ctx))
            .with_n_batch(n_batch)
            .with_n_ubatch(n_batch)
            .with_n_threads(i32::try_from(self.threads).unwrap_or(4))
            .with_n_threads_batch(i32::try_from(self.threads_batch).unwrap_or(4))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_padded_like_llama_cpp() {
        assert_eq!(padded(1), 256);
        assert_eq!(padded(256), 256);
        assert_eq!(padded(257), 512);
        assert_eq!(padded(4000), 4096);
        assert_eq!(padded(0), 256);
    }

    #[test]
    fn the_cache_starts_small_on_the_cpu_and_whole_on_a_gpu() {
        assert_eq!(initial_size(2048, 4096, 0), 2048);
        assert_eq!(initial_size(2048, 1024, 0), 1024);
        assert_eq!(initial_size(2000, 8192, 0), 2048);
        assert_eq!(initial_size(2048, 4096, 1), 4096);
    }

    #[test]
    fn a_context_that_holds_the_request_is_kept() {
        assert_eq!(next_size(2048, 2048, 4096), None);
        assert_eq!(next_size(2048, 100, 4096), None);
        // Asking for more than the ceiling cannot grow a full-size context.
        assert_eq!(next_size(4096, 9000, 4096), None);
    }

    #[test]
    fn growth_doubles_reaches_the_request_and_stops_at_the_ceiling() {
        assert_eq!(next_size(2048, 2049, 8192), Some(4096));
        assert_eq!(next_size(2048, 6000, 8192), Some(6144));
        assert_eq!(next_size(2048, 3000, 3072), Some(3072));
        assert_eq!(next_size(256, u32::MAX, 32768), Some(32768));
    }
}
