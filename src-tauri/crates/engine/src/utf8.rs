//! Turns the byte pieces of tokens into whole UTF-8 characters.
//!
//! A token is a byte sequence, not a character: an emoji or a CJK character is
//! often split over two or three tokens. Emitting each piece as it comes would
//! send broken characters to the UI, so incomplete trailing bytes are held back
//! until the token that completes them arrives.

/// Accumulates token bytes and releases only complete characters.
#[derive(Debug, Default)]
pub(crate) struct Utf8Stream {
    pending: Vec<u8>,
}

impl Utf8Stream {
    /// Adds a token's bytes; returns the text that is now complete (possibly empty).
    /// Bytes that can never become valid UTF-8 are replaced by U+FFFD rather than
    /// held forever.
    pub(crate) fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(text) => {
                    out.push_str(text);
                    self.pending.clear();
                    return out;
                }
                Err(err) => {
                    let valid = err.valid_up_to();
                    // The prefix was just validated, so this cannot fail.
                    out.push_str(std::str::from_utf8(&self.pending[..valid]).unwrap_or_default());
                    match err.error_len() {
                        // Incomplete character at the end: wait for more bytes.
                        None => {
                            self.pending.drain(..valid);
                            return out;
                        }
                        Some(bad) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            self.pending.drain(..valid + bad);
                        }
                    }
                }
            }
        }
    }

    /// Ends the stream. Bytes still pending are the start of a character that the
    /// reply was cut off before finishing (max_tokens, cancel): they are dropped, not
    /// shown as a replacement character, since they never were text.
    pub(crate) fn finish(&mut self) {
        self.pending.clear();
    }

    /// Decodes a whole byte sequence at once, with the same rules as streaming it.
    pub(crate) fn decode_all(bytes: &[u8]) -> String {
        let mut stream = Self::default();
        let text = stream.push(bytes);
        stream.finish();
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_back_split_characters() {
        let bytes = "a😀中".as_bytes();
        let mut stream = Utf8Stream::default();
        let mut out = String::new();
        for b in bytes {
            let piece = stream.push(std::slice::from_ref(b));
            assert!(std::str::from_utf8(piece.as_bytes()).is_ok());
            out.push_str(&piece);
        }
        stream.finish();
        assert_eq!(out, "a😀中");
        assert_eq!(Utf8Stream::decode_all(bytes), "a😀中");
    }

    #[test]
    fn emits_nothing_until_a_character_completes() {
        let mut stream = Utf8Stream::default();
        let emoji = "😀".as_bytes();
        assert_eq!(stream.push(&emoji[..2]), "");
        assert_eq!(stream.push(&emoji[2..]), "😀");
    }

    #[test]
    fn invalid_bytes_become_replacement_characters() {
        let mut stream = Utf8Stream::default();
        assert_eq!(stream.push(&[b'x', 0xFF, b'y']), "x\u{FFFD}y");
        assert_eq!(stream.push(&[0xE4, 0xB8]), "");
        assert_eq!(Utf8Stream::decode_all(&[b'a', 0xFF, 0xE4, 0xB8]), "a\u{FFFD}");
    }
}
