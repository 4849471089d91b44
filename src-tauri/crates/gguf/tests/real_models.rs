//! The two real models Hearth ships for tests, read whole and cut short.
#![allow(clippy::unwrap_used)]

mod common;

use common::{model, write_prefix, GEMMA3, SMOLLM2};
use hearth_gguf::{read, GgmlType, GgufError, GgufInfo, PatternSource, PerLayer, Section};

/// Data offset plus tensor bytes must fit the file, and be close to it
/// (only alignment padding between tensors may be left over).
fn check_extent(info: &GgufInfo) {
    let used = info.data_offset + info.tensor_bytes_total();
    assert!(used <= info.file_size, "{used} > {}", info.file_size);
    let slack = info.file_size - used;
    assert!(slack <= info.tensor_count * info.alignment, "slack {slack}");
    let end = info
        .tensors
        .iter()
        .map(|t| info.data_offset + t.offset + t.n_bytes)
        .max()
        .unwrap();
    assert!(end <= info.file_size);
    // Per-layer and non-layer bytes partition the total.
    let layers = info.block_count.unwrap();
    let per_layer: u64 = (0..layers).map(|l| info.layer_tensor_bytes(l)).sum();
    assert_eq!(per_layer + info.non_layer_tensor_bytes(), info.tensor_bytes_total());
    assert!((0..layers).all(|l| info.layer_tensor_bytes(l) > 0));
    assert_eq!(info.layer_tensor_bytes(layers), 0);
}

#[test]
fn smollm2_header() {
    let path = model(SMOLLM2);
    let started = std::time::Instant::now();
    let info = read(&path).unwrap();
    println!("read {} in {:?}", path.display(), started.elapsed());

    assert_eq!(info.version, 3);
    assert_eq!(info.architecture.as_deref(), Some("llama"));
    assert_eq!(info.block_count, Some(30));
    assert_eq!(info.context_length, Some(8192));
    assert_eq!(info.embedding_length, Some(576));
    assert_eq!(info.feed_forward_length, Some(PerLayer::Uniform(1536)));
    assert_eq!(info.head_count, Some(PerLayer::Uniform(9)));
    assert_eq!(info.head_count_kv_for_layer(7), Some(3));
    assert_eq!(info.key_length, Some(64), "defaults to embedding / heads");
    assert_eq!(info.value_length, Some(64));
    assert_eq!(info.vocab_size, Some(49152));
    assert_eq!(info.file_type, Some(3));
    assert_eq!(info.file_type_name, Some("Q4_1"));
    assert_eq!(info.quantization.as_deref(), Some("Q4_1"));
    assert_eq!((info.bos_token_id, info.eos_token_id), (Some(1), Some(2)));
    assert!(info.chat_template.as_deref().unwrap().contains("<|im_start|>"));
    assert_eq!(info.sliding_window, None);
    assert_eq!(info.sliding_window_pattern, None);
    assert!(!info.is_sliding_window_layer(0));
    assert_eq!(info.tensor_count, 272);
    assert_eq!(info.metadata_count, 33);
    assert_eq!(info.metadata.len(), 33);
    assert_eq!(info.alignment, 32);
    assert!(
        (130_000_000..140_000_000).contains(&info.parameter_count),
        "{}",
        info.parameter_count
    );
    let tokens = info.get("tokenizer.ggml.tokens").unwrap().as_array().unwrap();
    assert_eq!(
        (tokens.len, tokens.values.is_none()),
        (49152, true),
        "token strings are not kept"
    );
    let embd = info.tensors.iter().find(|t| t.name == "token_embd.weight").unwrap();
    assert_eq!(
        (embd.dims.as_slice(), embd.ggml_type),
        (&[576, 49152][..], GgmlType::Q8_0)
    );
    check_extent(&info);

    let json = serde_json::to_string(&info).unwrap();
    assert!(json.contains("\"architecture\":\"llama\"") && json.contains("\"ggml_type\":\"Q4_1\""));
    assert!(json.len() < 200_000, "summary JSON stays small: {}", json.len());
}

#[test]
fn gemma3_header() {
    let path = model(GEMMA3);
    let started = std::time::Instant::now();
    let info = read(&path).unwrap();
    println!("read {} in {:?}", path.display(), started.elapsed());

    assert_eq!(info.architecture.as_deref(), Some("gemma3"));
    assert_eq!(info.block_count, Some(18));
    assert_eq!(info.context_length, Some(32768));
    assert_eq!(info.chat_template, None);
    assert_eq!(info.vocab_size, Some(262_144));
    assert_eq!(info.file_type_name, Some("Q4_K_M"));
    assert_eq!(info.quantization.as_deref(), Some("Q4_K_M"));
    assert_eq!(info.head_count, Some(PerLayer::Uniform(4)));
    assert_eq!(info.head_count_kv, Some(PerLayer::Uniform(1)));
    assert_eq!((info.key_length, info.value_length), (Some(256), Some(256)));
    assert_eq!(info.sliding_window, Some(512));
    let pattern = info.sliding_window_pattern.as_ref().unwrap();
    assert_eq!(pattern.period, Some(6));
    assert_eq!(pattern.source, PatternSource::ArchitectureDefault);
    let global: Vec<u64> = (0..18).filter(|l| !info.is_sliding_window_layer(*l)).collect();
    assert_eq!(global, vec![5, 11, 17], "every 6th layer is global");
    assert!(
        (250_000_000..300_000_000).contains(&info.parameter_count),
        "{}",
        info.parameter_count
    );
    check_extent(&info);
}

/// A real model cut at many points: inside the header it is `Truncated`
/// (header), inside the data `Truncated` (tensor data), never anything else.
fn truncations(name: &str) {
    let path = model(name);
    let info = read(&path).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cut = dir.path().join(name);
    let d = info.data_offset;
    let full_end = info.tensors.iter().map(|t| d + t.offset + t.n_bytes).max().unwrap();
    let header_cuts = [
        1,
        3,
        4,
        7,
        8,
        15,
        16,
        23,
        24,
        40,
        100,
        1000,
        100_000,
        d / 2,
        d - 200,
        d - 40,
    ];
    // (Between d - alignment and d lies padding: the header is whole there.)
    let data_cuts = [d, d + 1, d + 1_000_000, info.file_size / 2, info.file_size - 1];
    for n in header_cuts.into_iter().chain(data_cuts) {
        write_prefix(&path, &cut, n, d + 4096);
        let err = read(&cut).unwrap_err();
        let GgufError::Truncated {
            section,
            file_size,
            needed,
            ..
        } = &err
        else {
            panic!("cut at {n}: expected Truncated, got {err:?}");
        };
        assert_eq!(*file_size, n);
        assert!(*needed > n, "cut at {n}: needs {needed}");
        let want = if n < d { Section::Header } else { Section::TensorData };
        assert_eq!(*section, want, "cut at {n}: {err}");
        let msg = err.to_string();
        assert!(
            msg.contains(&cut.display().to_string()) && msg.contains("fetch it again"),
            "{msg}"
        );
        if want == Section::TensorData {
            assert_eq!(*needed, full_end);
            assert!(msg.contains(&format!(
                "the file is {n} bytes but it needs {needed} to hold its tensors"
            )));
        }
    }
}

#[test]
fn smollm2_truncated_everywhere() {
    truncations(SMOLLM2);
}

#[test]
fn gemma3_truncated_everywhere() {
    truncations(GEMMA3);
}
