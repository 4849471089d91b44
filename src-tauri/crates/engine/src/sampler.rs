//! Builds llama.cpp's sampler chain from Hearth's sampling parameters, in the
//! order llama.cpp's own common sampler uses: logit bias → penalties → top-k → top-p →
//! min-p → temperature → draw. Temperature 0 is plain greedy (argmax), so a run is
//! exactly reproducible.

use hearth_core::{SamplingParams, SamplingParamsError};
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::logit_bias::LlamaLogitBias;
use llama_cpp_2::token::LlamaToken;

use crate::EngineError;

/// The chain for `params`; a logit bias for a token the model does not have is an
/// error (llama.cpp would index past its vocabulary).
pub(crate) fn build_sampler(params: &SamplingParams, model: &LlamaModel) -> Result<LlamaSampler, EngineError> {
    let n_vocab = model.n_vocab();
    let mut chain = Vec::new();
    if !params.logit_bias.is_empty() {
        if let Some(&(token, _)) = params.logit_bias.iter().find(|(token, _)| *token >= n_vocab) {
            return Err(EngineError::InvalidSampling(SamplingParamsError {
                field: "logit_bias",
                value: token.to_string(),
                expected: "a token id the model has (its vocabulary's size is the limit)",
            }));
        }
        let biases: Vec<LlamaLogitBias> = params
            .logit_bias
            .iter()
            .map(|&(token, bias)| LlamaLogitBias::new(LlamaToken(token), bias))
            .collect();
        chain.push(LlamaSampler::logit_bias(n_vocab, &biases));
    }
    let penalised = (params.repeat_penalty - 1.0).abs() > f32::EPSILON
        || params.frequency_penalty != 0.0
        || params.presence_penalty != 0.0;
    if penalised {
        chain.push(LlamaSampler::penalties(
            n_vocab,
            params.repeat_last_n,
            params.repeat_penalty,
            params.frequency_penalty,
            params.presence_penalty,
        ));
    }
    if params.temperature <= 0.0 {
        chain.push(LlamaSampler::greedy());
    } else {
        if params.top_k > 0 {
            chain.push(LlamaSampler::top_k(params.top_k));
        }
        if params.top_p < 1.0 {
            chain.push(LlamaSampler::top_p(params.top_p, 1));
        }
        if params.min_p > 0.0 {
            chain.push(LlamaSampler::min_p(params.min_p, 1));
        }
        chain.push(LlamaSampler::temp(params.temperature));
        chain.push(LlamaSampler::dist(params.seed));
    }
    Ok(LlamaSampler::chain_simple(chain))
}
