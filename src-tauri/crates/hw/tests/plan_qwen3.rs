//! The fit planner on recorded hardware profiles (`tests/profiles/*.json`)
//! with the architecture of Qwen3-14B at Q4_K_M and Q5_K_M, against a hand
//! calculation written out below. The GGUF headers are built by the gguf
//! crate's builder: real shapes and types, no weights.
//!
//! Qwen3-14B: 40 layers, n_embd 5120, n_ff 17408, 40 heads, 8 KV heads,
//! head dim 128, vocabulary 151,936. K-quant blocks hold 256 weights:
//! Q4_K 144 bytes, Q5_K 176 bytes, Q6_K 210 bytes.
//!
//! Weights of one layer (matrices in the layer's type, norms in f32):
//!   attn_q, attn_output  5120×5120  = 26,214,400 weights = 102,400 blocks each
//!   attn_k, attn_v       5120×1024  =  5,242,880 weights =  20,480 blocks each
//!   ffn_gate/up/down     5120×17408 = 89,128,960 weights = 348,160 blocks each
//!   norms: attn_norm, ffn_norm 5120×4 B each, q_norm, k_norm 128×4 B each = 41,984 B
//!   blocks per layer = 2×102,400 + 2×20,480 + 3×348,160 = 1,290,240
//!   Q4_K: 1,290,240 × 144 + 41,984 = 185,836,544 B (177.2 MiB)
//!   Q5_K: 1,290,240 × 176 + 41,984 = 227,124,224 B (216.6 MiB)
//! Outside the layers: token_embd 5120×151,936 = 3,038,720 blocks
//!   (Q4_K 437,575,680 B; Q5_K 534,814,720 B), always in RAM;
//!   output.weight Q6_K 3,038,720 × 210 = 638,131,200 B + output_norm 20,480 B
//!   = 638,151,680 B, on the GPU first (llama.cpp offloads the output layer first).
//! KV cache (f16) per layer per token: 8 KV heads × 128 × (K + V) × 2 B = 4,096 B,
//!   so 16 MiB per layer at 4,096 tokens, 32 MiB at 8,192, 128 MiB at 32,768.
//! GPU compute buffer (n_ubatch 512, output on the GPU): 512 × 4 B ×
//!   (151,936 logits + 3 × 5,120) = 342,622,208 B, plus the f16 attention mask
//!   512 × n_ctx × 2 B, plus 2 MiB of graph inputs; with layers left on the CPU,
//!   plus one CPU matrix copied in for big batches (ffn, the largest:
//!   Q4_K 50,135,040 B, Q5_K 61,276,160 B).
//! GPU fixed overhead (CUDA context): 384 MiB. Headroom kept free: 512 MiB of
//!   VRAM, 1 GiB of RAM (PlanRequest's defaults).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use hearth_gguf::builder::{DecoderShape, GgufBuilder};
use hearth_gguf::{GgmlType, GgufInfo};
use hearth_hw::{plan, FitPlan, PlanRequest, Snapshot, Verdict};

const MIB: u64 = 1 << 20;
const LAYER_Q4: u64 = 1_290_240 * 144 + 41_984;
const LAYER_Q5: u64 = 1_290_240 * 176 + 41_984;
const OUTPUT: u64 = 3_038_720 * 210 + 20_480;
const KV_PER_TOKEN_LAYER: u64 = 8 * 128 * 2 * 2;
const GPU_OVERHEAD: u64 = 384 * MIB;
const GPU_HEADROOM: u64 = 512 * MIB;

fn gpu_compute(n_ctx: u64, cpu_has_layers: bool, ffn: u64) -> u64 {
    512 * 4 * (151_936 + 3 * 5120) + 512 * n_ctx * 2 + 2 * MIB + if cpu_has_layers { ffn } else { 0 }
}

fn qwen3(dir: &Path, q5: bool) -> GgufInfo {
    let mut shape = DecoderShape::qwen3_14b_q4_k_m();
    if q5 {
        shape.name = "Qwen3 14B Q5_K_M (synthetic)".into();
        shape.file_type = 17; // LLAMA_FTYPE_MOSTLY_Q5_K_M
        shape.weight_type = GgmlType::Q5_K;
        shape.embd_type = GgmlType::Q5_K;
    }
    let path = dir.join(if q5 {
        "qwen3-14b-q5_k_m.gguf"
    } else {
        "qwen3-14b-q4_k_m.gguf"
    });
    GgufBuilder::decoder(&shape).write(&path).expect("header written");
    hearth_gguf::read(&path).expect("header reads")
}

fn profile(name: &str) -> Snapshot {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/profiles")
        .join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path).expect("profile exists");
    serde_json::from_str(&text).expect("profile matches the snapshot schema")
}

fn run(info: &GgufInfo, hw: &str, n_ctx: u32) -> FitPlan {
    let p = plan(
        info,
        &PlanRequest {
            n_ctx,
            ..PlanRequest::default()
        },
        &profile(hw),
    );
    println!("--- {hw}, n_ctx {n_ctx}\n{}", p.explain());
    p
}

#[test]
fn the_builder_shapes_match_the_hand_calculation() {
    let dir = tempfile::tempdir().unwrap();
    for (q5, layer, embd) in [(false, LAYER_Q4, 3_038_720 * 144), (true, LAYER_Q5, 3_038_720 * 176)] {
        let info = qwen3(dir.path(), q5);
        assert_eq!(info.layer_tensor_bytes(0), layer);
        assert_eq!(info.layer_tensor_bytes(39), layer);
        assert_eq!(info.tensor_bytes_total(), 40 * layer + embd + OUTPUT);
    }
}

#[test]
fn rtx_4090_holds_everything_even_at_32k() {
    let dir = tempfile::tempdir().unwrap();
    // Budget: 24,564 - 1,012 used = 23,552 MiB free, less 512 headroom = 23,040 MiB.
    let budget = (24_564 - 1_012) * MIB - GPU_HEADROOM;

    // Q4_K_M at 4,096: 40 × 177.2 MiB + output 608.6 + KV 640 + compute 332.75 + 384
    // = 9,494,268,928 B (9,054 MiB) ≤ 23,040 MiB: all 40 layers + output, n_gpu_layers 41.
    let q4 = run(&qwen3(dir.path(), false), "rtx4090_24gb", 4096);
    let need = 40 * LAYER_Q4 + OUTPUT + 40 * 4096 * KV_PER_TOKEN_LAYER + gpu_compute(4096, false, 0) + GPU_OVERHEAD;
    assert_eq!(need, 9_494_268_928);
    assert!(need <= budget);
    assert_eq!(
        (q4.verdict, q4.n_gpu_layers, q4.gpu_layers),
        (Verdict::FitsOnGpu, 41, 40)
    );
    assert_eq!(q4.gpus[0].total_bytes(), need);
    // The CPU keeps the input embedding only.
    assert_eq!(q4.cpu.weights_bytes, 3_038_720 * 144);
    assert_eq!(q4.cpu.kv_cache_bytes, 0);

    // Q5_K_M at 32,768: KV 40 × 128 MiB = 5,120 MiB; mask 32 MiB.
    // 9,084,968,960 + 638,151,680 + 5,368,709,120 + 378,273,792 + 402,653,184
    // = 15,872,756,736 B (15,137 MiB) ≤ 23,040 MiB.
    let q5 = run(&qwen3(dir.path(), true), "rtx4090_24gb", 32768);
    let need = 40 * LAYER_Q5 + OUTPUT + 40 * 32768 * KV_PER_TOKEN_LAYER + gpu_compute(32768, false, 0) + GPU_OVERHEAD;
    assert_eq!(need, 15_872_756_736);
    assert_eq!((q5.verdict, q5.n_gpu_layers), (Verdict::FitsOnGpu, 41));
    assert_eq!(q5.gpus[0].total_bytes(), need);
    // Full offload is kept up to the training context (40,960: 15,872,756,736
    // + 8,192 × 40 × 4,096 KV + 8 MiB more mask = 17,223,322,624 B ≤ budget).
    assert_eq!(q5.max_context, Some(40_960));
    assert!(q5.suggestions.is_empty(), "{:?}", q5.suggestions);
}

#[test]
fn rtx_3060_holds_q4_but_not_all_of_q5_at_8k() {
    let dir = tempfile::tempdir().unwrap();
    // Budget: 12,288 - 512 used = 11,776 MiB free, less 512 headroom = 11,264 MiB
    // = 11,811,160,064 B.
    let budget = (12_288 - 512) * MIB - GPU_HEADROOM;
    assert_eq!(budget, 11_811_160_064);

    // Q4_K_M at 4,096: the same 9,494,268,928 B as on the 4090: fits.
    let q4 = run(&qwen3(dir.path(), false), "rtx3060_12gb", 4096);
    assert_eq!((q4.verdict, q4.n_gpu_layers), (Verdict::FitsOnGpu, 41));

    // Q5_K_M at 8,192, everything: 9,084,968,960 + 638,151,680 + KV 1,342,177,280
    // + compute 353,107,968 + 402,653,184 = 11,821,059,072 B: over by 9.9 MB.
    let all = 40 * LAYER_Q5 + OUTPUT + 40 * 8192 * KV_PER_TOKEN_LAYER + gpu_compute(8192, false, 0) + GPU_OVERHEAD;
    assert_eq!(all, 11_821_059_072);
    assert!(all > budget);
    // So k layers + output: fixed 638,151,680 + (353,107,968 + 61,276,160 copied
    // ffn) + 402,653,184 = 1,455,188,992; per layer 227,124,224 + 33,554,432 KV
    // = 260,678,656; k ≤ (11,811,160,064 - 1,455,188,992) / 260,678,656 = 39.7 → 39.
    let fixed = OUTPUT + gpu_compute(8192, true, 348_160 * 176) + GPU_OVERHEAD;
    assert_eq!(fixed, 1_455_188_992);
    let k = (budget - fixed) / (LAYER_Q5 + 8192 * KV_PER_TOKEN_LAYER);
    assert_eq!(k, 39);
    let q5 = run(&qwen3(dir.path(), true), "rtx3060_12gb", 8192);
    assert_eq!(
        (q5.verdict, q5.gpu_layers, q5.n_gpu_layers),
        (Verdict::PartialOffload, 39, 40)
    );
    assert_eq!(
        q5.gpus[0].total_bytes(),
        fixed + 39 * (LAYER_Q5 + 8192 * KV_PER_TOKEN_LAYER)
    );
    // The layer left behind (layer 0: llama.cpp offloads the last layers) is in RAM.
    assert_eq!(q5.cpu.layers, 1);
    assert_eq!(q5.cpu.kv_cache_bytes, 8192 * KV_PER_TOKEN_LAYER);
    // Everything fits on the GPU again with a smaller context or a q8_0 cache.
    assert!(
        q5.suggestions.iter().any(|s| s.contains("--ctx")),
        "{:?}",
        q5.suggestions
    );
    assert!(
        q5.suggestions.iter().any(|s| s.contains("--kv q8_0")),
        "{:?}",
        q5.suggestions
    );
}

#[test]
fn laptop_8gb_offloads_part_of_the_layers() {
    let dir = tempfile::tempdir().unwrap();
    // Budget: 8,188 - 340 used = 7,848 MiB free, less 512 = 7,336 MiB = 7,692,353,536 B.
    let budget = (8_188 - 340) * MIB - GPU_HEADROOM;
    assert_eq!(budget, 7_692_353_536);
    let per_layer_kv = 4096 * KV_PER_TOKEN_LAYER; // 16 MiB at 4,096

    // Q4_K_M at 4,096: fixed 638,151,680 + (348,913,664 + 50,135,040) + 402,653,184
    // = 1,439,853,568; per layer 185,836,544 + 16,777,216 = 202,613,760;
    // k ≤ 6,252,499,968 / 202,613,760 = 30.9 → 30 layers, n_gpu_layers 31.
    let fixed = OUTPUT + gpu_compute(4096, true, 348_160 * 144) + GPU_OVERHEAD;
    assert_eq!(fixed, 1_439_853_568);
    assert_eq!((budget - fixed) / (LAYER_Q4 + per_layer_kv), 30);
    let q4 = run(&qwen3(dir.path(), false), "laptop_8gb", 4096);
    assert_eq!(
        (q4.verdict, q4.gpu_layers, q4.n_gpu_layers),
        (Verdict::PartialOffload, 30, 31)
    );
    // RAM: token_embd 437,575,680 + 10 layers × 185,836,544 = 2,295,941,120 B of weights.
    assert_eq!(q4.cpu.weights_bytes, 437_575_680 + 10 * LAYER_Q4);
    assert!(q4.cpu.fits());

    // Q5_K_M at 4,096: fixed 638,151,680 + (348,913,664 + 61,276,160) + 402,653,184
    // = 1,450,994,688; per layer 227,124,224 + 16,777,216 = 243,901,440;
    // k ≤ 6,241,358,848 / 243,901,440 = 25.6 → 25 layers.
    let fixed = OUTPUT + gpu_compute(4096, true, 348_160 * 176) + GPU_OVERHEAD;
    assert_eq!(fixed, 1_450_994_688);
    assert_eq!((budget - fixed) / (LAYER_Q5 + per_layer_kv), 25);
    let q5 = run(&qwen3(dir.path(), true), "laptop_8gb", 4096);
    assert_eq!(
        (q5.verdict, q5.gpu_layers, q5.n_gpu_layers),
        (Verdict::PartialOffload, 25, 26)
    );
}

#[test]
fn cpu_only_16gb_runs_q4_but_q5_at_32k_does_not_fit() {
    let dir = tempfile::tempdir().unwrap();
    // RAM budget: 12 GiB available less 1 GiB headroom = 11,264 MiB = 11,811,160,064 B.
    let budget: u64 = 11 << 30;
    // CPU compute resident: one batch through a layer, 512 × 4 × (2×5,120 + 3×17,408)
    // = 127,926,272, plus two logit rows 2 × 151,936 × 4 = 1,215,488 → 129,141,760 B.
    // Fixed: 8 MiB + 100 B × 151,936 tokens = 23,582,208 B.
    let compute = 512 * 4 * (2 * 5120 + 3 * 17_408) + 2 * 151_936 * 4;
    let overhead = 8 * MIB + 100 * 151_936;

    // Q4_K_M at 4,096: weights 40 × 185,836,544 + 437,575,680 + 638,151,680 =
    // 8,509,189,120, KV 671,088,640: 9,333,001,728 B (8,901 MiB) ≤ 11,264 MiB.
    let q4 = run(&qwen3(dir.path(), false), "cpu_only_16gb", 4096);
    let need = 40 * LAYER_Q4 + 437_575_680 + OUTPUT + 40 * 4096 * KV_PER_TOKEN_LAYER + compute + overhead;
    assert_eq!(need, 9_333_001_728);
    assert_eq!((q4.verdict, q4.n_gpu_layers), (Verdict::CpuOnly, 0));
    assert_eq!(q4.cpu.total_bytes(), need);
    // AVX2 repacks the Q4_K matrices (40 layers × 1,290,240 blocks × 144 B):
    // their file pages are reclaimable, not counted against the budget.
    assert_eq!(q4.cpu.reclaimable_bytes, 40 * 1_290_240 * 144);

    // Q5_K_M at 32,768: weights 40 × 227,124,224 + 534,814,720 + 638,151,680 =
    // 10,257,935,360; KV 40 × 128 MiB = 5,368,709,120: 15,779,368,448 B > budget.
    let q5 = run(&qwen3(dir.path(), true), "cpu_only_16gb", 32768);
    let weights = 40 * LAYER_Q5 + 534_814_720 + OUTPUT;
    assert_eq!(weights, 10_257_935_360);
    assert_eq!(q5.cpu.total_bytes(), weights + 5_368_709_120 + compute + overhead);
    assert_eq!(q5.verdict, Verdict::DoesNotFit);
    assert!(q5.reason.contains("RAM"), "{}", q5.reason);
    // Largest context: (11,811,160,064 - 10,257,935,360 - 129,141,760 - 23,582,208)
    // / (40 × 4,096 B per token) = 1,400,500,736 / 163,840 = 8,547.9 → 8,448 (multiple of 256).
    assert_eq!(
        (budget - weights - compute - overhead) / (40 * KV_PER_TOKEN_LAYER),
        8547
    );
    assert_eq!(q5.max_context, Some(8448));
    assert!(
        q5.suggestions.iter().any(|s| s.contains("--ctx 8448")),
        "{:?}",
        q5.suggestions
    );
    let text = q5.explain();
    assert!(text.contains("does not fit") && text.contains("MiB"), "{text}");
}

#[test]
fn a_fixed_layer_count_that_does_not_fit_says_how_many_do() {
    let dir = tempfile::tempdir().unwrap();
    let info = qwen3(dir.path(), false);
    let request = PlanRequest {
        n_gpu_layers: Some(41),
        ..PlanRequest::default()
    };
    let p = plan(&info, &request, &profile("laptop_8gb"));
    assert_eq!(p.verdict, Verdict::DoesNotFit);
    assert!(p.reason.contains("VRAM"), "{}", p.reason);
    assert!(
        p.suggestions.iter().any(|s| s.contains("n_gpu_layers = 31")),
        "{:?}",
        p.suggestions
    );
}

#[test]
fn the_plan_serializes_with_every_term() {
    let dir = tempfile::tempdir().unwrap();
    let p = run(&qwen3(dir.path(), false), "laptop_8gb", 4096);
    let v = serde_json::to_value(&p).unwrap();
    for key in [
        "verdict",
        "n_gpu_layers",
        "cpu",
        "gpus",
        "reason",
        "suggestions",
        "max_context",
    ] {
        assert!(v.get(key).is_some(), "missing {key}");
    }
    assert_eq!(v["verdict"], "partial_offload");
    for key in [
        "weights_bytes",
        "kv_cache_bytes",
        "compute_bytes",
        "overhead_bytes",
        "free_bytes",
    ] {
        assert!(v["gpus"][0][key].as_u64().is_some(), "missing gpus[0].{key}");
    }
    let back: FitPlan = serde_json::from_value(v).unwrap();
    assert_eq!(back, p);
}

#[test]
fn a_model_and_its_reference_load_together_only_when_both_fit_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let q4 = qwen3(dir.path(), false);
    let q5 = qwen3(dir.path(), true);
    let request = PlanRequest {
        n_ctx: 512,
        ..PlanRequest::default()
    };
    // 16 GB, 11 GiB to spend: each fits alone (about 8.5 and 10 GB), not both.
    let small = profile("cpu_only_16gb");
    let (a, b) = (plan(&q4, &request, &small), plan(&q5, &request, &small));
    assert!(a.fits() && b.fits());
    assert!(!a.fits_beside(&b) && !b.fits_beside(&a));
    // With 24 GiB available both fit in RAM at once.
    let mut large = small.clone();
    large.memory.available_bytes = 24 << 30;
    let (a, b) = (plan(&q4, &request, &large), plan(&q5, &request, &large));
    assert!(a.cpu.total_bytes() + b.cpu.total_bytes() < (23 << 30));
    assert!(a.fits_beside(&b));
    // On a 4090 at 32k each goes whole onto the GPU (about 14 and 16 GB); two do not
    // fit in its 24 GB. At 512 tokens they do (about 9 and 11 GB).
    let gpu = profile("rtx4090_24gb");
    let long = PlanRequest {
        n_ctx: 32768,
        ..PlanRequest::default()
    };
    let (a, b) = (plan(&q4, &long, &gpu), plan(&q5, &long, &gpu));
    assert_eq!((a.verdict, b.verdict), (Verdict::FitsOnGpu, Verdict::FitsOnGpu));
    assert!(!a.fits_beside(&b));
    let (a, b) = (plan(&q4, &request, &gpu), plan(&q5, &request, &gpu));
    assert!(a.fits_beside(&b) && b.fits_beside(&a));
}

#[test]
fn the_cpu_decode_ceiling_is_bandwidth_over_the_weights_read_per_token() {
    let dir = tempfile::tempdir().unwrap();
    let q4 = run(&qwen3(dir.path(), false), "cpu_only_16gb", 4096);
    assert_eq!(q4.verdict, Verdict::CpuOnly);
    // 8,509,189,120 B of weights at 60 GB/s: 7.05 tokens/s at most.
    let ceiling = hearth_hw::membw::cpu_decode_ceiling_tps(&q4, 60e9).unwrap();
    assert!((ceiling - 60e9 / 8_509_189_120.0).abs() < 1e-9, "{ceiling}");
    // With layers on a GPU the CPU's bandwidth does not bound it: no figure.
    let gpu = run(&qwen3(dir.path(), false), "rtx4090_24gb", 4096);
    assert!(hearth_hw::membw::cpu_decode_ceiling_tps(&gpu, 60e9).is_none());
}

#[test]
fn sequences_at_once_are_the_kv_caches_that_fit_beside_the_plan() {
    let dir = tempfile::tempdir().unwrap();
    // CPU only, 16 GB: Q4_K_M at 4,096 needs 9,333,001,728 B of an 11 GiB budget; each
    // more sequence adds its KV cache (671,088,640 B): (11,811,160,064 - 9,333,001,728)
    // / 671,088,640 = 3.69, so three more: four at once.
    let q4 = run(&qwen3(dir.path(), false), "cpu_only_16gb", 4096);
    assert_eq!(((11u64 << 30) - 9_333_001_728) / 671_088_640, 3);
    assert_eq!(q4.parallel_sequences(64), 4);
    assert_eq!(q4.parallel_sequences(2), 2, "capped");
    assert!(q4
        .explain()
        .contains("sequences at once (hearth serve --parallel): 4 of 4096 tokens each, 640 MiB"));
    // RTX 4090, all on the GPU: (23,040 MiB - 9,494,268,928 B) / 640 MiB of KV = 21.1 more.
    let gpu = run(&qwen3(dir.path(), false), "rtx4090_24gb", 4096);
    let budget = (24_564 - 1_012) * MIB - GPU_HEADROOM;
    assert_eq!((budget - 9_494_268_928) / (640 * MIB), 21);
    assert_eq!(gpu.parallel_sequences(64), 22);
    // A plan that does not fit still gets one (the load decides).
    let q5 = run(&qwen3(dir.path(), true), "cpu_only_16gb", 32768);
    assert_eq!(q5.parallel_sequences(64), 1);
    assert!(!q5.explain().contains("sequences at once"));
}
