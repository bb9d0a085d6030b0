//! Search-as-you-type bookkeeping on the page: a debounce (only the last keystroke of a burst sends a
//! query) and sequence numbers (an answer to an older query never replaces a newer one's).

/// Debounce by generation: every keystroke takes a ticket; when its timer fires, only the ticket of
/// the latest keystroke is still current.
#[derive(Debug, Default)]
pub struct Debounce {
    generation: u64,
}

impl Debounce {
    /// A keystroke: returns the ticket its timer will present.
    pub fn touch(&mut self) -> u64 {
        self.generation += 1;
        self.generation
    }

    /// A timer fired: act only when no keystroke came after the one that set it.
    pub fn fire(&self, ticket: u64) -> bool {
        ticket == self.generation
    }
}

/// Sequence numbers for requests whose answers replace each other (searches, "similar").
#[derive(Debug, Default)]
pub struct Latest {
    issued: u64,
}

impl Latest {
    /// The number of a new request; it supersedes every earlier one.
    pub fn issue(&mut self) -> u64 {
        self.issued += 1;
        self.issued
    }

    /// Whether an answer to request `seq` is still wanted (it is the latest issued).
    pub fn accept(&self, seq: u64) -> bool {
        seq == self.issued
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_last_keystroke_of_a_burst_fires() {
        let mut d = Debounce::default();
        let t1 = d.touch();
        let t2 = d.touch();
        assert!(!d.fire(t1));
        assert!(d.fire(t2));
        let t3 = d.touch();
        assert!(!d.fire(t2) && d.fire(t3));
    }

    #[test]
    fn stale_answers_are_refused() {
        let mut l = Latest::default();
        let a = l.issue();
        let b = l.issue();
        assert!(!l.accept(a), "the answer to an older query arrives late");
        assert!(l.accept(b));
        assert!(!l.accept(b + 1));
    }
}
