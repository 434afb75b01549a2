//! The scheduler's pause after failures of the store: while it cannot claim, read or record,
//! starting more attempts only repeats the same failure, as fast as the CPU allows. The
//! pause doubles with each failure, up to [`MAX_PAUSE`], and ends at the first success.

use std::time::{Duration, Instant};

/// The pause after a first failure.
const FIRST_PAUSE: Duration = Duration::from_millis(100);
/// The longest pause: a recovered store is used again within this time.
const MAX_PAUSE: Duration = Duration::from_secs(10);

/// When the scheduler may start work again.
#[derive(Debug)]
pub(crate) struct FailureBackoff {
    next_pause: Duration,
    until: Option<Instant>,
}

impl Default for FailureBackoff {
    fn default() -> Self {
        Self {
            next_pause: FIRST_PAUSE,
            until: None,
        }
    }
}

impl FailureBackoff {
    /// Records a failure at `now`: no new work until the pause has passed. Failures of work
    /// started before the pause do not lengthen it.
    pub(crate) fn failed(&mut self, now: Instant) {
        if self.pausing(now).is_some() {
            return;
        }
        self.until = Some(now + self.next_pause);
        self.next_pause = (self.next_pause * 2).min(MAX_PAUSE);
    }

    /// Records a success: the next failure pauses briefly again.
    pub(crate) fn succeeded(&mut self) {
        self.next_pause = FIRST_PAUSE;
        self.until = None;
    }

    /// Until when no new work starts, if a pause is under way at `now`.
    pub(crate) fn pausing(&self, now: Instant) -> Option<Instant> {
        self.until.filter(|until| *until > now)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn failures_pause_longer_each_time_until_a_success() {
        let start = Instant::now();
        let mut backoff = FailureBackoff::default();
        assert_eq!(backoff.pausing(start), None);
        backoff.failed(start);
        assert_eq!(backoff.pausing(start), Some(start + FIRST_PAUSE));
        // Attempts started before the pause fail during it: the pause stays as it is.
        backoff.failed(start + Duration::from_millis(50));
        assert_eq!(backoff.pausing(start), Some(start + FIRST_PAUSE));
        let mut now = start + FIRST_PAUSE;
        assert_eq!(backoff.pausing(now), None);
        let mut pauses = Vec::new();
        for _ in 0..10 {
            backoff.failed(now);
            let until = backoff.pausing(now).unwrap();
            pauses.push(until - now);
            now = until;
        }
        assert_eq!(pauses[0], FIRST_PAUSE * 2);
        assert!(pauses.windows(2).all(|w| w[1] >= w[0]), "{pauses:?}");
        assert_eq!(*pauses.last().unwrap(), MAX_PAUSE);
        backoff.succeeded();
        backoff.failed(now);
        assert_eq!(backoff.pausing(now), Some(now + FIRST_PAUSE));
    }
}
