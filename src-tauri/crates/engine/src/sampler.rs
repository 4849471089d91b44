//! Builds llama.cpp's sampler chain from Hearth's sampling parameters, in the
//! order llama.cpp's own common sampler uses: penalties → top-k → top-p → min-p →
//! temperature → draw. Temperature 0 is plain greedy (argmax), so a run is exactly
//! reproducible.

use hearth_core::SamplingParams;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;

pub(crate) fn build_sampler(params: &SamplingParams, model: &LlamaModel) -> LlamaSampler {
    let mut chain = Vec::new();
    if (params.repeat_penalty - 1.0).abs() > f32::EPSILON {
        chain.push(LlamaSampler::penalties(
            model.n_vocab(),
            params.repeat_last_n,
            params.repeat_penalty,
            0.0,
            0.0,
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
    LlamaSampler::chain_simple(chain)
}
