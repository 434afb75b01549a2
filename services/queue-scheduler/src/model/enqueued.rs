//! The record that a message was enqueued, kept for a day after its arrival, whether or not
//! the message is still queued.
//!
//! An enqueue whose commit was reported unknown (FoundationDB's `commit_unknown_result`, a
//! connection to the store dropped mid-commit) runs again with the same message. If its first
//! commit went through, the message may meanwhile have been delivered and removed, or claimed
//! by another scheduler under a later fencing token: the message's own keys cannot tell that
//! run it was there. This record can: the run that finds it writes nothing, so the message is
//! never queued twice and no lease is written back to its first token. A day is far longer
//! than any enqueue takes from its arrival to its last retry; the records past it are one range
//! of keys, cleared with the queue's other garbage.

use std::time::Duration;

use ferrymail_store::{StoreError, Transaction, tuple};

use crate::model::keys::Keys;
use crate::model::queue_id::MessageId;

/// Layout version of the record's value.
const FORMAT: u64 = 1;

/// How long after its arrival a message's record is kept.
pub(crate) const RETENTION: Duration = Duration::from_secs(24 * 3600);

/// Whether message `id` was enqueued (within [`RETENTION`]).
pub(crate) async fn exists(
    tx: &Transaction,
    keys: &Keys,
    id: &MessageId,
) -> Result<bool, StoreError> {
    Ok(tx.get(&keys.enqueued(id)).await?.is_some())
}

/// Records that message `id` is enqueued, in the transaction that writes it.
pub(crate) fn record(tx: &Transaction, keys: &Keys, id: &MessageId) -> Result<(), StoreError> {
    tx.set(&keys.enqueued(id), &tuple::pack(&(FORMAT,)))
}

/// Clears the records of the messages that arrived [`RETENTION`] or more before `now_ms`.
pub(crate) fn collect(tx: &Transaction, keys: &Keys, now_ms: u64) -> Result<(), StoreError> {
    let retention_ms = u64::try_from(RETENTION.as_millis()).unwrap_or(u64::MAX);
    tx.clear_range(&keys.enqueued_before(now_ms.saturating_sub(retention_ms)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::time::{Duration, SystemTime};

    use ferrymail_store::{Store, StoreOptions};

    use super::*;

    #[tokio::test]
    async fn records_are_kept_for_the_retention_and_collected_after() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_embedded(dir.path(), StoreOptions::default()).unwrap();
        let keys = std::sync::Arc::new(Keys::new(store.root()));
        let now = SystemTime::now();
        let old = MessageId::generate(now - RETENTION - Duration::from_secs(1));
        let recent = MessageId::generate(now - RETENTION + Duration::from_secs(60));
        let k = keys.clone();
        store
            .transact(move |tx| {
                let k = k.clone();
                Box::pin(async move {
                    record(tx, &k, &old)?;
                    record(tx, &k, &recent)
                })
            })
            .await
            .unwrap();
        let now_ms = crate::model::queue_id::unix_millis(now);
        let k = keys.clone();
        let left = store
            .transact(move |tx| {
                let k = k.clone();
                Box::pin(async move {
                    collect(tx, &k, now_ms)?;
                    Ok((exists(tx, &k, &old).await?, exists(tx, &k, &recent).await?))
                })
            })
            .await
            .unwrap();
        assert_eq!(left, (false, true));
    }
}
