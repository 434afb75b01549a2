//! Recording an attempt's outcomes under its lease: the delivery results, retries, DSNs and
//! the message's removal, in transactions fenced by the lease's token.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ferrymail_rpc::queue::QueueError;

use ferrymail_outbound::Outcome;

use crate::claim::Claim;
use crate::delivery_result::{CommitPolicy, Committed};
use crate::dsn::{self, NoticeSettings};
use crate::model::queue_id::unix_millis;
use crate::store_failure::from_store;

use super::{Scheduler, millis};

impl Scheduler {
    /// Records the outcomes of `claim`'s attempt at `now`, unless its lease was lost.
    pub async fn commit(
        &self,
        claim: &Claim,
        outcomes: Vec<(u32, Outcome)>,
        now: SystemTime,
    ) -> Result<Committed, QueueError> {
        let policy = Arc::new(self.commit_policy(claim, &outcomes).await);
        let id = claim.message.record.id;
        let committed = self
            .queue
            .commit_attempt(&id, &claim.lease, outcomes, policy, unix_millis(now))
            .await
            .map_err(|e| from_store("commit delivery", e))?;
        if committed == Committed::Removed {
            let arrival = claim.message.record.arrival_ms;
            let stayed = unix_millis(now).saturating_sub(arrival);
            self.queue.metrics.left_queue(Duration::from_millis(stayed));
        }
        if committed == Committed::Stale {
            tracing::warn!(queue_id = %id, token = claim.lease.token, "lease lost before the commit; the attempt's results are dropped");
        }
        Ok(committed)
    }

    /// The retry schedule and notice settings for committing `outcomes`; the original message
    /// is read only when a notice may be sent.
    async fn commit_policy(&self, claim: &Claim, outcomes: &[(u32, Outcome)]) -> CommitPolicy {
        let settings = self.settings.load_full();
        let record = &claim.message.record;
        let may_report = dsn::may_notify(record)
            && outcomes.iter().any(|(_, outcome)| {
                matches!(outcome, Outcome::TempFailed(_) | Outcome::PermFailed(_))
            });
        let original = if may_report {
            self.queue.original(record).await
        } else {
            dsn::Original::default()
        };
        CommitPolicy {
            retry: settings.retry.clone(),
            notices: NoticeSettings {
                hostname: settings.hostname.clone(),
                notify: settings.notify.clone(),
                expire_ms: millis(self.queue.expire()),
                original,
            },
            clock_skew_ms: millis(settings.max_clock_skew),
            // Only events name next hops.
            router: self.queue.events.current().map(|_| settings.router.clone()),
        }
    }
}
