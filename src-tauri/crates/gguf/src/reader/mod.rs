//! Bounds-checked parsing of the GGUF header.
//!
//! Models are gigabytes and may be half-downloaded, damaged or hostile, so
//! nothing in the header is trusted: every length and count is compared with
//! the bytes left in the file *before* anything is allocated or skipped, every
//! product is overflow-checked, and all kept data (keys, strings, small
//! arrays, tensor descriptions) is charged against a fixed memory budget.
//! Tensor data is never read; only its claimed extent is checked against the
//! file size.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Seek};
use std::path::Path;

use crate::error::GgufError;
use crate::info::{GgufInfo, TensorInfo};
use crate::metadata::{ArrayValues, MetaArray, MetaValue, ValueType};
use crate::sniff;

mod source;
mod tensors;
mod text;

use source::{Res, Source};
use text::TextCheck;

/// The four bytes every GGUF file starts with.
pub const MAGIC: [u8; 4] = *b"GGUF";
/// Tensor data alignment when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// Numeric arrays up to this many elements keep their values.
pub const MAX_KEPT_ARRAY_LEN: u64 = 1024;
/// Longest metadata string kept in memory; longer ones become
/// [`MetaValue::LongString`].
pub const MAX_STRING_LEN: u64 = 1 << 20;
/// Longest chat template kept (`tokenizer.chat_template*`): some tool-use
/// templates are far longer than ordinary metadata strings.
pub const MAX_TEMPLATE_LEN: u64 = 4 << 20;
/// Longest metadata key; real keys are under 100 bytes.
pub const MAX_KEY_LEN: u64 = 1024;
/// Longest tensor name (llama.cpp itself stops at 63 bytes).
pub const MAX_TENSOR_NAME_LEN: u64 = 1024;
/// Most metadata entries accepted; real models have under 100.
pub const MAX_KV_COUNT: u64 = 65_536;
/// Most tensors accepted; real models have a few thousand at most.
pub const MAX_TENSOR_COUNT: u64 = 65_536;
/// Most elements of a string (or nested) array, which are walked one by one;
/// the largest real vocabularies and merge lists are around a million.
pub const MAX_STRING_ARRAY_LEN: u64 = 1 << 24;
/// Deepest array-of-array nesting accepted (llama.cpp writes none).
pub const MAX_ARRAY_DEPTH: u32 = 3;
/// ggml tensors have at most four dimensions.
pub const MAX_DIMS: u32 = 4;
/// Total bytes of header data kept in memory, whatever the header claims.
pub const MEMORY_BUDGET: u64 = 16 << 20;
/// The key of the vocabulary, whose entries must be UTF-8 text and distinct.
pub const VOCABULARY_KEY: &str = "tokenizer.ggml.tokens";
/// Most bytes of text in the vocabulary, which is read whole to check it: the
/// largest real ones hold a few MB (Gemma 3's 262,144 entries: 2.3 MB).
pub const MAX_VOCABULARY_BYTES: u64 = 64 << 20;

/// Fewest bytes of one tensor description: name length, n_dims, type, offset.
const MIN_TENSOR_INFO: u64 = 8 + 4 + 4 + 8;
/// Fewest bytes of one metadata entry: key length, value type, 1-byte value.
const MIN_KV: u64 = 8 + 4 + 1;
/// Skips shorter than this go through the read buffer; longer ones seek.
const SEEK_THRESHOLD: u64 = 64 * 1024;
/// Memory charged per vocabulary entry while repeats are looked for: a 16-byte
/// fingerprint in a hash set, with the set's spare room.
const FINGERPRINT_COST: u64 = 40;

/// Reads the header of the GGUF file at `path`; tensor data is not loaded.
///
/// The checks run in the order a user's mistakes are likely: missing path,
/// folder, empty file, not a GGUF at all, wrong version, cut-short header,
/// values no model has (damaged structures, then hyperparameters llama.cpp cannot
/// load: [`crate::limits`]), cut-short tensor data.
pub fn read(path: &Path) -> Result<GgufInfo, GgufError> {
    let owned = || path.to_path_buf();
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(GgufError::NotFound { path: owned() }),
        Err(source) => return Err(GgufError::Io { path: owned(), source }),
    };
    if meta.is_dir() {
        return Err(GgufError::IsDirectory { path: owned() });
    }
    if !meta.is_file() {
        return Err(GgufError::NotAFile { path: owned() });
    }
    if meta.len() == 0 {
        return Err(GgufError::Empty { path: owned() });
    }
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(GgufError::NotFound { path: owned() }),
        Err(source) => return Err(GgufError::Io { path: owned(), source }),
    };
    read_from(BufReader::with_capacity(64 * 1024, file), meta.len(), path)
}

/// Reads a GGUF header from any buffered, seekable source of `file_size`
/// bytes (for tests and in-memory data); `path` is only used in messages.
pub fn read_from<R: BufRead + Seek>(reader: R, file_size: u64, path: &Path) -> Result<GgufInfo, GgufError> {
    if file_size == 0 {
        return Err(GgufError::Empty {
            path: path.to_path_buf(),
        });
    }
    let mut src = Source {
        r: reader,
        pos: 0,
        size: file_size,
        path,
        budget: MEMORY_BUDGET,
    };
    let raw = src.header()?;
    let info = GgufInfo::from_raw(path.to_path_buf(), file_size, raw);
    crate::limits::check(&info)?;
    src.check_data_extent(&info.tensors, info.data_offset)?;
    Ok(info)
}

/// What the parser found, before the typed summary is derived.
pub(crate) struct RawHeader {
    pub version: u32,
    pub kv_count: u64,
    pub alignment: u64,
    pub data_offset: u64,
    pub metadata: BTreeMap<String, MetaValue>,
    pub tensors: Vec<TensorInfo>,
}

impl<R: BufRead + Seek> Source<'_, R> {
    fn header(&mut self) -> Res<RawHeader> {
        self.magic()?;
        let version = self.version()?;
        let tensor_count = self.u64("the tensor count")?;
        let kv_count = self.u64("the metadata count")?;
        // Each entry takes some minimum room, so the counts are bounded by
        // what is left of the file before any allocation depends on them.
        let min_needed = tensor_count
            .checked_mul(MIN_TENSOR_INFO)
            .and_then(|t| kv_count.checked_mul(MIN_KV).and_then(|k| k.checked_add(t)))
            .unwrap_or(u64::MAX);
        self.need(min_needed, || {
            format!("its {tensor_count} tensor descriptions and {kv_count} metadata entries")
        })?;
        if kv_count > MAX_KV_COUNT {
            return Err(self.corrupt(format!(
                "it claims {kv_count} metadata entries (at most {MAX_KV_COUNT} accepted)"
            )));
        }
        if tensor_count > MAX_TENSOR_COUNT {
            return Err(self.corrupt(format!(
                "it claims {tensor_count} tensors (at most {MAX_TENSOR_COUNT} accepted)"
            )));
        }

        let mut metadata = BTreeMap::new();
        for i in 0..kv_count {
            let (key, value) = self.kv(i)?;
            if metadata.contains_key(&key) {
                return Err(self.corrupt(format!("metadata key '{key}' appears twice")));
            }
            metadata.insert(key, value);
        }
        let alignment = self.alignment(&metadata)?;

        let mut tensors = Vec::with_capacity(usize::try_from(tensor_count.min(4096)).unwrap_or(0));
        for i in 0..tensor_count {
            tensors.push(self.tensor_info(i, alignment)?);
        }
        let mut names = HashSet::with_capacity(tensors.len());
        for t in &tensors {
            if !names.insert(t.name.as_str()) {
                return Err(self.corrupt(format!("tensor name '{}' appears twice", t.name)));
            }
        }

        // llama.cpp pads to the alignment only when there are tensors.
        let data_offset = if tensors.is_empty() {
            self.pos
        } else {
            align_up(self.pos, alignment).ok_or_else(|| self.corrupt("the data offset overflows"))?
        };

        Ok(RawHeader {
            version,
            kv_count,
            alignment,
            data_offset,
            metadata,
            tensors,
        })
    }

    fn magic(&mut self) -> Res<()> {
        let n = usize::try_from(self.size.min(4)).unwrap_or(4);
        let mut got = [0u8; 4];
        self.fill(&mut got[..n], "the GGUF magic")?;
        if got[..n] == MAGIC[..n] {
            if n < 4 {
                return Err(self.truncated(4, "the GGUF magic"));
            }
            return Ok(());
        }
        // Not a GGUF: look at the first bytes to say what it is instead.
        let mut head = got[..n].to_vec();
        let more = self.size.min(sniff::SNIFF_LEN as u64) - n as u64;
        if more > 0 {
            let mut rest = vec![0u8; usize::try_from(more).unwrap_or(0)];
            if self.fill(&mut rest, "the first bytes").is_ok() {
                head.extend_from_slice(&rest);
            }
        }
        Err(GgufError::NotGguf {
            path: self.path(),
            looks_like: sniff::describe(&head),
        })
    }

    fn version(&mut self) -> Res<u32> {
        let version = self.u32("the GGUF version")?;
        if version == 2 || version == 3 {
            return Ok(version);
        }
        let swapped = version.swap_bytes();
        let hint = if swapped == 2 || swapped == 3 {
            "it is a big-endian GGUF (made for IBM mainframes); download the ordinary little-endian file".to_string()
        } else if version == 1 {
            "it was made by a 2023 llama.cpp; download a newer conversion of this model".to_string()
        } else if version == 0 || version > 0xFFFF {
            "the header is damaged; download the model again".to_string()
        } else {
            "the file is newer than this Hearth understands; update Hearth".to_string()
        };
        Err(GgufError::UnsupportedVersion {
            path: self.path(),
            version,
            hint,
        })
    }

    fn kv(&mut self, index: u64) -> Res<(String, MetaValue)> {
        let len = self.string_len(&format!("the name of metadata entry {index}"))?;
        if len > MAX_KEY_LEN {
            return Err(self.corrupt(format!(
                "metadata entry {index} has a {len}-byte name (at most {MAX_KEY_LEN})"
            )));
        }
        if !self.charge(len + 64) {
            return Err(self.corrupt(format!("the metadata names exceed {MEMORY_BUDGET} bytes in total")));
        }
        let key = self.text(len, "a metadata name")?;
        let ty = self.u32(&format!("the type of metadata '{key}'"))?;
        let ty = ValueType::from_u32(ty)
            .ok_or_else(|| self.corrupt(format!("metadata '{key}' has unknown value type {ty}")))?;
        let cap = if key.starts_with("tokenizer.chat_template") {
            MAX_TEMPLATE_LEN
        } else {
            MAX_STRING_LEN
        };
        let value = self.value(ty, &key, 0, cap)?;
        Ok((key, value))
    }

    /// Reads one value of type `ty`. `cap` is the longest string kept.
    fn value(&mut self, ty: ValueType, key: &str, depth: u32, cap: u64) -> Res<MetaValue> {
        let what = || format!("the value of metadata '{key}'");
        Ok(match ty {
            ValueType::U8 => MetaValue::U8(u8::from_le_bytes(self.array(&what())?)),
            ValueType::I8 => MetaValue::I8(i8::from_le_bytes(self.array(&what())?)),
            ValueType::U16 => MetaValue::U16(u16::from_le_bytes(self.array(&what())?)),
            ValueType::I16 => MetaValue::I16(i16::from_le_bytes(self.array(&what())?)),
            ValueType::U32 => MetaValue::U32(u32::from_le_bytes(self.array(&what())?)),
            ValueType::I32 => MetaValue::I32(i32::from_le_bytes(self.array(&what())?)),
            ValueType::U64 => MetaValue::U64(u64::from_le_bytes(self.array(&what())?)),
            ValueType::I64 => MetaValue::I64(i64::from_le_bytes(self.array(&what())?)),
            ValueType::F32 => MetaValue::F32(f32::from_le_bytes(self.array(&what())?)),
            ValueType::F64 => MetaValue::F64(f64::from_le_bytes(self.array(&what())?)),
            ValueType::Bool => MetaValue::Bool(self.array::<1>(&what())?[0] != 0),
            ValueType::String => {
                let len = self.string_len(&what())?;
                if len <= cap && self.charge(len) {
                    MetaValue::String(self.text(len, &what())?)
                } else {
                    self.skip(len, &what())?;
                    MetaValue::LongString { len }
                }
            }
            ValueType::Array => MetaValue::Array(self.array_value(key, depth + 1)?),
        })
    }

    fn array_value(&mut self, key: &str, depth: u32) -> Res<MetaArray> {
        if depth > MAX_ARRAY_DEPTH {
            return Err(self.corrupt(format!(
                "metadata '{key}' nests arrays deeper than {MAX_ARRAY_DEPTH} levels"
            )));
        }
        let what = format!("the array in metadata '{key}'");
        let ty = self.u32(&what)?;
        let elem_type = ValueType::from_u32(ty)
            .ok_or_else(|| self.corrupt(format!("the array in metadata '{key}' has unknown element type {ty}")))?;
        let len = self.u64(&what)?;
        let min = len.saturating_mul(elem_type.min_size());
        self.need(min, || format!("the {len} elements of {what}"))?;

        if let Some(size) = elem_type.fixed_size() {
            // `min` is exactly the byte size for fixed-size elements.
            if len <= MAX_KEPT_ARRAY_LEN && self.charge(min) {
                let values = self.numeric_array(elem_type, len, &what)?;
                return Ok(MetaArray {
                    elem_type,
                    len,
                    values: Some(values),
                });
            }
            debug_assert_eq!(min, len * size);
            self.skip(min, &what)?;
        } else if len > MAX_STRING_ARRAY_LEN {
            return Err(self.corrupt(format!(
                "{what} claims {len} elements (at most {MAX_STRING_ARRAY_LEN} strings or arrays accepted)"
            )));
        } else if elem_type == ValueType::String && depth == 1 && key == VOCABULARY_KEY {
            self.vocabulary(len)?;
        } else if elem_type == ValueType::String {
            for _ in 0..len {
                let n = self.string_len(&what)?;
                self.skip(n, &what)?;
            }
        } else {
            for _ in 0..len {
                self.array_value(key, depth + 1)?;
            }
        }
        Ok(MetaArray {
            elem_type,
            len,
            values: None,
        })
    }

    /// Reads past the vocabulary's `len` strings, checking each: llama.cpp aborts on an
    /// entry that is not UTF-8 text (its tokenizer decodes every entry) and on two equal
    /// entries (its token-to-id map comes out shorter than the vocabulary).
    fn vocabulary(&mut self, len: u64) -> Res<()> {
        let what = format!("the vocabulary ({VOCABULARY_KEY})");
        // Repeats are found by fingerprint; the set is freed with this call, so it is
        // charged to the memory budget only meanwhile. A vocabulary too large for the
        // budget (over 400,000 entries, more than any real one) is not looked through
        // for repeats.
        let cost = len.saturating_mul(FINGERPRINT_COST);
        let mut seen = self
            .charge(cost)
            .then(|| HashSet::with_capacity(usize::try_from(len).unwrap_or(0)));
        let mut total = 0u64;
        for index in 0..len {
            let n = self.string_len(&what)?;
            total = total.saturating_add(n);
            if total > MAX_VOCABULARY_BYTES {
                return Err(self.invalid(
                    VOCABULARY_KEY,
                    format!("the vocabulary ({VOCABULARY_KEY}) holds more than {MAX_VOCABULARY_BYTES} bytes of text by entry {index}, far more than any model"),
                ));
            }
            let mut check = TextCheck::new();
            self.skip_checked(n, &what, &mut check)?;
            let (utf8, fingerprint) = check.finish();
            if !utf8 {
                return Err(self.invalid(
                    VOCABULARY_KEY,
                    format!("vocabulary entry {index} ({VOCABULARY_KEY}) is not UTF-8 text"),
                ));
            }
            // llama.cpp renames empty entries apart ("[EMPTY_<index>]").
            if n > 0 && seen.as_mut().is_some_and(|seen| !seen.insert(fingerprint)) {
                return Err(self.invalid(
                    VOCABULARY_KEY,
                    format!("vocabulary entry {index} ({VOCABULARY_KEY}) repeats an earlier entry"),
                ));
            }
        }
        if seen.is_some() {
            self.budget += cost;
        }
        Ok(())
    }

    fn numeric_array(&mut self, ty: ValueType, len: u64, what: &str) -> Res<ArrayValues> {
        let n = usize::try_from(len).unwrap_or(0);
        macro_rules! collect {
            ($variant:ident, $t:ty) => {{
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push(<$t>::from_le_bytes(self.array(what)?));
                }
                ArrayValues::$variant(v)
            }};
        }
        Ok(match ty {
            ValueType::U8 => collect!(U8, u8),
            ValueType::I8 => collect!(I8, i8),
            ValueType::U16 => collect!(U16, u16),
            ValueType::I16 => collect!(I16, i16),
            ValueType::U32 => collect!(U32, u32),
            ValueType::I32 => collect!(I32, i32),
            ValueType::U64 => collect!(U64, u64),
            ValueType::I64 => collect!(I64, i64),
            ValueType::F32 => collect!(F32, f32),
            ValueType::F64 => collect!(F64, f64),
            ValueType::Bool => {
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push(self.array::<1>(what)?[0] != 0);
                }
                ArrayValues::Bool(v)
            }
            ValueType::String | ValueType::Array => return Err(self.corrupt("internal: not a numeric array")),
        })
    }

    fn alignment(&self, metadata: &BTreeMap<String, MetaValue>) -> Res<u64> {
        match metadata.get("general.alignment") {
            None => Ok(DEFAULT_ALIGNMENT),
            Some(MetaValue::U32(a)) if *a != 0 && a.is_power_of_two() => Ok(u64::from(*a)),
            Some(MetaValue::U32(a)) => Err(self.corrupt(format!("general.alignment is {a}, not a power of two"))),
            Some(_) => Err(self.corrupt("general.alignment is not a u32")),
        }
    }
}

/// `n` rounded up to a multiple of `align` (a power of two), or `None` on overflow.
pub(crate) fn align_up(n: u64, align: u64) -> Option<u64> {
    n.checked_add(align - 1).map(|v| v & !(align - 1))
}
