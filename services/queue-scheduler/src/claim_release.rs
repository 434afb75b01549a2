//! Releasing the leases of claimed messages that no scheduler of this process will start
//! (the enqueue's claim when no scheduler took it, the hand-off's leftovers when the
//! scheduler stops), so that the shards' owners take them at once rather than when the
//! leases expire.

use std::sync::Arc;

use crate::model::lease::{self, Lease};
use crate::model::queue_id::MessageId;
use crate::service::Queue;

/// Leases released per transaction when a scheduler stops.
const RELEASES_PER_TRANSACTION: usize = 256;

impl Queue {
    /// Ends the leases enqueues took for messages no scheduler will start here, so that the
    /// shards' owners take them at their next read of the due index rather than once the
    /// leases expire.
    pub(crate) async fn release_claims(&self, claims: Vec<(MessageId, Lease)>) {
        for batch in claims.chunks(RELEASES_PER_TRANSACTION) {
            let batch: Arc<[(MessageId, Lease)]> = batch.into();
            let keys = self.keys.clone();
            let released = self
                .store
                .transact(move |tx| {
                    let (batch, keys) = (batch.clone(), keys.clone());
                    Box::pin(async move {
                        for (id, lease) in batch.iter() {
                            // Still this claim's, expired or not, and not released yet.
                            if lease::holds(tx, &keys, id, lease.token, 0).await? {
                                lease::release(tx, &keys, id, lease)?;
                            }
                        }
                        Ok(())
                    })
                })
                .await;
            if let Err(error) = released {
                tracing::warn!(%error, "cannot release the leases of messages not started; they are taken over once they expire");
            }
        }
    }
}
