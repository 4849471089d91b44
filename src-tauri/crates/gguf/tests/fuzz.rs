//! Property tests: thousands of damaged headers never panic, never allocate without
//! bound (a huge allocation would abort the test), and cost reads in proportion to
//! their bytes, never more (counted, not timed: a busy machine cannot fail it).
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{self, BufRead, Cursor, Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::OnceLock;

use hearth_gguf::builder::{GgufBuilder, Value};
use hearth_gguf::MetaValue;
use hearth_gguf::{read_from, GgmlType, GgufError, ValueType};
use proptest::prelude::*;

/// A small valid GGUF touching every value type, nested arrays and tensors.
fn synthetic() -> &'static Vec<u8> {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| {
        let b = GgufBuilder::new()
            .string("general.architecture", "llama")
            .string("general.name", "fuzz")
            .u32("general.file_type", 15)
            .u32("llama.block_count", 2)
            .u32("llama.context_length", 4096)
            .u64("llama.embedding_length", 256)
            .f32("llama.rope.freq_base", 10000.0)
            .bool("tokenizer.ggml.add_bos_token", true)
            .kv("i8", MetaValue::I8(-1))
            .kv("i16", MetaValue::I16(-2))
            .kv("u16", MetaValue::U16(2))
            .kv("i64", MetaValue::I64(-3))
            .kv("f64", MetaValue::F64(0.5))
            .u32_array("llama.attention.head_count_kv", &[2, 4])
            .kv(
                "nested",
                Value::Array(
                    ValueType::Array,
                    vec![Value::Array(
                        ValueType::I32,
                        vec![MetaValue::I32(1).into(), MetaValue::I32(2).into()],
                    )],
                ),
            )
            .string_array("general.languages", &["en", "de"])
            .tokens(40)
            .string("tokenizer.chat_template", "{{ messages }}")
            .tensor("token_embd.weight", &[256, 4], GgmlType::Q4_K)
            .tensor("blk.0.attn_q.weight", &[256, 2], GgmlType::Q8_0)
            .tensor("blk.1.attn_norm.weight", &[256], GgmlType::F32)
            .tensor("output.weight", &[64, 2], GgmlType::F16);
        let mut bytes = b.header_bytes();
        bytes.resize(bytes.len() + usize::try_from(b.data_len()).unwrap(), 0);
        bytes
    })
}

/// The whole header of the real SmolLM2 file (`make models`) and its file size.
fn smollm2_header() -> &'static (Vec<u8>, u64) {
    static HEADER: OnceLock<(Vec<u8>, u64)> = OnceLock::new();
    HEADER.get_or_init(|| {
        let path = common::model(common::SMOLLM2);
        let info = hearth_gguf::read(&path).unwrap();
        let mut buf = Vec::new();
        std::fs::File::open(&path)
            .unwrap()
            .take(info.data_offset)
            .read_to_end(&mut buf)
            .unwrap();
        (buf, info.file_size)
    })
}

#[derive(Debug, Clone)]
enum Mutation {
    FlipBit(usize, u8),
    SetByte(usize, u8),
    WriteU64(usize, u64),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let interesting = prop_oneof![
        any::<u64>(),
        Just(0u64),
        Just(u64::MAX),
        Just(1 << 62),
        Just(1 << 63),
        (0u64..64),
        (0u64..1 << 32),
    ];
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(i, b)| Mutation::FlipBit(i, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, v)| Mutation::SetByte(i, v)),
        (any::<usize>(), interesting).prop_map(|(i, v)| Mutation::WriteU64(i, v)),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

/// Applies mutations to the first `window` bytes of `bytes` (positions are
/// taken modulo the window, so they land in the header).
fn mutate(bytes: &[u8], window: usize, muts: &[Mutation]) -> Vec<u8> {
    let mut v = bytes.to_vec();
    for m in muts {
        let w = window.min(v.len()).max(1);
        match *m {
            Mutation::FlipBit(i, b) => {
                if let Some(x) = v.get_mut(i % w) {
                    *x ^= 1 << b;
                }
            }
            Mutation::SetByte(i, val) => {
                if let Some(x) = v.get_mut(i % w) {
                    *x = val;
                }
            }
            Mutation::WriteU64(i, val) => {
                let at = i % w;
                for (k, byte) in val.to_le_bytes().into_iter().enumerate() {
                    if let Some(x) = v.get_mut(at + k) {
                        *x = byte;
                    }
                }
            }
            Mutation::Truncate(n) => v.truncate(n % (v.len() + 1)),
        }
    }
    v
}

/// The reader under test's source: counts its calls and the bytes they hand out, and
/// every seek that goes backwards (which could read bytes again).
struct Counting {
    inner: Cursor<Vec<u8>>,
    calls: u64,
    bytes: u64,
    backward_seeks: u64,
}

impl Read for Counting {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.calls += 1;
        let n = self.inner.read(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }
}

impl BufRead for Counting {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.calls += 1;
        self.inner.fill_buf()
    }

    fn consume(&mut self, n: usize) {
        self.bytes += n as u64;
        self.inner.consume(n);
    }
}

impl Seek for Counting {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        self.calls += 1;
        let before = self.inner.position();
        let after = self.inner.seek(to)?;
        self.backward_seeks += u64::from(after < before);
        Ok(after)
    }
}

/// Reads `bytes` claiming the file is `file_size` long. Checks that the work is
/// bounded by the input, which is what a hang would break: no byte is read twice, and
/// every call to the source but the last hands out at least one byte (so the reader
/// cannot spin on a source that gives nothing). And that any error is one of the
/// user-facing kinds with a message.
fn check(bytes: Vec<u8>, file_size: u64) -> Result<(), TestCaseError> {
    let len = bytes.len() as u64;
    let mut source = Counting {
        inner: Cursor::new(bytes),
        calls: 0,
        bytes: 0,
        backward_seeks: 0,
    };
    let result = read_from(&mut source, file_size, Path::new("fuzz.gguf"));
    prop_assert_eq!(source.backward_seeks, 0);
    prop_assert!(source.bytes <= len, "{} bytes read of {len}", source.bytes);
    // Forward seeks skip bytes without handing them out: one call each, at most one
    // per 64 KiB skipped (shorter skips go through the buffer).
    prop_assert!(
        source.calls <= source.bytes + file_size / (64 * 1024) + 2,
        "{} calls for {} bytes",
        source.calls,
        source.bytes
    );
    match result {
        Ok(info) => {
            prop_assert!(info.data_offset <= info.file_size || info.tensors.is_empty());
            prop_assert!(info
                .tensors
                .iter()
                .all(|t| info.data_offset + t.offset + t.n_bytes <= file_size));
        }
        Err(e) => {
            prop_assert!(!matches!(e, GgufError::Io { .. } | GgufError::NotFound { .. }), "{e:?}");
            prop_assert!(e.to_string().contains("fuzz.gguf"));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn mutated_synthetic_headers(muts in prop::collection::vec(mutation(), 1..8)) {
        let base = synthetic();
        let v = mutate(base, base.len(), &muts);
        let len = v.len() as u64;
        check(v, len)?;
    }

    #[test]
    fn random_bytes_after_a_valid_magic(version in 2u32..4, tail in prop::collection::vec(any::<u8>(), 0..512)) {
        let mut v = b"GGUF".to_vec();
        v.extend(version.to_le_bytes());
        v.extend(tail);
        let len = v.len() as u64;
        check(v, len)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, failure_persistence: None, ..ProptestConfig::default() })]

    /// The first 64 KiB of a real header, as a file of that length.
    #[test]
    fn mutated_real_header_prefix(muts in prop::collection::vec(mutation(), 1..8)) {
        let (header, _) = smollm2_header();
        let prefix = &header[..header.len().min(64 * 1024)];
        let v = mutate(prefix, prefix.len(), &muts);
        let len = v.len() as u64;
        check(v, len)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, failure_persistence: None, ..ProptestConfig::default() })]

    /// The whole real header, mutated in its first 64 KiB or at its tensor
    /// descriptions, claiming the real file size (data is never read).
    #[test]
    fn mutated_real_header_whole(muts in prop::collection::vec(mutation(), 1..4), at_end in any::<bool>()) {
        let (header, file_size) = smollm2_header();
        let v = if at_end {
            // Mutate the last 16 KiB: the tensor descriptions.
            let split = header.len().saturating_sub(16 * 1024);
            let mut v = header[..split].to_vec();
            v.extend(mutate(&header[split..], 16 * 1024, &muts));
            v
        } else {
            mutate(header, 64 * 1024, &muts)
        };
        check(v, *file_size)?;
    }
}

#[test]
fn unmutated_inputs_are_valid() {
    let base = synthetic();
    let info = read_from(Cursor::new(base.clone()), base.len() as u64, Path::new("x.gguf")).unwrap();
    assert_eq!((info.tensor_count, info.vocab_size), (4, Some(40)));
    let (header, size) = smollm2_header();
    let info = read_from(Cursor::new(header.clone()), *size, Path::new("x.gguf")).unwrap();
    assert_eq!(info.block_count, Some(30));
}

/// The mutations are not all caught at the magic: a deterministic sample
/// reaches every outcome, so the property tests exercise the deep paths.
#[test]
fn mutations_reach_every_outcome() {
    let base = synthetic();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut seen = std::collections::BTreeMap::<&str, u32>::new();
    for _ in 0..4000 {
        let m = match next() % 4 {
            0 => Mutation::FlipBit(next() as usize, (next() % 8) as u8),
            1 => Mutation::SetByte(next() as usize, next() as u8),
            2 => Mutation::WriteU64(next() as usize, next() >> (next() % 64)),
            _ => Mutation::Truncate(next() as usize),
        };
        let v = mutate(base, base.len(), &[m]);
        let kind = match read_from(Cursor::new(v.clone()), v.len() as u64, Path::new("f.gguf")) {
            Ok(_) => "ok",
            Err(GgufError::Truncated { .. }) => "truncated",
            Err(GgufError::Corrupt { .. }) => "corrupt",
            Err(GgufError::Invalid { .. }) => "invalid",
            Err(GgufError::NotGguf { .. }) => "not_gguf",
            Err(GgufError::UnsupportedVersion { .. }) => "version",
            Err(GgufError::Empty { .. }) => "empty",
            Err(e) => panic!("{e:?}"),
        };
        *seen.entry(kind).or_default() += 1;
    }
    println!("outcomes of 4000 single mutations: {seen:?}");
    for kind in ["ok", "truncated", "corrupt", "invalid", "not_gguf", "version"] {
        assert!(seen.get(kind).copied().unwrap_or(0) > 0, "{kind} never seen: {seen:?}");
    }
}
