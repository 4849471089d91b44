//! One reply, from its first sampled token to its figures: the text it shows (whole
//! characters only, stop strings never), when it ends (end of generation, a stop
//! string, `max_tokens`, the end of its sequence's room, a reader that hung up) and
//! what it measured. It takes token pieces (bytes), not a model, so every rule here is
//! unit-tested without llama.cpp; the scheduler owns the tokens and the cache.

use std::sync::mpsc::SyncSender;
use std::time::Instant;

use hearth_core::{ErrorCode, FinishReason, GenerationEvent, GenerationMetrics, PromptFormat, SamplingParams};

use crate::stop::{StopMatcher, StopScan};
use crate::utf8::Utf8Stream;

/// Where a reply's text goes: streamed as deltas, or sent whole at the end (decoded
/// from all its bytes at once: a second, independent path from bytes to text that
/// tests compare with the stream).
struct Output {
    events: SyncSender<GenerationEvent>,
    stream: bool,
    utf8: Utf8Stream,
    stops: StopMatcher,
    stop_strings: Vec<String>,
    /// The reply's bytes, when it is sent whole.
    bytes: Vec<u8>,
}

/// What one more piece of text did to the output.
#[derive(Debug, PartialEq, Eq)]
enum Shown {
    Continue,
    /// A stop string appeared.
    Stopped,
    /// The reader hung up.
    Gone,
}

impl Output {
    fn send(&self, text: String) -> bool {
        text.is_empty() || self.events.send(GenerationEvent::Delta { text }).is_ok()
    }

    fn push(&mut self, piece: &[u8]) -> Shown {
        if !self.stream {
            self.bytes.extend_from_slice(piece);
        }
        let text = self.utf8.push(piece);
        match self.stops.push(&text) {
            StopScan::Continue(shown) => {
                if self.stream && !self.send(shown) {
                    return Shown::Gone;
                }
                Shown::Continue
            }
            StopScan::Stopped(shown) => {
                if self.stream {
                    self.send(shown);
                }
                Shown::Stopped
            }
        }
    }

    /// The end: what was held back (not a stop string after all), or the whole text.
    /// Returns the finish reason, `Cancelled` if the reader is gone.
    fn finish(&mut self, finish: FinishReason) -> FinishReason {
        if finish == FinishReason::Cancelled {
            return finish;
        }
        if self.stream {
            // After a stop string nothing is held back; otherwise what is was not one.
            self.utf8.finish();
            let rest = self.stops.flush();
            return if self.send(rest) {
                finish
            } else {
                FinishReason::Cancelled
            };
        }
        let mut text = Utf8Stream::decode_all(&self.bytes);
        let mut finish = finish;
        if let Some(at) = self.stop_strings.iter().filter_map(|s| text.find(s.as_str())).min() {
            text.truncate(at);
            finish = FinishReason::Stop;
        }
        if !text.is_empty() && self.events.send(GenerationEvent::Delta { text }).is_err() {
            return FinishReason::Cancelled;
        }
        finish
    }
}

/// A sampled token as the reply sees it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Piece<'a> {
    /// An end-of-generation token: the reply ends here, and it is not text.
    End,
    /// The token's bytes (a piece may hold part of a character).
    Text(&'a [u8]),
}

/// A reply in progress.
pub(crate) struct Reply {
    output: Output,
    max_tokens: u32,
    prompt_tokens: usize,
    /// Prompt tokens found in the cache (not evaluated).
    reused: usize,
    requested_at: Instant,
    prompt_started: Instant,
    first_token_at: Option<Instant>,
    completion_tokens: u32,
    /// Element `n - 1`: tokens sampled from a step that decoded `n` sequences.
    decode_batch_sequences: Vec<u32>,
    /// Steps that read part of the prompt.
    prompt_steps: u32,
    /// How a chat's prompt was written (`None` for plain text).
    prompt_format: Option<PromptFormat>,
}

impl Reply {
    pub(crate) fn new(
        events: SyncSender<GenerationEvent>,
        stream: bool,
        params: &SamplingParams,
        prompt_tokens: usize,
        requested_at: Instant,
    ) -> Self {
        Self {
            output: Output {
                events,
                stream,
                utf8: Utf8Stream::default(),
                stops: StopMatcher::new(&params.stop),
                stop_strings: params.stop.clone(),
                bytes: Vec::new(),
            },
            max_tokens: params.max_tokens,
            prompt_tokens,
            reused: 0,
            requested_at,
            prompt_started: Instant::now(),
            first_token_at: None,
            completion_tokens: 0,
            decode_batch_sequences: Vec::new(),
            prompt_steps: 0,
            prompt_format: None,
        }
    }

    /// How the prompt was written (told with the reply's metrics).
    pub(crate) fn set_prompt_format(&mut self, format: Option<PromptFormat>) {
        self.prompt_format = format;
    }

    /// The prompt's first `reused` tokens were in the cache; reading the rest starts now.
    pub(crate) fn start_reading(&mut self, reused: usize) {
        self.reused = reused;
        self.prompt_started = Instant::now();
    }

    /// A step read part of the prompt.
    pub(crate) fn read_step(&mut self) {
        self.prompt_steps += 1;
    }

    /// The most further tokens this reply may take (its `max_tokens` less what it has).
    pub(crate) fn tokens_left(&self) -> u32 {
        self.max_tokens.saturating_sub(self.completion_tokens)
    }

    /// Counts a token sampled from a step that decoded `sequences` sequences (0: the
    /// step read the prompt's end, so the token is the reply's first).
    pub(crate) fn decoded_beside(&mut self, sequences: usize) {
        let Some(at) = sequences.checked_sub(1) else { return };
        if self.decode_batch_sequences.len() <= at {
            self.decode_batch_sequences.resize(at + 1, 0);
        }
        self.decode_batch_sequences[at] += 1;
    }

    /// Takes the next sampled token, which sits at position `pos` of a sequence with
    /// room for `n_ctx` positions. Returns how the reply ended, if this token ended it.
    pub(crate) fn accept(&mut self, piece: Piece, pos: usize, n_ctx: usize) -> Option<FinishReason> {
        self.first_token_at.get_or_insert_with(Instant::now);
        let Piece::Text(bytes) = piece else {
            return Some(FinishReason::Stop);
        };
        self.completion_tokens += 1;
        match self.output.push(bytes) {
            Shown::Continue => {}
            Shown::Stopped => return Some(FinishReason::Stop),
            Shown::Gone => return Some(FinishReason::Cancelled),
        }
        if self.completion_tokens >= self.max_tokens || pos + 1 >= n_ctx {
            return Some(FinishReason::Length);
        }
        None
    }

    /// Ends the reply: sends what was held back and its figures (or the error) on its
    /// own channel, and returns the figures sent.
    pub(crate) fn finish(
        mut self,
        finish: FinishReason,
        error: Option<String>,
        load_ms: f64,
        drafts: (u32, u32),
    ) -> Option<GenerationMetrics> {
        let finished_at = Instant::now();
        if let Some(message) = error {
            // The scheduler ends a reply with an error only when decoding failed.
            let _ = self.output.events.send(GenerationEvent::Error {
                code: ErrorCode::DecodeFailed,
                message,
            });
            return None;
        }
        let finish = self.output.finish(finish);
        let mut metrics = self.metrics(finished_at, load_ms, finish);
        (metrics.draft_tokens, metrics.draft_accepted) = drafts;
        let _ = self.output.events.send(GenerationEvent::Done {
            metrics: metrics.clone(),
        });
        Some(metrics)
    }

    fn metrics(&mut self, finished_at: Instant, load_ms: f64, finish_reason: FinishReason) -> GenerationMetrics {
        let evaluated = self.prompt_tokens - self.reused.min(self.prompt_tokens);
        let prompt_end = self.first_token_at.unwrap_or(finished_at);
        let prompt_secs = prompt_end.duration_since(self.prompt_started).as_secs_f64();
        let decode_secs = self
            .first_token_at
            .map_or(0.0, |t| finished_at.duration_since(t).as_secs_f64());
        GenerationMetrics {
            prompt_tokens: to_u32(self.prompt_tokens),
            prompt_tokens_evaluated: to_u32(evaluated),
            completion_tokens: self.completion_tokens,
            load_ms,
            ttft_ms: self
                .first_token_at
                .map_or(0.0, |t| ms(t.duration_since(self.requested_at))),
            prompt_tps: rate(evaluated, prompt_secs),
            // Tokens after the first, over the time after the first: llama.cpp's "eval" rate.
            decode_tps: rate(self.completion_tokens.saturating_sub(1) as usize, decode_secs),
            total_ms: ms(finished_at.duration_since(self.requested_at)),
            finish_reason,
            draft_tokens: 0,
            draft_accepted: 0,
            decode_batch_sequences: std::mem::take(&mut self.decode_batch_sequences),
            prompt_steps: self.prompt_steps,
            prompt_format: self.prompt_format,
        }
    }
}

fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

pub(crate) fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn rate(tokens: usize, secs: f64) -> f64 {
    if secs > 0.0 && tokens > 0 {
        tokens as f64 / secs
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc::{sync_channel, Receiver};

    use super::*;

    fn params(max_tokens: u32, stop: &[&str]) -> SamplingParams {
        SamplingParams {
            max_tokens,
            stop: stop.iter().map(|s| (*s).to_owned()).collect(),
            ..SamplingParams::default()
        }
    }

    fn reply(stream: bool, max_tokens: u32, stop: &[&str]) -> (Reply, Receiver<GenerationEvent>) {
        let (tx, rx) = sync_channel(64);
        let mut reply = Reply::new(tx, stream, &params(max_tokens, stop), 10, Instant::now());
        reply.start_reading(4);
        (reply, rx)
    }

    /// Feeds pieces until the reply ends; returns how it ended and after how many.
    fn feed(reply: &mut Reply, pieces: &[&[u8]]) -> Option<(usize, FinishReason)> {
        pieces
            .iter()
            .enumerate()
            .find_map(|(i, p)| reply.accept(Piece::Text(p), 10 + i, 1000).map(|f| (i + 1, f)))
    }

    fn text_of(rx: &Receiver<GenerationEvent>) -> (String, Option<GenerationMetrics>) {
        let mut text = String::new();
        for event in rx.try_iter() {
            match event {
                GenerationEvent::Delta { text: t } => text.push_str(&t),
                GenerationEvent::Done { metrics } => return (text, Some(metrics)),
                GenerationEvent::Error { message, .. } => panic!("error: {message}"),
            }
        }
        (text, None)
    }

    #[test]
    fn characters_split_across_tokens_are_shown_whole() {
        let emoji = "😀".as_bytes();
        let (mut r, rx) = reply(true, 100, &[]);
        assert_eq!(feed(&mut r, &[b"a", &emoji[..2], &emoji[2..], b"b"]), None);
        let deltas: Vec<_> = rx.try_iter().collect();
        assert_eq!(deltas.len(), 3, "nothing is sent for half a character: {deltas:?}");
        let m = r.finish(FinishReason::Stop, None, 0.0, (0, 0)).expect("figures");
        assert_eq!(m.completion_tokens, 4);
        assert_eq!((m.prompt_tokens, m.prompt_tokens_evaluated), (10, 6));
    }

    #[test]
    fn a_stop_string_across_pieces_ends_the_reply_and_is_never_shown() {
        for stream in [true, false] {
            let (mut r, rx) = reply(stream, 100, &["END"]);
            assert_eq!(feed(&mut r, &[b"one E", b"N", b"D two"]), Some((3, FinishReason::Stop)));
            r.finish(FinishReason::Stop, None, 0.0, (0, 0));
            let (text, metrics) = text_of(&rx);
            assert_eq!(text, "one ", "stream {stream}");
            assert_eq!(metrics.expect("figures").finish_reason, FinishReason::Stop);
        }
    }

    #[test]
    fn text_held_back_as_a_possible_stop_string_is_shown_at_the_end() {
        let (mut r, rx) = reply(true, 2, &["END"]);
        assert_eq!(feed(&mut r, &[b"x E", b"N"]), Some((2, FinishReason::Length)));
        assert_eq!(text_of(&rx).0, "x ", "EN might begin END");
        r.finish(FinishReason::Length, None, 0.0, (0, 0));
        let (text, metrics) = text_of(&rx);
        assert_eq!(text, "EN");
        assert_eq!(metrics.expect("figures").finish_reason, FinishReason::Length);
    }

    #[test]
    fn the_end_of_generation_token_ends_it_without_text() {
        let (mut r, rx) = reply(true, 100, &[]);
        feed(&mut r, &[b"hi"]);
        assert_eq!(r.accept(Piece::End, 11, 1000), Some(FinishReason::Stop));
        let m = r.finish(FinishReason::Stop, None, 0.0, (3, 2)).expect("figures");
        assert_eq!((m.completion_tokens, m.draft_tokens, m.draft_accepted), (1, 3, 2));
        assert_eq!(text_of(&rx).0, "hi");
    }

    #[test]
    fn max_tokens_and_the_sequences_room_both_end_it_at_length() {
        let (mut r, _rx) = reply(true, 3, &[]);
        assert_eq!(feed(&mut r, &[b"a", b"b", b"c", b"d"]), Some((3, FinishReason::Length)));
        assert_eq!(r.tokens_left(), 0);
        let (mut r, _rx) = reply(true, 100, &[]);
        assert_eq!(r.accept(Piece::Text(b"a"), 98, 100), None);
        assert_eq!(r.accept(Piece::Text(b"b"), 99, 100), Some(FinishReason::Length));
    }

    #[test]
    fn a_reader_that_hung_up_cancels_it() {
        let (mut r, rx) = reply(true, 100, &[]);
        drop(rx);
        assert_eq!(r.accept(Piece::Text(b"a"), 10, 1000), Some(FinishReason::Cancelled));
    }

    #[test]
    fn a_whole_reply_is_sent_once_at_the_end_and_a_cancel_sends_no_text() {
        let (mut r, rx) = reply(false, 100, &[]);
        feed(&mut r, &[b"a", b"b"]);
        assert!(rx.try_recv().is_err(), "nothing before the end");
        r.finish(FinishReason::Stop, None, 0.0, (0, 0));
        let events: Vec<_> = rx.try_iter().collect();
        assert!(
            matches!(&events[0], GenerationEvent::Delta { text } if text == "ab"),
            "{events:?}"
        );
        assert!(matches!(events[1], GenerationEvent::Done { .. }));

        let (mut r, rx) = reply(false, 100, &[]);
        feed(&mut r, &[b"a"]);
        let m = r.finish(FinishReason::Cancelled, None, 0.0, (0, 0)).expect("figures");
        assert_eq!(m.finish_reason, FinishReason::Cancelled);
        assert!(matches!(rx.try_recv(), Ok(GenerationEvent::Done { .. })));
    }

    #[test]
    fn an_error_is_sent_instead_of_figures() {
        let (mut r, rx) = reply(true, 100, &[]);
        feed(&mut r, &[b"a"]);
        assert!(r
            .finish(FinishReason::Error, Some("boom".into()), 0.0, (0, 0))
            .is_none());
        let events: Vec<_> = rx.try_iter().collect();
        assert!(
            matches!(events.last(), Some(GenerationEvent::Error { code: ErrorCode::DecodeFailed, message }) if message == "boom")
        );
    }

    #[test]
    fn tokens_are_counted_by_the_width_of_the_step_they_came_from() {
        let (mut r, _rx) = reply(true, 100, &[]);
        r.decoded_beside(0);
        r.decoded_beside(3);
        r.decoded_beside(3);
        r.decoded_beside(1);
        r.read_step();
        r.read_step();
        let m = r.finish(FinishReason::Stop, None, 0.0, (0, 0)).expect("figures");
        assert_eq!(m.decode_batch_sequences, [1, 0, 2]);
        assert_eq!(m.prompt_steps, 2);
    }
}
