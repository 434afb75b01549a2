//! A sliding window of a period, as the last [`SLOTS`] slots of a tenth of it each: a
//! counter per slot is added to without a read, and a check sums the slots still in the
//! window. Shared by the auth-failure counters and the inbound limiters.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The window is this many slots of `period / SLOTS`.
pub(crate) const SLOTS: u64 = 10;

/// The slots of the window at one moment, as their start times in Unix milliseconds.
pub(crate) struct Window {
    pub(crate) slot_ms: u64,
    current: u64,
}

impl Window {
    /// The window of `period` at `now`.
    pub(crate) fn at(period: Duration, now: SystemTime) -> Self {
        let period_ms = u64::try_from(period.as_millis()).unwrap_or(u64::MAX);
        let slot_ms = (period_ms / SLOTS).max(1);
        let now_ms = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        Self {
            slot_ms,
            current: now_ms / slot_ms,
        }
    }

    /// The start of the current slot.
    pub(crate) fn current(&self) -> u64 {
        self.current.saturating_mul(self.slot_ms)
    }

    /// The starts of the slots in the window, oldest first.
    pub(crate) fn starts(&self) -> impl Iterator<Item = u64> + '_ {
        let first = self.current.saturating_sub(SLOTS - 1);
        (first..=self.current).map(|slot| slot.saturating_mul(self.slot_ms))
    }

    /// The start of the oldest slot still in the window: counters before it have expired.
    pub(crate) fn oldest(&self) -> u64 {
        self.current
            .saturating_sub(SLOTS - 1)
            .saturating_mul(self.slot_ms)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_window_is_the_last_ten_tenths_of_the_period() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let window = Window::at(Duration::from_secs(600), now);
        let starts: Vec<u64> = window.starts().collect();
        assert_eq!(starts.len(), 10);
        assert_eq!(window.slot_ms, 60_000);
        assert_eq!(*starts.last().unwrap(), window.current());
        assert!(window.current() <= 1_000_000_000 && 1_000_000_000 - window.current() < 60_000);
        assert_eq!(window.oldest(), starts[0]);
        assert_eq!(starts[9] - starts[0], 9 * 60_000);
    }
}
