//! Checking a string the reader does not keep: whether it is UTF-8 text, and a
//! fingerprint to find repeats, computed over the pieces the read buffer hands out
//! (a character may be split between two pieces).

/// UTF-8 validity and a 128-bit FNV-1a fingerprint of bytes fed in pieces.
pub(super) struct TextCheck {
    /// The start of a character cut off at the end of the last piece (at most 3 bytes).
    pending: [u8; 4],
    pending_len: usize,
    invalid: bool,
    hash: u128,
}

const FNV_OFFSET: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
const FNV_PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;

impl TextCheck {
    pub(super) fn new() -> Self {
        Self {
            pending: [0; 4],
            pending_len: 0,
            invalid: false,
            hash: FNV_OFFSET,
        }
    }

    pub(super) fn push(&mut self, mut piece: &[u8]) {
        for &b in piece {
            self.hash = (self.hash ^ u128::from(b)).wrapping_mul(FNV_PRIME);
        }
        if self.invalid {
            return;
        }
        // Complete the character begun in the previous piece, a byte at a time.
        while self.pending_len > 0 {
            let Some((&b, rest)) = piece.split_first() else {
                return;
            };
            piece = rest;
            self.pending[self.pending_len] = b;
            self.pending_len += 1;
            match std::str::from_utf8(&self.pending[..self.pending_len]) {
                Ok(_) => self.pending_len = 0,
                // Still incomplete (never at 4 bytes, the longest character; the guard
                // keeps `pending` from overflowing whatever `from_utf8` answers).
                Err(e) if e.error_len().is_none() && self.pending_len < self.pending.len() => {}
                Err(_) => {
                    self.invalid = true;
                    return;
                }
            }
        }
        match std::str::from_utf8(piece) {
            Ok(_) => {}
            Err(e) if e.error_len().is_none() => {
                let tail = &piece[e.valid_up_to()..];
                self.pending[..tail.len()].copy_from_slice(tail);
                self.pending_len = tail.len();
            }
            Err(_) => self.invalid = true,
        }
    }

    /// Whether all the bytes were UTF-8 text, and their fingerprint.
    pub(super) fn finish(&self) -> (bool, u128) {
        (!self.invalid && self.pending_len == 0, self.hash)
    }
}

#[cfg(test)]
mod tests {
    use super::TextCheck;
    use proptest::prelude::*;

    fn check_in_pieces(bytes: &[u8], cuts: &[usize]) -> (bool, u128) {
        let mut check = TextCheck::new();
        let mut at = 0;
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
        cuts.sort_unstable();
        for cut in cuts {
            check.push(&bytes[at..cut]);
            at = cut;
        }
        check.push(&bytes[at..]);
        check.finish()
    }

    #[test]
    fn characters_split_between_pieces() {
        let text = "héllo €uro 𝄞 end".as_bytes();
        for cut in 0..=text.len() {
            assert_eq!(
                check_in_pieces(text, &[cut]),
                check_in_pieces(text, &[]),
                "cut at {cut}"
            );
            assert!(check_in_pieces(text, &[cut]).0, "cut at {cut}");
        }
        for bad in [
            &b"\xff"[..],
            b"abc\xe2\x82",
            b"\xe2(\xa1",
            b"\xc0\x80",
            b"\xed\xa0\x80",
            b"ok\x80",
        ] {
            for cut in 0..=bad.len() {
                assert!(!check_in_pieces(bad, &[cut]).0, "{bad:?} cut at {cut}");
            }
        }
    }

    proptest! {
        /// Fed in any pieces, the answer is that of the whole: UTF-8 exactly when
        /// `str::from_utf8` says so, and one fingerprint.
        #[test]
        fn pieces_agree_with_the_whole(
            bytes in prop::collection::vec(prop_oneof![any::<u8>(), 0x80u8..0xc0, 0xe0u8..0xf5], 0..40),
            cuts in prop::collection::vec(any::<usize>(), 0..6),
        ) {
            let whole = check_in_pieces(&bytes, &[]);
            prop_assert_eq!(whole.0, std::str::from_utf8(&bytes).is_ok());
            prop_assert_eq!(check_in_pieces(&bytes, &cuts), whole);
        }

        #[test]
        fn text_is_valid_in_any_pieces(s in ".{0,20}", cuts in prop::collection::vec(any::<usize>(), 0..6)) {
            prop_assert!(check_in_pieces(s.as_bytes(), &cuts).0);
        }
    }
}
