//! Stop strings: text that ends generation where it appears, itself left out (as OpenAI-style APIs do,
//! and unlike `generate(stop_strings=...)`, which keeps it). Text that could still become a stop string is
//! held back until it cannot, so a streamed piece never has to be taken back.

use crate::{Error, Result};

/// Most stop strings one request may give.
pub const MAX_STOP_STRINGS: usize = 8;
/// Longest stop string, in bytes.
pub const MAX_STOP_BYTES: usize = 256;

/// Finds the first stop string in text that arrives in pieces.
#[derive(Debug, Clone, Default)]
pub struct StopStrings {
    stops: Vec<String>,
    /// Text seen but not handed out: the end that is the beginning of some stop string.
    held: String,
}

/// What a piece of text came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// No stop string yet: this much text is final.
    Continue(String),
    /// A stop string was found: the text before it, and generation ends.
    Found(String),
}

impl StopStrings {
    /// Checks the strings against the limits; empty strings are refused (they would stop at once).
    pub fn new(stops: &[String]) -> Result<Self> {
        if stops.len() > MAX_STOP_STRINGS {
            return Err(Error::invalid_input(format!(
                "{} stop strings given, at most {MAX_STOP_STRINGS} are allowed",
                stops.len()
            )));
        }
        if let Some(bad) = stops.iter().find(|s| s.is_empty() || s.len() > MAX_STOP_BYTES) {
            return Err(Error::invalid_input(format!(
                "a stop string must have 1 to {MAX_STOP_BYTES} bytes, not {}",
                bad.len()
            )));
        }
        Ok(StopStrings { stops: stops.to_vec(), held: String::new() })
    }

    /// Add generated text; what of it (and of what was held) is final.
    pub fn push(&mut self, text: &str) -> Stop {
        self.held.push_str(text);
        let first = self.stops.iter().filter_map(|s| self.held.find(s.as_str())).min();
        if let Some(at) = first {
            self.held.truncate(at);
            return Stop::Found(std::mem::take(&mut self.held));
        }
        // Hold back the longest end of the text that some stop string starts with.
        let keep = self
            .stops
            .iter()
            .flat_map(|s| (1..s.len()).filter(|&n| s.is_char_boundary(n)).map(move |n| &s[..n]))
            .filter(|prefix| self.held.ends_with(prefix))
            .map(str::len)
            .max()
            .unwrap_or(0);
        let final_len = self.held.len() - keep;
        let rest = self.held.split_off(final_len);
        Stop::Continue(std::mem::replace(&mut self.held, rest))
    }

    /// Generation ended without a stop string: what was held back is final.
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stops(s: &[&str]) -> StopStrings {
        StopStrings::new(&s.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn a_stop_string_split_over_pieces_is_found_and_left_out() {
        let mut s = stops(&["</answer>", "\n\n"]);
        assert_eq!(s.push("The cat </an"), Stop::Continue("The cat ".into()));
        assert_eq!(s.push("swer> more"), Stop::Found(String::new()));
        let mut s = stops(&["STOP"]);
        assert_eq!(s.push("aST"), Stop::Continue("a".into()));
        assert_eq!(s.push("Ob"), Stop::Continue("STOb".into()), "not a stop string after all");
        assert_eq!(s.push("x\n"), Stop::Continue("x\n".into()));
        assert_eq!(s.push("yST"), Stop::Continue("y".into()));
        assert_eq!(s.finish(), "ST");
    }

    #[test]
    fn the_earliest_stop_string_wins_and_unicode_is_kept_whole() {
        let mut s = stops(&["é!", "b"]);
        assert_eq!(s.push("aé"), Stop::Continue("a".into()));
        assert_eq!(s.push("xb é!"), Stop::Found("éx".into()));
    }

    #[test]
    fn limits() {
        assert!(StopStrings::new(&[String::new()]).is_err());
        assert!(StopStrings::new(&vec!["x".to_string(); MAX_STOP_STRINGS + 1]).is_err());
        assert!(StopStrings::new(&["x".repeat(MAX_STOP_BYTES + 1)]).is_err());
    }
}
