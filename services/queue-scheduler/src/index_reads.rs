//! When a scheduler reads the due index of its shards: on a timer, and sooner only when due
//! messages are known to wait for room.

use std::time::{Duration, Instant};

/// When a scheduler reads the due index of its shards again. Fresh messages are handed over
/// in memory, so an enqueue alone needs no read; reading at every enqueue and every finished
/// delivery would read every owned shard twice per message.
#[derive(Debug)]
pub(crate) struct IndexReads {
    /// The wait between two reads when nothing is known to be waiting.
    poll: Duration,
    /// Room (free delivery slots) worth a read while due messages are known to be waiting.
    batch: usize,
    /// When the next read is due anyway.
    next: Instant,
    /// Due messages were left unstarted for want of room.
    backlog: bool,
}

impl IndexReads {
    /// Reads every `poll` from `now`, and for a backlog once an eighth of `max_in_flight` is free.
    pub(crate) fn new(now: Instant, poll: Duration, max_in_flight: usize) -> Self {
        Self {
            poll,
            batch: (max_in_flight / 8).max(1),
            next: now,
            backlog: false,
        }
    }

    /// Whether to read the index now, with `room` free delivery slots.
    pub(crate) fn due(&self, now: Instant, room: usize) -> bool {
        now >= self.next || (self.backlog && room >= self.batch)
    }

    /// Records a dispatch at `now` that read the index or not and left a backlog or not.
    pub(crate) fn dispatched(&mut self, now: Instant, read_index: bool, backlog: bool) {
        if read_index {
            self.next = now + self.poll;
            self.backlog = backlog;
        } else {
            self.backlog |= backlog;
        }
    }

    /// When the next read is due without a wake-up.
    pub(crate) fn next_poll(&self) -> Instant {
        self.next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLL: Duration = Duration::from_secs(1);

    #[test]
    fn reads_at_start_then_on_the_timer() {
        let start = Instant::now();
        let mut reads = IndexReads::new(start, POLL, 256);
        assert!(reads.due(start, 256), "the first dispatch reads");
        reads.dispatched(start, true, false);
        assert!(!reads.due(start, 256), "an enqueue alone does not read");
        assert_eq!(reads.next_poll(), start + POLL);
        assert!(
            reads.due(start + POLL, 0),
            "the timer reads even without room"
        );
    }

    #[test]
    fn a_backlog_reads_once_a_batch_of_room_is_free() {
        let start = Instant::now();
        let mut reads = IndexReads::new(start, POLL, 256);
        reads.dispatched(start, true, true);
        assert!(!reads.due(start, 31), "less than a batch of room");
        assert!(reads.due(start, 32));
        reads.dispatched(start, true, false);
        assert!(!reads.due(start, 256), "the backlog was started");
    }

    #[test]
    fn fresh_messages_left_waiting_make_a_backlog() {
        let start = Instant::now();
        let mut reads = IndexReads::new(start, POLL, 8);
        reads.dispatched(start, true, false);
        reads.dispatched(start, false, true);
        assert!(
            reads.due(start, 1),
            "a batch of one slot for eight in flight"
        );
        reads.dispatched(start, false, false);
        assert!(reads.due(start, 1), "only a read clears the backlog");
    }
}
