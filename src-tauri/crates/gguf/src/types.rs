//! The ggml tensor type table and llama.cpp's file-type (`general.file_type`) names.
//!
//! Tensor byte sizes are not stored in a GGUF file: they follow from the
//! element count and the type's block layout. A memory planner needs them to
//! be exact, so the table below is copied from llama.cpp's `ggml.c`
//! `type_traits` (block sizes) with `sizeof(block_*)` measured from
//! `ggml-common.h` (llama.cpp as vendored by llama-cpp-sys-2 0.1.161).

use serde::Serialize;

/// A ggml tensor element type, numbered as in `enum ggml_type`.
///
/// Numbers that llama.cpp removed (4, 5, 31-33, 36-38) are deliberately
/// absent: llama.cpp refuses to load such files, so they read as corrupt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[allow(non_camel_case_types)]
#[repr(u32)]
pub enum GgmlType {
    F32 = 0,
    F16 = 1,
    Q4_0 = 2,
    Q4_1 = 3,
    Q5_0 = 6,
    Q5_1 = 7,
    Q8_0 = 8,
    Q8_1 = 9,
    Q2_K = 10,
    Q3_K = 11,
    Q4_K = 12,
    Q5_K = 13,
    Q6_K = 14,
    Q8_K = 15,
    IQ2_XXS = 16,
    IQ2_XS = 17,
    IQ3_XXS = 18,
    IQ1_S = 19,
    IQ4_NL = 20,
    IQ3_S = 21,
    IQ2_S = 22,
    IQ4_XS = 23,
    I8 = 24,
    I16 = 25,
    I32 = 26,
    I64 = 27,
    F64 = 28,
    IQ1_M = 29,
    BF16 = 30,
    TQ1_0 = 34,
    TQ2_0 = 35,
    MXFP4 = 39,
    NVFP4 = 40,
    Q1_0 = 41,
    Q2_0 = 42,
}

/// `(type, name, elements per block, bytes per block)`.
const TABLE: &[(GgmlType, &str, u64, u64)] = &[
    (GgmlType::F32, "F32", 1, 4),
    (GgmlType::F16, "F16", 1, 2),
    (GgmlType::Q4_0, "Q4_0", 32, 18),
    (GgmlType::Q4_1, "Q4_1", 32, 20),
    (GgmlType::Q5_0, "Q5_0", 32, 22),
    (GgmlType::Q5_1, "Q5_1", 32, 24),
    (GgmlType::Q8_0, "Q8_0", 32, 34),
    (GgmlType::Q8_1, "Q8_1", 32, 36),
    (GgmlType::Q2_K, "Q2_K", 256, 84),
    (GgmlType::Q3_K, "Q3_K", 256, 110),
    (GgmlType::Q4_K, "Q4_K", 256, 144),
    (GgmlType::Q5_K, "Q5_K", 256, 176),
    (GgmlType::Q6_K, "Q6_K", 256, 210),
    (GgmlType::Q8_K, "Q8_K", 256, 292),
    (GgmlType::IQ2_XXS, "IQ2_XXS", 256, 66),
    (GgmlType::IQ2_XS, "IQ2_XS", 256, 74),
    (GgmlType::IQ3_XXS, "IQ3_XXS", 256, 98),
    (GgmlType::IQ1_S, "IQ1_S", 256, 50),
    (GgmlType::IQ4_NL, "IQ4_NL", 32, 18),
    (GgmlType::IQ3_S, "IQ3_S", 256, 110),
    (GgmlType::IQ2_S, "IQ2_S", 256, 82),
    (GgmlType::IQ4_XS, "IQ4_XS", 256, 136),
    (GgmlType::I8, "I8", 1, 1),
    (GgmlType::I16, "I16", 1, 2),
    (GgmlType::I32, "I32", 1, 4),
    (GgmlType::I64, "I64", 1, 8),
    (GgmlType::F64, "F64", 1, 8),
    (GgmlType::IQ1_M, "IQ1_M", 256, 56),
    (GgmlType::BF16, "BF16", 1, 2),
    (GgmlType::TQ1_0, "TQ1_0", 256, 54),
    (GgmlType::TQ2_0, "TQ2_0", 256, 66),
    (GgmlType::MXFP4, "MXFP4", 32, 17),
    (GgmlType::NVFP4, "NVFP4", 64, 36),
    (GgmlType::Q1_0, "Q1_0", 128, 18),
    (GgmlType::Q2_0, "Q2_0", 64, 18),
];

impl GgmlType {
    /// Every known type, in table order.
    pub fn all() -> impl Iterator<Item = GgmlType> {
        TABLE.iter().map(|row| row.0)
    }

    /// The type with this `ggml_type` number, if llama.cpp still knows it.
    pub fn from_u32(n: u32) -> Option<GgmlType> {
        TABLE.iter().find(|row| row.0 as u32 == n).map(|row| row.0)
    }

    fn row(self) -> &'static (GgmlType, &'static str, u64, u64) {
        // Every variant has a row (checked by a unit test); the fallback only
        // keeps this total without a panic path.
        TABLE.iter().find(|row| row.0 == self).unwrap_or(&TABLE[0])
    }

    /// Upper-case name as llama.cpp's tools print it ("Q4_K", "F16").
    pub fn name(self) -> &'static str {
        self.row().1
    }

    /// Elements per quantization block (1 for plain float/int types).
    pub fn block_size(self) -> u64 {
        self.row().2
    }

    /// Bytes per block.
    pub fn type_size(self) -> u64 {
        self.row().3
    }

    /// Bytes that `n_elements` of this type take, or `None` when `n_elements`
    /// is not a whole number of blocks or the product overflows.
    pub fn bytes_for(self, n_elements: u64) -> Option<u64> {
        if n_elements % self.block_size() != 0 {
            return None;
        }
        (n_elements / self.block_size()).checked_mul(self.type_size())
    }
}

impl std::fmt::Display for GgmlType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for GgmlType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// Why a ggml type number was removed, for a clearer "corrupt" message:
/// these appear in files made by old llama.cpp builds.
pub(crate) fn removed_type_note(n: u32) -> Option<&'static str> {
    match n {
        4 | 5 => Some("Q4_2/Q4_3, removed from llama.cpp in 2023"),
        31..=33 => Some("Q4_0_4_4/Q4_0_4_8/Q4_0_8_8, removed from llama.cpp; use a plain Q4_0 file"),
        36..=38 => Some("IQ4_NL_4_4/4_8/8_8, removed from llama.cpp; use a plain IQ4_NL file"),
        _ => None,
    }
}

/// `LLAMA_FTYPE_GUESSED`: set by llama.cpp when it inferred the file type.
const FTYPE_GUESSED: u32 = 1024;

/// llama.cpp's short name for a `general.file_type` value (`enum llama_ftype`,
/// without the `LLAMA_FTYPE_MOSTLY_` prefix): 3 → "Q4_1", 15 → "Q4_K_M".
pub fn file_type_name(file_type: u32) -> Option<&'static str> {
    Some(match file_type & !FTYPE_GUESSED {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        4 => "Q4_1_SOME_F16",
        7 => "Q8_0",
        8 => "Q5_0",
        9 => "Q5_1",
        10 => "Q2_K",
        11 => "Q3_K_S",
        12 => "Q3_K_M",
        13 => "Q3_K_L",
        14 => "Q4_K_S",
        15 => "Q4_K_M",
        16 => "Q5_K_S",
        17 => "Q5_K_M",
        18 => "Q6_K",
        19 => "IQ2_XXS",
        20 => "IQ2_XS",
        21 => "Q2_K_S",
        22 => "IQ3_XS",
        23 => "IQ3_XXS",
        24 => "IQ1_S",
        25 => "IQ4_NL",
        26 => "IQ3_S",
        27 => "IQ3_M",
        28 => "IQ2_S",
        29 => "IQ2_M",
        30 => "IQ4_XS",
        31 => "IQ1_M",
        32 => "BF16",
        33 => "Q4_0_4_4",
        34 => "Q4_0_4_8",
        35 => "Q4_0_8_8",
        36 => "TQ1_0",
        37 => "TQ2_0",
        38 => "MXFP4_MOE",
        39 => "NVFP4",
        40 => "Q1_0",
        41 => "Q2_0",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_has_a_row_and_round_trips() {
        for t in GgmlType::all() {
            assert_eq!(GgmlType::from_u32(t as u32), Some(t));
            assert!(t.block_size() > 0 && t.type_size() > 0);
        }
        assert_eq!(GgmlType::all().count(), TABLE.len());
        assert_eq!(GgmlType::from_u32(4), None);
        assert_eq!(GgmlType::from_u32(43), None);
    }

    #[test]
    fn sizes_match_llama_cpp() {
        assert_eq!(GgmlType::Q4_K.bytes_for(256 * 10), Some(1440));
        assert_eq!(GgmlType::Q4_1.bytes_for(32), Some(20));
        assert_eq!(GgmlType::Q4_K.bytes_for(100), None);
        assert_eq!(GgmlType::F32.bytes_for(u64::MAX), None);
    }

    #[test]
    fn file_type_names() {
        assert_eq!(file_type_name(3), Some("Q4_1"));
        assert_eq!(file_type_name(15), Some("Q4_K_M"));
        assert_eq!(file_type_name(15 | 1024), Some("Q4_K_M"));
        assert_eq!(file_type_name(5), None);
    }
}
