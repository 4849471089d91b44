//! Tensor descriptions in the header: each one's name, shape, type and offset checked
//! as it is read, and all of their claimed bytes checked against the file size.

use std::io::{BufRead, Seek};

use super::source::{Res, Source};
use super::{MAX_DIMS, MAX_TENSOR_NAME_LEN, MEMORY_BUDGET};
use crate::error::{GgufError, Section};
use crate::info::TensorInfo;
use crate::types::{removed_type_note, GgmlType};

impl<R: BufRead + Seek> Source<'_, R> {
    pub(super) fn tensor_info(&mut self, index: u64, alignment: u64) -> Res<TensorInfo> {
        let len = self.string_len(&format!("the name of tensor {index}"))?;
        if len > MAX_TENSOR_NAME_LEN {
            return Err(self.corrupt(format!(
                "tensor {index} has a {len}-byte name (at most {MAX_TENSOR_NAME_LEN})"
            )));
        }
        if !self.charge(len + 96) {
            return Err(self.corrupt(format!("the tensor descriptions exceed {MEMORY_BUDGET} bytes in total")));
        }
        let name = self.text(len, "a tensor name")?;
        let what = format!("the description of tensor '{name}'");
        let n_dims = self.u32(&what)?;
        if n_dims > MAX_DIMS {
            return Err(self.corrupt(format!(
                "tensor '{name}' has {n_dims} dimensions (ggml allows {MAX_DIMS})"
            )));
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        let mut n_elements: u64 = 1;
        for _ in 0..n_dims {
            let d = self.u64(&what)?;
            // ggml stores dimensions as int64_t; the element count must fit too.
            n_elements = n_elements
                .checked_mul(d)
                .filter(|n| i64::try_from(*n).is_ok() && i64::try_from(d).is_ok())
                .ok_or_else(|| self.corrupt(format!("tensor '{name}' has impossible dimensions")))?;
            dims.push(d);
        }
        let raw_type = self.u32(&what)?;
        let ggml_type = GgmlType::from_u32(raw_type).ok_or_else(|| {
            let note = removed_type_note(raw_type)
                .map(|n| format!(" ({n})"))
                .unwrap_or_default();
            self.corrupt(format!("tensor '{name}' has unknown ggml type {raw_type}{note}"))
        })?;
        let first = dims.first().copied().unwrap_or(1);
        if first % ggml_type.block_size() != 0 {
            return Err(self.corrupt(format!(
                "tensor '{name}' has a first dimension of {first}, not a multiple of {}'s block of {}",
                ggml_type.name(),
                ggml_type.block_size()
            )));
        }
        let n_bytes = ggml_type
            .bytes_for(n_elements)
            .ok_or_else(|| self.corrupt(format!("tensor '{name}' has impossible dimensions")))?;
        let offset = self.u64(&what)?;
        if offset % alignment != 0 {
            return Err(self.corrupt(format!(
                "tensor '{name}' starts at data offset {offset}, not a multiple of the alignment {alignment}"
            )));
        }
        Ok(TensorInfo {
            name,
            dims,
            ggml_type,
            offset,
            n_bytes,
        })
    }

    /// Every tensor's bytes must lie inside the file.
    pub(super) fn check_data_extent(&self, tensors: &[TensorInfo], data_offset: u64) -> Res<()> {
        let mut needed = 0u64;
        for t in tensors {
            let end = data_offset
                .checked_add(t.offset)
                .and_then(|s| s.checked_add(t.n_bytes))
                .ok_or_else(|| self.corrupt(format!("tensor '{}' lies beyond any possible file size", t.name)))?;
            needed = needed.max(end);
        }
        if needed > self.size {
            return Err(GgufError::Truncated {
                path: self.path(),
                section: Section::TensorData,
                file_size: self.size,
                needed,
                what: "its tensors".to_string(),
            });
        }
        Ok(())
    }
}
