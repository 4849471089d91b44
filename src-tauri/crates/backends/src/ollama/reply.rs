//! Reading Ollama's reply stream: NDJSON lines, each a JSON object, the last with
//! `done: true` and Ollama's own timings.

use super::*;

/// The longest reply line read. Ollama's lines are a few hundred bytes; the last line of
/// `/api/generate` may carry the context's token ids (about 6 bytes each, so 8 MiB is
/// over a million tokens). A server that sends more without a line end is not Ollama,
/// and is not allowed to fill this process's memory.
pub(super) const MAX_LINE_BYTES: usize = 8 << 20;

/// Splits a byte stream into lines. It works on bytes, not text, so that a JSON object
/// or a multi-byte character split across two reads is whole again before it is parsed.
#[derive(Default)]
pub(super) struct LineBuffer {
    bytes: Vec<u8>,
    /// Bytes at the start of `bytes` known to hold no line end (not scanned again).
    scanned: usize,
}

impl LineBuffer {
    fn push(&mut self, chunk: &[u8]) {
        self.bytes.extend_from_slice(chunk);
    }

    /// An unfinished line longer than [`MAX_LINE_BYTES`] is buffered.
    fn overlong(&self) -> bool {
        self.scanned > MAX_LINE_BYTES
    }

    /// The next complete line without its line end; blank lines are skipped.
    fn next_line(&mut self) -> Option<Vec<u8>> {
        loop {
            let Some(offset) = self.bytes[self.scanned..].iter().position(|&b| b == b'\n') else {
                self.scanned = self.bytes.len();
                return None;
            };
            let end = self.scanned + offset;
            self.scanned = 0;
            let mut line: Vec<u8> = self.bytes.drain(..=end).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            if !line.iter().all(u8::is_ascii_whitespace) {
                return Some(line);
            }
        }
    }

    /// At the end of the body whatever is left is a last line (its newline may be missing).
    fn finish(&mut self) {
        if !self.bytes.is_empty() {
            self.bytes.push(b'\n');
        }
    }
}

/// One line of a reply: `/api/chat` puts text in `message.content`, `/api/generate` in
/// `response`; the last line (`done: true`) carries Ollama's counts and durations (ns).
/// ollama-rs's response types have no `done_reason` and no `error`, so they are not used here.
#[derive(Debug, Deserialize)]
struct Chunk {
    message: Option<ChunkMessage>,
    response: Option<String>,
    done: Option<bool>,
    done_reason: Option<String>,
    error: Option<Value>,
    #[serde(default)]
    prompt_eval_count: u64,
    #[serde(default)]
    prompt_eval_duration: u64,
    #[serde(default)]
    eval_count: u64,
    #[serde(default)]
    eval_duration: u64,
    #[serde(default)]
    load_duration: u64,
    #[serde(default)]
    total_duration: u64,
}

#[derive(Debug, Deserialize)]
struct ChunkMessage {
    #[serde(default)]
    content: String,
}

pub(super) type Body<B, E> = Pin<Box<dyn Stream<Item = Result<B, E>> + Send>>;

/// A reply being read: Ollama's NDJSON (one JSON object a line) turned into events.
///
/// Parsed here rather than by ollama-rs because its streams lose failures: they yield
/// `Result<_, ()>`, skip any line they cannot parse (and any read whose bytes end inside
/// a UTF-8 character), ignore `{"error": …}` lines and end quietly when the connection
/// does. Here every such case ends the stream with a typed [`BackendError`], so a reply
/// is either complete (ends with `Done`) or reported as failed, never silently shorter.
pub(super) struct Reply<B, E> {
    body: Body<B, E>,
    lines: LineBuffer,
    backend: String,
    model: String,
    started: Instant,
    first_text_at: Option<Instant>,
    /// The body has ended; only buffered lines are left.
    body_ended: bool,
    /// `Done`, held back behind the text of a final line that had some.
    queued: Option<GenerationEvent>,
    /// The final event or error has been yielded.
    over: bool,
}

impl<B: AsRef<[u8]>, E: std::error::Error> Reply<B, E> {
    pub(super) fn new(body: Body<B, E>, backend: String, model: String, started: Instant) -> Self {
        Self {
            body,
            lines: LineBuffer::default(),
            backend,
            model,
            started,
            first_text_at: None,
            body_ended: false,
            queued: None,
            over: false,
        }
    }

    pub(super) fn into_events(self) -> EventStream
    where
        B: Send + 'static,
        E: Send + 'static,
    {
        Box::pin(stream::unfold(self, |mut reply| async move {
            let item = reply.next_item().await?;
            Some((item, reply))
        }))
    }

    fn broken(&self, cause: String) -> BackendError {
        BackendError::Unavailable {
            backend: self.backend.clone(),
            cause,
        }
    }

    async fn next_item(&mut self) -> Option<Result<GenerationEvent, BackendError>> {
        if self.over {
            return None;
        }
        if let Some(done) = self.queued.take() {
            self.over = true;
            return Some(Ok(done));
        }
        loop {
            if let Some(line) = self.lines.next_line() {
                match self.read_line(&line) {
                    Ok(None) => continue,
                    Ok(Some(event)) => return Some(Ok(event)),
                    Err(e) => {
                        self.over = true;
                        return Some(Err(e));
                    }
                }
            }
            if self.body_ended {
                self.over = true;
                let cause = "Ollama closed the stream before the reply was complete".to_owned();
                return Some(Err(self.broken(cause)));
            }
            if self.lines.overlong() {
                self.over = true;
                return Some(Err(BackendError::Failed {
                    code: ErrorCode::OllamaBadChunk,
                    message: format!(
                        "{} sent more than {} MiB without a line end: that is not an Ollama reply; check the backend's URL in Settings",
                        self.backend,
                        MAX_LINE_BYTES >> 20
                    ),
                }));
            }
            match self.body.next().await {
                Some(Ok(bytes)) => self.lines.push(bytes.as_ref()),
                Some(Err(e)) => {
                    self.over = true;
                    let cause = format!("the connection to Ollama broke mid-reply: {}", error_chain(&e));
                    return Some(Err(self.broken(cause)));
                }
                None => {
                    self.body_ended = true;
                    self.lines.finish();
                }
            }
        }
    }

    /// One line: a `Delta`, the final `Done` (`over` set), nothing (an empty chunk) or an error.
    fn read_line(&mut self, line: &[u8]) -> Result<Option<GenerationEvent>, BackendError> {
        let chunk: Chunk = serde_json::from_slice(line).map_err(|e| bad_chunk(line, &e.to_string()))?;
        if let Some(error) = &chunk.error {
            let message = error.as_str().map_or_else(|| error.to_string(), str::to_owned);
            // A reply that failed (the runner's error) is the stream's error event and its
            // last item; what the caller can act on otherwise (no such model) stays an `Err`.
            return match ollama_error(&self.backend, None, message, &self.model) {
                BackendError::Failed { code, message } => {
                    self.over = true;
                    Ok(Some(GenerationEvent::Error { code, message }))
                }
                other => Err(other),
            };
        }
        let Some(done) = chunk.done else {
            return Err(bad_chunk(line, "it has neither `done` nor `error`"));
        };
        let text = chunk
            .message
            .as_ref()
            .map(|m| m.content.clone())
            .or_else(|| chunk.response.clone())
            .unwrap_or_default();
        if !text.is_empty() {
            self.first_text_at.get_or_insert_with(Instant::now);
        }
        if done {
            let done = GenerationEvent::Done {
                metrics: self.metrics(&chunk),
            };
            if text.is_empty() {
                self.over = true;
                return Ok(Some(done));
            }
            self.queued = Some(done);
        }
        Ok((!text.is_empty()).then_some(GenerationEvent::Delta { text }))
    }

    /// Ollama's own counts and durations; only the time to first text is measured here,
    /// as the caller sees it.
    fn metrics(&self, chunk: &Chunk) -> GenerationMetrics {
        let ms = |ns: u64| ns as f64 / 1e6;
        let per_second = |count: u64, ns: u64| if ns == 0 { 0.0 } else { count as f64 * 1e9 / ns as f64 };
        let count = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
        let since_start = |t: Instant| t.duration_since(self.started).as_secs_f64() * 1000.0;
        GenerationMetrics {
            // Ollama reports one prompt count, without saying how much of it its cache held.
            prompt_tokens: count(chunk.prompt_eval_count),
            prompt_tokens_evaluated: count(chunk.prompt_eval_count),
            completion_tokens: count(chunk.eval_count),
            load_ms: ms(chunk.load_duration),
            ttft_ms: self.first_text_at.map_or(0.0, since_start),
            prompt_tps: per_second(chunk.prompt_eval_count, chunk.prompt_eval_duration),
            decode_tps: per_second(chunk.eval_count, chunk.eval_duration),
            total_ms: if chunk.total_duration > 0 {
                ms(chunk.total_duration)
            } else {
                since_start(Instant::now())
            },
            draft_tokens: 0,
            draft_accepted: 0,
            decode_batch_sequences: Vec::new(),
            prompt_steps: 0,
            prompt_format: None,
            finish_reason: match chunk.done_reason.as_deref() {
                Some("length") => FinishReason::Length,
                _ => FinishReason::Stop,
            },
        }
    }
}

fn bad_chunk(line: &[u8], why: &str) -> BackendError {
    BackendError::Failed {
        code: ErrorCode::OllamaBadChunk,
        message: format!(
            "Ollama sent a reply line Hearth cannot read ({why}): {}",
            truncated(&String::from_utf8_lossy(line), 200)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_and_joined_across_reads() {
        let mut lines = LineBuffer::default();
        lines.push(b"{\"a\":1}\n\n{\"b\":");
        assert_eq!(lines.next_line().as_deref(), Some(&b"{\"a\":1}"[..]));
        assert_eq!(lines.next_line(), None);
        // "ö" split between its two bytes.
        lines.push(&[b'"', 0xC3]);
        lines.push(&[0xB6, b'"', b'}', b'\r', b'\n']);
        assert_eq!(lines.next_line().as_deref(), Some("{\"b\":\"ö\"}".as_bytes()));
        lines.push(b"{\"c\":3}");
        assert_eq!(lines.next_line(), None);
        lines.finish();
        assert_eq!(lines.next_line().as_deref(), Some(&b"{\"c\":3}"[..]));
    }

    #[tokio::test]
    async fn a_line_that_never_ends_is_refused_before_it_fills_memory() {
        let chunk = vec![b'a'; 64 * 1024];
        let chunks = (MAX_LINE_BYTES / chunk.len()) * 4; // four times the limit, if it were all read
        let read = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = std::sync::Arc::clone(&read);
        let body: Body<Vec<u8>, std::io::Error> = Box::pin(stream::iter(0..chunks).map(move |_| {
            counted.fetch_add(chunk.len(), std::sync::atomic::Ordering::Relaxed);
            Ok(chunk.clone())
        }));
        let mut events = Reply::new(body, "ollama".into(), "m".into(), Instant::now()).into_events();
        let first = events.next().await.expect("an item");
        let error = first.expect_err("an endless line is an error");
        assert_eq!(error.code(), ErrorCode::OllamaBadChunk);
        assert!(error.to_string().contains("check the backend's URL"), "{error}");
        assert!(events.next().await.is_none(), "the stream ends with the error");
        let read = read.load(std::sync::atomic::Ordering::Relaxed);
        assert!(
            read <= MAX_LINE_BYTES + 2 * 64 * 1024,
            "read {read} bytes before giving up"
        );
    }

    #[test]
    fn a_long_line_is_scanned_once() {
        let mut lines = LineBuffer::default();
        for _ in 0..100 {
            lines.push(&[b'x'; 1000]);
            assert_eq!(lines.next_line(), None);
        }
        assert_eq!(lines.scanned, 100_000);
        lines.push(b"\n{}\n");
        assert_eq!(lines.next_line().map(|l| l.len()), Some(100_000));
        assert_eq!(lines.next_line().as_deref(), Some(&b"{}"[..]));
    }
}
