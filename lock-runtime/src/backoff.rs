//! Exponential backoff with jitter, for waiters between notices and for
//! retries while a connection comes back.

use std::time::Duration;

use crate::token::jitter;

/// Pauses that double from `first` up to a ceiling given at each step, each
/// drawn between half and all of the current step, so waiters spread out.
#[derive(Debug)]
pub(crate) struct Backoff {
    next: Duration,
}

impl Backoff {
    pub(crate) fn new(first: Duration) -> Self {
        Backoff { next: first }
    }

    /// The next pause, at most `ceiling`.
    pub(crate) fn step(&mut self, ceiling: Duration) -> Duration {
        let current = self.next.min(ceiling);
        self.next = (current * 2).min(ceiling);
        let half = current / 2;
        half + Duration::from_micros(jitter(half.as_micros() as u64 + 1))
    }

    /// Starts the next steps at `floor` at least (e.g. notices are live, so
    /// polling is only a slow safety net).
    pub(crate) fn at_least(&mut self, floor: Duration) {
        self.next = self.next.max(floor);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_ceiling_with_jitter() {
        let first = Duration::from_millis(10);
        let ceiling = Duration::from_secs(1);
        let mut backoff = Backoff::new(first);
        let pauses: Vec<Duration> = (0..12).map(|_| backoff.step(ceiling)).collect();
        assert!(pauses[0] <= first);
        assert!(pauses.iter().all(|p| *p <= ceiling));
        assert!(pauses[11] >= ceiling / 2);
    }
}
