//! The dispatcher of one scheduler process: for each webhook, it takes the outbox's sender
//! lease when nobody holds it, sends the oldest events in batches, takes them out of the
//! outbox once answered `2xx`, and waits with exponential backoff after a failure. The other
//! processes keep asking for the lease, so one takes over within a lease after the sender
//! dies. Every process reads the outbox's count and age into the metrics and the bound the
//! writers check.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use ferrymail_store::StoreError;
use ferrymail_telemetry::LogLimit;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::payload::batch_body;
use super::webhook_client::{REASONS, WebhookClient};
use super::{EventSettings, Target};
use crate::model::event_outbox::{self, EventId, SenderTerms};
use crate::model::lease::Lease;
use crate::model::queue_id::unix_millis;
use crate::service::Queue;

/// How often the outbox's count and age are read (and events of other processes looked for).
const POLL: Duration = Duration::from_secs(1);
/// Failed requests and store errors are logged once per this interval.
static FAILURES: LogLimit = LogLimit::new(Duration::from_secs(10));

/// How the dispatcher of one process works.
#[derive(Debug, Clone)]
pub(crate) struct DispatchOptions {
    /// This process's name in sender leases.
    pub(crate) owner: String,
    /// How long a sender lease lasts beyond one request's timeout.
    pub(crate) lease: Duration,
    /// `queue.lease.max-clock-skew`.
    pub(crate) skew: Duration,
}

/// Where the dispatcher stands with one webhook.
#[derive(Debug)]
struct Sender {
    /// The sender lease, while this process holds it.
    lease: Option<Lease>,
    /// No request before this (throttle or backoff).
    next_send: Instant,
    /// Failed requests in a row.
    failures: u32,
    /// The next read of the outbox's count and age.
    next_gauge: Instant,
}

impl Sender {
    fn new(now: Instant) -> Self {
        Self {
            lease: None,
            next_send: now,
            failures: 0,
            next_gauge: now,
        }
    }
}

/// Sends the events of `queue`'s outbox until `stop`, then gives up the leases it holds.
pub(crate) async fn run(
    queue: Arc<Queue>,
    client: WebhookClient,
    options: DispatchOptions,
    stop: CancellationToken,
) {
    let mut senders: HashMap<String, Sender> = HashMap::new();
    loop {
        let now = Instant::now();
        let mut wake = now + POLL;
        if let Some(settings) = queue.events.current() {
            senders.retain(|id, _| settings.targets.iter().any(|t| &t.id == id));
            for target in &settings.targets {
                let sender = senders.entry(target.id.clone()).or_insert_with(|| {
                    queue.metrics.events_webhook(&target.id, &REASONS);
                    Sender::new(now)
                });
                let next = step(&queue, &client, &options, &settings, target, sender).await;
                wake = wake.min(next);
            }
        } else {
            senders.clear();
        }
        tokio::select! {
            () = stop.cancelled() => break,
            () = queue.events.written.notified() => {}
            () = tokio::time::sleep_until(wake) => {}
        }
    }
    for (webhook, sender) in senders {
        if let Some(lease) = sender.lease {
            release(&queue, &webhook, lease.token).await;
        }
    }
}

/// One step for `target`: refresh the gauges when due, then send a batch when allowed.
/// Returns when to come back.
async fn step(
    queue: &Queue,
    client: &WebhookClient,
    options: &DispatchOptions,
    settings: &EventSettings,
    target: &Target,
    sender: &mut Sender,
) -> Instant {
    let now = Instant::now();
    if now >= sender.next_gauge {
        sender.next_gauge = now + POLL;
        if let Err(error) = refresh_gauges(queue, target).await {
            log_failure(&target.id, "cannot read the event outbox", &error);
        }
    }
    if now < sender.next_send {
        return sender.next_send.min(sender.next_gauge);
    }
    match send_batch(queue, client, options, settings, target, sender).await {
        Ok(Sent::Some { full }) => {
            sender.failures = 0;
            sender.next_send = Instant::now() + target.webhook.throttle;
            if full {
                sender.next_send
            } else {
                sender.next_send.max(sender.next_gauge)
            }
        }
        Ok(Sent::Nothing) => sender.next_gauge,
        Ok(Sent::NotSender) => {
            // Someone else sends; ask again within a third of a lease.
            sender.next_send = Instant::now() + options.lease / 3;
            sender.next_send.min(sender.next_gauge)
        }
        Err(()) => {
            sender.failures = sender.failures.saturating_add(1);
            sender.next_send = Instant::now() + backoff(settings, sender.failures);
            sender.next_send.min(sender.next_gauge)
        }
    }
}

/// What one send did.
enum Sent {
    /// Events were sent and taken out; `full` when the batch was, so more may wait.
    Some { full: bool },
    /// The outbox was empty.
    Nothing,
    /// Another process holds the sender lease.
    NotSender,
}

/// Takes or extends the sender lease, reads a batch, sends it and takes it out of the outbox.
async fn send_batch(
    queue: &Queue,
    client: &WebhookClient,
    options: &DispatchOptions,
    settings: &EventSettings,
    target: &Target,
    sender: &mut Sender,
) -> Result<Sent, ()> {
    let lease = match take_lease(queue, options, target).await {
        Ok(Some(lease)) => lease,
        Ok(None) => {
            sender.lease = None;
            return Ok(Sent::NotSender);
        }
        Err(error) => {
            log_failure(&target.id, "cannot take the event sender lease", &error);
            return Err(());
        }
    };
    sender.lease = Some(lease);
    let limit = usize::try_from(settings.outbox.batch_size).unwrap_or(usize::MAX);
    let batch = match read_batch(queue, &target.id, limit).await {
        Ok(batch) => batch,
        Err(error) => {
            log_failure(&target.id, "cannot read the event outbox", &error);
            return Err(());
        }
    };
    if batch.is_empty() {
        return Ok(Sent::Nothing);
    }
    let body = batch_body(batch.iter().map(|(_, event)| event.as_slice()));
    if let Err(error) = client.post(&target.webhook, body).await {
        queue.metrics.events_send_failed(&target.id, error.reason());
        if let Some(left_out) = FAILURES.admit() {
            tracing::warn!(webhook = %target.id, %error, events = batch.len(), left_out, "webhook request failed; its events stay in the outbox");
        }
        return Err(());
    }
    let ids: Vec<EventId> = batch.iter().map(|(id, _)| *id).collect();
    queue
        .metrics
        .events_sent(&target.id, u64::try_from(ids.len()).unwrap_or(u64::MAX));
    match take_out(queue, &target.id, ids).await {
        Ok(removed) => {
            let removed = u64::try_from(removed).unwrap_or(u64::MAX);
            let _ = target
                .depth
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |d| {
                    Some(d.saturating_sub(removed))
                });
        }
        // They are sent again: at least once.
        Err(error) => log_failure(
            &target.id,
            "cannot take sent events out of the outbox",
            &error,
        ),
    }
    Ok(Sent::Some {
        full: batch.len() >= limit,
    })
}

/// The wait after `failures` failed requests in a row: `min-backoff` doubled each time, up
/// to `max-backoff`.
fn backoff(settings: &EventSettings, failures: u32) -> Duration {
    let outbox = &settings.outbox;
    let doublings = failures.saturating_sub(1).min(30);
    outbox
        .min_backoff
        .saturating_mul(1u32 << doublings)
        .min(outbox.max_backoff)
}

async fn take_lease(
    queue: &Queue,
    options: &DispatchOptions,
    target: &Target,
) -> Result<Option<Lease>, StoreError> {
    let now_ms = unix_millis(SystemTime::now());
    // The lease outlasts the request it is taken for.
    let span = options.lease.saturating_add(target.webhook.timeout);
    let terms = SenderTerms {
        owner: options.owner.clone(),
        now_ms,
        expiry_ms: now_ms.saturating_add(u64::try_from(span.as_millis()).unwrap_or(u64::MAX)),
        skew_ms: u64::try_from(options.skew.as_millis()).unwrap_or(u64::MAX),
    };
    let (keys, webhook) = (queue.keys.clone(), target.id.clone());
    queue
        .store
        .transact(move |tx| {
            let (keys, webhook, terms) = (keys.clone(), webhook.clone(), terms.clone());
            Box::pin(
                async move { event_outbox::take_sender_lease(tx, &keys, &webhook, &terms).await },
            )
        })
        .await
}

async fn read_batch(
    queue: &Queue,
    webhook: &str,
    limit: usize,
) -> Result<Vec<(EventId, Vec<u8>)>, StoreError> {
    let (keys, webhook) = (queue.keys.clone(), webhook.to_owned());
    queue
        .store
        .transact(move |tx| {
            let (keys, webhook) = (keys.clone(), webhook.clone());
            Box::pin(async move { event_outbox::oldest(tx, &keys, &webhook, limit).await })
        })
        .await
}

async fn take_out(queue: &Queue, webhook: &str, ids: Vec<EventId>) -> Result<usize, StoreError> {
    let (keys, webhook, ids) = (queue.keys.clone(), webhook.to_owned(), Arc::new(ids));
    queue
        .store
        .transact(move |tx| {
            let (keys, webhook, ids) = (keys.clone(), webhook.clone(), ids.clone());
            Box::pin(async move { event_outbox::remove(tx, &keys, &webhook, &ids).await })
        })
        .await
}

/// Reads the outbox's count and oldest event into the metrics and the writers' bound.
async fn refresh_gauges(queue: &Queue, target: &Target) -> Result<(), StoreError> {
    let (keys, webhook) = (queue.keys.clone(), target.id.clone());
    let (depth, oldest) = queue
        .store
        .transact(move |tx| {
            let (keys, webhook) = (keys.clone(), webhook.clone());
            Box::pin(async move {
                let depth = event_outbox::depth(tx, &keys, &webhook).await?;
                let oldest = event_outbox::oldest_time(tx, &keys, &webhook).await?;
                Ok((depth, oldest))
            })
        })
        .await?;
    target.depth.store(depth, Ordering::Relaxed);
    let now_ms = unix_millis(SystemTime::now());
    let age = oldest.map_or(Duration::ZERO, |t| {
        Duration::from_millis(now_ms.saturating_sub(t))
    });
    queue.metrics.events_outbox(&target.id, depth, age);
    Ok(())
}

async fn release(queue: &Queue, webhook: &str, token: u64) {
    let (keys, webhook_id) = (queue.keys.clone(), webhook.to_owned());
    let released = queue
        .store
        .transact(move |tx| {
            let (keys, webhook) = (keys.clone(), webhook_id.clone());
            Box::pin(
                async move { event_outbox::release_sender_lease(tx, &keys, &webhook, token).await },
            )
        })
        .await;
    if let Err(error) = released {
        // The lease runs out instead.
        tracing::debug!(webhook, %error, "event sender lease not released");
    }
}

fn log_failure(webhook: &str, what: &str, error: &StoreError) {
    if let Some(left_out) = FAILURES.admit() {
        tracing::warn!(webhook, %error, left_out, "{what}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrymail_config::model::webhook::EventOutbox;

    #[test]
    fn backoff_doubles_up_to_the_maximum() {
        let settings = EventSettings {
            targets: Vec::new(),
            outbox: EventOutbox {
                min_backoff: Duration::from_secs(1),
                max_backoff: Duration::from_secs(10),
                ..EventOutbox::default()
            },
        };
        let waits: Vec<u64> = (1..=6).map(|n| backoff(&settings, n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 10, 10]);
        assert_eq!(backoff(&settings, u32::MAX), Duration::from_secs(10));
    }
}
