//! Headers that parse but hold values llama.cpp aborts on (it checks them with
//! assertions that end the whole process): each is refused as `Invalid`, naming the
//! key, while the values real models have, up to the bounds, are accepted.
#![allow(clippy::unwrap_used)]

use std::io::{Seek, SeekFrom, Write};

use hearth_gguf::builder::{GgufBuilder, Value};
use hearth_gguf::limits::{MAX_BLOCK_COUNT, MAX_CONTEXT_LENGTH, MAX_EMBEDDING_LENGTH, MAX_EXPERT_COUNT};
use hearth_gguf::reader::{MAX_TEMPLATE_LEN, MAX_VOCABULARY_BYTES};
use hearth_gguf::{read, GgmlType, GgufError, GgufInfo, MetaValue, ValueType};

/// A small valid llama header, with `changes` applied: `Some` sets a key (replacing
/// the default), `None` removes it.
fn model(changes: &[(&str, Option<Value>)]) -> GgufBuilder {
    let mut kvs: Vec<(String, Value)> = vec![
        ("general.architecture".into(), MetaValue::String("llama".into()).into()),
        ("llama.block_count".into(), MetaValue::U32(2).into()),
        ("llama.context_length".into(), MetaValue::U32(4096).into()),
        ("llama.embedding_length".into(), MetaValue::U32(64).into()),
        ("llama.attention.head_count".into(), MetaValue::U32(4).into()),
        ("tokenizer.ggml.model".into(), MetaValue::String("gpt2".into()).into()),
        ("tokenizer.ggml.tokens".into(), Value::Tokens(16)),
    ];
    for (key, value) in changes {
        kvs.retain(|(k, _)| k != key);
        if let Some(value) = value {
            kvs.push(((*key).to_string(), value.clone()));
        }
    }
    let mut b = GgufBuilder::new();
    for (k, v) in kvs {
        b = b.kv(&k, v);
    }
    b.tensor("token_embd.weight", &[64, 16], GgmlType::F32)
}

fn u32v(v: u32) -> Option<Value> {
    Some(MetaValue::U32(v).into())
}

fn string(s: &str) -> Option<Value> {
    Some(MetaValue::String(s.into()).into())
}

fn strings_raw(items: &[&[u8]]) -> Option<Value> {
    let raw = items
        .iter()
        .map(|s| {
            let mut bytes = (s.len() as u64).to_le_bytes().to_vec();
            bytes.extend_from_slice(s);
            Value::Raw(ValueType::String as u32, bytes)
        })
        .collect();
    Some(Value::Array(ValueType::String, raw))
}

fn read_built(b: &GgufBuilder) -> (Result<GgufInfo, GgufError>, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.gguf");
    b.write(&path).unwrap();
    (read(&path), path.display().to_string())
}

/// The `Invalid` error's key and detail; its message names the file, the key, says the
/// model is not valid and what to do.
fn invalid(b: &GgufBuilder) -> (String, String) {
    match read_built(b) {
        (Err(e @ GgufError::Invalid { .. }), path) => {
            let msg = e.to_string();
            let GgufError::Invalid { key, detail, .. } = e else {
                unreachable!()
            };
            assert!(msg.contains(&path), "{msg}");
            assert!(msg.contains("is not a valid model"), "{msg}");
            assert!(msg.contains(&key), "{msg}");
            assert!(msg.contains("download it again or choose another file"), "{msg}");
            (key, detail)
        }
        (other, _) => panic!("expected Invalid, got {other:?}"),
    }
}

fn accepted(b: &GgufBuilder) -> GgufInfo {
    match read_built(b) {
        (Ok(info), _) => info,
        (Err(e), _) => panic!("refused: {e}"),
    }
}

#[test]
fn the_base_model_reads() {
    let info = accepted(&model(&[]));
    assert_eq!((info.block_count, info.vocab_size), (Some(2), Some(16)));
}

#[test]
fn layers() {
    let cases = [(0, "is 0"), (100_000, "is 100000"), (MAX_BLOCK_COUNT as u32 + 1, "513")];
    for (n, words) in cases {
        let (key, detail) = invalid(&model(&[("llama.block_count", u32v(n))]));
        assert_eq!(key, "llama.block_count");
        assert!(detail.contains(words), "{detail}");
    }
    assert!(invalid(&model(&[("llama.block_count", u32v(0))]))
        .1
        .contains("at least one layer"));
    assert!(invalid(&model(&[("llama.block_count", u32v(100_000))]))
        .1
        .contains("512 layers llama.cpp can load"));
    let info = accepted(&model(&[("llama.block_count", u32v(MAX_BLOCK_COUNT as u32))]));
    assert_eq!(info.block_count, Some(512));
    // Also as another integer type (writers differ).
    let (key, _) = invalid(&model(&[("llama.block_count", Some(MetaValue::U64(0).into()))]));
    assert_eq!(key, "llama.block_count");

    let (key, detail) = invalid(&model(&[("llama.nextn_predict_layers", u32v(3))]));
    assert_eq!(
        (key.as_str(), detail.contains("is 3")),
        ("llama.nextn_predict_layers", true)
    );
    accepted(&model(&[("llama.nextn_predict_layers", u32v(1))]));
}

#[test]
fn context_length() {
    for (n, words) in [(0, "is 0"), (u32::MAX, "is 4294967295 tokens")] {
        let (key, detail) = invalid(&model(&[("llama.context_length", u32v(n))]));
        assert_eq!(key, "llama.context_length");
        assert!(detail.contains(words), "{detail}");
    }
    let over = Some(MetaValue::U64(MAX_CONTEXT_LENGTH + 1).into());
    assert_eq!(
        invalid(&model(&[("llama.context_length", over)])).0,
        "llama.context_length"
    );
    // The longest real contexts (10M tokens) and the bound itself are accepted.
    accepted(&model(&[("llama.context_length", u32v(10_485_760))]));
    let at = Some(MetaValue::U64(MAX_CONTEXT_LENGTH).into());
    assert_eq!(
        accepted(&model(&[("llama.context_length", at)])).context_length,
        Some(1 << 27)
    );
}

#[test]
fn embedding_length() {
    let (key, detail) = invalid(&model(&[("llama.embedding_length", u32v(0))]));
    assert_eq!(
        (key.as_str(), detail.contains("is 0")),
        ("llama.embedding_length", true)
    );
    let over = u32v(MAX_EMBEDDING_LENGTH as u32 + 1);
    assert_eq!(
        invalid(&model(&[("llama.embedding_length", over)])).0,
        "llama.embedding_length"
    );
}

#[test]
fn experts() {
    let moe = |count: Option<Value>, used: Option<Value>| {
        model(&[("llama.expert_count", count), ("llama.expert_used_count", used)])
    };
    let (key, detail) = invalid(&moe(u32v(1_000_000), u32v(8)));
    assert_eq!(key, "llama.expert_count");
    assert!(
        detail.contains("is 1000000") && detail.contains("1024 experts"),
        "{detail}"
    );
    assert_eq!(
        invalid(&moe(u32v(MAX_EXPERT_COUNT as u32 + 1), u32v(8))).0,
        "llama.expert_count"
    );
    accepted(&moe(u32v(MAX_EXPERT_COUNT as u32), u32v(8)));
    accepted(&moe(u32v(8), u32v(2)));

    // More used than there are, in one layer or all; none used; used without experts.
    let (key, detail) = invalid(&moe(u32v(8), u32v(9)));
    assert_eq!(key, "llama.expert_used_count");
    assert!(detail.contains("is 9, more than the 8 experts"), "{detail}");
    let per_layer = Some(Value::Array(
        ValueType::U32,
        vec![MetaValue::U32(2).into(), MetaValue::U32(9).into()],
    ));
    assert_eq!(invalid(&moe(u32v(8), per_layer)).0, "llama.expert_used_count");
    assert!(invalid(&moe(u32v(8), None)).1.contains("is 0 or missing"));
    assert_eq!(invalid(&moe(None, u32v(2))).0, "llama.expert_used_count");

    // Expert groups (DeepSeek V3: 256 experts in 8 groups, 4 used).
    let grouped = |groups: u32, used: u32| {
        model(&[
            ("llama.expert_count", u32v(256)),
            ("llama.expert_used_count", u32v(8)),
            ("llama.expert_group_count", u32v(groups)),
            ("llama.expert_group_used_count", u32v(used)),
        ])
    };
    accepted(&grouped(8, 4));
    assert_eq!(invalid(&grouped(256, 4)).0, "llama.expert_group_count");
    assert!(invalid(&grouped(3, 1)).1.contains("does not divide"));
    for used in [0, 8] {
        assert_eq!(invalid(&grouped(8, used)).0, "llama.expert_group_used_count");
    }
    assert_eq!(
        invalid(&model(&[("llama.expert_group_count", u32v(2))])).0,
        "llama.expert_group_count"
    );

    // llama.cpp reads Hunyuan's dense models' one "expert" as none.
    let hunyuan = GgufBuilder::new()
        .string("general.architecture", "hunyuan-dense")
        .u32("hunyuan-dense.block_count", 2)
        .u32("hunyuan-dense.expert_count", 1)
        .u32("hunyuan-dense.expert_used_count", 1);
    accepted(&hunyuan);
}

#[test]
fn rope_scaling_type() {
    for known in ["none", "linear", "yarn", "longrope"] {
        accepted(&model(&[("llama.rope.scaling.type", string(known))]));
    }
    let (key, detail) = invalid(&model(&[("llama.rope.scaling.type", string("dynamic"))]));
    assert_eq!(key, "llama.rope.scaling.type");
    assert!(detail.contains("'dynamic'"), "{detail}");
}

/// Values llama.cpp accepts are not refused: state-space models (Mamba) write a head
/// count of 0; hybrid models have layers without KV heads.
#[test]
fn what_real_models_write_is_accepted() {
    accepted(&model(&[
        ("llama.attention.head_count", u32v(0)),
        ("llama.attention.head_count_kv", u32v(0)),
    ]));
    // A header without the keys (a vision projector, a bare test header) is left to
    // llama.cpp, which reports missing keys itself.
    accepted(&GgufBuilder::new().string("general.architecture", "clip"));
    accepted(&GgufBuilder::new());
}

#[test]
fn vocabulary_entries_must_be_text() {
    let tokens: Vec<&[u8]> = vec![b"a", b"b", "é".as_bytes(), b"c", b"d", b"\xff\xfe", b"e"];
    let (key, detail) = invalid(&model(&[("tokenizer.ggml.tokens", strings_raw(&tokens))]));
    assert_eq!(key, "tokenizer.ggml.tokens");
    assert!(
        detail.contains("vocabulary entry 5") && detail.contains("not UTF-8"),
        "{detail}"
    );
    // Cut-off characters, and UTF-16 surrogates written as UTF-8, are not text either.
    for bad in [&b"ok\xe2\x82"[..], b"\xed\xa0\x80", b"\xc0\x80"] {
        let (_, detail) = invalid(&model(&[("tokenizer.ggml.tokens", strings_raw(&[b"x", bad]))]));
        assert!(detail.contains("vocabulary entry 1"), "{detail}");
    }
    // Other string arrays are llama.cpp's to read as bytes.
    accepted(&model(&[("tokenizer.ggml.merges", strings_raw(&[b"\xff \xfe"]))]));
}

/// The vocabulary is read through a 64 KiB buffer: characters cut at its edges are
/// text, and a bad byte far into it is found at its entry.
#[test]
fn long_vocabularies_are_checked_across_reads() {
    let words: Vec<String> = (0..20_000).map(|i| format!("é€𝄞{i}")).collect();
    let valid: Vec<&[u8]> = words.iter().map(|w| w.as_bytes()).collect();
    let info = accepted(&model(&[("tokenizer.ggml.tokens", strings_raw(&valid))]));
    assert_eq!(info.vocab_size, Some(20_000));
    let mut bad = valid.clone();
    bad[17_000] = b"\xf0\x9d\x84";
    let (_, detail) = invalid(&model(&[("tokenizer.ggml.tokens", strings_raw(&bad))]));
    assert!(detail.contains("vocabulary entry 17000"), "{detail}");
}

#[test]
fn vocabulary_entries_must_differ() {
    let tokens: Vec<&[u8]> = vec![b"a", b"", b"b", b"", b"c", b"b", b"d"];
    let (key, detail) = invalid(&model(&[("tokenizer.ggml.tokens", strings_raw(&tokens))]));
    assert_eq!(key, "tokenizer.ggml.tokens");
    // Empty entries may repeat (llama.cpp names them apart); "b" may not.
    assert!(
        detail.contains("vocabulary entry 5 ") && detail.contains("repeats"),
        "{detail}"
    );
}

/// The set of fingerprints is memory only while the vocabulary is read: a large one
/// leaves the whole budget to what follows (a chat template of the longest kept size).
#[test]
fn the_vocabulary_check_gives_its_memory_back() {
    let template = "x".repeat(usize::try_from(MAX_TEMPLATE_LEN).unwrap());
    let b = model(&[
        ("tokenizer.ggml.tokens", Some(Value::Tokens(350_000))),
        ("tokenizer.chat_template", string(&template)),
    ]);
    let info = accepted(&b);
    assert_eq!(info.chat_template.map(|t| t.len()), Some(template.len()));
}

/// A vocabulary claiming more text than any model (in a sparse file, so it costs no
/// disk) is refused once its text passes the bound, not read to its end.
#[test]
fn vocabulary_text_is_bounded() {
    let entry: u64 = 40 << 20;
    let mut payload = (ValueType::String as u32).to_le_bytes().to_vec();
    payload.extend(2u64.to_le_bytes());
    payload.extend(entry.to_le_bytes());
    // No tensors: the header ends with the first entry's length.
    let header = GgufBuilder::new()
        .string("general.architecture", "llama")
        .u32("llama.block_count", 2)
        .kv("tokenizer.ggml.tokens", Value::Raw(ValueType::Array as u32, payload))
        .header_bytes();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.gguf");
    let mut f = std::fs::File::create(&path).unwrap();
    f.write_all(&header).unwrap();
    // The first entry is 40 MiB of zeros (valid text), then the second's length.
    f.seek(SeekFrom::Current(i64::try_from(entry).unwrap())).unwrap();
    f.write_all(&entry.to_le_bytes()).unwrap();
    f.set_len(header.len() as u64 + 3 * entry).unwrap();
    match read(&path) {
        Err(GgufError::Invalid { key, detail, .. }) => {
            assert_eq!(key, "tokenizer.ggml.tokens");
            assert!(
                detail.contains(&format!("more than {MAX_VOCABULARY_BYTES} bytes")) && detail.contains("entry 1"),
                "{detail}"
            );
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
}

/// An impossible value is named even when the file is also cut short in its weights:
/// the header is judged before the data's extent.
#[test]
fn values_are_judged_before_the_data_extent() {
    let b = model(&[("llama.block_count", u32v(0))]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.gguf");
    std::fs::write(&path, b.header_bytes()).unwrap();
    assert!(matches!(read(&path), Err(GgufError::Invalid { .. })));
    std::fs::write(&path, model(&[]).header_bytes()).unwrap();
    assert!(matches!(read(&path), Err(GgufError::Truncated { .. })));
}
