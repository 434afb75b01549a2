//! Delivery events pushed to webhooks: delivered, deferred, bounced, expired, held, released
//! and cancelled, one per recipient.
//!
//! An event is written to the outbox in the store (`model::event_outbox`) by the transaction
//! that records what it tells of (a delivery result, a hold, a cancel), so a crash loses none.
//! Each scheduler process runs a dispatcher (`outbox_dispatch`); for each webhook, the one
//! holding the outbox's sender lease `POST`s the oldest events in batches
//! (`webhook_client`, signed by `signature`, shaped by `payload`) and takes them out of the
//! outbox once answered `2xx`, retrying failed requests with exponential backoff. Failures are
//! classified for the events by `classify`; next hops are named by `next_hop`.
//!
//! With no webhook configured nothing is written. The outbox of each webhook is bounded
//! (`queue.events.outbox.max-size`): past it, new events are dropped and counted; recording a
//! result never waits for, nor fails because of, events.

pub(crate) mod classify;
pub(crate) mod next_hop;
pub(crate) mod outbox_dispatch;
pub(crate) mod payload;
pub(crate) mod signature;
pub(crate) mod webhook_client;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use ferrymail_config::model::webhook::{EventOutbox, Webhook};
use ferrymail_store::{StoreError, Transaction};
use ferrymail_telemetry::LogLimit;
use tokio::sync::Notify;

use crate::metrics::QueueMetrics;
use crate::model::event_outbox::{self, EventId};
use crate::model::keys::Keys;
use crate::model::record::{MessageRecord, RecipientRecord};
use next_hop::NextHop;
use payload::Event;

/// Dropped events are logged at most once per this interval.
static DROPS: LogLimit = LogLimit::new(Duration::from_secs(60));

/// What an event tells of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventKind {
    /// The next hop accepted the message for the recipient.
    Delivered,
    /// The attempt failed temporarily; another follows.
    Deferred,
    /// The attempt failed permanently.
    Bounced,
    /// The recipient was not delivered within `queue.schedule.expire`.
    Expired,
    /// An administrator held the message.
    Held,
    /// An administrator released the message.
    Released,
    /// An administrator cancelled the recipient.
    Cancelled,
}

impl EventKind {
    /// The `type` of the event, as `webhook.<id>.events` names it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            EventKind::Delivered => "delivery.delivered",
            EventKind::Deferred => "delivery.deferred",
            EventKind::Bounced => "delivery.bounced",
            EventKind::Expired => "delivery.expired",
            EventKind::Held => "queue.held",
            EventKind::Released => "queue.released",
            EventKind::Cancelled => "queue.cancelled",
        }
    }
}

/// A webhook as the writers see it: its settings and the count of its outbox as last known.
#[derive(Debug)]
pub(crate) struct Target {
    /// `webhook.<id>`'s id.
    pub(crate) id: String,
    /// Its settings.
    pub(crate) webhook: Webhook,
    /// Events waiting for it: read from the store by the dispatcher, raised by each write.
    pub(crate) depth: Arc<AtomicU64>,
}

/// The webhooks and outbox settings in force; absent when no webhook is configured.
#[derive(Debug)]
pub(crate) struct EventSettings {
    /// Every enabled webhook.
    pub(crate) targets: Vec<Target>,
    /// `queue.events.*`.
    pub(crate) outbox: EventOutbox,
}

/// The events of one process's queue: the settings in force, and the dispatcher's wake-up.
#[derive(Debug, Default)]
pub(crate) struct Events {
    settings: ArcSwapOption<EventSettings>,
    /// What the settings are built from: `webhook.<id>` and `queue.events.*`, as last applied.
    configured: Mutex<(BTreeMap<String, Webhook>, EventOutbox)>,
    /// Outbox counts by webhook id, kept across reloads.
    depths: Mutex<HashMap<String, Arc<AtomicU64>>>,
    /// Rung when events were written, so the dispatcher sends them without waiting to poll.
    pub(crate) written: Notify,
}

impl Events {
    /// Applies the `webhook.<id>` in force.
    pub(crate) fn apply_webhooks(&self, webhooks: &BTreeMap<String, Webhook>) {
        let mut configured = self
            .configured
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        configured.0 = webhooks.clone();
        self.rebuild(&configured);
    }

    /// Applies `queue.events.*`.
    pub(crate) fn apply_outbox(&self, outbox: &EventOutbox) {
        let mut configured = self
            .configured
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        configured.1 = outbox.clone();
        self.rebuild(&configured);
    }

    fn rebuild(&self, (webhooks, outbox): &(BTreeMap<String, Webhook>, EventOutbox)) {
        if webhooks.is_empty() {
            self.settings.store(None);
            return;
        }
        let mut depths = self.depths.lock().unwrap_or_else(PoisonError::into_inner);
        let targets = webhooks
            .iter()
            .map(|(id, webhook)| Target {
                id: id.clone(),
                webhook: webhook.clone(),
                depth: depths.entry(id.clone()).or_default().clone(),
            })
            .collect();
        let outbox = outbox.clone();
        self.settings
            .store(Some(Arc::new(EventSettings { targets, outbox })));
    }

    /// The settings in force, `None` when no webhook is configured.
    pub(crate) fn current(&self) -> Option<Arc<EventSettings>> {
        self.settings.load_full()
    }

    /// Counts what a committed transaction wrote and dropped, and wakes the dispatcher.
    pub(crate) fn settle(&self, tally: EventTally, metrics: &QueueMetrics) {
        for (depth, written) in &tally.written {
            depth.fetch_add(*written, Ordering::Relaxed);
        }
        let mut dropped_total = 0;
        for (webhook, dropped) in &tally.dropped {
            metrics.events_dropped(webhook, *dropped);
            dropped_total += dropped;
        }
        if dropped_total > 0
            && let Some(left_out) = DROPS.admit()
        {
            tracing::warn!(
                dropped = dropped_total,
                left_out,
                "the delivery event outbox is full (queue.events.outbox.max-size): events dropped"
            );
        }
        if !tally.written.is_empty() {
            self.written.notify_one();
        }
    }
}

/// What one transaction did with its events: counts written by outbox, counts dropped by
/// webhook.
#[derive(Debug, Default)]
pub(crate) struct EventTally {
    written: Vec<(Arc<AtomicU64>, u64)>,
    dropped: Vec<(String, u64)>,
}

/// The events of one transaction, collected as it changes recipients and written to the
/// outbox before it commits. Without webhooks, it collects nothing.
#[derive(Debug)]
pub(crate) struct EventWriter {
    settings: Option<Arc<EventSettings>>,
    now_ms: u64,
    events: Vec<Event>,
}

impl EventWriter {
    /// A writer for events at `now_ms` under `settings` (`None`: writes nothing).
    pub(crate) fn new(settings: Option<Arc<EventSettings>>, now_ms: u64) -> Self {
        Self {
            settings,
            now_ms,
            events: Vec::new(),
        }
    }

    /// Whether an event of `kind` goes to any webhook.
    pub(crate) fn wants(&self, kind: EventKind) -> bool {
        self.settings
            .as_ref()
            .is_some_and(|s| s.targets.iter().any(|t| t.webhook.wants(kind.name())))
    }

    /// Adds an event of `kind` for `recipient` of `message`, going to `next_hop`, with the
    /// reply recorded.
    pub(crate) fn push(
        &mut self,
        kind: EventKind,
        message: &MessageRecord,
        recipient: &RecipientRecord,
        next_hop: Option<NextHop>,
    ) {
        if !self.wants(kind) {
            return;
        }
        let retry_at_ms = (kind == EventKind::Deferred)
            .then_some(recipient.due_ms)
            .flatten();
        self.events.push(Event {
            id: EventId::generate(self.now_ms),
            kind,
            time_ms: self.now_ms,
            queue_id: message.id,
            sender: message.envelope.sender.clone(),
            recipient: recipient.recipient.address.clone(),
            attempt: recipient.attempts,
            next_hop,
            reply: recipient.last_reply.clone(),
            retry_at_ms,
        });
    }

    /// Writes the events to the outbox of each webhook that wants them, in `tx`, dropping
    /// those that find it full.
    pub(crate) fn write(&self, tx: &Transaction, keys: &Keys) -> Result<EventTally, StoreError> {
        let mut tally = EventTally::default();
        let Some(settings) = &self.settings else {
            return Ok(tally);
        };
        if self.events.is_empty() {
            return Ok(tally);
        }
        let bodies: Vec<Vec<u8>> = self.events.iter().map(Event::to_json).collect();
        for target in &settings.targets {
            let (mut written, mut dropped) = (0u64, 0u64);
            let known = target.depth.load(Ordering::Relaxed);
            for (event, body) in self.events.iter().zip(&bodies) {
                if !target.webhook.wants(event.kind.name()) {
                    continue;
                }
                if known.saturating_add(written) >= settings.outbox.max_size {
                    dropped += 1;
                    continue;
                }
                event_outbox::append(tx, keys, &target.id, event.id, body)?;
                written += 1;
            }
            if written > 0 {
                tally.written.push((target.depth.clone(), written));
            }
            if dropped > 0 {
                tally.dropped.push((target.id.clone(), dropped));
            }
        }
        Ok(tally)
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod names {
    use super::*;

    #[test]
    fn event_names_are_the_configurable_ones() {
        use ferrymail_config::model::webhook::EVENT_TYPES;
        let kinds = [
            EventKind::Delivered,
            EventKind::Deferred,
            EventKind::Bounced,
            EventKind::Expired,
            EventKind::Held,
            EventKind::Released,
            EventKind::Cancelled,
        ];
        let names: Vec<&str> = kinds.iter().map(|k| k.name()).collect();
        assert_eq!(names, EVENT_TYPES);
    }
}
