//! Files that are not models, and headers built to attack the reader.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use hearth_gguf::builder::{GgufBuilder, Value};
use hearth_gguf::reader::{MAX_KV_COUNT, MAX_STRING_ARRAY_LEN, MAX_STRING_LEN, MAX_TENSOR_COUNT};
use hearth_gguf::{read, GgmlType, GgufError, MetaValue, Section, ValueType};

struct Tmp {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

fn tmp_file(bytes: &[u8]) -> Tmp {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.gguf");
    std::fs::write(&path, bytes).unwrap();
    Tmp { _dir: dir, path }
}

/// Reads `bytes` from a file and checks the message names the file.
fn read_bytes(bytes: &[u8]) -> Result<hearth_gguf::GgufInfo, GgufError> {
    let t = tmp_file(bytes);
    let r = read(&t.path);
    if let Err(e) = &r {
        assert_eq!(e.path(), t.path);
        assert!(e.to_string().contains(&t.path.display().to_string()), "{e}");
    }
    r
}

fn read_built(b: &GgufBuilder) -> Result<hearth_gguf::GgufInfo, GgufError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("built.gguf");
    b.write(&path).unwrap();
    read(&path)
}

fn corrupt_detail(r: Result<hearth_gguf::GgufInfo, GgufError>) -> String {
    match r {
        Err(GgufError::Corrupt { detail, .. }) => detail,
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

fn truncated(r: Result<hearth_gguf::GgufInfo, GgufError>) -> (Section, u64, u64) {
    match r {
        Err(GgufError::Truncated {
            section,
            file_size,
            needed,
            ..
        }) => (section, file_size, needed),
        other => panic!("expected Truncated, got {other:?}"),
    }
}

/// A minimal valid header to start hostile variations from.
fn base() -> GgufBuilder {
    GgufBuilder::new()
        .string("general.architecture", "llama")
        .u32("llama.block_count", 1)
}

/// `base()` bytes followed by raw bytes, with the claimed counts.
fn raw_after_base(kv_count: u64, tensor_count: u64, tail: &[u8]) -> Vec<u8> {
    let mut v = base()
        .override_counts(Some(tensor_count), Some(kv_count))
        .header_bytes();
    v.extend_from_slice(tail);
    v
}

#[test]
fn missing_directory_empty() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.gguf");
    let e = read(&missing).unwrap_err();
    assert!(matches!(e, GgufError::NotFound { .. }), "{e:?}");
    assert!(e.to_string().contains("nope.gguf") && e.to_string().contains("check the path"));

    let e = read(dir.path()).unwrap_err();
    assert!(matches!(e, GgufError::IsDirectory { .. }), "{e:?}");
    assert!(e.to_string().contains("choose the .gguf file inside it"));

    let e = read_bytes(b"").unwrap_err();
    assert!(matches!(e, GgufError::Empty { .. }), "{e:?}");
    assert!(e.to_string().contains("download it again"));
}

#[cfg(unix)]
#[test]
fn device_is_not_a_file() {
    let e = read(Path::new("/dev/null")).unwrap_err();
    assert!(matches!(e, GgufError::NotAFile { .. }), "{e:?}");
}

#[test]
fn not_gguf_says_what_it_looks_like() {
    let cases: &[(&[u8], &str)] = &[
        (
            b"This is not a model, just some notes.\n",
            "starts with text, not a GGUF model",
        ),
        (b"<!DOCTYPE html><html><body>404</body></html>", "web page"),
        (
            b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\n",
            "Git LFS pointer",
        ),
        (b"{\"error\": \"unauthorized\"}", "JSON"),
        (b"PK\x03\x04\x14\x00\x00\x00", "ZIP archive"),
        (b"tjgg\x03\x00\x00\x00rest", "before GGUF"),
        (b"\xff", "too short"),
    ];
    for (bytes, want) in cases {
        let e = read_bytes(bytes).unwrap_err();
        assert!(matches!(e, GgufError::NotGguf { .. }), "{e:?}");
        assert!(e.to_string().contains(want), "{want}: {e}");
        assert!(e.to_string().contains("not a GGUF model"), "{e}");
    }
    // Deterministic pseudo-random bytes.
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let random: Vec<u8> = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    assert!(!random.starts_with(b"GGUF"));
    let e = read_bytes(&random).unwrap_err();
    assert!(matches!(e, GgufError::NotGguf { .. }), "{e:?}");
}

#[test]
fn magic_prefix_is_truncated() {
    let (section, size, needed) = truncated(read_bytes(b"GGU"));
    assert_eq!((section, size, needed), (Section::Header, 3, 4));
    truncated(read_bytes(b"GGUF\x03\x00"));
}

#[test]
fn unsupported_versions() {
    for (v, hint) in [
        (1u32, "2023"),
        (4, "update Hearth"),
        (0, "damaged"),
        (3u32.swap_bytes(), "big-endian"),
    ] {
        let e = read_bytes(&GgufBuilder::new().version(v).header_bytes()).unwrap_err();
        match &e {
            GgufError::UnsupportedVersion { version, hint: h, .. } => {
                assert_eq!(*version, v);
                assert!(h.contains(hint), "{h}");
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(read_bytes(&base().version(2).header_bytes()).unwrap().version, 2);
}

#[test]
fn huge_counts() {
    for (kv, tensors) in [
        (u64::MAX, 0),
        (0, u64::MAX),
        (1 << 40, 1 << 40),
        (2, 1 << 60),
        (u64::MAX / 13 + 1, 0),
    ] {
        let (section, _, _) = truncated(read_bytes(&raw_after_base(kv, tensors, &[])));
        assert_eq!(section, Section::Header);
    }
    // Counts that fit the (sparse) file but exceed what any model has.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sparse.gguf");
    for (kv, tensors) in [(MAX_KV_COUNT + 1, 0), (2, MAX_TENSOR_COUNT + 1)] {
        std::fs::write(&path, raw_after_base(kv, tensors, &[])).unwrap();
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(8 << 20)
            .unwrap();
        let e = read(&path).unwrap_err();
        assert!(matches!(e, GgufError::Corrupt { .. }), "{e:?}");
    }
    // A string array longer than any vocabulary, in a sparse file big enough to hold it.
    let mut payload = (ValueType::String as u32).to_le_bytes().to_vec();
    payload.extend((MAX_STRING_ARRAY_LEN + 1).to_le_bytes());
    let header = base()
        .kv("tokenizer.ggml.tokens", Value::Raw(9, payload))
        .header_bytes();
    std::fs::write(&path, &header).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(8 * MAX_STRING_ARRAY_LEN + 1024)
        .unwrap();
    // Refused on the count alone, before a single element is walked: the error is
    // at the byte right after the count (the header's end). Walked, the sparse file's
    // zeros would read as empty strings and the file would be accepted.
    match read(&path) {
        Err(GgufError::Corrupt { detail, offset, .. }) => {
            assert!(detail.contains("elements"), "{detail}");
            assert_eq!(offset, header.len() as u64, "{detail}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn huge_string_and_array_lengths() {
    // A key whose length is 2^63.
    let mut tail = (1u64 << 63).to_le_bytes().to_vec();
    tail.extend(b"abc");
    let (section, _, needed) = truncated(read_bytes(&raw_after_base(3, 0, &tail)));
    assert_eq!((section, needed > 1 << 62), (Section::Header, true));

    // A string value whose length is 2^63.
    let b = base().kv("x", Value::Raw(8, (1u64 << 63).to_le_bytes().to_vec()));
    truncated(read_bytes(&b.header_bytes()));
    // Strings cut short.
    let mut bytes = base().string("general.name", "a long enough name").header_bytes();
    bytes.truncate(bytes.len() - 5);
    truncated(read_bytes(&bytes));

    // Arrays of 2^62 elements, of each element size.
    for ty in [0u32, 4, 8, 9, 10] {
        let mut payload = ty.to_le_bytes().to_vec();
        payload.extend((1u64 << 62).to_le_bytes());
        let b = base().kv("arr", Value::Raw(9, payload));
        truncated(read_bytes(&b.header_bytes()));
    }
    // A token array whose last string runs past the end.
    let mut bytes = base().kv("tokenizer.ggml.tokens", Value::Tokens(1000)).header_bytes();
    bytes.truncate(bytes.len() - 2);
    truncated(read_bytes(&bytes));
}

#[test]
fn unknown_value_types_and_deep_nesting() {
    let d = corrupt_detail(read_bytes(&base().kv("x", Value::Raw(13, vec![0; 16])).header_bytes()));
    assert!(d.contains("unknown value type 13"), "{d}");
    let mut payload = 77u32.to_le_bytes().to_vec();
    payload.extend(1u64.to_le_bytes());
    let d = corrupt_detail(read_bytes(&base().kv("x", Value::Raw(9, payload)).header_bytes()));
    assert!(d.contains("unknown element type 77"), "{d}");

    // Arrays nested 3 deep are fine, 4 deep are refused.
    let nest = |depth: usize| {
        let mut v = Value::Array(ValueType::U8, vec![MetaValue::U8(1).into()]);
        for _ in 1..depth {
            v = Value::Array(ValueType::Array, vec![v]);
        }
        v
    };
    read_bytes(&base().kv("x", nest(3)).header_bytes()).unwrap();
    let d = corrupt_detail(read_bytes(&base().kv("x", nest(4)).header_bytes()));
    assert!(d.contains("nests arrays"), "{d}");
}

#[test]
fn bad_tensors() {
    let one = |dims: &[u64], ty: u32, offset: u64| base().tensor_raw("t", dims, ty, offset);
    let d = corrupt_detail(read_built(&one(&[32], 99, 0)));
    assert!(d.contains("unknown ggml type 99"), "{d}");
    let d = corrupt_detail(read_built(&one(&[32], 31, 0)));
    assert!(d.contains("removed"), "{d}");
    for dims in [
        &[1u64 << 32, 1 << 32, 1 << 32][..],
        &[1 << 63],
        &[u64::MAX, 0],
        &[2, 2, 2, 2, 2],
    ] {
        corrupt_detail(read_built(&one(dims, 0, 0)));
    }
    let d = corrupt_detail(read_built(&one(&[100], GgmlType::Q4_K as u32, 0)));
    assert!(d.contains("block"), "{d}");
    let d = corrupt_detail(read_built(&one(&[32], 0, 3)));
    assert!(d.contains("alignment"), "{d}");
    // Offsets past the end: the file is too short for its tensors.
    let b = one(&[32], 0, 1 << 40);
    let bytes = b.header_bytes();
    let (section, size, needed) = truncated(read_bytes(&bytes));
    assert_eq!(
        (section, size, needed),
        (
            Section::TensorData,
            bytes.len() as u64,
            bytes.len() as u64 + (1 << 40) + 128
        )
    );
    // Offsets so large that start + size overflows.
    corrupt_detail(read_bytes(&one(&[32], 0, u64::MAX - 31).header_bytes()));
    // Two tensors with one name; keys twice.
    let b = base()
        .tensor("t", &[32], GgmlType::F32)
        .tensor("t", &[32], GgmlType::F32);
    assert!(corrupt_detail(read_built(&b)).contains("twice"));
    assert!(corrupt_detail(read_built(&base().u32("llama.block_count", 2))).contains("twice"));
    // Tensor descriptions cut short.
    let mut bytes = base().tensor("t", &[32, 4], GgmlType::F32).header_bytes();
    bytes.truncate(bytes.len() - 20);
    truncated(read_bytes(&bytes));
}

#[test]
fn bad_alignment() {
    assert!(corrupt_detail(read_built(&base().u32("general.alignment", 3))).contains("power of two"));
    assert!(corrupt_detail(read_built(&base().u32("general.alignment", 0))).contains("power of two"));
    assert!(corrupt_detail(read_built(&base().string("general.alignment", "64"))).contains("u32"));
    let info = read_built(&base().alignment(64).tensor("t", &[32], GgmlType::F32)).unwrap();
    assert_eq!((info.alignment, info.data_offset % 64), (64, 0));
}

#[test]
fn long_strings_are_summarised_not_kept() {
    let long = "x".repeat(usize::try_from(MAX_STRING_LEN).unwrap() + 1);
    let info = read_built(&base().string("general.description", &long)).unwrap();
    assert_eq!(
        info.get("general.description"),
        Some(&MetaValue::LongString {
            len: MAX_STRING_LEN + 1
        })
    );
    // Chat templates may be longer than ordinary strings.
    let info = read_built(&base().string("tokenizer.chat_template", &long)).unwrap();
    assert_eq!(info.chat_template.map(|t| t.len()), Some(long.len()));
}

#[test]
fn every_error_names_the_file_and_a_remedy() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("m.gguf");
    let remedies = [
        "check the path",
        "choose",
        "download",
        "fetch it again",
        "update Hearth",
    ];
    let inputs: Vec<Vec<u8>> = vec![
        vec![],
        b"text".to_vec(),
        GgufBuilder::new().version(7).header_bytes(),
        b"GGUF\x03\x00\x00\x00\x01".to_vec(),
        base().tensor_raw("t", &[32], 99, 0).header_bytes(),
    ];
    for bytes in inputs {
        std::fs::write(&p, bytes).unwrap();
        let msg = read(&p).unwrap_err().to_string();
        assert!(msg.contains(&p.display().to_string()), "{msg}");
        assert!(remedies.iter().any(|r| msg.contains(r)), "{msg}");
    }
}

#[test]
fn every_value_the_reader_returns_is_written_back_as_read() {
    // One enum for reading and writing: each value goes out through the builder and
    // comes back from the reader equal.
    let values = [
        MetaValue::U8(7),
        MetaValue::I8(-7),
        MetaValue::U16(700),
        MetaValue::I16(-700),
        MetaValue::U32(70_000),
        MetaValue::I32(-70_000),
        MetaValue::U64(7 << 40),
        MetaValue::I64(-(7 << 40)),
        MetaValue::F32(0.25),
        MetaValue::F64(-1.5),
        MetaValue::Bool(true),
        MetaValue::String("hearth".into()),
    ];
    let mut b = base();
    for (i, v) in values.iter().enumerate() {
        b = b.kv(&format!("v{i}"), v.clone());
    }
    let b = b.u32_array("arr", &[1, 2, 3]);
    let info = read_built(&b).unwrap();
    for (i, v) in values.iter().enumerate() {
        assert_eq!(info.metadata.get(&format!("v{i}")), Some(v), "v{i}");
    }
    let arr = info.metadata.get("arr").unwrap().clone();
    let again = read_built(&base().kv("arr", arr.clone())).unwrap();
    assert_eq!(again.metadata.get("arr"), Some(&arr));
}
