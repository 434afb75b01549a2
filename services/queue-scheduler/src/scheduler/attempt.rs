//! One attempt of one message: claiming it under a lease (or taking the claim its enqueue
//! made), delivering, and committing what came of it while the lease still holds.

use std::time::SystemTime;

use ferrymail_outbound::Deadline;
use ferrymail_rpc::queue::QueueError;
use ferrymail_store::{StoreError, Transaction};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::Instrument;

use crate::attempt_span::attempt_span;

use crate::claim::Claim;
use crate::delivery_result::Committed;
use crate::model::keys::Keys;
use crate::model::lease::{self, ClaimTerms, Lease};
use crate::model::queue_id::{MessageId, unix_millis};
use crate::model::stored_message::StoredMessage;
use crate::store_failure::from_store;

use super::lease_renewal::within;
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

    /// The delivery attempt of `claim` at `now`: deliver, then commit under its lease. The
    /// delivery is given the lease's validity as its deadline, moved by each renewal: if the
    /// lease cannot be kept, the message is not handed over once another scheduler may take
    /// it.
    pub(super) async fn attempt_claimed(
        &self,
        claim: Claim,
        now: SystemTime,
    ) -> Result<Committed, QueueError> {
        // A claim with less left (one that waited in the hand-off, or took long to commit)
        // could run out before its first renewal is confirmed.
        let left = self
            .valid_until(claim.lease.expiry_ms)
            .saturating_duration_since(Instant::now());
        let claim = if left < self.first_step() {
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
        let (validity, deadline) = watch::channel(self.valid_until(claim.lease.expiry_ms));
        let deadline = Deadline::watching(deadline);
        let outcomes = {
            let deliver = self
                .deliver_until(&claim, now, &deadline)
                .instrument(span.clone());
            let renew = self.keep_lease(&claim, &validity);
            tokio::select! {
                outcomes = deliver => outcomes,
                () = renew => {
                    tracing::warn!(queue_id = %id, "lease lost during delivery; its result is dropped");
                    return Ok(Committed::Stale);
                }
            }
        };
        self.renew_before_commit(&claim, &validity).await;
        self.commit(&claim, outcomes, now).instrument(span).await
    }

    /// Claims message `id` again under `lease`, which this scheduler still holds: renews it and
    /// reads the message afresh, within the renewal timeout. `None` if the lease was lost or
    /// the message is gone or not due.
    pub(super) async fn reclaim(
        &self,
        id: &MessageId,
        lease: &Lease,
        now: SystemTime,
    ) -> Result<Option<Claim>, QueueError> {
        let (keys, id, token) = (self.queue.keys.clone(), *id, lease.token);
        let now_ms = unix_millis(now);
        // From the clock now: the attempt may have waited since `now`.
        let expiry_ms = now_ms
            .max(unix_millis(SystemTime::now()))
            .saturating_add(millis(self.options.lease));
        let reclaiming = self.queue.store.transact(move |tx| {
            let keys = keys.clone();
            Box::pin(async move {
                let Some(message) = still_due(tx, &keys, &id, now_ms).await? else {
                    return Ok(None);
                };
                let renewed = lease::renew(tx, &keys, &id, token, expiry_ms).await?;
                Ok::<_, StoreError>(renewed.then_some(message))
            })
        });
        let timeout = self.options.renewal_timeout;
        let message = within(timeout, reclaiming)
            .await
            .ok_or_else(|| {
                QueueError::Unavailable(format!("claim: not renewed within {timeout:?}"))
            })?
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

    /// Claims message `id` at `now` if it is due and nobody holds it, nor held it until less
    /// than `queue.lease.max-clock-skew` ago.
    pub async fn claim(
        &self,
        id: &MessageId,
        now: SystemTime,
    ) -> Result<Option<Claim>, QueueError> {
        let (keys, id) = (self.queue.keys.clone(), *id);
        let now_ms = unix_millis(now);
        let terms = ClaimTerms {
            owner: self.options.owner.clone(),
            now_ms,
            expiry_ms: now_ms.saturating_add(millis(self.options.lease)),
            skew_ms: millis(self.settings.load().max_clock_skew),
        };
        let claimed = self
            .queue
            .store
            .transact(move |tx| {
                let (keys, terms) = (keys.clone(), terms.clone());
                Box::pin(async move {
                    // Someone else may have delivered it since the due index was read.
                    let Some(message) = still_due(tx, &keys, &id, now_ms).await? else {
                        return Ok(None);
                    };
                    let lease = lease::claim(tx, &keys, &id, &terms).await?;
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
