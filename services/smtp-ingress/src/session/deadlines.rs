//! Deadlines that do not restart with every byte: a command line must be complete within
//! `session.command-deadline` of its first byte, and a message body must keep up
//! `session.data.min-rate` (Postfix's `smtpd_per_record_deadline` and `smtpd_min_data_rate`).
//!
//! `session.timeout` and `session.data.timeout` bound each wait for the next bytes, so a
//! client sending one byte at a time just inside them could otherwise keep its session, and
//! its per-address connection slot, for the whole `session.duration`.

use std::time::{Duration, Instant};

/// What the client is told when a command line takes too long.
const COMMAND_TOO_SLOW: &str = "timeout: command line too slow, closing connection";
/// What the client is told when a message body arrives too slowly.
const DATA_TOO_SLOW: &str = "timeout: data rate too low, closing connection";

/// A point in time by which the client must have sent something, and what it is told if not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Deadline {
    pub(crate) at: Instant,
    pub(crate) why: &'static str,
}

impl Deadline {
    /// The deadline of a command line whose first byte arrived at `started`.
    pub(crate) fn command_line(started: Instant, allowed: Duration) -> Option<Self> {
        Some(Self {
            at: started.checked_add(allowed)?,
            why: COMMAND_TOO_SLOW,
        })
    }

    /// Whichever of `a` and `b` comes first.
    pub(crate) fn earliest(a: Option<Self>, b: Option<Self>) -> Option<Self> {
        match (a, b) {
            (Some(a), Some(b)) => Some(if b.at < a.at { b } else { a }),
            (a, b) => a.or(b),
        }
    }
}

/// The progress of one message body, for its minimum rate.
#[derive(Debug, Default)]
pub(crate) struct Transfer {
    started: Option<Instant>,
    received: u64,
}

impl Transfer {
    /// Marks the transfer under way from `at` (a BDAT command, whose chunk follows at once),
    /// unless it already was.
    pub(crate) fn start(&mut self, at: Instant) {
        self.started.get_or_insert(at);
    }

    /// Counts `bytes` more received, which had arrived by `at`.
    pub(crate) fn received(&mut self, bytes: usize, at: Instant) {
        if bytes > 0 {
            self.start(at);
            self.received = self.received.saturating_add(bytes as u64);
        }
    }

    /// The time by which more must arrive: `allowance` after the first byte, plus a second
    /// per `rate` bytes received so far; none before the first byte or when `rate` is 0.
    pub(crate) fn deadline(&self, allowance: Duration, rate: u32) -> Option<Deadline> {
        if rate == 0 {
            return None;
        }
        let earned = Duration::from_secs_f64(self.received as f64 / f64::from(rate));
        Some(Deadline {
            at: self
                .started?
                .checked_add(allowance.saturating_add(earned))?,
            why: DATA_TOO_SLOW,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_earns_time_with_every_byte_from_its_first() {
        let start = Instant::now();
        let allowance = Duration::from_secs(30);
        let mut transfer = Transfer::default();
        assert_eq!(transfer.deadline(allowance, 500), None, "nothing sent yet");
        transfer.received(1000, start);
        let deadline = transfer.deadline(allowance, 500);
        assert_eq!(
            deadline.map(|d| d.at),
            Some(start + Duration::from_secs(32))
        );
        transfer.received(0, start + Duration::from_secs(9));
        transfer.received(500, start + Duration::from_secs(10));
        let later = transfer.deadline(allowance, 500).map(|d| d.at);
        assert_eq!(
            later,
            Some(start + Duration::from_secs(33)),
            "counted from the first byte"
        );
        assert_eq!(transfer.deadline(allowance, 0), None, "no minimum rate");
    }

    #[test]
    fn the_earliest_deadline_wins() {
        let now = Instant::now();
        let line = Deadline::command_line(now, Duration::from_secs(5));
        let mut transfer = Transfer::default();
        transfer.start(now);
        let body = transfer.deadline(Duration::from_secs(1), 500);
        assert_eq!(Deadline::earliest(line, body), body);
        assert_eq!(Deadline::earliest(line, None), line);
        assert_eq!(Deadline::earliest(None, None), None);
    }
}
