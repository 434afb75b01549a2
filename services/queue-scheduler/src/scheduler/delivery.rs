//! Delivering a claimed message's recipients: routed by `queue.outbound.next-hop`, held back
//! by pauses, dead relays and the throttles, then handed to outbound delivery (a relay, or the recipients' MX hosts)
//! with a remote's concurrency enforced; each recipient's outcome logged and counted.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use ferrymail_rpc::queue::Recipient;
use tokio::sync::{Semaphore, watch};

use ferrymail_outbound::dane::Dane;
use ferrymail_outbound::mx::{self, MxContext};
use ferrymail_outbound::relay::{RelayJob, deliver};
use ferrymail_outbound::{Deadline, Outcome};

use ferrymail_outbound::host_health::HostHealth;
use ferrymail_outbound::tls_report::TlsResults;

use crate::claim::Claim;
use crate::destination_gate::is_suspension;
use crate::model::queue_id::unix_millis;
use crate::model::throttle::{self, Admission};
use crate::route::Route;
use crate::tls_report::TlsCollector;

use super::mx_hosts::MxHosts;
use super::{Scheduler, Settings, millis};

impl Scheduler {
    /// Delivers the claimed message's recipients due at `now`, handing nothing over once the
    /// claim's lease, not renewed, may have run out; one outcome per recipient attempted, by
    /// recipient index.
    pub async fn deliver(&self, claim: &Claim, now: SystemTime) -> Vec<(u32, Outcome)> {
        // The sender goes away at once: the deadline stays where the claim puts it.
        let (_, until) = watch::channel(self.valid_until(claim.lease.expiry_ms));
        self.deliver_until(claim, now, &Deadline::watching(until))
            .await
    }

    /// [`Scheduler::deliver`], handing nothing over past `deadline`.
    pub(super) async fn deliver_until(
        &self,
        claim: &Claim,
        now: SystemTime,
        deadline: &Deadline,
    ) -> Vec<(u32, Outcome)> {
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
        let pauses = self.pauses().await;
        let deliveries = routes.into_iter().map(|(route, recipients)| {
            let (settings, pauses) = (settings.clone(), &pauses);
            async move {
                let (through, mut held) = self
                    .admitted(&settings, (&route, pauses), recipients, now_ms)
                    .await;
                if !through.is_empty() {
                    let delivered = self
                        .throttled(&settings, (claim, deadline), route, through, now_ms)
                        .await;
                    held.extend(delivered);
                }
                held
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
        (claim, deadline): (&Claim, &Deadline),
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
        let outcomes = self
            .deliver_route(settings, (claim, deadline), route, recipients)
            .await;
        if let Err(error) = throttle::release(&self.queue.store, permit).await {
            // The slots expire with the lease instead.
            tracing::warn!(queue_id = %record.id, %error, "cannot release throttle slots");
        }
        outcomes
    }

    async fn deliver_route(
        &self,
        settings: &Settings,
        (claim, deadline): (&Claim, &Deadline),
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
            Route::Mx => {
                return self
                    .deliver_mx(settings, (claim, deadline), recipients)
                    .await;
            }
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
            deadline,
        };
        let body = self
            .queue
            .content(&claim.message.record, claim.held.as_ref());
        let started = Instant::now();
        let delivery = deliver(&job, &self.tls, &self.sessions, body).await;
        self.note_connection(settings, &id, &delivery.connection)
            .await;
        let outcomes = delivery.outcomes;
        self.queue
            .metrics
            .delivery_time(Some(&id), started.elapsed());
        for ((_, recipient), outcome) in recipients.iter().zip(&outcomes) {
            self.queue.metrics.delivery(outcome);
            tracing::info!(
                queue_id = %claim.message.record.id,
                remote = %id,
                rcpt = %recipient.address,
                result = outcome.label(),
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
        (claim, deadline): (&Claim, &Deadline),
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
            deadline,
            hosts: None,
            tls_results: None,
        };
        let hosts = MxHosts {
            scheduler: self,
            dead: settings.dead,
        };
        // Each session's TLS, counted after the attempt for SMTP TLS reports.
        let tls = TlsCollector::default();
        let context = MxContext {
            hosts: settings.dead.enabled().then_some(&hosts as &dyn HostHealth),
            tls_results: self
                .queue
                .tls_reports_on()
                .then_some(&tls as &dyn TlsResults),
            ..context
        };
        let addresses: HashMap<u32, String> = recipients
            .iter()
            .map(|(index, r)| (*index, r.address.clone()))
            .collect();
        let started = Instant::now();
        let held = claim.held.as_ref();
        let outcomes = mx::deliver(&context, recipients, || self.queue.content(record, held)).await;
        self.queue.metrics.delivery_time(None, started.elapsed());
        self.queue.record_tls_results(tls.take()).await;
        let suspended = outcomes.iter().filter(|(_, o)| is_suspension(o)).count();
        self.queue.metrics.deferred("suspended", suspended);
        for (index, outcome) in &outcomes {
            self.queue.metrics.delivery(outcome);
            tracing::info!(
                queue_id = %record.id,
                route = "mx",
                rcpt = addresses.get(index).map_or("", String::as_str),
                result = outcome.label(),
                reply = outcome.reply(),
                "delivery attempt"
            );
        }
        outcomes
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
