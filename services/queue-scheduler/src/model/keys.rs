//! Where the queue lives in the key space.
//!
//! Everything is under `root / ("queue",)`, tuple-encoded. `id` is a message's 16-byte
//! [`MessageId`], `index` a recipient's position in the envelope (from 0), `shard` the
//! message's due-index shard (`0..SHARDS`), `rank` its priority as `9 - priority` (0 is the
//! highest priority, 18 the lowest) and times are Unix milliseconds.
//!
//! | key                                   | value                                          |
//! |---------------------------------------|------------------------------------------------|
//! | `("msg", id)`                         | the message record ([`crate::MessageRecord`])  |
//! | `("rcpt", id, index)`                 | one recipient and its delivery state           |
//! | `("due", shard, rank, due_ms, id)`    | empty: the message has a recipient due then    |
//! | `("count", name, shard)`              | little-endian `i64`, changed by atomic add     |
//! | `("lease", id)`                       | who delivers the message, under which fencing token (`lease`) |
//! | `("enqueued", arrival_ms, id)`        | `(1,)`: the message was enqueued (`enqueued`), kept a day |
//! | `("quota", quota, group, unit)`       | `i64` use of a quota group; unit `msgs`/`bytes` |
//! | `("charged", id)`                     | `(size, [(quota, group)…])` the message is charged |
//! | `("member", owner)`                   | `(expiry_ms,)`: a scheduler's heartbeat         |
//! | `("throttle", id, group, "slot", holder)` | `(expiry_ms,)`: a delivery under way        |
//! | `("throttle", id, group, "rate")`     | `(window_start_ms, count)`                      |
//! | `("mta-sts", domain)`                 | `(1, record_id, expires_ms, policy)`: MTA-STS policy |
//! | `("dest", "paused", scope, name)`     | `(since_ms,)`: delivery paused (`paused`)       |
//! | `("dest", "dead", destination)`       | a destination's failed connections (`dead_destination`) |
//! | `("msgid", message_id, id)`           | empty: message `id` has this `Message-ID` (`message_id_index`) |
//! | `("msgid-of", id)`                    | the `Message-ID` message `id` is indexed under  |
//! | `("events", "outbox", webhook, event)` | one delivery event (JSON) waiting for `webhook` (`event_outbox`) |
//! | `("events", "depth", webhook)`        | little-endian `i64`: events waiting for `webhook`, by atomic add |
//! | `("events", "lease", webhook)`        | which scheduler sends `webhook`'s events, under which token |
//! | `("dmarc", "row", domain, start, hash, 0)` | one DMARC report row (JSON), period starting `start` (Unix s) |
//! | `("dmarc", "row", domain, start, hash, 1)` | little-endian `i64`: the messages counted in it, by atomic add |
//! | `("dmarc", "rows", domain, start)`    | `i64`: distinct rows of the period (bounded by `max-records`) |
//! | `("dmarc", "over", domain, start)`    | `i64`: evaluations left out past the bound    |
//! | `("dmarc", "policy", domain, start)`  | the policy the domain published (JSON)         |
//! | `("dmarc", "due", end, domain, start)` | empty: a report is due at `end` (Unix s)      |
//! | `("dmarc", "lease", domain, start)`   | which scheduler builds the report, under which token |
//! | `("dmarc", "retry", domain, start)`   | `(attempts, next_ms)`: DNS failures at report time |
//! | `("tlsrpt", …)`                       | SMTP TLS report rows, as `("dmarc", …)`: a row is a policy and a result |
//!
//! Why this shape:
//! - Recipients have a key each: delivery updates one recipient without rewriting the others,
//!   and a message with many recipients never nears the 100,000-byte value limit.
//! - Each message with a live recipient (pending or temp-failed) has exactly one due entry, at
//!   the earliest due time of its live recipients; the record remembers that time, so the entry
//!   is moved or cleared without a search. A scheduler owning a shard reads, per rank from 0,
//!   the range up to `now`: only what is due, highest priority first and oldest first within a
//!   priority, at a cost proportional to what is due (plus 19 short range reads), never to the
//!   size of the queue. Priority comes before the time in the key because a time-first order
//!   would return the oldest due entries first, not the most urgent.
//! - Counters are split by shard (each message's counters go to its own shard) so that no
//!   single key takes every enqueue's atomic add: on FoundationDB one hot key is served by one
//!   storage team. Reading a total is one range read of `SHARDS` keys per counter.
//! - A message's delivery lease has its own key, not a field of the record: claiming and
//!   renewing rewrite a few bytes, and readers of the record do not conflict with renewals.
//! - The record that a message was enqueued is keyed by its arrival time first: those past
//!   their retention are one range, cleared at once.
//! - Quotas, heartbeats, throttles and MTA-STS policies have subspaces of their own beside
//!   these.

use ferrymail_rpc::queue::{Priority, RecipientState};
use ferrymail_store::{KeyRange, Subspace};

use crate::model::queue_id::MessageId;

/// The subspaces of the queue.
#[derive(Debug)]
pub(crate) struct Keys {
    messages: Subspace,
    recipients: Subspace,
    due: Subspace,
    counters: Subspace,
    leases: Subspace,
    enqueued: Subspace,
    quotas: Subspace,
    charged: Subspace,
    members: Subspace,
    throttles: Subspace,
    mta_sts: Subspace,
    destinations: Subspace,
    message_ids: Subspace,
    message_id_of: Subspace,
    events: Subspace,
    dmarc: Subspace,
    tlsrpt: Subspace,
}

/// The kinds of aggregate report whose rows are kept alike, each under its own subspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum ReportKind {
    /// DMARC aggregate reports (RFC 7489 §7.2).
    Dmarc,
    /// SMTP TLS reports (RFC 8460).
    Tls,
}

impl Keys {
    /// The queue's keys under `root`.
    pub(crate) fn new(root: &Subspace) -> Self {
        let queue = root.subspace(&("queue",));
        Self {
            messages: queue.subspace(&("msg",)),
            recipients: queue.subspace(&("rcpt",)),
            due: queue.subspace(&("due",)),
            counters: queue.subspace(&("count",)),
            leases: queue.subspace(&("lease",)),
            enqueued: queue.subspace(&("enqueued",)),
            quotas: queue.subspace(&("quota",)),
            charged: queue.subspace(&("charged",)),
            members: queue.subspace(&("member",)),
            throttles: queue.subspace(&("throttle",)),
            mta_sts: queue.subspace(&("mta-sts",)),
            destinations: queue.subspace(&("dest",)),
            message_ids: queue.subspace(&("msgid",)),
            message_id_of: queue.subspace(&("msgid-of",)),
            events: queue.subspace(&("events",)),
            dmarc: queue.subspace(&("dmarc",)),
            tlsrpt: queue.subspace(&("tlsrpt",)),
        }
    }

    /// The mark that delivery to `name` of `scope` (`all`, `domain`, `remote`) is paused.
    pub(crate) fn paused(&self, scope: &str, name: &str) -> Vec<u8> {
        self.destinations.pack(&("paused", scope, name))
    }

    /// Every pause mark.
    pub(crate) fn all_paused(&self) -> KeyRange {
        range(&self.destinations.subspace(&("paused",)))
    }

    /// The scope and name a pause mark's key names.
    pub(crate) fn parse_paused(&self, key: &[u8]) -> Option<(String, String)> {
        let (_, scope, name) = self
            .destinations
            .unpack::<(String, String, String)>(key)
            .ok()?;
        Some((scope, name))
    }

    /// The failed connections of `destination` (`remote.<id>`).
    pub(crate) fn dead(&self, destination: &str) -> Vec<u8> {
        self.destinations.pack(&("dead", destination))
    }

    /// Every destination with failed connections.
    pub(crate) fn all_dead(&self) -> KeyRange {
        range(&self.destinations.subspace(&("dead",)))
    }

    /// The destination a dead-destination key names.
    pub(crate) fn parse_dead(&self, key: &[u8]) -> Option<String> {
        let (_, destination) = self.destinations.unpack::<(String, String)>(key).ok()?;
        Some(destination)
    }

    /// Event `event` (its ULID's 16 bytes) waiting in `webhook`'s outbox.
    pub(crate) fn outbox_entry(&self, webhook: &str, event: &[u8; 16]) -> Vec<u8> {
        self.events.pack(&("outbox", webhook, event.to_vec()))
    }

    /// Every event waiting for `webhook`, oldest first.
    pub(crate) fn outbox(&self, webhook: &str) -> KeyRange {
        range(&self.events.subspace(&("outbox", webhook)))
    }

    /// The 16 bytes of the event an outbox key names.
    pub(crate) fn parse_outbox_entry(&self, key: &[u8]) -> Option<[u8; 16]> {
        let (_, _, event) = self.events.unpack::<(String, String, Vec<u8>)>(key).ok()?;
        event.try_into().ok()
    }

    /// The count of events waiting for `webhook`.
    pub(crate) fn outbox_depth(&self, webhook: &str) -> Vec<u8> {
        self.events.pack(&("depth", webhook))
    }

    /// The lease of the scheduler sending `webhook`'s events.
    pub(crate) fn outbox_lease(&self, webhook: &str) -> Vec<u8> {
        self.events.pack(&("lease", webhook))
    }

    /// The subspace of `kind`'s report rows.
    fn reports(&self, kind: ReportKind) -> &Subspace {
        match kind {
            ReportKind::Dmarc => &self.dmarc,
            ReportKind::Tls => &self.tlsrpt,
        }
    }

    /// One report row of `domain`'s period from `start`: `part` 0 holds the row, 1
    /// its count.
    pub(crate) fn report_row(
        &self,
        kind: ReportKind,
        domain: &str,
        start: u64,
        hash: &[u8],
        part: u64,
    ) -> Vec<u8> {
        self.reports(kind)
            .pack(&("row", domain, start, hash.to_vec(), part))
    }

    /// Every row of `domain`'s period from `start`, each row's record before its count.
    pub(crate) fn report_rows(&self, kind: ReportKind, domain: &str, start: u64) -> KeyRange {
        range(&self.reports(kind).subspace(&("row", domain, start)))
    }

    /// The part (0 row, 1 count) and row hash a row key names.
    pub(crate) fn parse_report_row(&self, kind: ReportKind, key: &[u8]) -> Option<(Vec<u8>, u64)> {
        let (_, _, _, hash, part) = self
            .reports(kind)
            .unpack::<(String, String, u64, Vec<u8>, u64)>(key)
            .ok()?;
        Some((hash, part))
    }

    /// The count of distinct rows of `domain`'s period from `start`.
    pub(crate) fn report_distinct(&self, kind: ReportKind, domain: &str, start: u64) -> Vec<u8> {
        self.reports(kind).pack(&("rows", domain, start))
    }

    /// The count of evaluations left out of `domain`'s period from `start`.
    pub(crate) fn report_overflow(&self, kind: ReportKind, domain: &str, start: u64) -> Vec<u8> {
        self.reports(kind).pack(&("over", domain, start))
    }

    /// The policy `domain` published during its period from `start`.
    pub(crate) fn report_policy(&self, kind: ReportKind, domain: &str, start: u64) -> Vec<u8> {
        self.reports(kind).pack(&("policy", domain, start))
    }

    /// The mark that `domain`'s report of the period `start..end` is due at `end`.
    pub(crate) fn report_due(
        &self,
        kind: ReportKind,
        end: u64,
        domain: &str,
        start: u64,
    ) -> Vec<u8> {
        self.reports(kind).pack(&("due", end, domain, start))
    }

    /// The reports due at or before `now` (Unix seconds).
    pub(crate) fn report_due_until(&self, kind: ReportKind, now: u64) -> KeyRange {
        let due = self.reports(kind).subspace(&("due",));
        let (begin, _) = due.range();
        KeyRange::new(begin, due.pack(&(now.saturating_add(1),)))
    }

    /// The end, domain and start a due mark names.
    pub(crate) fn parse_report_due(
        &self,
        kind: ReportKind,
        key: &[u8],
    ) -> Option<(u64, String, u64)> {
        let (_, end, domain, start) = self
            .reports(kind)
            .unpack::<(String, u64, String, u64)>(key)
            .ok()?;
        Some((end, domain, start))
    }

    /// The lease of the scheduler building `domain`'s report of the period from `start`.
    pub(crate) fn report_lease(&self, kind: ReportKind, domain: &str, start: u64) -> Vec<u8> {
        self.reports(kind).pack(&("lease", domain, start))
    }

    /// The DNS failures met building `domain`'s report of the period from `start`.
    pub(crate) fn report_retry(&self, kind: ReportKind, domain: &str, start: u64) -> Vec<u8> {
        self.reports(kind).pack(&("retry", domain, start))
    }

    /// The MTA-STS policy remembered for `domain` (lower case, no trailing dot).
    pub(crate) fn mta_sts_policy(&self, domain: &str) -> Vec<u8> {
        self.mta_sts.pack(&(domain,))
    }

    /// Every remembered MTA-STS policy, by domain.
    pub(crate) fn all_mta_sts_policies(&self) -> KeyRange {
        range(&self.mta_sts)
    }

    /// The index entry saying message `id` has Message-ID `message_id` (normalized).
    pub(crate) fn message_id_entry(&self, message_id: &str, id: &MessageId) -> Vec<u8> {
        self.message_ids.pack(&(message_id, id_bytes(id)))
    }

    /// Every index entry of Message-ID `message_id` (normalized).
    pub(crate) fn message_id_entries(&self, message_id: &str) -> KeyRange {
        range(&self.message_ids.subspace(&(message_id,)))
    }

    /// The message an index entry names.
    pub(crate) fn parse_message_id_entry(&self, key: &[u8]) -> Option<MessageId> {
        let (_, id) = self.message_ids.unpack::<(String, Vec<u8>)>(key).ok()?;
        Some(MessageId::from_bytes(id.try_into().ok()?))
    }

    /// The Message-ID message `id` is indexed under.
    pub(crate) fn message_id_of(&self, id: &MessageId) -> Vec<u8> {
        self.message_id_of.pack(&(id_bytes(id),))
    }

    /// The record of message `id`.
    pub(crate) fn message(&self, id: &MessageId) -> Vec<u8> {
        self.messages.pack(&(id_bytes(id),))
    }

    /// Every message record, oldest first.
    pub(crate) fn all_messages(&self) -> KeyRange {
        range(&self.messages)
    }

    /// Message records after `id`.
    pub(crate) fn messages_after(&self, id: &MessageId) -> KeyRange {
        let all = self.all_messages();
        KeyRange::new(ferrymail_store::key_after(&self.message(id)), all.end)
    }

    /// The message a record's key names.
    pub(crate) fn parse_message(&self, key: &[u8]) -> Option<MessageId> {
        let (id,) = self.messages.unpack::<(Vec<u8>,)>(key).ok()?;
        Some(MessageId::from_bytes(id.try_into().ok()?))
    }

    /// Recipient `index` of message `id`.
    pub(crate) fn recipient(&self, id: &MessageId, index: u32) -> Vec<u8> {
        self.recipients.pack(&(id_bytes(id), index))
    }

    /// Every recipient of message `id`, in envelope order.
    pub(crate) fn recipients(&self, id: &MessageId) -> KeyRange {
        range(&self.recipients.subspace(&(id_bytes(id),)))
    }

    /// The recipient index a recipient key names.
    pub(crate) fn parse_recipient(&self, key: &[u8]) -> Option<u32> {
        let (_, index) = self.recipients.unpack::<(Vec<u8>, u32)>(key).ok()?;
        Some(index)
    }

    /// The due entry of message `id` in `shard`, due at `due_ms`.
    pub(crate) fn due(
        &self,
        shard: u16,
        priority: Priority,
        due_ms: u64,
        id: &MessageId,
    ) -> Vec<u8> {
        self.due
            .pack(&(shard, rank(priority), due_ms, id_bytes(id)))
    }

    /// Entries of `shard` at priority rank `rank` due at or before `now_ms`, oldest first.
    pub(crate) fn due_until(&self, shard: u16, rank: u16, now_ms: u64) -> KeyRange {
        let begin = self.due.subspace(&(shard, rank)).range().0;
        // Every key of a later due time starts at or after this one; every key of an earlier
        // or equal due time sorts before it.
        let end = self.due.pack(&(shard, rank, now_ms.saturating_add(1)));
        KeyRange::new(begin, end)
    }

    /// What a due entry's key says: rank, due time, message.
    pub(crate) fn parse_due(&self, key: &[u8]) -> Option<(u16, u16, u64, MessageId)> {
        let (shard, rank, due_ms, id) = self.due.unpack::<(u16, u16, u64, Vec<u8>)>(key).ok()?;
        Some((
            shard,
            rank,
            due_ms,
            MessageId::from_bytes(id.try_into().ok()?),
        ))
    }

    /// Counter `name` of `shard`.
    pub(crate) fn counter(&self, name: &str, shard: u16) -> Vec<u8> {
        self.counters.pack(&(name, shard))
    }

    /// The delivery lease of message `id`.
    pub(crate) fn lease(&self, id: &MessageId) -> Vec<u8> {
        self.leases.pack(&(id_bytes(id),))
    }

    /// The record that message `id` was enqueued.
    pub(crate) fn enqueued(&self, id: &MessageId) -> Vec<u8> {
        self.enqueued.pack(&(id.unix_millis(), id_bytes(id)))
    }

    /// The records of the messages that arrived before `arrival_ms`.
    pub(crate) fn enqueued_before(&self, arrival_ms: u64) -> KeyRange {
        let begin = self.enqueued.range().0;
        // Every key of an earlier arrival sorts before this one, every later one after it.
        KeyRange::new(begin, self.enqueued.pack(&(arrival_ms,)))
    }

    /// The message and byte counters of `group` of quota `quota`.
    pub(crate) fn quota_usage(&self, quota: &str, group: &str) -> (Vec<u8>, Vec<u8>) {
        (
            self.quotas.pack(&(quota, group, "msgs")),
            self.quotas.pack(&(quota, group, "bytes")),
        )
    }

    /// What message `id` was charged to.
    pub(crate) fn quota_charges(&self, id: &MessageId) -> Vec<u8> {
        self.charged.pack(&(id_bytes(id),))
    }

    /// The heartbeat of scheduler `owner`.
    pub(crate) fn member(&self, owner: &str) -> Vec<u8> {
        self.members.pack(&(owner,))
    }

    /// Every scheduler's heartbeat.
    pub(crate) fn all_members(&self) -> KeyRange {
        range(&self.members)
    }

    /// The scheduler a heartbeat key names.
    pub(crate) fn parse_member(&self, key: &[u8]) -> Option<String> {
        self.members
            .unpack::<(String,)>(key)
            .ok()
            .map(|(owner,)| owner)
    }

    /// The concurrency slot of `holder` in `group` of throttle `throttle`.
    pub(crate) fn throttle_slot(&self, throttle: &str, group: &str, holder: &str) -> Vec<u8> {
        self.throttles.pack(&(throttle, group, "slot", holder))
    }

    /// Every concurrency slot of `group` of throttle `throttle`.
    pub(crate) fn throttle_slots(&self, throttle: &str, group: &str) -> KeyRange {
        range(&self.throttles.subspace(&(throttle, group, "slot")))
    }

    /// The rate window of `group` of throttle `throttle`.
    pub(crate) fn throttle_rate(&self, throttle: &str, group: &str) -> Vec<u8> {
        self.throttles.pack(&(throttle, group, "rate"))
    }

    /// Every counter of every shard.
    pub(crate) fn all_counters(&self) -> KeyRange {
        range(&self.counters)
    }

    /// The counter name a counter key names.
    pub(crate) fn parse_counter(&self, key: &[u8]) -> Option<String> {
        let (name, _shard) = self.counters.unpack::<(String, u16)>(key).ok()?;
        Some(name)
    }
}

/// How message `id` is named as the owner of its body blob.
pub(crate) fn blob_owner(id: &MessageId) -> Vec<u8> {
    ferrymail_store::tuple::pack(&("queue", id_bytes(id)))
}

/// The counter name of recipients in `state`.
pub(crate) fn state_counter(state: RecipientState) -> &'static str {
    match state {
        RecipientState::Pending => "pending",
        RecipientState::Delivered => "delivered",
        RecipientState::TempFailed => "temp-failed",
        RecipientState::PermFailed => "perm-failed",
        RecipientState::Cancelled => "cancelled",
    }
}

/// Counter of messages held.
pub(crate) const MESSAGES: &str = "messages";
/// Counter of body bytes held.
pub(crate) const BYTES: &str = "bytes";

/// Number of priority ranks: MT-PRIORITY's -9..=9.
pub(crate) const RANKS: u16 = 19;

/// The rank of `priority` in due keys: 0 for the highest priority.
pub(crate) fn rank(priority: Priority) -> u16 {
    u16::try_from(i16::from(Priority::MAX.get()) - i16::from(priority.get())).unwrap_or(0)
}

/// The priority of `rank` in due keys.
pub(crate) fn priority_of_rank(rank: u16) -> Option<Priority> {
    let rank = i32::from(rank);
    Priority::new(i32::from(Priority::MAX.get()) - rank)
}

fn id_bytes(id: &MessageId) -> Vec<u8> {
    id.to_bytes().to_vec()
}

fn range(space: &Subspace) -> KeyRange {
    let (begin, end) = space.range();
    KeyRange::new(begin, end)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::time::SystemTime;

    use super::*;

    fn keys() -> Keys {
        Keys::new(&Subspace::from(&"test"))
    }

    #[test]
    fn ranks_put_the_highest_priority_first() {
        assert_eq!(rank(Priority::MAX), 0);
        assert_eq!(rank(Priority::NORMAL), 9);
        assert_eq!(rank(Priority::MIN), RANKS - 1);
        for value in -9..=9 {
            let priority = Priority::new(value).unwrap();
            assert_eq!(priority_of_rank(rank(priority)), Some(priority));
        }
        assert_eq!(priority_of_rank(RANKS), None);
    }

    #[test]
    fn due_keys_order_by_priority_then_time() {
        let keys = keys();
        let id = MessageId::generate(SystemTime::now());
        let high_late = keys.due(3, Priority::MAX, 2_000, &id);
        let normal_early = keys.due(3, Priority::NORMAL, 1_000, &id);
        let normal_late = keys.due(3, Priority::NORMAL, 1_001, &id);
        let low_early = keys.due(3, Priority::MIN, 0, &id);
        assert!(high_late < normal_early);
        assert!(normal_early < normal_late);
        assert!(normal_late < low_early);
        assert_eq!(
            keys.parse_due(&normal_late),
            Some((3, rank(Priority::NORMAL), 1_001, id))
        );
    }

    #[test]
    fn due_ranges_end_at_now() {
        let keys = keys();
        let id = MessageId::generate(SystemTime::now());
        let normal = rank(Priority::NORMAL);
        let until = keys.due_until(5, normal, 1_000);
        assert!(until.contains(&keys.due(5, Priority::NORMAL, 0, &id)));
        assert!(until.contains(&keys.due(5, Priority::NORMAL, 1_000, &id)));
        assert!(!until.contains(&keys.due(5, Priority::NORMAL, 1_001, &id)));
        assert!(!until.contains(&keys.due(5, Priority::MAX, 0, &id)));
        assert!(!until.contains(&keys.due(6, Priority::NORMAL, 0, &id)));
    }

    #[test]
    fn record_and_recipient_keys_name_their_message() {
        let keys = keys();
        let id = MessageId::generate(SystemTime::now());
        assert_eq!(keys.parse_message(&keys.message(&id)), Some(id));
        assert!(keys.all_messages().contains(&keys.message(&id)));
        assert!(!keys.messages_after(&id).contains(&keys.message(&id)));
        let recipient = keys.recipient(&id, 7);
        assert!(keys.recipients(&id).contains(&recipient));
        assert_eq!(keys.parse_recipient(&recipient), Some(7));
        assert_eq!(
            keys.parse_counter(&keys.counter("pending", 63)).as_deref(),
            Some("pending")
        );
    }
}
