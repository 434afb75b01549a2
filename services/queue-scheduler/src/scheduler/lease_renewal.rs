//! Keeping a claimed message's lease while its delivery runs: renewed at half its length, so
//! that no other scheduler takes the message over meanwhile.

use std::time::SystemTime;

use crate::claim::Claim;
use crate::model::lease::{self};
use crate::model::queue_id::unix_millis;

use super::{Scheduler, millis};

impl Scheduler {
    /// Renews `claim`'s lease at half its duration; returns only once the lease is lost.
    pub(super) async fn keep_lease(&self, claim: &Claim) {
        let id = claim.message.record.id;
        let token = claim.lease.token;
        loop {
            tokio::time::sleep(self.options.lease / 2).await;
            let keys = self.queue.keys.clone();
            let expiry_ms =
                unix_millis(SystemTime::now()).saturating_add(millis(self.options.lease));
            let renewed = self
                .queue
                .store
                .transact(move |tx| {
                    let keys = keys.clone();
                    Box::pin(async move { lease::renew(tx, &keys, &id, token, expiry_ms).await })
                })
                .await;
            match renewed {
                Ok(true) => tracing::debug!(queue_id = %id, "lease renewed"),
                Ok(false) => return,
                // The lease may still be ours; the commit checks it in the end.
                Err(error) => tracing::warn!(queue_id = %id, %error, "cannot renew a lease"),
            }
        }
    }
}
