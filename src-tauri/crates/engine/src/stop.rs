//! Stop strings: generation ends where one appears, and it is never shown.
//!
//! Text that might be the beginning of a stop string is held back until it is
//! clear that it is not, so the user never sees a stop string flash by.

/// Outcome of feeding new text to a [`StopMatcher`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum StopScan {
    /// Text safe to show now (possibly empty).
    Continue(String),
    /// A stop string appeared: show this text, then end the reply.
    Stopped(String),
}

#[derive(Debug)]
pub(crate) struct StopMatcher {
    stops: Vec<String>,
    held: String,
}

impl StopMatcher {
    pub(crate) fn new(stops: &[String]) -> Self {
        Self {
            stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(),
            held: String::new(),
        }
    }

    pub(crate) fn push(&mut self, text: &str) -> StopScan {
        if self.stops.is_empty() {
            return StopScan::Continue(text.to_owned());
        }
        self.held.push_str(text);
        let first_match = self.stops.iter().filter_map(|stop| self.held.find(stop.as_str())).min();
        if let Some(at) = first_match {
            let shown = self.held[..at].to_owned();
            self.held.clear();
            return StopScan::Stopped(shown);
        }
        let keep = self.longest_partial_suffix();
        let cut = self.held.len() - keep;
        let shown = self.held[..cut].to_owned();
        self.held.drain(..cut);
        StopScan::Continue(shown)
    }

    /// Text still held back when the reply ends for another reason: it was not a stop string.
    pub(crate) fn flush(&mut self) -> String {
        std::mem::take(&mut self.held)
    }

    /// Length in bytes of the longest suffix of `held` that is a proper prefix of a
    /// stop string, measured on character boundaries.
    fn longest_partial_suffix(&self) -> usize {
        let mut best = 0;
        for (start, _) in self.held.char_indices() {
            let suffix = &self.held[start..];
            if self
                .stops
                .iter()
                .any(|stop| stop.len() > suffix.len() && stop.starts_with(suffix))
            {
                best = best.max(suffix.len());
                break; // char_indices runs from the longest suffix down
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matcher(stops: &[&str]) -> StopMatcher {
        StopMatcher::new(&stops.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn without_stops_everything_passes() {
        let mut m = matcher(&[]);
        assert_eq!(m.push("abc"), StopScan::Continue("abc".into()));
    }

    #[test]
    fn stop_split_over_pieces_is_never_shown() {
        let mut m = matcher(&["END"]);
        assert_eq!(m.push("hello E"), StopScan::Continue("hello ".into()));
        assert_eq!(m.push("N"), StopScan::Continue(String::new()));
        assert_eq!(m.push("D tail"), StopScan::Stopped(String::new()));
    }

    #[test]
    fn false_start_is_released() {
        let mut m = matcher(&["END"]);
        assert_eq!(m.push("EN"), StopScan::Continue(String::new()));
        assert_eq!(m.push("Z"), StopScan::Continue("ENZ".into()));
        assert_eq!(m.push("E"), StopScan::Continue(String::new()));
        assert_eq!(m.flush(), "E");
    }

    #[test]
    fn earliest_of_several_stops_wins() {
        let mut m = matcher(&["bb", "a"]);
        assert_eq!(m.push("xbbya"), StopScan::Stopped("x".into()));
    }

    #[test]
    fn multibyte_text_is_cut_on_character_boundaries() {
        let mut m = matcher(&["中文"]);
        assert_eq!(m.push("é中"), StopScan::Continue("é".into()));
        assert_eq!(m.push("x"), StopScan::Continue("中x".into()));
    }
}
