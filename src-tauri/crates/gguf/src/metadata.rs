//! Metadata values as kept in memory.
//!
//! A GGUF header can hold hundreds of thousands of token strings and merges.
//! The UI and the planner need none of them, only their counts, so arrays are
//! summarised (element type + length) and only small numeric arrays, such as
//! per-layer head counts, keep their values.

use serde::Serialize;

/// A GGUF metadata value type, numbered as in `enum gguf_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueType {
    U8 = 0,
    I8 = 1,
    U16 = 2,
    I16 = 3,
    U32 = 4,
    I32 = 5,
    F32 = 6,
    Bool = 7,
    String = 8,
    Array = 9,
    U64 = 10,
    I64 = 11,
    F64 = 12,
}

impl ValueType {
    /// The type with this `gguf_type` number.
    pub fn from_u32(n: u32) -> Option<ValueType> {
        use ValueType::*;
        Some(match n {
            0 => U8,
            1 => I8,
            2 => U16,
            3 => I16,
            4 => U32,
            5 => I32,
            6 => F32,
            7 => Bool,
            8 => String,
            9 => Array,
            10 => U64,
            11 => I64,
            12 => F64,
            _ => return None,
        })
    }

    /// Bytes of a fixed-size value; `None` for strings and arrays.
    pub fn fixed_size(self) -> Option<u64> {
        use ValueType::*;
        match self {
            U8 | I8 | Bool => Some(1),
            U16 | I16 => Some(2),
            U32 | I32 | F32 => Some(4),
            U64 | I64 | F64 => Some(8),
            String | Array => None,
        }
    }

    /// The fewest bytes one value of this type can take in a file (a string
    /// is at least its 8-byte length, an array its 4-byte type + 8-byte
    /// count). Multiplying a claimed count by this bounds it by the file size.
    pub fn min_size(self) -> u64 {
        match self {
            ValueType::String => 8,
            ValueType::Array => 12,
            other => other.fixed_size().unwrap_or(1),
        }
    }
}

/// A metadata value.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", content = "value", rename_all = "snake_case")]
pub enum MetaValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    String(String),
    /// A string that was too long (or over the header's memory budget) to
    /// keep; only its byte length is known.
    LongString {
        len: u64,
    },
    Array(MetaArray),
}

impl MetaValue {
    /// The type number a file gives this value.
    pub fn value_type(&self) -> ValueType {
        match self {
            MetaValue::U8(_) => ValueType::U8,
            MetaValue::I8(_) => ValueType::I8,
            MetaValue::U16(_) => ValueType::U16,
            MetaValue::I16(_) => ValueType::I16,
            MetaValue::U32(_) => ValueType::U32,
            MetaValue::I32(_) => ValueType::I32,
            MetaValue::U64(_) => ValueType::U64,
            MetaValue::I64(_) => ValueType::I64,
            MetaValue::F32(_) => ValueType::F32,
            MetaValue::F64(_) => ValueType::F64,
            MetaValue::Bool(_) => ValueType::Bool,
            MetaValue::String(_) | MetaValue::LongString { .. } => ValueType::String,
            MetaValue::Array(_) => ValueType::Array,
        }
    }

    /// The value's bytes as a file holds them, without its type number (the GGUF
    /// builder writes headers with this). A `LongString` is written as that many `x`s;
    /// an array whose values were not kept (strings, long arrays) has nothing to write
    /// and is refused.
    pub fn write_payload(&self, out: &mut Vec<u8>) -> Result<(), &'static str> {
        match self {
            MetaValue::U8(v) => out.push(*v),
            MetaValue::I8(v) => out.extend(v.to_le_bytes()),
            MetaValue::U16(v) => out.extend(v.to_le_bytes()),
            MetaValue::I16(v) => out.extend(v.to_le_bytes()),
            MetaValue::U32(v) => out.extend(v.to_le_bytes()),
            MetaValue::I32(v) => out.extend(v.to_le_bytes()),
            MetaValue::U64(v) => out.extend(v.to_le_bytes()),
            MetaValue::I64(v) => out.extend(v.to_le_bytes()),
            MetaValue::F32(v) => out.extend(v.to_le_bytes()),
            MetaValue::F64(v) => out.extend(v.to_le_bytes()),
            MetaValue::Bool(v) => out.push(u8::from(*v)),
            MetaValue::String(s) => {
                out.extend((s.len() as u64).to_le_bytes());
                out.extend(s.as_bytes());
            }
            MetaValue::LongString { len } => {
                out.extend(len.to_le_bytes());
                out.extend(std::iter::repeat_n(b'x', usize::try_from(*len).unwrap_or(0)));
            }
            MetaValue::Array(array) => {
                let values = array
                    .values
                    .as_ref()
                    .ok_or("an array without its values cannot be written")?;
                out.extend((array.elem_type as u32).to_le_bytes());
                out.extend(array.len.to_le_bytes());
                values.write(out);
            }
        }
        Ok(())
    }
}

/// An array value: always its element type and length, values only for
/// small numeric arrays.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetaArray {
    pub elem_type: ValueType,
    pub len: u64,
    /// Kept for numeric/bool arrays of at most
    /// [`MAX_KEPT_ARRAY_LEN`](crate::reader::MAX_KEPT_ARRAY_LEN) elements.
    pub values: Option<ArrayValues>,
}

/// The values of a small numeric array, stored compactly by element type.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum ArrayValues {
    U8(Vec<u8>),
    I8(Vec<i8>),
    U16(Vec<u16>),
    I16(Vec<i16>),
    U32(Vec<u32>),
    I32(Vec<i32>),
    U64(Vec<u64>),
    I64(Vec<i64>),
    F32(Vec<f32>),
    F64(Vec<f64>),
    Bool(Vec<bool>),
}

impl ArrayValues {
    fn write(&self, out: &mut Vec<u8>) {
        fn all<T: Copy, const N: usize>(out: &mut Vec<u8>, v: &[T], bytes: impl Fn(T) -> [u8; N]) {
            for &x in v {
                out.extend(bytes(x));
            }
        }
        match self {
            ArrayValues::U8(v) => out.extend(v),
            ArrayValues::I8(v) => all(out, v, i8::to_le_bytes),
            ArrayValues::U16(v) => all(out, v, u16::to_le_bytes),
            ArrayValues::I16(v) => all(out, v, i16::to_le_bytes),
            ArrayValues::U32(v) => all(out, v, u32::to_le_bytes),
            ArrayValues::I32(v) => all(out, v, i32::to_le_bytes),
            ArrayValues::U64(v) => all(out, v, u64::to_le_bytes),
            ArrayValues::I64(v) => all(out, v, i64::to_le_bytes),
            ArrayValues::F32(v) => all(out, v, f32::to_le_bytes),
            ArrayValues::F64(v) => all(out, v, f64::to_le_bytes),
            ArrayValues::Bool(v) => out.extend(v.iter().map(|&b| u8::from(b))),
        }
    }

    /// The values as unsigned integers, if they all are non-negative integers.
    pub fn as_u64s(&self) -> Option<Vec<u64>> {
        fn conv<T: Copy>(v: &[T], f: impl Fn(T) -> Option<u64>) -> Option<Vec<u64>> {
            v.iter().map(|x| f(*x)).collect()
        }
        match self {
            ArrayValues::U8(v) => conv(v, |x| Some(u64::from(x))),
            ArrayValues::U16(v) => conv(v, |x| Some(u64::from(x))),
            ArrayValues::U32(v) => conv(v, |x| Some(u64::from(x))),
            ArrayValues::U64(v) => conv(v, Some),
            ArrayValues::I8(v) => conv(v, |x| u64::try_from(x).ok()),
            ArrayValues::I16(v) => conv(v, |x| u64::try_from(x).ok()),
            ArrayValues::I32(v) => conv(v, |x| u64::try_from(x).ok()),
            ArrayValues::I64(v) => conv(v, |x| u64::try_from(x).ok()),
            ArrayValues::F32(_) | ArrayValues::F64(_) | ArrayValues::Bool(_) => None,
        }
    }

    /// The values as booleans, for bool arrays.
    pub fn as_bools(&self) -> Option<&[bool]> {
        match self {
            ArrayValues::Bool(v) => Some(v),
            _ => None,
        }
    }
}

impl MetaValue {
    /// The value as an unsigned integer, for any non-negative integer type
    /// (writers disagree on u32 vs u64 vs i32 for the same key).
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            MetaValue::U8(v) => Some(v.into()),
            MetaValue::U16(v) => Some(v.into()),
            MetaValue::U32(v) => Some(v.into()),
            MetaValue::U64(v) => Some(v),
            MetaValue::I8(v) => u64::try_from(v).ok(),
            MetaValue::I16(v) => u64::try_from(v).ok(),
            MetaValue::I32(v) => u64::try_from(v).ok(),
            MetaValue::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// The value as a float, for float and integer types.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            MetaValue::F32(v) => Some(v.into()),
            MetaValue::F64(v) => Some(v),
            MetaValue::I8(v) => Some(v.into()),
            MetaValue::I16(v) => Some(v.into()),
            MetaValue::I32(v) => Some(v.into()),
            // Precision loss above 2^53 is irrelevant for hyperparameters.
            #[allow(clippy::cast_precision_loss)]
            MetaValue::I64(v) => Some(v as f64),
            _ => self.as_u64().map(|v| v as f64),
        }
    }

    /// The string, if this is a kept string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            MetaValue::String(s) => Some(s),
            _ => None,
        }
    }

    /// The array summary, if this is an array.
    pub fn as_array(&self) -> Option<&MetaArray> {
        match self {
            MetaValue::Array(a) => Some(a),
            _ => None,
        }
    }

    /// The bool, if this is a bool.
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            MetaValue::Bool(b) => Some(b),
            _ => None,
        }
    }
}
