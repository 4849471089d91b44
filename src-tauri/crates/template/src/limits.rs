//! The bounds on a template: its source checked before it runs, its work (fuel) and
//! its output (a writer that refuses past a size).

use std::io;

use crate::TemplateError;

/// How much a render may do and write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// minijinja's instruction budget per render. A long tool-using conversation
    /// takes well under a million; an endless loop stops here in about a second.
    pub fuel: u64,
    /// The longest prompt text a render may write. 128k tokens of text are about half
    /// a megabyte; 8 MiB leaves room for any real context and stops a runaway template
    /// long before memory does.
    pub max_output_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            fuel: 20_000_000,
            max_output_bytes: 8 << 20,
        }
    }
}

/// Refuses templates that reach for Python internals (`x.__class__`, `x['__init__']`,
/// `attr('__globals__')`): Jinja2's sandbox exists for those escapes. minijinja has no
/// such attributes at all, so they would print nothing; saying so is clearer than a
/// template that silently works differently.
pub(crate) fn check_source(source: &str) -> Result<(), TemplateError> {
    for (at, _) in source.match_indices("__") {
        let before = source[..at].trim_end_matches(['\'', '"']);
        let reached = before.ends_with('.') || before.ends_with('[') || before.ends_with('(');
        let name: String = source[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if reached && name.len() > 4 && name.ends_with("__") {
            return Err(TemplateError::Unsafe(name));
        }
    }
    Ok(())
}

/// Collects a render's output and fails the render once it passes `limit` bytes.
pub(crate) struct CappedWriter {
    buf: Vec<u8>,
    limit: usize,
}

impl CappedWriter {
    pub(crate) fn new(limit: usize) -> Self {
        Self { buf: Vec::new(), limit }
    }

    pub(crate) fn into_inner(self) -> Vec<u8> {
        self.buf
    }
}

impl io::Write for CappedWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buf.len() + data.len() > self.limit {
            return Err(io::Error::other("the output limit was reached"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
