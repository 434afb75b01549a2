//! The scheduler's loop: it reads the due index of the shards it owns and what enqueues hand
//! it, starts an attempt for each due message while it has room, beats its heartbeat, goes
//! on with the sweep of expired MTA-STS policies, and pauses while the store fails.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use ferrymail_rpc::queue::QueueError;
use ferrymail_telemetry::LogLimit;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::aggregate_report::building::SenderOptions;
use crate::aggregate_report::sender as report_sender;
use crate::events::outbox_dispatch::{self, DispatchOptions};
use crate::events::webhook_client::WebhookClient;
use crate::failure_backoff::FailureBackoff;
use crate::handoff::{Claimant, Fresh};
use crate::index_reads::IndexReads;
use crate::model::membership;
use crate::model::queue_id::{MessageId, unix_millis};
use crate::model::report_rows::ReportKind;

use super::{Scheduler, millis};

/// Repeated store failures are logged once per this interval.
const FAILURE_LOG_INTERVAL: Duration = Duration::from_secs(10);
/// Failed attempts (claims, recording results): one line per interval.
static ATTEMPT_FAILURES: LogLimit = LogLimit::new(FAILURE_LOG_INTERVAL);
/// Failed reads of the due index.
static INDEX_FAILURES: LogLimit = LogLimit::new(FAILURE_LOG_INTERVAL);
/// Failed heartbeats.
static HEARTBEAT_FAILURES: LogLimit = LogLimit::new(FAILURE_LOG_INTERVAL);

/// An attempt that ended: its message, and whether it failed for want of the store (its
/// delivery's own failures are results, recorded).
struct Finished {
    id: MessageId,
    failed: bool,
}

impl Finished {
    /// The end of an attempt of `id` with `outcome`, logged (at a bounded rate) if it failed.
    fn of<T>(id: MessageId, outcome: Result<T, QueueError>) -> Self {
        if let Err(error) = &outcome
            && let Some(left_out) = ATTEMPT_FAILURES.admit()
        {
            tracing::warn!(queue_id = %id, %error, left_out, "delivery attempt failed");
        }
        Self {
            id,
            failed: outcome.is_err(),
        }
    }
}

/// Takes an ended attempt off `busy`, and tells `backoff` how it went.
fn finished(
    done: Result<Finished, tokio::task::JoinError>,
    busy: &mut HashSet<MessageId>,
    backoff: &mut FailureBackoff,
) {
    let Ok(finished) = done else {
        return;
    };
    busy.remove(&finished.id);
    if finished.failed {
        backoff.failed(Instant::now());
    } else {
        backoff.succeeded();
    }
}

impl Scheduler {
    /// Delivers due messages until `stop`, then waits for the deliveries under way (a caller
    /// that cannot wait drops this future: their leases expire and another run retries them).
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        let mut in_flight: JoinSet<Finished> = JoinSet::new();
        let mut busy: HashSet<MessageId> = HashSet::new();
        let mut beat = tokio::time::interval(self.options.heartbeat);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let attached = self.queue.handoff.attach(Claimant {
            owner: self.options.owner.clone(),
            lease: self.options.lease,
        });
        beat.tick().await;
        self.heartbeat().await;
        tracing::info!(owner = %self.options.owner, shards = self.owned.load().len(), "delivery started");
        // Where the sweep of expired MTA-STS policies goes on at the next heartbeat.
        let mut policy_sweep = None;
        let mut reads = IndexReads::new(
            Instant::now(),
            self.options.poll,
            self.options.max_in_flight,
        );
        let mut backoff = FailureBackoff::default();
        let events = tokio::spawn(outbox_dispatch::run(
            self.queue.clone(),
            WebhookClient::new(self.tls.clone()),
            DispatchOptions {
                owner: self.options.owner.clone(),
                lease: self.options.lease,
                skew: self.settings.load().max_clock_skew,
            },
            stop.clone(),
        ));
        let resolver = self.clone();
        let report_options = SenderOptions {
            owner: self.options.owner.clone(),
            lease: self.options.lease,
            skew: self.settings.load().max_clock_skew,
            tls: self.tls.clone(),
            dns: Arc::new(move || resolver.settings.load().dns.clone()),
        };
        let reports = tokio::spawn(report_sender::run(
            self.queue.clone(),
            report_options.clone(),
            ReportKind::Dmarc,
            stop.clone(),
        ));
        let tls_reports = tokio::spawn(report_sender::run(
            self.queue.clone(),
            report_options,
            ReportKind::Tls,
            stop.clone(),
        ));
        loop {
            // Registered before reading, so an enqueue during the read is not missed.
            let wake = self.queue.handoff.wake.notified();
            let mut wake = std::pin::pin!(wake);
            wake.as_mut().enable();
            // While the store fails, no new work: it would fail the same way at once.
            let pause = backoff.pausing(Instant::now());
            if pause.is_none() {
                let room = self.options.max_in_flight.saturating_sub(busy.len());
                let read_index = reads.due(Instant::now(), room);
                let backlog = self
                    .dispatch(&mut in_flight, &mut busy, read_index, &mut backoff)
                    .await;
                reads.dispatched(Instant::now(), read_index, backlog);
            }
            let next = pause.unwrap_or_else(|| reads.next_poll());
            tokio::select! {
                () = stop.cancelled() => break,
                () = &mut wake, if pause.is_none() => {}
                () = tokio::time::sleep_until(next.into()) => {}
                _ = beat.tick() => {
                    self.heartbeat().await;
                    policy_sweep = self.sweep_policies(policy_sweep).await;
                }
                Some(done) = in_flight.join_next() => finished(done, &mut busy, &mut backoff),
            }
            while let Some(done) = in_flight.try_join_next() {
                finished(done, &mut busy, &mut backoff);
            }
        }
        tracing::info!(
            in_flight = in_flight.len(),
            "delivery stopping: finishing deliveries under way"
        );
        if attached {
            let unstarted = self.queue.handoff.detach(&self.options.owner);
            self.queue.release_claims(unstarted).await;
        }
        while in_flight.join_next().await.is_some() {}
        // It finishes a webhook request under way, then gives up its sender leases.
        let _ = events.await;
        let _ = reports.await;
        let _ = tls_reports.await;
        if self.options.shards.is_none()
            && let Err(error) =
                membership::leave(&self.queue.store, &self.queue.keys, &self.options.owner).await
        {
            tracing::warn!(%error, "could not leave the schedulers; the others take over once the heartbeat expires");
        }
        tracing::info!("delivery stopped");
    }

    /// Records this scheduler's heartbeat and takes the shards the live members give it.
    async fn heartbeat(&self) {
        if self.options.shards.is_some() {
            return;
        }
        let now_ms = unix_millis(SystemTime::now());
        let expiry_ms = now_ms.saturating_add(millis(self.options.lease));
        let owner = &self.options.owner;
        match membership::heartbeat(
            &self.queue.store,
            &self.queue.keys,
            owner,
            now_ms,
            expiry_ms,
        )
        .await
        {
            Ok(members) => {
                let shards = membership::assign(&members, owner);
                let previous = self.owned.swap(Arc::new(shards.clone()));
                if *previous != shards {
                    tracing::info!(
                        members = members.len(),
                        shards = shards.len(),
                        "shards reassigned"
                    );
                    self.queue.metrics.shards_owned(shards.len());
                }
            }
            // The last assignment stays: leases keep delivery correct meanwhile.
            Err(error) => {
                if let Some(left_out) = HEARTBEAT_FAILURES.admit() {
                    tracing::warn!(%error, left_out, "heartbeat failed");
                }
            }
        }
    }

    /// Goes on with the sweep of expired MTA-STS policies, from `after`, if this scheduler
    /// reads shard 0: one sweeper per queue, so that schedulers do not contend for the keys.
    async fn sweep_policies(&self, after: Option<Vec<u8>>) -> Option<Vec<u8>> {
        if !self.owned.load().contains(&0) {
            return None;
        }
        self.policies.sweep_step(after).await
    }

    /// Starts a delivery for each message enqueued here and, when `read_index`, each due
    /// message of its shards, unless already under way. Returns whether due messages were
    /// left waiting for room.
    async fn dispatch(
        self: &Arc<Self>,
        in_flight: &mut JoinSet<Finished>,
        busy: &mut HashSet<MessageId>,
        read_index: bool,
        backoff: &mut FailureBackoff,
    ) -> bool {
        let room = self.options.max_in_flight.saturating_sub(busy.len());
        let mut fresh = self.queue.handoff.take(&self.options.owner);
        if room == 0 {
            let waiting = !fresh.is_empty();
            self.queue.handoff.keep(fresh);
            return waiting;
        }
        // Messages claimed by their enqueue first: the index lists them too, and a claim from
        // there would find the lease taken.
        fresh.sort_by_key(|f| (std::cmp::Reverse(f.entry().priority), f.entry().due_ms));
        let mut candidates = Vec::new();
        let mut unstarted = Vec::new();
        for f in fresh {
            match f {
                Fresh::Due(entry) => candidates.push(entry),
                claimed if busy.len() >= self.options.max_in_flight => unstarted.push(claimed),
                claimed => {
                    if let Err(claimed) = self.start_claimed(claimed, in_flight, busy) {
                        unstarted.push(claimed);
                    }
                }
            }
        }
        let waiting = !unstarted.is_empty();
        self.queue.handoff.keep(unstarted);
        if read_index {
            let room = self.options.max_in_flight.saturating_sub(busy.len());
            let owned = self.owned.load_full();
            match self
                .queue
                .due_in(&owned, SystemTime::now(), room + busy.len())
                .await
            {
                Ok(due) => candidates.extend(due),
                Err(error) => {
                    backoff.failed(Instant::now());
                    if let Some(left_out) = INDEX_FAILURES.admit() {
                        tracing::warn!(%error, left_out, "cannot read the due index");
                    }
                    return waiting;
                }
            }
            let now_ms = unix_millis(SystemTime::now());
            let oldest_due = candidates.iter().map(|e| e.due_ms).min().unwrap_or(now_ms);
            self.queue
                .metrics
                .overdue(Duration::from_millis(now_ms.saturating_sub(oldest_due)));
        }
        // Highest priority first, then the longest due, whichever shard or list it came from.
        candidates.sort_by_key(|entry| (std::cmp::Reverse(entry.priority), entry.due_ms));
        for entry in candidates {
            if busy.contains(&entry.queue_id) {
                continue;
            }
            if busy.len() >= self.options.max_in_flight {
                // A fresh message not started now is still due in the index: its shard's
                // owner (maybe this scheduler) starts it at its next read.
                return true;
            }
            self.start(entry.queue_id, in_flight, busy);
        }
        waiting
    }

    /// Starts an attempt of message `id`, unless one is under way.
    fn start(
        self: &Arc<Self>,
        id: MessageId,
        in_flight: &mut JoinSet<Finished>,
        busy: &mut HashSet<MessageId>,
    ) {
        if !busy.insert(id) {
            return;
        }
        let this = self.clone();
        in_flight.spawn(async move {
            let attempt = this.attempt(&id, SystemTime::now()).await;
            Finished::of(id, attempt)
        });
    }

    /// Starts an attempt of a message its enqueue claimed; gives it back while an attempt
    /// of the same message (started from the index before the hand-off) is under way.
    fn start_claimed(
        self: &Arc<Self>,
        claimed: Fresh,
        in_flight: &mut JoinSet<Finished>,
        busy: &mut HashSet<MessageId>,
    ) -> Result<(), Fresh> {
        let id = claimed.entry().queue_id;
        if !busy.insert(id) {
            return Err(claimed);
        }
        let this = self.clone();
        in_flight.spawn(async move {
            let now = SystemTime::now();
            let attempt = match claimed {
                Fresh::Claimed { claim, .. } => this.attempt_claimed(*claim, now).await.map(Some),
                Fresh::Waiting { lease, .. } => match this.reclaim(&id, &lease, now).await {
                    Ok(Some(claim)) => this.attempt_claimed(claim, now).await.map(Some),
                    other => other.map(|_| None),
                },
                Fresh::Due(_) => this.attempt(&id, now).await,
            };
            Finished::of(id, attempt)
        });
        Ok(())
    }
}
