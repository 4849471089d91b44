//! Scoring a fixed token sequence: the logits at every position from a given one on, from
//! an empty cache (what perplexity and KL divergence are computed from). The cache holds
//! no conversation afterwards.

use std::sync::mpsc::SyncSender;

use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::token::LlamaToken;

use super::{add_token, Session};

impl Session<'_> {
    /// Evaluates `tokens` from position 0 and sends the logits of each position from
    /// `from` on, in order. Stops early when the receiver hangs up (a cancel).
    pub(crate) fn score(&mut self, tokens: &[i32], from: usize, out: &SyncSender<Result<Vec<f32>, String>>) {
        self.reset();
        if let Err(e) = self.score_into(tokens, from, out) {
            let _ = out.send(Err(e));
        }
        self.reset();
    }

    fn score_into(
        &mut self,
        tokens: &[i32],
        from: usize,
        out: &SyncSender<Result<Vec<f32>, String>>,
    ) -> Result<(), String> {
        let wanted = u32::try_from(tokens.len()).map_err(|_| "too many tokens".to_owned())?;
        if wanted > self.growth.ceiling {
            return Err(format!(
                "a window of {wanted} tokens does not fit the context of {} tokens: load the model with a larger context",
                self.growth.ceiling
            ));
        }
        self.make_room(wanted).map_err(|e| e.to_string())?;
        let n_batch = self.ctx.n_batch() as usize;
        let mut batch = LlamaBatch::new(n_batch, 1);
        for (chunk_index, chunk) in tokens.chunks(n_batch).enumerate() {
            let start = chunk_index * n_batch;
            batch.clear();
            for (i, &token) in chunk.iter().enumerate() {
                add_token(&mut batch, LlamaToken(token), start + i, start + i >= from).map_err(|e| e.to_string())?;
            }
            self.ctx
                .decode(&mut batch)
                .map_err(|e| format!("evaluation failed: {e}"))?;
            for i in 0..chunk.len() {
                if start + i < from {
                    continue;
                }
                let row = i32::try_from(i).map_err(|_| "batch row overflow".to_owned())?;
                if out.send(Ok(self.ctx.get_logits_ith(row).to_vec())).is_err() {
                    return Ok(());
                }
            }
        }
        Ok(())
    }
}
