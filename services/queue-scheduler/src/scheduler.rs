//! The delivery worker: reads what is due from the shards it owns, claims each message under
//! a lease, delivers it to its next hops and commits the results under that lease.
//!
//! The schedulers sharing a queue divide the shards among themselves through heartbeats
//! (`membership`); a message enqueued through this process is claimed for this scheduler by
//! the enqueue and attempted at once, whoever owns its shard, so a fresh message never waits
//! for a poll (`handoff`). Message leases keep two schedulers from delivering one message at
//! once whatever they read.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use ferrymail_config::Config;
use ferrymail_config::model::outbound::Outbound;
use ferrymail_config::model::queue_limits::Throttle;
use ferrymail_config::model::remote::Remote;
use ferrymail_dns::{DnssecResolver, MessageAuthenticator};
use ferrymail_rpc::queue::{QueueError, Recipient};
use ferrymail_store::{StoreError, Transaction};
use ferrymail_telemetry::LogLimit;
use rustls::pki_types::CertificateDer;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::attempt_span::attempt_span;
use ferrymail_outbound::dane::Dane;
use ferrymail_outbound::mta_sts::{MtaSts, POLICY_PORT as MTA_STS_PORT};
use ferrymail_outbound::mx::{self, MxContext};
use ferrymail_outbound::pool::SessionPool;
use ferrymail_outbound::relay::{RelayJob, deliver};
use ferrymail_outbound::{Outcome, TlsSettings};

use crate::claim::Claim;
use crate::delivery_result::{CommitPolicy, Committed};
use crate::dsn::{self, NoticeSettings};
use crate::failure_backoff::FailureBackoff;
use crate::handoff::{Claimant, Fresh};
use crate::index_reads::IndexReads;
use crate::model::keys::Keys;
use crate::model::lease::{self, Lease};
use crate::model::membership;
use crate::model::mta_sts_policies::SharedPolicies;
use crate::model::queue_id::{MessageId, unix_millis};
use crate::model::stored_message::StoredMessage;
use crate::model::throttle::{self, Admission};
use crate::route::{Route, Router};
use crate::service::Queue;
use crate::store_failure::from_store;

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

/// How a scheduler works.
#[derive(Debug, Clone)]
pub struct SchedulerOptions {
    /// This scheduler's name in leases: unique among the schedulers sharing a store.
    pub owner: String,
    /// How long a claim lasts; renewed at half of it while a delivery runs. It is also how
    /// long the messages a crashed scheduler held wait before another takes them over: short
    /// enough that a restart does not delay them much, long enough that renewals (one short
    /// transaction per delivery per half lease) cost little.
    pub lease: Duration,
    /// Wait between two reads of the due index when no enqueue wakes the scheduler.
    pub poll: Duration,
    /// The shards whose due messages it delivers: `None` to share them with the other live
    /// schedulers through heartbeats (the default), `Some` for exactly these.
    pub shards: Option<Vec<u16>>,
    /// Time between two heartbeats; a heartbeat lasts `lease`, so a scheduler that stops is
    /// replaced after at most `lease`.
    pub heartbeat: Duration,
    /// Most messages in delivery at once.
    pub max_in_flight: usize,
    /// Certificate authorities trusted besides the public ones, for MX hosts (STARTTLS) and
    /// MTA-STS policy hosts: empty but in tests, which trust their own CA this way.
    pub extra_roots: Vec<CertificateDer<'static>>,
    /// The port MTA-STS policies are fetched on: [`MTA_STS_PORT`] (443, RFC 8461 §3.3)
    /// but in tests, whose policy servers cannot bind it.
    pub mta_sts_port: u16,
}

impl SchedulerOptions {
    /// Defaults for a scheduler on host `hostname`, sharing the shards with the others.
    pub fn new(hostname: &str) -> Self {
        Self {
            owner: format!("{hostname}/{:016x}", rand::random::<u64>()),
            lease: Duration::from_secs(30),
            poll: Duration::from_secs(1),
            shards: None,
            heartbeat: Duration::from_secs(10),
            max_in_flight: 256,
            extra_roots: Vec::new(),
            mta_sts_port: MTA_STS_PORT,
        }
    }
}

/// What the current configuration says about delivery.
struct Settings {
    router: Router,
    remotes: BTreeMap<String, Remote>,
    retry: Vec<Duration>,
    notify: Vec<Duration>,
    throttles: BTreeMap<String, Throttle>,
    hostname: String,
    /// `queue.outbound.*` for MX delivery.
    outbound: Outbound,
    /// The resolver of `resolver.*` for MX delivery, or why it could not be built.
    dns: Result<Arc<MessageAuthenticator>, String>,
    /// The same name servers asked with the DNSSEC bits, for DANE; or why it could not be
    /// built.
    dnssec: Result<Arc<DnssecResolver>, String>,
}

/// The delivery worker of one process.
pub struct Scheduler {
    queue: Arc<Queue>,
    options: SchedulerOptions,
    settings: ArcSwap<Settings>,
    /// Per remote: its `concurrency` and the semaphore enforcing it.
    limits: Mutex<HashMap<String, (u32, Arc<Semaphore>)>>,
    tls: TlsSettings,
    /// MTA-STS policies of recipient domains, cached.
    mta_sts: MtaSts,
    /// The policies remembered in the store, which the sweep goes through.
    policies: Arc<SharedPolicies>,
    /// Relay sessions kept open between messages.
    sessions: SessionPool,
    /// MX sessions kept open between messages.
    mx_sessions: SessionPool,
    /// The shards it reads now.
    owned: ArcSwap<Vec<u16>>,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("owner", &self.options.owner)
            .finish()
    }
}

impl Scheduler {
    /// A scheduler delivering from `queue` as `config` says.
    pub fn new(queue: Arc<Queue>, config: &Config, options: SchedulerOptions) -> Self {
        let owned = options.shards.clone().unwrap_or_default();
        let tls = TlsSettings::with_extra_roots(&options.extra_roots);
        let policies = Arc::new(SharedPolicies::new(queue.store.clone(), queue.keys.clone()));
        let mta_sts = MtaSts::new(
            &options.extra_roots,
            options.mta_sts_port,
            policies.clone(),
            queue.metrics.outbound().clone(),
        );
        Self {
            queue,
            options,
            settings: ArcSwap::from_pointee(settings(config)),
            limits: Mutex::new(HashMap::new()),
            tls,
            mta_sts,
            policies,
            sessions: SessionPool::default(),
            mx_sessions: SessionPool::default(),
            owned: ArcSwap::from_pointee(owned),
        }
    }

    /// Applies a reloaded configuration; deliveries under way finish with the old one.
    pub fn apply(&self, config: &Config) {
        self.settings.store(Arc::new(settings(config)));
        // Kept sessions carry the old remotes' settings (credentials, TLS): start afresh.
        self.sessions.clear();
        self.mx_sessions.clear();
        self.queue.handoff.wake.notify_one();
    }

    /// The queue it delivers from.
    pub fn queue(&self) -> &Arc<Queue> {
        &self.queue
    }

    /// This scheduler's name in leases.
    pub fn owner(&self) -> &str {
        &self.options.owner
    }

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

    /// The shards this scheduler reads now.
    pub fn shards(&self) -> Vec<u16> {
        self.owned.load().as_ref().clone()
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
    async fn attempt_claimed(
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
    async fn reclaim(
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

    /// Delivers the claimed message's recipients due at `now`; one outcome per recipient
    /// attempted, by recipient index.
    pub async fn deliver(&self, claim: &Claim, now: SystemTime) -> Vec<(u32, Outcome)> {
        let now_ms = unix_millis(now);
        let message = &claim.message;
        let due = message
            .recipients
            .iter()
            .filter(|r| r.due_ms.is_some_and(|d| d <= now_ms));
        if now_ms >= message.record.expiry_ms {
            return due
                .map(|r| {
                    let reason = "expired: not delivered within queue.schedule.expire";
                    (r.index, Outcome::PermFailed(reason.to_owned()))
                })
                .collect();
        }
        let settings = self.settings.load_full();
        let mut routes: BTreeMap<Route, Vec<(u32, Recipient)>> = BTreeMap::new();
        for recipient in due {
            let route = settings
                .router
                .route(&message.record.envelope, &recipient.recipient.address);
            routes
                .entry(route)
                .or_default()
                .push((recipient.index, recipient.recipient.clone()));
        }
        let deliveries = routes.into_iter().map(|(route, recipients)| {
            let settings = settings.clone();
            async move {
                self.throttled(&settings, claim, route, recipients, now_ms)
                    .await
            }
        });
        futures::future::join_all(deliveries)
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    /// Delivers `recipients` through `route` at `now_ms` once the throttles they count in
    /// allow it, or defers them all.
    async fn throttled(
        &self,
        settings: &Settings,
        claim: &Claim,
        route: Route,
        recipients: Vec<(u32, Recipient)>,
        now_ms: u64,
    ) -> Vec<(u32, Outcome)> {
        let record = &claim.message.record;
        let hop = match &route {
            Route::Mx => "mx".to_owned(),
            Route::Remote(id) => id.clone(),
        };
        let addresses: Vec<&str> = recipients.iter().map(|(_, r)| r.address.as_str()).collect();
        let groups = throttle::groups(&settings.throttles, &record.envelope, &addresses, &hop);
        let holder = format!("{}/{}/{hop}", record.id, claim.lease.token);
        let expiry_ms = now_ms.saturating_add(millis(self.options.lease));
        let admission = throttle::acquire(
            &self.queue.store,
            &self.queue.keys,
            groups,
            holder,
            now_ms,
            expiry_ms,
        )
        .await;
        let permit = match admission {
            Ok(Admission::Granted(permit)) => permit,
            Ok(Admission::Deferred { throttle, until_ms }) => {
                tracing::debug!(queue_id = %record.id, %throttle, "delivery held back by a throttle");
                let reason = format!("held back by queue.throttle.{throttle}");
                return recipients
                    .into_iter()
                    .map(|(index, _)| {
                        let reason = reason.clone();
                        (index, Outcome::Deferred { until_ms, reason })
                    })
                    .collect();
            }
            Err(error) => {
                let reason = format!("cannot check the throttles: {error}");
                return recipients
                    .into_iter()
                    .map(|(index, _)| (index, Outcome::TempFailed(reason.clone())))
                    .collect();
            }
        };
        let outcomes = self.deliver_route(settings, claim, route, recipients).await;
        if let Err(error) = throttle::release(&self.queue.store, permit).await {
            // The slots expire with the lease instead.
            tracing::warn!(queue_id = %record.id, %error, "cannot release throttle slots");
        }
        outcomes
    }

    async fn deliver_route(
        &self,
        settings: &Settings,
        claim: &Claim,
        route: Route,
        recipients: Vec<(u32, Recipient)>,
    ) -> Vec<(u32, Outcome)> {
        let fail_all = |reason: String| {
            recipients
                .iter()
                .map(|(index, _)| (*index, Outcome::TempFailed(reason.clone())))
                .collect::<Vec<_>>()
        };
        let id = match route {
            Route::Mx => return self.deliver_mx(settings, claim, recipients).await,
            Route::Remote(id) => id,
        };
        let Some(remote) = settings.remotes.get(&id) else {
            return fail_all(format!("remote.{id} is not configured"));
        };
        let permits = self.semaphore(&id, remote.concurrency);
        let Ok(_permit) = permits.acquire_owned().await else {
            return fail_all(format!("remote.{id} is being reconfigured"));
        };
        let addresses: Vec<Recipient> = recipients.iter().map(|(_, r)| r.clone()).collect();
        let job = RelayJob {
            id: &id,
            remote,
            helo: &settings.hostname,
            envelope: &claim.message.record.envelope,
            recipients: &addresses,
        };
        let body = self
            .queue
            .content(&claim.message.record, claim.held.as_ref());
        let started = Instant::now();
        let outcomes = deliver(&job, &self.tls, &self.sessions, body).await;
        self.queue
            .metrics
            .delivery_time(Some(&id), started.elapsed());
        for ((_, recipient), outcome) in recipients.iter().zip(&outcomes) {
            self.queue.metrics.delivery(outcome);
            tracing::info!(
                queue_id = %claim.message.record.id,
                remote = %id,
                rcpt = %recipient.address,
                result = match outcome {
                    Outcome::Delivered(_) => "delivered",
                    Outcome::TempFailed(_) => "temp-failed",
                    Outcome::PermFailed(_) => "perm-failed",
                    Outcome::Deferred { .. } => "throttled",
                },
                reply = outcome.reply(),
                "delivery attempt"
            );
        }
        recipients
            .into_iter()
            .map(|(index, _)| index)
            .zip(outcomes)
            .collect()
    }

    /// Delivers `recipients` of the claimed message to their domains' MX hosts.
    async fn deliver_mx(
        &self,
        settings: &Settings,
        claim: &Claim,
        recipients: Vec<(u32, Recipient)>,
    ) -> Vec<(u32, Outcome)> {
        let record = &claim.message.record;
        let context = MxContext {
            dns: settings.dns.as_deref().map_err(String::as_str),
            tls: &self.tls,
            mta_sts: &self.mta_sts,
            settings: &settings.outbound,
            helo: &settings.hostname,
            envelope: &record.envelope,
            dane: Dane {
                mode: settings.outbound.dane,
                dns: settings.dnssec.as_deref().map_err(String::as_str),
                port: settings.outbound.mx_port,
                metrics: self.queue.metrics.outbound(),
            },
            sessions: &self.mx_sessions,
        };
        let addresses: HashMap<u32, String> = recipients
            .iter()
            .map(|(index, r)| (*index, r.address.clone()))
            .collect();
        let started = Instant::now();
        let held = claim.held.as_ref();
        let outcomes = mx::deliver(&context, recipients, || self.queue.content(record, held)).await;
        self.queue.metrics.delivery_time(None, started.elapsed());
        for (index, outcome) in &outcomes {
            self.queue.metrics.delivery(outcome);
            tracing::info!(
                queue_id = %record.id,
                route = "mx",
                rcpt = addresses.get(index).map_or("", String::as_str),
                result = match outcome {
                    Outcome::Delivered(_) => "delivered",
                    Outcome::TempFailed(_) => "temp-failed",
                    Outcome::PermFailed(_) => "perm-failed",
                    Outcome::Deferred { .. } => "throttled",
                },
                reply = outcome.reply(),
                "delivery attempt"
            );
        }
        outcomes
    }

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
        }
    }

    /// Renews `claim`'s lease at half its duration; returns only once the lease is lost.
    async fn keep_lease(&self, claim: &Claim) {
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

    /// The semaphore of remote `id` for `concurrency`, replaced when the concurrency changes.
    fn semaphore(&self, id: &str, concurrency: u32) -> Arc<Semaphore> {
        let mut limits = self
            .limits
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match limits.get(id) {
            Some((limit, semaphore)) if *limit == concurrency => semaphore.clone(),
            _ => {
                let permits = usize::try_from(concurrency.max(1)).unwrap_or(usize::MAX);
                let semaphore = Arc::new(Semaphore::new(permits));
                limits.insert(id.to_owned(), (concurrency, semaphore.clone()));
                semaphore
            }
        }
    }
}

/// Message `id` read in `tx`, if it is still queued and due at `now_ms`.
async fn still_due(
    tx: &Transaction,
    keys: &Keys,
    id: &MessageId,
    now_ms: u64,
) -> Result<Option<StoredMessage>, StoreError> {
    let message = StoredMessage::read(tx, keys, id).await?;
    Ok(message.filter(|m| m.record.due_ms.is_some_and(|due| due <= now_ms)))
}

fn settings(config: &Config) -> Settings {
    Settings {
        router: Router::new(config),
        remotes: config.remotes.clone(),
        retry: config.queue.retry.clone(),
        notify: config.queue.notify.clone(),
        throttles: config.queue.throttles.clone(),
        hostname: config.server.hostname.clone(),
        outbound: config.queue.outbound.clone(),
        dns: resolver(config),
        dnssec: ferrymail_dns::dnssec_resolver(&config.resolver)
            .map(Arc::new)
            .map_err(|error| error.to_string()),
    }
}

/// The resolver MX delivery asks; when it cannot be built, MX recipients fail temporarily
/// with the reason until a configuration that works is applied.
fn resolver(config: &Config) -> Result<Arc<MessageAuthenticator>, String> {
    ferrymail_dns::authenticator(&config.resolver)
        .map(Arc::new)
        .map_err(|error| {
            tracing::warn!(%error, "no DNS resolver: MX delivery fails temporarily until one can be built");
            error.to_string()
        })
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
