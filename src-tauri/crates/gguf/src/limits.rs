//! Hyperparameters no model has, refused before llama.cpp sees the file.
//!
//! llama.cpp trusts the header's hyperparameters and checks many of them with
//! `GGML_ASSERT`, which aborts the whole process: a file whose `block_count` is 0, or
//! that claims a million experts or an unknown RoPE scaling, kills whatever loaded it
//! (`llama_model_base::load_hparams`). These are refused here with
//! [`GgufError::Invalid`], naming the key and its value, so the user hears what is
//! wrong with the file instead of seeing a crash.
//!
//! Only values that are present, as unsigned integers, are checked: a missing key, or
//! one of the wrong type, llama.cpp reports itself with an error it recovers from.
//! Every bound is far above the published models. Where llama.cpp has a hard limit of
//! its own (`LLAMA_MAX_LAYERS`, `LLAMA_MAX_EXPERTS` in `src/llama-hparams.h`, asserted
//! at load) the bound is that limit, since a file beyond it cannot run whatever else it
//! holds; these follow the llama.cpp that llama-cpp-sys-2 builds, so raise them with it.

use crate::error::GgufError;
use crate::info::GgufInfo;
use crate::metadata::MetaValue;

/// Most layers (`{arch}.block_count`): llama.cpp's `LLAMA_MAX_LAYERS`. The deepest
/// published models have about 130 (Llama 3.1 405B: 126).
pub const MAX_BLOCK_COUNT: u64 = 512;
/// Most experts (`{arch}.expert_count`): llama.cpp's `LLAMA_MAX_EXPERTS`. The largest
/// published mixtures have 384 (Kimi K2) to 512 (Qwen3-Next).
pub const MAX_EXPERT_COUNT: u64 = 1024;
/// Longest trained context (`{arch}.context_length`), 2^27 tokens: 13 times the
/// longest published one (Llama 4 Scout: 10M). llama.cpp does not assert on it, but
/// Hearth sizes contexts and KV caches from it, and a header claiming 2^32 tokens
/// means damage, not a model.
pub const MAX_CONTEXT_LENGTH: u64 = 1 << 27;
/// Widest embedding (`{arch}.embedding_length`), 2^20: 64 times the widest published
/// models (Llama 3.1 405B: 16,384). Every activation and KV size is a multiple of it.
pub const MAX_EMBEDDING_LENGTH: u64 = 1 << 20;
/// The RoPE scalings llama.cpp knows (`LLAMA_ROPE_SCALING_TYPES`); any other name
/// fails an assertion at load.
pub const ROPE_SCALING_TYPES: [&str; 4] = ["none", "linear", "yarn", "longrope"];

/// What is wrong: the full key, and a sentence naming it and its value.
struct Problem {
    key: String,
    detail: String,
}

/// `Some` problem with `{arch}.{suffix}`: the detail is the key followed by `what`.
fn problem(arch: &str, suffix: &str, what: impl std::fmt::Display) -> Option<Problem> {
    let key = format!("{arch}.{suffix}");
    Some(Problem {
        detail: format!("{key} {what}"),
        key,
    })
}

/// Refuses hyperparameters that no model has or that llama.cpp cannot load.
pub(crate) fn check(info: &GgufInfo) -> Result<(), GgufError> {
    let Some(arch) = info.architecture.as_deref() else {
        return Ok(());
    };
    let found = layers(info, arch)
        .or_else(|| context(info, arch))
        .or_else(|| embedding(info, arch))
        .or_else(|| experts(info, arch))
        .or_else(|| rope_scaling(info, arch));
    match found {
        None => Ok(()),
        Some(Problem { key, detail }) => Err(GgufError::Invalid {
            path: info.path.clone(),
            key,
            detail,
        }),
    }
}

// Each check below answers `None` when its key is absent (`?` on the value).

fn layers(info: &GgufInfo, arch: &str) -> Option<Problem> {
    let n = info.block_count?;
    if n == 0 {
        return problem(arch, "block_count", "is 0, and a model has at least one layer");
    }
    if n > MAX_BLOCK_COUNT {
        return problem(
            arch,
            "block_count",
            format!("is {n}, more than the {MAX_BLOCK_COUNT} layers llama.cpp can load (the deepest published models have about 130)"),
        );
    }
    // Multi-token prediction layers are counted among the blocks (asserted).
    let nextn = info.arch_u64("nextn_predict_layers")?;
    if nextn <= n {
        return None;
    }
    problem(
        arch,
        "nextn_predict_layers",
        format!("is {nextn}, more than the model's {n} layers"),
    )
}

fn context(info: &GgufInfo, arch: &str) -> Option<Problem> {
    let n = info.context_length?;
    if n == 0 {
        return problem(arch, "context_length", "is 0, and a model reads at least one token");
    }
    if n <= MAX_CONTEXT_LENGTH {
        return None;
    }
    problem(
        arch,
        "context_length",
        format!("is {n} tokens, far beyond any model (the longest published context is 10 million; at most {MAX_CONTEXT_LENGTH} accepted)"),
    )
}

fn embedding(info: &GgufInfo, arch: &str) -> Option<Problem> {
    let n = info.embedding_length?;
    if n == 0 {
        return problem(
            arch,
            "embedding_length",
            "is 0, and a model's embeddings have at least one dimension",
        );
    }
    if n <= MAX_EMBEDDING_LENGTH {
        return None;
    }
    problem(
        arch,
        "embedding_length",
        format!(
            "is {n}, far beyond any model (the widest published are 16,384; at most {MAX_EMBEDDING_LENGTH} accepted)"
        ),
    )
}

/// llama.cpp's assertions on mixtures of experts, in its order.
fn experts(info: &GgufInfo, arch: &str) -> Option<Problem> {
    let mut n = info.arch_u64("expert_count").unwrap_or(0);
    // The largest count over the layers (a count may be given per layer).
    let mut used = info.arch_per_layer("expert_used_count").map_or(0, |u| u.max());
    // llama.cpp reads Hunyuan's dense models' single "expert" as none.
    if matches!(arch, "hunyuan-dense" | "hunyuan_vl") && n <= 1 {
        (n, used) = (0, 0);
    }
    let groups = info.arch_u64("expert_group_count").unwrap_or(0);
    let groups_used = info.arch_u64("expert_group_used_count").unwrap_or(0);
    if n > MAX_EXPERT_COUNT {
        return problem(
            arch,
            "expert_count",
            format!("is {n}, more than the {MAX_EXPERT_COUNT} experts llama.cpp can load (the largest published mixtures have 512)"),
        );
    }
    if used > n {
        return problem(
            arch,
            "expert_used_count",
            format!("is {used}, more than the {n} experts the model has ({arch}.expert_count)"),
        );
    }
    if n > 0 && used == 0 {
        return problem(
            arch,
            "expert_used_count",
            format!("is 0 or missing, but the model has {n} experts and each token must use at least one"),
        );
    }
    if groups > 0 && groups >= n {
        return problem(
            arch,
            "expert_group_count",
            format!("is {groups}, not fewer than the model's {n} experts"),
        );
    }
    if groups > 1 && n % groups != 0 {
        return problem(
            arch,
            "expert_group_count",
            format!("is {groups}, which does not divide the model's {n} experts"),
        );
    }
    if groups <= 1 || (1..groups).contains(&groups_used) {
        return None;
    }
    problem(
        arch,
        "expert_group_used_count",
        format!(
            "is {groups_used}, but with {groups} expert groups it must be 1 to {}",
            groups - 1
        ),
    )
}

fn rope_scaling(info: &GgufInfo, arch: &str) -> Option<Problem> {
    let what = match info.arch_get("rope.scaling.type")? {
        MetaValue::String(name) if ROPE_SCALING_TYPES.contains(&name.as_str()) => return None,
        MetaValue::String(name) => format!("is '{name}'"),
        MetaValue::LongString { len } => format!("is a {len}-byte string"),
        // Another type: llama.cpp refuses it with an error it recovers from.
        _ => return None,
    };
    problem(
        arch,
        "rope.scaling.type",
        format!("{what}, which llama.cpp does not know (it knows none, linear, yarn and longrope)"),
    )
}
