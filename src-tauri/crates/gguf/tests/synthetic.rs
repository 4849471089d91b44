//! Headers written by the builder: the summary fields and planner helpers.
#![allow(clippy::unwrap_used)]

use std::io::Cursor;

use hearth_gguf::builder::{DecoderShape, GgufBuilder};
use hearth_gguf::{read, read_from, ArrayValues, GgmlType, MetaValue, PatternSource, PerLayer};

fn write_and_read(b: &GgufBuilder) -> hearth_gguf::GgufInfo {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.gguf");
    let len = b.write(&path).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), len);
    read(&path).unwrap()
}

#[test]
fn qwen3_14b_shaped_header() {
    let shape = DecoderShape::qwen3_14b_q4_k_m();
    let started = std::time::Instant::now();
    let info = write_and_read(&GgufBuilder::decoder(&shape));
    println!("wrote and read a Qwen3-14B header in {:?}", started.elapsed());

    assert_eq!(info.architecture.as_deref(), Some("qwen3"));
    assert_eq!(info.block_count, Some(40));
    assert_eq!(info.head_count, Some(PerLayer::Uniform(40)));
    assert_eq!(info.head_count_kv_for_layer(39), Some(8));
    assert_eq!((info.key_length, info.value_length), (Some(128), Some(128)));
    assert_eq!(info.embedding_length, Some(5120));
    assert_eq!(info.vocab_size, Some(151_936));
    assert_eq!(info.context_length, Some(40_960));
    assert_eq!(info.quantization.as_deref(), Some("Q4_K_M"));
    assert_eq!(info.tensor_count, 1 + 40 * 11 + 2);
    // ~14.8B parameters, ~8.5 GB of Q4_K/Q6_K data.
    assert!(
        (14_000_000_000..15_500_000_000).contains(&info.parameter_count),
        "{}",
        info.parameter_count
    );
    let total = info.tensor_bytes_total();
    assert!((8_000_000_000..9_500_000_000).contains(&total), "{total}");
    let layer = info.layer_tensor_bytes(0);
    assert!((0..40).all(|l| info.layer_tensor_bytes(l) == layer));
    assert_eq!(layer * 40 + info.non_layer_tensor_bytes(), total);
    assert_eq!(info.data_offset + total, info.file_size);
    assert!(info.chat_template.is_some());
}

#[test]
fn per_layer_values_and_swa_patterns() {
    let kv: Vec<u32> = (0..8).map(|l| if l % 2 == 0 { 8 } else { 2 }).collect();
    let b = GgufBuilder::new()
        .string("general.architecture", "gemma3")
        .u32("gemma3.block_count", 8)
        .u32("gemma3.embedding_length", 512)
        .u32("gemma3.attention.head_count", 8)
        .u32_array("gemma3.attention.head_count_kv", &kv)
        .u32("gemma3.attention.sliding_window", 1024)
        .u32("gemma3.attention.sliding_window_pattern", 4);
    let info = write_and_read(&b);
    assert_eq!(
        info.head_count_kv,
        Some(PerLayer::PerLayer(vec![8, 2, 8, 2, 8, 2, 8, 2]))
    );
    assert_eq!(info.head_count_kv.as_ref().unwrap().max(), 8);
    assert_eq!(info.head_count_kv_for_layer(1), Some(2));
    assert_eq!(info.head_count_kv_for_layer(8), None);
    assert_eq!(info.key_length, Some(64));
    let p = info.sliding_window_pattern.as_ref().unwrap();
    assert_eq!((p.period, p.source), (Some(4), PatternSource::File));
    let global: Vec<u64> = (0..8).filter(|l| !info.is_sliding_window_layer(*l)).collect();
    assert_eq!(global, vec![3, 7]);
    assert!(matches!(
        info.get("gemma3.attention.head_count_kv"),
        Some(MetaValue::Array(a)) if a.values == Some(ArrayValues::U32(kv.clone()))
    ));

    // Explicit per-layer flags.
    let flags = [true, false, true, true];
    let b = GgufBuilder::new()
        .string("general.architecture", "gemma3")
        .u32("gemma3.attention.sliding_window", 512)
        .bool_array("gemma3.attention.sliding_window_pattern", &flags);
    let info = write_and_read(&b);
    assert_eq!(
        info.sliding_window_pattern.as_ref().unwrap().layers.as_deref(),
        Some(&flags[..])
    );
    assert!(!info.is_sliding_window_layer(1) && info.is_sliding_window_layer(3));

    // Sliding window in an architecture without a known default: no guess.
    let b = GgufBuilder::new()
        .string("general.architecture", "mystery")
        .u32("mystery.attention.sliding_window", 512);
    assert_eq!(write_and_read(&b).sliding_window_pattern, None);
}

#[test]
fn quantization_from_dominant_tensor_type() {
    let b = GgufBuilder::new()
        .string("general.architecture", "llama")
        .tensor("token_embd.weight", &[256, 64], GgmlType::Q6_K)
        .tensor("blk.0.attn_q.weight", &[256, 256], GgmlType::Q5_K)
        .tensor("blk.0.attn_norm.weight", &[256], GgmlType::F32);
    let info = write_and_read(&b);
    assert_eq!((info.file_type, info.file_type_name), (None, None));
    assert_eq!(info.quantization.as_deref(), Some("Q5_K"));
    assert_eq!(info.layer_tensor_bytes(0), 256 * 256 / 256 * 176 + 1024);
    assert_eq!(info.non_layer_tensor_bytes(), 64 * 210);
}

#[test]
fn arrays_are_summarised() {
    let big: Vec<u32> = (0..2000).collect();
    let b = GgufBuilder::new()
        .u32_array("small", &[1, 2, 3])
        .u32_array("big", &big)
        .string_array("langs", &["en", "fr"])
        .tokens(5000);
    let info = write_and_read(&b);
    let arr = |k: &str| info.get(k).unwrap().as_array().unwrap().clone();
    assert_eq!(arr("small").values, Some(ArrayValues::U32(vec![1, 2, 3])));
    assert_eq!((arr("big").len, arr("big").values), (2000, None));
    assert_eq!((arr("langs").len, arr("langs").values), (2, None));
    assert_eq!(info.vocab_size, Some(5000));
    assert_eq!(info.architecture, None);
    assert_eq!(info.tensor_count, 0);
}

#[test]
fn in_memory_and_file_reads_agree() {
    let b = GgufBuilder::decoder(&DecoderShape {
        n_layer: 2,
        n_vocab: 1000,
        ..DecoderShape::qwen3_14b_q4_k_m()
    });
    let from_file = write_and_read(&b);
    let header = b.header_bytes();
    let len = header.len() as u64 + b.data_len();
    let from_mem = read_from(Cursor::new(header), len, &from_file.path).unwrap();
    assert_eq!(from_mem, from_file);
}
