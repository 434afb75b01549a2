//! One attempt of one message: claiming it under a lease (or taking the claim its enqueue
//! made), delivering, and committing what came of it while the lease still holds.

use std::time::SystemTime;

use ferrymail_rpc::queue::QueueError;
use ferrymail_store::{StoreError, Transaction};
use tracing::Instrument;

use crate::attempt_span::attempt_span;

use crate::claim::Claim;
use crate::delivery_result::Committed;
use crate::model::keys::Keys;
use crate::model::lease::{self, Lease};
use crate::model::queue_id::{MessageId, unix_millis};
use crate::model::stored_message::StoredMessage;
use crate::store_failure::from_store;

use super::{Scheduler, millis};

/// Message `id` read in `tx`, if it is still queued and due at `now_ms`.
pub(super) async fn still_due(
    tx: &Transaction,
    keys: &Keys,
    id: &MessageId,
    now_ms: u64,
) -> Result<Option<StoredMessage>, StoreError> {
    let message = StoredMessage::read(tx, keys, id).await?;
    Ok(message.filter(|m| m.record.due_ms.is_some_and(|due| due <= now_ms)))
}

impl Scheduler {
    /// One delivery attempt of message `id` at `now`: claim, deliver, commit. `Ok(None)` when
    /// the message is not due or another scheduler holds it.
    pub async fn attempt(
        &self,
        id: &MessageId,
        now: SystemTime,
    ) -> Result<Option<Committed>, QueueError> {
        let Some(claim) = self.claim(id, now).await? else {
            return Ok(None);
        };
        self.attempt_claimed(claim, now).await.map(Some)
    }

    /// The delivery attempt of `claim` at `now`: deliver, then commit under its lease.
    pub(super) async fn attempt_claimed(
        &self,
        claim: Claim,
        now: SystemTime,
    ) -> Result<Committed, QueueError> {
        // A lease with less than half of its time left would expire before its first renewal.
        let left_ms = claim.lease.expiry_ms.saturating_sub(unix_millis(now));
        let claim = if left_ms < millis(self.options.lease) / 2 {
            let id = claim.message.record.id;
            match self.reclaim(&id, &claim.lease, now).await? {
                Some(claim) => claim,
                None => return Ok(Committed::Stale),
            }
        } else {
            claim
        };
        let id = claim.message.record.id;
        let span = attempt_span(&claim, &self.options.owner);
        let outcomes = {
            let deliver = self.deliver(&claim, now).instrument(span.clone());
            let renew = self.keep_lease(&claim);
            tokio::select! {
                outcomes = deliver => outcomes,
                () = renew => {
                    tracing::warn!(queue_id = %id, "lease lost during delivery; its result is dropped");
                    return Ok(Committed::Stale);
                }
            }
        };
        self.commit(&claim, outcomes, now).instrument(span).await
    }

    /// Claims message `id` again under `lease`, which this scheduler still holds: renews it and
    /// reads the message afresh. `None` if the lease was lost or the message is gone or not
    /// due.
    pub(super) async fn reclaim(
        &self,
        id: &MessageId,
        lease: &Lease,
        now: SystemTime,
    ) -> Result<Option<Claim>, QueueError> {
        let (keys, id, token) = (self.queue.keys.clone(), *id, lease.token);
        let now_ms = unix_millis(now);
        let expiry_ms = now_ms.saturating_add(millis(self.options.lease));
        let message = self
            .queue
            .store
            .transact(move |tx| {
                let keys = keys.clone();
                Box::pin(async move {
                    let Some(message) = still_due(tx, &keys, &id, now_ms).await? else {
                        return Ok(None);
                    };
                    let renewed = lease::renew(tx, &keys, &id, token, expiry_ms).await?;
                    Ok::<_, StoreError>(renewed.then_some(message))
                })
            })
            .await
            .map_err(|e| from_store("claim", e))?;
        Ok(message.map(|message| Claim {
            lease: Lease {
                expiry_ms,
                ..lease.clone()
            },
            message,
            held: None,
        }))
    }

    /// Claims message `id` at `now` if it is due and nobody holds it.
    pub async fn claim(
        &self,
        id: &MessageId,
        now: SystemTime,
    ) -> Result<Option<Claim>, QueueError> {
        let (keys, id, owner) = (self.queue.keys.clone(), *id, self.options.owner.clone());
        let now_ms = unix_millis(now);
        let expiry_ms = now_ms.saturating_add(millis(self.options.lease));
        let claimed = self
            .queue
            .store
            .transact(move |tx| {
                let (keys, owner) = (keys.clone(), owner.clone());
                Box::pin(async move {
                    // Someone else may have delivered it since the due index was read.
                    let Some(message) = still_due(tx, &keys, &id, now_ms).await? else {
                        return Ok(None);
                    };
                    let lease = lease::claim(tx, &keys, &id, &owner, now_ms, expiry_ms).await?;
                    Ok::<_, StoreError>(lease.map(|(lease, takeover)| {
                        let claim = Claim {
                            lease,
                            message,
                            held: None,
                        };
                        (claim, takeover)
                    }))
                })
            })
            .await
            .map_err(|e| from_store("claim", e))?;
        Ok(claimed.map(|(claim, takeover)| {
            if takeover {
                tracing::info!(queue_id = %id, token = claim.lease.token, "lease taken over from a scheduler that stopped");
                self.queue.metrics.lease_takeover();
            }
            claim
        }))
    }
}
