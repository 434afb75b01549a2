//! Counters of what the queue holds, kept by atomic add so that concurrent writers never
//! conflict on them, and the totals read from them.
//!
//! They count what is held: messages, body bytes and the recipients of held messages by state.
//! Removing a message takes its recipients out of every count, so the counters are gauges (the
//! source of the `queue_messages_total` and `queue_recipients{state}` metrics), not running
//! totals of what ever happened.

use ferrymail_rpc::queue::{QueueStats, RecipientCounts, RecipientState};
use ferrymail_store::{StoreError, Transaction, decode_counter};

use crate::model::keys::{BYTES, Keys, MESSAGES, state_counter};
use crate::model::record::state_code;

/// Changes to the counters made by one transaction, for one message.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CounterDelta {
    messages: i64,
    bytes: i64,
    /// By [`state_index`].
    states: [i64; 5],
}

const STATES: [RecipientState; 5] = [
    RecipientState::Pending,
    RecipientState::Delivered,
    RecipientState::TempFailed,
    RecipientState::PermFailed,
    RecipientState::Cancelled,
];

fn state_index(state: RecipientState) -> usize {
    // The stored state code is dense from 0, so it doubles as the array index.
    usize::try_from(state_code(state)).unwrap_or(0)
}

impl CounterDelta {
    /// A message of `size` bytes arrives (or, with `sign` -1, leaves).
    pub(crate) fn message(&mut self, size: u64, sign: i64) {
        self.messages += sign;
        self.bytes += sign * i64::try_from(size).unwrap_or(i64::MAX);
    }

    /// A recipient enters `state` (or, with `sign` -1, leaves it).
    pub(crate) fn recipient(&mut self, state: RecipientState, sign: i64) {
        self.states[state_index(state)] += sign;
    }

    /// A recipient moves from `from` to `to`.
    pub(crate) fn transition(&mut self, from: RecipientState, to: RecipientState) {
        self.recipient(from, -1);
        self.recipient(to, 1);
    }

    /// Adds the changes to the counters of `shard` in `tx`; zero changes write nothing.
    pub(crate) fn apply(
        &self,
        tx: &Transaction,
        keys: &Keys,
        shard: u16,
    ) -> Result<(), StoreError> {
        let named = [(MESSAGES, self.messages), (BYTES, self.bytes)]
            .into_iter()
            .chain(
                STATES
                    .iter()
                    .map(|&state| (state_counter(state), self.states[state_index(state)])),
            );
        for (name, delta) in named {
            if delta != 0 {
                tx.atomic_add(&keys.counter(name, shard), delta)?;
            }
        }
        Ok(())
    }
}

/// Totals of every counter, summed over the shards, in `tx` (one range read), with the arrival
/// of the oldest message (the first record: ids sort by arrival).
pub(crate) async fn read_stats(tx: &Transaction, keys: &Keys) -> Result<QueueStats, StoreError> {
    let counters = tx.get_all(&keys.all_counters(), 1024).await?;
    let mut sums: std::collections::HashMap<String, i64> = std::collections::HashMap::new();
    for pair in counters {
        match keys.parse_counter(&pair.key) {
            Some(name) => *sums.entry(name).or_default() += decode_counter(&pair.value),
            None => tracing::warn!(key = ?pair.key, "skipping an unreadable queue counter"),
        }
    }
    // A negative total would be a bug in some transition; report it as zero rather than wrap.
    let total = |name: &str| u64::try_from(sums.get(name).copied().unwrap_or(0)).unwrap_or(0);
    let oldest = tx
        .get_range(
            &keys.all_messages(),
            ferrymail_store::RangeOptions {
                limit: 1,
                reverse: false,
            },
        )
        .await?;
    let oldest_arrival = oldest
        .pairs
        .first()
        .and_then(|pair| keys.parse_message(&pair.key))
        .map(|id| id.unix_millis() / 1000);
    Ok(QueueStats {
        messages: total(MESSAGES),
        bytes: total(BYTES),
        recipients: RecipientCounts {
            pending: total(state_counter(RecipientState::Pending)),
            delivered: total(state_counter(RecipientState::Delivered)),
            temp_failed: total(state_counter(RecipientState::TempFailed)),
            perm_failed: total(state_counter(RecipientState::PermFailed)),
            cancelled: total(state_counter(RecipientState::Cancelled)),
        },
        oldest_arrival,
    })
}
