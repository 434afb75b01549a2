//! Recording a delivery attempt's results: per recipient state, retry schedule, due entry,
//! counters, and the message's removal once nothing is left to deliver — in one transaction,
//! and only while the attempt's lease is still the message's.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ferrymail_rpc::queue::RecipientState;
use ferrymail_store::StoreError;

use crate::dsn::{self, NoticeSettings, ReportedRecipient};
use crate::events::next_hop::NextHop;
use crate::events::{EventKind, EventTally, EventWriter};
use crate::model::counters::CounterDelta;
use crate::model::due_index::{entry_time, move_entry};
use crate::model::lease::{self, Lease};
use crate::model::queue_id::{MessageId, unix_millis};
use crate::model::removal;
use crate::model::stored_message::StoredMessage;
use crate::route::Router;
use crate::service::Queue;
use ferrymail_outbound::Outcome;

/// What committing an attempt's results did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Committed {
    /// The results were recorded; the message stays queued with this many live recipients.
    Kept {
        /// Recipients still to deliver.
        live: usize,
    },
    /// The results were recorded and the message left the queue (no live recipient left).
    Removed,
    /// The lease was lost to another scheduler (or the message left the queue meanwhile): the
    /// results were dropped.
    Stale,
}

/// How results are recorded: the retry schedule and what notices need.
#[derive(Debug, Clone)]
pub(crate) struct CommitPolicy {
    /// `queue.schedule.retry`.
    pub retry: Vec<Duration>,
    /// For notices to the sender.
    pub notices: NoticeSettings,
    /// `queue.lease.max-clock-skew`: the lease must hold at least this much longer when the
    /// results are recorded, or another scheduler may already judge it expired.
    pub clock_skew_ms: u64,
    /// The routing of the delivery, naming next hops in events; `None` without webhooks.
    pub router: Option<Arc<Router>>,
}

/// The wait before attempt `attempts + 1` of a recipient that failed `attempts` times (the
/// first failure waits `retry[0]`; the last value repeats).
pub(crate) fn retry_after(retry: &[Duration], attempts: u32) -> Duration {
    let index = usize::try_from(attempts.saturating_sub(1)).unwrap_or(usize::MAX);
    retry
        .get(index)
        .or(retry.last())
        .copied()
        .unwrap_or(Duration::from_secs(60))
}

impl Queue {
    /// Records `outcomes` (recipient index → outcome) of the attempt made under `lease` at
    /// `now_ms`, if the lease is still the message's and has not run out (with the policy's
    /// margin for clock skew); temporary failures are due again after
    /// the retry schedule, or fail as expired past the message's expiry. Failures and delays
    /// the sender wants to hear of are reported by a notice queued in the same transaction.
    pub(crate) async fn commit_attempt(
        &self,
        id: &MessageId,
        lease: &Lease,
        outcomes: Vec<(u32, Outcome)>,
        policy: Arc<CommitPolicy>,
        now_ms: u64,
    ) -> Result<Committed, StoreError> {
        let (keys, blobs, id) = (self.keys.clone(), self.blobs.clone(), *id);
        let plan = Arc::new((lease.clone(), outcomes, policy));
        let events = self.events.current();
        let (committed, tally) = self
            .store
            .transact(move |tx| {
                let (keys, blobs, plan) = (keys.clone(), blobs.clone(), plan.clone());
                let mut events = EventWriter::new(events.clone(), now_ms);
                Box::pin(async move {
                    // Losing a result in a crash of the machine only repeats the attempt (the
                    // message is still there, its lease expires), as losing Postfix's unsynced
                    // removal of a queue file does: no need to wait for the disk.
                    tx.relax_durability();
                    let (lease, outcomes, policy) = &*plan;
                    let retry = &policy.retry;
                    // The clock now, not only the attempt's start: the attempt took time.
                    let until_ms = now_ms
                        .max(unix_millis(SystemTime::now()))
                        .saturating_add(policy.clock_skew_ms);
                    let stale = (Committed::Stale, EventTally::default());
                    if !lease::holds(tx, &keys, &id, lease.token, until_ms).await? {
                        return Ok(stale);
                    }
                    let Some(mut message) = StoredMessage::read(tx, &keys, &id).await? else {
                        return Ok(stale);
                    };
                    let mut delta = CounterDelta::default();
                    let mut changed = Vec::new();
                    for (index, outcome) in outcomes {
                        let Some(position) =
                            message.recipients.iter().position(|r| r.index == *index)
                        else {
                            continue;
                        };
                        let recipient = &mut message.recipients[position];
                        // An administrator may have cancelled it meanwhile: cancel wins.
                        if !recipient.is_live() {
                            continue;
                        }
                        let not_attempted = match outcome {
                            Outcome::Deferred { until_ms, .. } => Some(*until_ms),
                            // Given up before the next hop took it: not the next hop's doing.
                            Outcome::Abandoned(_) => Some(now_ms),
                            _ => None,
                        };
                        if let Some(until_ms) = not_attempted {
                            // Not an attempt: only the time of the next one moves.
                            let due = until_ms.min(message.record.expiry_ms.max(now_ms));
                            recipient.due_ms = Some(due);
                            // A paused or suspended destination is shown, and a resume finds
                            // what its pause deferred.
                            if let Outcome::Deferred { reason, .. } = outcome
                                && crate::destination_gate::is_noted(reason)
                            {
                                recipient.last_reply = Some(reason.clone());
                            }
                            changed.push(position);
                            continue;
                        }
                        recipient.attempts = recipient.attempts.saturating_add(1);
                        let (state, due, reply) = match outcome {
                            Outcome::Delivered(reply) => {
                                (RecipientState::Delivered, None, reply.clone())
                            }
                            Outcome::PermFailed(reply) => {
                                (RecipientState::PermFailed, None, reply.clone())
                            }
                            Outcome::TempFailed(reply) if now_ms >= message.record.expiry_ms => (
                                RecipientState::PermFailed,
                                None,
                                format!("{EXPIRED}not delivered in time; last reply: {reply}"),
                            ),
                            Outcome::TempFailed(reply)
                            | Outcome::Deferred { reason: reply, .. }
                            | Outcome::Abandoned(reply) => {
                                let wait = retry_after(retry, recipient.attempts);
                                let wait = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
                                // Due no later than the expiry, so it fails as expired on time.
                                let due = now_ms
                                    .saturating_add(wait)
                                    .min(message.record.expiry_ms.max(now_ms));
                                (RecipientState::TempFailed, Some(due), reply.clone())
                            }
                        };
                        delta.transition(recipient.state, state);
                        recipient.state = state;
                        recipient.due_ms = due;
                        recipient.last_reply = Some(reply);
                        changed.push(position);
                        if let Some(kind) = event_kind(recipient.state, recipient.last_reply.as_deref())
                            && events.wants(kind)
                        {
                            let hop = policy.router.as_deref().map(|router| {
                                let address = &recipient.recipient.address;
                                let route = router.route(&message.record.envelope, address);
                                NextHop::of(&route, address, recipient.last_reply.as_deref())
                            });
                            events.push(kind, &message.record, recipient, hop);
                        }
                    }
                    let live = message.recipients.iter().filter(|r| r.is_live()).count();
                    let reported = notices(&mut message, &changed, live, policy, now_ms);
                    if !reported.is_empty() {
                        let now = UNIX_EPOCH + Duration::from_millis(now_ms);
                        match dsn::notice(&policy.notices, &message.record, &reported, now) {
                            Some(notice) => {
                                notice.write(tx, &keys, &blobs).await?;
                            }
                            None => tracing::error!(queue_id = %id, "a delivery notice exceeds its bound and is not sent"),
                        }
                    }
                    let record = &mut message.record;
                    let committed = if live > 0 {
                        for &position in &changed {
                            let recipient = &message.recipients[position];
                            tx.set(&keys.recipient(&id, recipient.index), &recipient.encode())?;
                        }
                        let due = entry_time(record, &message.recipients);
                        move_entry(tx, &keys, record, due)?;
                        tx.set(&keys.message(&id), &record.encode())?;
                        lease::release(tx, &keys, &id, lease)?;
                        Committed::Kept { live }
                    } else {
                        removal::remove(tx, &keys, &blobs, &mut message, &mut delta).await?;
                        Committed::Removed
                    };
                    delta.apply(tx, &keys, id.shard())?;
                    let tally = events.write(tx, &keys)?;
                    Ok((committed, tally))
                })
            })
            .await?;
        self.events.settle(tally, &self.metrics);
        Ok(committed)
    }
}

/// How an expiry is recorded as a recipient's reply.
pub(crate) const EXPIRED: &str = "expired: ";

/// The event of a recipient recorded in `state` with `reply` by an attempt.
fn event_kind(state: RecipientState, reply: Option<&str>) -> Option<EventKind> {
    match state {
        RecipientState::Delivered => Some(EventKind::Delivered),
        RecipientState::TempFailed => Some(EventKind::Deferred),
        RecipientState::PermFailed if reply.is_some_and(|r| r.starts_with(EXPIRED)) => {
            Some(EventKind::Expired)
        }
        RecipientState::PermFailed => Some(EventKind::Bounced),
        RecipientState::Pending | RecipientState::Cancelled => None,
    }
}

/// The recipients to report after recording `changed`, counting a delay notice when one is
/// due.
fn notices(
    message: &mut StoredMessage,
    changed: &[usize],
    live: usize,
    policy: &CommitPolicy,
    now_ms: u64,
) -> Vec<ReportedRecipient> {
    if !dsn::may_notify(&message.record) {
        return Vec::new();
    }
    let mut reported = dsn::failed(changed.iter().map(|&p| &message.recipients[p]));
    if live > 0 {
        let (count, delayed) = dsn::delayed(
            &message.record,
            &message.recipients,
            &policy.notices.notify,
            now_ms,
        );
        message.record.delay_notices = count;
        reported.extend(delayed);
    }
    reported
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_follow_the_schedule_and_repeat_the_last_wait() {
        let retry = [Duration::from_secs(1), Duration::from_secs(5)];
        assert_eq!(retry_after(&retry, 1), Duration::from_secs(1));
        assert_eq!(retry_after(&retry, 2), Duration::from_secs(5));
        assert_eq!(retry_after(&retry, 9), Duration::from_secs(5));
    }
}
