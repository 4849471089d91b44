//! From a prompt's tokens to a sequence's cache: the cached prefix a new prompt shares
//! kept, and a token laid in a batch (`chat_format` writes and tokenizes prompts).

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::token::LlamaToken;

use crate::EngineError;

/// Keeps the KV cache of the longest prefix a prompt of `tokens` shares with `cached`
/// (what sequence `seq` holds, from position 0) and removes the rest; returns how many
/// prompt tokens are reused. The one rule for one sequence and many: the last prompt
/// token is always evaluated (its logits start the reply), and with a sliding window
/// the prefix is kept only if the positions the window dropped are not needed.
pub(crate) fn keep_prefix(
    ctx: &mut LlamaContext,
    seq: i32,
    cached: &mut Vec<LlamaToken>,
    tokens: &[LlamaToken],
    n_swa: u32,
) -> usize {
    let seq_id = u32::try_from(seq).unwrap_or(0);
    let common = cached.iter().zip(tokens).take_while(|(a, b)| a == b).count();
    let mut keep = common.min(tokens.len() - 1);
    if keep < cached.len()
        && !ctx
            .clear_kv_cache_seq(Some(seq_id), Some(to_u32(keep)), None)
            .unwrap_or(false)
    {
        keep = 0;
    }
    // With a sliding window, positions before (keep - window) are gone from the SWA
    // layers; continuing from `keep` is only valid if they were never needed.
    if keep > 0 && n_swa > 0 {
        let pos_min = ctx.kv_cache_seq_pos_min(seq);
        let window_start = keep.saturating_sub(n_swa as usize);
        if pos_min > 0 && usize::try_from(pos_min).unwrap_or(usize::MAX) > window_start {
            keep = 0;
        }
    }
    if keep == 0 {
        ctx.clear_kv_cache_seq(Some(seq_id), None, None).ok();
    }
    cached.truncate(keep);
    keep
}

/// Adds `token` at `pos` of sequence `seq` to `batch`, with logits when `logits`.
pub(crate) fn add_token(
    batch: &mut LlamaBatch,
    token: LlamaToken,
    pos: usize,
    seq: i32,
    logits: bool,
) -> Result<(), EngineError> {
    let pos = i32::try_from(pos).map_err(|_| EngineError::DecodeFailed("position overflow".into()))?;
    batch
        .add(token, pos, &[seq], logits)
        .map_err(|e| EngineError::DecodeFailed(format!("batch: {e}")))
}

pub(crate) fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}
