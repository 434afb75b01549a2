//! The due-time index: which messages have a recipient due, by shard, priority and time.
//!
//! Its keys are described in [`crate::model::keys`]. Every change of a message's earliest live due
//! time goes through [`move_entry`], in the transaction that changes the recipients, so the
//! index and the records never disagree.

use ferrymail_rpc::queue::Priority;
use ferrymail_store::{RangeOptions, StoreError, Transaction};

use crate::model::keys::{Keys, RANKS, priority_of_rank};
use crate::model::queue_id::MessageId;
use crate::model::record::MessageRecord;

/// One message due for delivery, as the index has it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DueEntry {
    /// The message.
    pub queue_id: MessageId,
    /// Its shard.
    pub shard: u16,
    /// Its priority.
    pub priority: Priority,
    /// When it became due (Unix milliseconds).
    pub due_ms: u64,
}

/// Moves the index entry of `record` to `due_ms` (or removes it, for `None`) and records the new
/// time in `record`; the caller writes the record.
pub(crate) fn move_entry(
    tx: &Transaction,
    keys: &Keys,
    record: &mut MessageRecord,
    due_ms: Option<u64>,
) -> Result<(), StoreError> {
    if record.due_ms == due_ms {
        return Ok(());
    }
    let (id, shard, priority) = (record.id, record.id.shard(), record.envelope.priority);
    if let Some(old) = record.due_ms {
        tx.clear(&keys.due(shard, priority, old, &id))?;
    }
    if let Some(new) = due_ms {
        tx.set(&keys.due(shard, priority, new, &id), &[])?;
    }
    record.due_ms = due_ms;
    Ok(())
}

/// Up to `limit` entries of `shard` due at or before `now_ms`, in `tx`: highest priority first,
/// then oldest due first. Reads only due entries, one range per priority.
pub(crate) async fn read_due(
    tx: &Transaction,
    keys: &Keys,
    shard: u16,
    now_ms: u64,
    limit: usize,
) -> Result<Vec<DueEntry>, StoreError> {
    let mut due = Vec::new();
    for rank in 0..RANKS {
        let left = limit.saturating_sub(due.len());
        if left == 0 {
            break;
        }
        let page = tx
            .get_range(
                &keys.due_until(shard, rank, now_ms),
                RangeOptions {
                    limit: left,
                    reverse: false,
                },
            )
            .await?;
        for pair in page.pairs {
            let parsed = keys
                .parse_due(&pair.key)
                .and_then(|(shard, rank, due_ms, id)| {
                    Some(DueEntry {
                        queue_id: id,
                        shard,
                        priority: priority_of_rank(rank)?,
                        due_ms,
                    })
                });
            match parsed {
                Some(entry) => due.push(entry),
                None => tracing::warn!(key = ?pair.key, "skipping an unreadable due entry"),
            }
        }
    }
    Ok(due)
}

/// Where `record`'s due-index entry belongs: the earliest due time of its live `recipients`,
/// or nowhere while the message is held, so that no scheduler reads it as due.
pub(crate) fn entry_time<'a>(
    record: &MessageRecord,
    recipients: impl IntoIterator<Item = &'a crate::model::record::RecipientRecord>,
) -> Option<u64> {
    if record.held {
        None
    } else {
        earliest(recipients)
    }
}

/// The earliest due time among `recipients`' live ones.
pub(crate) fn earliest<'a>(
    recipients: impl IntoIterator<Item = &'a crate::model::record::RecipientRecord>,
) -> Option<u64> {
    recipients.into_iter().filter_map(|r| r.due_ms).min()
}
