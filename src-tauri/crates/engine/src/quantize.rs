//! Quantizing a GGUF model with llama.cpp's own quantizer (`llama_model_quantize`).
//!
//! llama-cpp-2 has no wrapper for it, so this module is the one place that calls it
//! through `llama-cpp-sys-2`. The parameter struct changes between llama.cpp versions,
//! so it always starts from `llama_model_quantize_default_params()` and sets only the
//! fields Hearth needs.
//!
//! llama.cpp reports progress only in its log ("[  12/ 272] blk.1.attn_q.weight …")
//! and the predicted size only at the end of a dry run ("quant size = … MiB"), so the
//! quantizer's log lines are read while it runs. The log hook is process-wide: run
//! this in a process of its own (Hearth's quantize worker), where nothing else logs.
#![allow(unsafe_code)]

use std::ffi::{c_char, c_void, CStr, CString};
use std::path::{Path, PathBuf};
use std::time::Instant;

use hearth_gguf::GgmlType;
use llama_cpp_sys_2 as sys;
use serde::Serialize;

/// The types Hearth quantizes to: what llama.cpp calls them, and their file type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum QuantType {
    F16,
    Q8_0,
    Q6K,
    Q5KM,
    Q4KM,
    Q4_0,
}

impl QuantType {
    pub const ALL: [QuantType; 6] = [
        QuantType::F16,
        QuantType::Q8_0,
        QuantType::Q6K,
        QuantType::Q5KM,
        QuantType::Q4KM,
        QuantType::Q4_0,
    ];

    /// The name llama.cpp and model files use ("Q4_K_M").
    pub fn name(self) -> &'static str {
        match self {
            QuantType::F16 => "F16",
            QuantType::Q8_0 => "Q8_0",
            QuantType::Q6K => "Q6_K",
            QuantType::Q5KM => "Q5_K_M",
            QuantType::Q4KM => "Q4_K_M",
            QuantType::Q4_0 => "Q4_0",
        }
    }

    /// Accepts a name in any case ("q4_k_m").
    pub fn parse(name: &str) -> Result<Self, QuantizeError> {
        Self::ALL
            .into_iter()
            .find(|t| t.name().eq_ignore_ascii_case(name.trim()))
            .ok_or_else(|| QuantizeError::UnsupportedType(name.to_owned()))
    }

    fn ftype(self) -> sys::llama_ftype {
        match self {
            QuantType::F16 => sys::LLAMA_FTYPE_MOSTLY_F16,
            QuantType::Q8_0 => sys::LLAMA_FTYPE_MOSTLY_Q8_0,
            QuantType::Q6K => sys::LLAMA_FTYPE_MOSTLY_Q6_K,
            QuantType::Q5KM => sys::LLAMA_FTYPE_MOSTLY_Q5_K_M,
            QuantType::Q4KM => sys::LLAMA_FTYPE_MOSTLY_Q4_K_M,
            QuantType::Q4_0 => sys::LLAMA_FTYPE_MOSTLY_Q4_0,
        }
    }
}

impl std::fmt::Display for QuantType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum QuantizeError {
    #[error("{0:?} is not a type Hearth quantizes to: use one of F16, Q8_0, Q6_K, Q5_K_M, Q4_K_M, Q4_0")]
    UnsupportedType(String),
    #[error(transparent)]
    InvalidSource(#[from] hearth_gguf::GgufError),
    #[error(
        "{path} is already quantized ({quant}): quantizing it again compounds the errors of both \
         quantizations. Start from an F16 or F32 file if you have one, or pass --allow-requantize"
    )]
    AlreadyQuantized { path: PathBuf, quant: String },
    #[error("llama.cpp could not quantize {path}: {reason}")]
    Failed { path: PathBuf, reason: String },
}

/// What to make.
#[derive(Debug, Clone)]
pub struct QuantizeOptions {
    pub target: QuantType,
    /// Allow a source whose weights are already quantized (errors compound).
    pub allow_requantize: bool,
    /// Threads for quantizing (0: all cores).
    pub threads: u32,
    /// Only compute the output's size; write nothing.
    pub dry_run: bool,
}

/// Progress: tensors done of the total.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct QuantizeProgress {
    pub done: u32,
    pub total: u32,
}

/// What a quantization (or a dry run) did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QuantizeReport {
    pub target: QuantType,
    pub tensors: u32,
    /// The source's tensor data, as llama.cpp counted it.
    pub source_tensor_bytes: u64,
    /// The output's tensor data (for a dry run, predicted). llama.cpp reports it in MiB
    /// with two decimals, so it is exact to 5 KiB.
    pub tensor_bytes: u64,
    /// Bits per weight of the output's tensors.
    pub bits_per_weight: f64,
    pub ms: f64,
}

/// Whether a GGUF file's weights are plain floats (F32, F16, BF16): what quantizing
/// starts from without compounding errors.
pub fn is_unquantized(info: &hearth_gguf::GgufInfo) -> bool {
    // general.file_type: 0 = all F32, 1 = mostly F16, 32 = mostly BF16.
    match info.file_type {
        Some(t) => matches!(t, 0 | 1 | 32),
        None => info
            .tensors
            .iter()
            .all(|t| matches!(t.ggml_type, GgmlType::F32 | GgmlType::F16 | GgmlType::BF16)),
    }
}

/// Quantizes `src` into `dst` (or, with `dry_run`, only predicts the size), calling
/// `on_progress` after each tensor. Blocking; run it in a process of its own (see the
/// module's note on the log hook). The source is checked by Hearth's GGUF reader first,
/// because llama.cpp trusts the header.
pub fn quantize_file(
    src: &Path,
    dst: &Path,
    options: &QuantizeOptions,
    on_progress: &mut dyn FnMut(QuantizeProgress),
) -> Result<QuantizeReport, QuantizeError> {
    let info = hearth_gguf::read(src)?;
    if !options.allow_requantize && !is_unquantized(&info) {
        return Err(QuantizeError::AlreadyQuantized {
            path: src.to_path_buf(),
            quant: info
                .quantization
                .clone()
                .or_else(|| info.file_type_name.map(str::to_owned))
                .unwrap_or_else(|| "quantized".into()),
        });
    }
    let failed = |reason: String| QuantizeError::Failed {
        path: src.to_path_buf(),
        reason,
    };
    crate::engine::backend().map_err(|e| failed(e.to_string()))?;
    let c_path = |p: &Path| {
        CString::new(p.as_os_str().as_encoded_bytes())
            .map_err(|_| failed(format!("{} contains a NUL byte", p.display())))
    };
    let (c_src, c_dst) = (c_path(src)?, c_path(dst)?);

    // SAFETY: a plain function returning a struct by value.
    let mut params = unsafe { sys::llama_model_quantize_default_params() };
    params.ftype = options.target.ftype();
    params.allow_requantize = options.allow_requantize;
    params.nthread = i32::try_from(options.threads).unwrap_or(0);
    params.dry_run = options.dry_run;

    let mut capture = LogCapture::new(on_progress);
    let started = Instant::now();
    let mut previous: sys::ggml_log_callback = None;
    let mut previous_data: *mut c_void = std::ptr::null_mut();
    // SAFETY: llama_log_get writes the current callback and its data into the two
    // locations, which are valid for writes. llama_log_set stores a function pointer and
    // a data pointer: `capture` outlives the call to llama_model_quantize below, and the
    // previous logger is put back before `capture` goes out of scope, so the callback
    // never sees a dangling pointer. The quantizer logs from the calling thread only.
    let status = unsafe {
        sys::llama_log_get(&mut previous, &mut previous_data);
        sys::llama_log_set(Some(capture_log), (&raw mut capture).cast::<c_void>());
        let status = sys::llama_model_quantize(c_src.as_ptr(), c_dst.as_ptr(), &params);
        sys::llama_log_set(previous, previous_data);
        status
    };
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    if status != 0 {
        let reason = if capture.errors.is_empty() {
            format!("llama_model_quantize returned {status}")
        } else {
            capture.errors.join("; ")
        };
        return Err(failed(reason));
    }
    let mib = |m: Option<f64>| m.map_or(0, |m| (m * 1024.0 * 1024.0).round() as u64);
    Ok(QuantizeReport {
        target: options.target,
        tensors: capture.tensors,
        source_tensor_bytes: mib(capture.source_mib),
        tensor_bytes: mib(capture.output_mib),
        bits_per_weight: capture.bpw.unwrap_or(0.0),
        ms,
    })
}

/// Reads the quantizer's log lines (they arrive in pieces: a line's start, then its end).
struct LogCapture<'a> {
    on_progress: &'a mut dyn FnMut(QuantizeProgress),
    line: String,
    tensors: u32,
    source_mib: Option<f64>,
    output_mib: Option<f64>,
    bpw: Option<f64>,
    errors: Vec<String>,
}

impl<'a> LogCapture<'a> {
    fn new(on_progress: &'a mut dyn FnMut(QuantizeProgress)) -> Self {
        Self {
            on_progress,
            line: String::new(),
            tensors: 0,
            source_mib: None,
            output_mib: None,
            bpw: None,
            errors: Vec::new(),
        }
    }

    fn push(&mut self, level: sys::ggml_log_level, text: &str) {
        if level == sys::GGML_LOG_LEVEL_ERROR {
            let message = text.trim();
            if !message.is_empty() {
                self.errors.push(message.to_owned());
            }
        }
        self.line.push_str(text);
        while let Some(end) = self.line.find('\n') {
            let line: String = self.line.drain(..=end).collect();
            self.read_line(line.trim());
        }
        // A tensor's line starts with "[  12/ 272]" and is finished later: count it now.
        if let Some(progress) = parse_progress(&self.line) {
            self.progress(progress);
        }
    }

    /// Reports a tensor once, however its line arrived.
    fn progress(&mut self, progress: QuantizeProgress) {
        if progress.done > self.tensors {
            self.tensors = progress.done;
            (self.on_progress)(progress);
        }
    }

    fn read_line(&mut self, line: &str) {
        if let Some(progress) = parse_progress(line) {
            self.progress(progress);
        } else if let Some((mib, _)) = parse_size(line, "model size") {
            self.source_mib = Some(mib);
        } else if let Some((mib, bpw)) = parse_size(line, "quant size") {
            self.output_mib = Some(mib);
            self.bpw = Some(bpw);
        }
    }
}

/// "[  12/ 272] blk.1…" → 12 of 272.
fn parse_progress(line: &str) -> Option<QuantizeProgress> {
    let inner = line.trim_start().strip_prefix('[')?;
    let (counts, _) = inner.split_once(']')?;
    let (done, total) = counts.split_once('/')?;
    Some(QuantizeProgress {
        done: done.trim().parse().ok()?,
        total: total.trim().parse().ok()?,
    })
}

/// "llama_model_quantize_impl: quant size  =   130.08 MiB (4.58 BPW)" → (130.08, 4.58).
fn parse_size(line: &str, label: &str) -> Option<(f64, f64)> {
    let rest = line.split_once(label)?.1.trim_start().strip_prefix('=')?;
    let (mib, rest) = rest.trim_start().split_once(" MiB")?;
    let bpw = rest.trim_start().strip_prefix('(')?.split_once(" BPW")?.0;
    Some((mib.trim().parse().ok()?, bpw.trim().parse().ok()?))
}

/// The log callback while quantizing.
///
/// # Safety
/// `user_data` is the `LogCapture` that `quantize_file` registered, alive and not
/// otherwise borrowed while llama_model_quantize runs; `text` is a NUL-terminated string
/// or null.
unsafe extern "C" fn capture_log(level: sys::ggml_log_level, text: *const c_char, user_data: *mut c_void) {
    if text.is_null() || user_data.is_null() {
        return;
    }
    // SAFETY: see the function's contract above.
    let (capture, text) = unsafe { (&mut *user_data.cast::<LogCapture<'_>>(), CStr::from_ptr(text)) };
    capture.push(level, &text.to_string_lossy());
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn types_parse_in_any_case_and_others_are_refused() {
        assert_eq!(QuantType::parse("q4_k_m").unwrap(), QuantType::Q4KM);
        assert_eq!(QuantType::parse(" F16 ").unwrap(), QuantType::F16);
        for t in QuantType::ALL {
            assert_eq!(QuantType::parse(t.name()).unwrap(), t);
        }
        let err = QuantType::parse("Q3_K_S").unwrap_err();
        assert!(err.to_string().contains("Q4_K_M"), "{err}");
    }

    #[test]
    fn log_lines_give_progress_and_sizes() {
        assert_eq!(
            parse_progress("[  12/ 272] blk.1.attn_q.weight - [ 576, 576], type = q4_1, "),
            Some(QuantizeProgress { done: 12, total: 272 })
        );
        assert_eq!(parse_progress("llama_model_loader: loaded"), None);
        assert_eq!(
            parse_size(
                "llama_model_quantize_impl: quant size  =   130.08 MiB (4.58 BPW)",
                "quant size"
            ),
            Some((130.08, 4.58))
        );
        assert_eq!(parse_size("quant size = oops", "quant size"), None);
    }

    #[test]
    fn a_line_in_pieces_is_counted_once() {
        let mut seen = Vec::new();
        let mut on_progress = |p: QuantizeProgress| seen.push(p.done);
        let mut capture = LogCapture::new(&mut on_progress);
        capture.push(sys::GGML_LOG_LEVEL_INFO, "[   1/   3] a - [2], type = f16, ");
        capture.push(
            sys::GGML_LOG_LEVEL_INFO,
            "converting to q8_0 .. size = 1 MiB -> 0.5 MiB\n",
        );
        capture.push(sys::GGML_LOG_LEVEL_INFO, "[   2/   3] b");
        capture.push(
            sys::GGML_LOG_LEVEL_INFO,
            " - [2], type = f16, size = 1 MiB\n[   3/   3] c\n",
        );
        capture.push(sys::GGML_LOG_LEVEL_INFO, "x: quant size  =     1.50 MiB (8.50 BPW)\n");
        capture.push(sys::GGML_LOG_LEVEL_ERROR, "cannot open file\n");
        assert_eq!(capture.output_mib, Some(1.5));
        assert_eq!(capture.errors, vec!["cannot open file".to_owned()]);
        drop(capture);
        assert_eq!(seen, vec![1, 2, 3]);
    }
}
