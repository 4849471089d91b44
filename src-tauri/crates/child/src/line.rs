//! One line of the protocol, and the child's side of it: writing lines to stdout.

use std::io::Write;

use hearth_core::ErrorCode;
use serde::de::{DeserializeOwned, IgnoredAny};
use serde::{Deserialize, Serialize};

/// Progress of a child's work: `done` of `total` steps (tensors, windows, percent loaded).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    pub done: u32,
    pub total: u32,
}

impl Progress {
    /// The fraction done, from 0 to 1 (0 while the total is not known).
    pub fn fraction(self) -> f32 {
        if self.total == 0 {
            return 0.0;
        }
        (self.done as f32 / self.total as f32).clamp(0.0, 1.0)
    }
}

/// One line of a child's stdout: `{"event":"progress","done":3,"total":10}`,
/// `{"event":"done","result":…}` or `{"event":"error","code":"invalid_model","message":"…"}`.
/// A child prints progress lines, then exactly one `done` or `error`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ChildLine<T> {
    Progress { done: u32, total: u32 },
    Done { result: T },
    Error { code: ErrorCode, message: String },
}

impl<T> ChildLine<T> {
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        ChildLine::Error {
            code,
            message: message.into(),
        }
    }
}

impl<T: Serialize> ChildLine<T> {
    /// The line as printed: JSON without newlines. A result that cannot be written as
    /// JSON (a bug in its type) becomes an `error` line, so the parent still gets an answer.
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| {
            let line = ChildLine::<()>::error(
                ErrorCode::Internal,
                format!("the child's answer could not be written: {e}"),
            );
            serde_json::to_string(&line).unwrap_or_default()
        })
    }
}

/// What one line of a child's stdout says. `None`: not a protocol line (a GPU driver's
/// or llama.cpp's print), to be skipped. `Some(Err)`: a protocol line whose result this
/// side cannot read (the parent and the child are from different builds).
pub fn parse_line<T: DeserializeOwned>(line: &str) -> Option<Result<ChildLine<T>, serde_json::Error>> {
    let line = line.trim();
    if !line.starts_with('{') {
        return None;
    }
    match serde_json::from_str::<ChildLine<T>>(line) {
        Ok(parsed) => Some(Ok(parsed)),
        Err(e) => serde_json::from_str::<ChildLine<IgnoredAny>>(line)
            .is_ok()
            .then_some(Err(e)),
    }
}

/// The words for a protocol line that could not be read.
pub(crate) fn unreadable(whose: &str, e: &serde_json::Error) -> String {
    format!("{whose} answer could not be read ({e}): Hearth and its child process may be from different builds; reinstall Hearth")
}

/// Writes one line to stdout, flushed at once: the parent reads it while the child works.
pub fn say<T: Serialize>(line: &ChildLine<T>) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", line.to_line())?;
    out.flush()
}

/// Writes a progress line. A failed write is ignored: a parent that stopped reading
/// learns nothing from it, and the answer's own write says what matters.
pub fn progress(done: u32, total: u32) {
    let _ = say(&ChildLine::<()>::Progress { done, total });
}

/// The child's end: `done` with the result, or `error` with `code(&e)` and the error's
/// words (`{e:#}`: an anyhow error's whole chain). The error is handed back, for the
/// process's exit status and its log.
pub fn report<T: Serialize, E: std::fmt::Display>(
    result: Result<T, E>,
    code: impl FnOnce(&E) -> ErrorCode,
) -> Result<(), E> {
    match result {
        Ok(result) => {
            let _ = say(&ChildLine::Done { result });
            Ok(())
        }
        Err(e) => {
            let _ = say(&ChildLine::<()>::error(code(&e), format!("{e:#}")));
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip() {
        let progress = ChildLine::<u32>::Progress { done: 1, total: 2 };
        assert_eq!(progress.to_line(), r#"{"event":"progress","done":1,"total":2}"#);
        let done = ChildLine::Done {
            result: vec!["a".to_owned()],
        };
        assert_eq!(done.to_line(), r#"{"event":"done","result":["a"]}"#);
        let error = ChildLine::<u32>::error(ErrorCode::InvalidModel, "not a GGUF file");
        assert_eq!(
            error.to_line(),
            r#"{"event":"error","code":"invalid_model","message":"not a GGUF file"}"#
        );
        for line in [progress, error] {
            let read = parse_line::<u32>(&line.to_line())
                .expect("a protocol line")
                .expect("read");
            assert_eq!(read, line);
        }
        let read = parse_line::<Vec<String>>(&done.to_line())
            .expect("a protocol line")
            .expect("read");
        assert_eq!(read, done);
    }

    #[test]
    fn lines_that_are_not_the_protocol_s_are_skipped() {
        for noise in [
            "",
            "ggml_vulkan: Found 1 Vulkan devices:",
            "[1, 2]",
            "{not json",
            r#"{"loading":0.42}"#,
            r#"{"event":"finished","result":1}"#,
            r#"{"event":"progress","done":"three"}"#,
        ] {
            assert!(parse_line::<u32>(noise).is_none(), "{noise:?}");
        }
    }

    #[test]
    fn an_answer_of_another_shape_is_an_error_not_noise() {
        let line = r#"{"event":"done","result":{"port":1}}"#;
        let e = parse_line::<u32>(line)
            .expect("a protocol line")
            .expect_err("not a u32");
        assert!(unreadable("the test worker's", &e).contains("different builds"));
    }

    #[test]
    fn an_unknown_code_reads_as_another_s() {
        let line = r#"{"event":"error","code":"from_the_future","message":"m"}"#;
        let read = parse_line::<u32>(line).expect("a protocol line").expect("read");
        assert_eq!(read, ChildLine::error(ErrorCode::UpstreamError, "m"));
    }

    #[test]
    fn the_fraction_done() {
        assert_eq!(Progress { done: 42, total: 100 }.fraction(), 0.42);
        assert_eq!(Progress { done: 3, total: 0 }.fraction(), 0.0);
        assert_eq!(Progress { done: 5, total: 4 }.fraction(), 1.0);
    }
}
