//! A failure that repeats (a store that cannot write, a server that is down) is logged at a
//! bounded rate: its first occurrence, then at most one line per interval, which says how
//! many occurrences were left out. A flood of identical lines would hide everything else
//! and, on a shared disk, feed the very shortage that caused it.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Lets one line through per interval; see the module documentation.
#[derive(Debug)]
pub struct LogLimit {
    interval: Duration,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    last: Option<Instant>,
    left_out: u64,
}

impl LogLimit {
    /// At most one line per `interval`.
    pub const fn new(interval: Duration) -> Self {
        Self {
            interval,
            state: Mutex::new(State {
                last: None,
                left_out: 0,
            }),
        }
    }

    /// Whether to log this occurrence: `Some(n)` with the `n` occurrences left out since the
    /// last line, or `None` to leave this one out.
    pub fn admit(&self) -> Option<u64> {
        self.admit_at(Instant::now())
    }

    fn admit_at(&self, now: Instant) -> Option<u64> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let due = state
            .last
            .is_none_or(|last| now.saturating_duration_since(last) >= self.interval);
        if due {
            state.last = Some(now);
            Some(std::mem::take(&mut state.left_out))
        } else {
            state.left_out += 1;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_counting_those_left_out() {
        let limit = LogLimit::new(Duration::from_secs(10));
        let start = Instant::now();
        assert_eq!(
            limit.admit_at(start),
            Some(0),
            "the first occurrence is logged"
        );
        for second in 1..10 {
            assert_eq!(limit.admit_at(start + Duration::from_secs(second)), None);
        }
        assert_eq!(
            limit.admit_at(start + Duration::from_secs(10)),
            Some(9),
            "the next line says how many were left out"
        );
        assert_eq!(limit.admit_at(start + Duration::from_secs(11)), None);
        assert_eq!(limit.admit_at(start + Duration::from_secs(25)), Some(1));
    }
}
