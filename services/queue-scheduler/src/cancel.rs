//! Cancel: an administrator stops delivery to recipients; a message left with nothing to
//! deliver leaves the queue, and its body with it.

use std::sync::Arc;
use std::time::SystemTime;

use ferrymail_rpc::queue::{QueueError, RecipientState};
use ferrymail_store::blob::BlobStore;
use ferrymail_store::{StoreError, Transaction};

use crate::dsn::{self, NoticeSettings, Original};
use crate::events::next_hop::NextHop;
use crate::events::{EventKind, EventTally, EventWriter};
use crate::message_change::Change;
use crate::model::counters::CounterDelta;
use crate::model::due_index::{entry_time, move_entry};
use crate::model::keys::Keys;
use crate::model::queue_id::{MessageId, unix_millis};
use crate::model::removal;
use crate::model::stored_message::StoredMessage;
use crate::route::Router;
use crate::service::Queue;
use crate::store_failure::from_store;

impl Queue {
    /// Cancels the live (pending or temp-failed) recipients among `addresses` (all when empty)
    /// of message `id`; returns how many. With `notify_sender`, the sender gets a failure
    /// notice for them, written in the same transaction.
    ///
    /// When no live recipient remains, the message is removed in the same transaction: record,
    /// recipients, due entry, its share of the counters, and its reference to the body blob,
    /// which collection then deletes.
    pub(crate) async fn cancel_recipients(
        &self,
        id: &MessageId,
        addresses: &[String],
        notify_sender: bool,
    ) -> Result<u32, QueueError> {
        let (keys, blobs, id) = (self.keys.clone(), self.blobs.clone(), *id);
        let addresses = addresses.to_vec();
        let (events, router) = (self.events.current(), self.router.load_full());
        let now = SystemTime::now();
        let now_ms = unix_millis(now);
        let notices = Arc::new(notify_sender.then(|| self.cancel_notices()));
        let (cancelled, tally) = self
            .store
            .transact(move |tx| {
                let (keys, blobs, addresses) = (keys.clone(), blobs.clone(), addresses.clone());
                let (router, notices) = (router.clone(), notices.clone());
                let mut events = EventWriter::new(events.clone(), now_ms);
                Box::pin(async move {
                    let Some(mut message) = StoredMessage::read(tx, &keys, &id).await? else {
                        return Ok((Change::NoMessage, EventTally::default()));
                    };
                    let selected = match message.select(&addresses) {
                        Ok(selected) => selected,
                        Err(address) => {
                            return Ok((Change::NoRecipient(address), EventTally::default()));
                        }
                    };
                    let notice = notices
                        .as_ref()
                        .as_ref()
                        .map(|settings| CancelNotice { settings, now });
                    let change = CancelChange {
                        selected: &selected,
                        notice,
                        events: (&mut events, router.as_deref()),
                    };
                    let cancelled = cancel_in(tx, &keys, &blobs, &mut message, change).await?;
                    Ok((Change::Done(cancelled), events.write(tx, &keys)?))
                })
            })
            .await
            .map_err(|e| from_store("cancel", e))?;
        self.events.settle(tally, &self.metrics);
        let cancelled = cancelled.into_result(&id)?;
        if cancelled > 0 {
            tracing::info!(queue_id = %id, cancelled, notify_sender, "recipients cancelled");
        }
        Ok(cancelled)
    }

    /// How the notices of an administrator's cancel are made. They quote nothing of the
    /// message: a bulk cancel would otherwise read every body it walks.
    pub(crate) fn cancel_notices(&self) -> NoticeSettings {
        NoticeSettings {
            hostname: self.hostname.load().as_ref().clone(),
            notify: Vec::new(),
            expire_ms: u64::try_from(self.expire().as_millis()).unwrap_or(u64::MAX),
            original: Original::default(),
        }
    }
}

/// A notice to the sender of cancelled recipients: its settings and its time.
pub(crate) struct CancelNotice<'a> {
    pub(crate) settings: &'a NoticeSettings,
    pub(crate) now: SystemTime,
}

/// What a cancel changes: the recipients at the `selected` positions; with `notice`, the
/// sender is told of them; `events` records the cancel events, naming next hops by the
/// router.
pub(crate) struct CancelChange<'a, 'w> {
    pub(crate) selected: &'a [usize],
    pub(crate) notice: Option<CancelNotice<'a>>,
    pub(crate) events: (&'a mut EventWriter, Option<&'w Router>),
}

/// Cancels the live recipients of `message` that `change` selects, in `tx`; removes the
/// message when none is left live. With a notice, the sender is told of them (as NOTIFY
/// allows) by a failure notice written in the same transaction; the cancel events are
/// collected. Returns how many were cancelled.
pub(crate) async fn cancel_in(
    tx: &Transaction,
    keys: &Keys,
    blobs: &BlobStore,
    message: &mut StoredMessage,
    change: CancelChange<'_, '_>,
) -> Result<u32, StoreError> {
    let CancelChange {
        selected,
        notice,
        events: (events, router),
    } = change;
    let id = message.record.id;
    let mut delta = CounterDelta::default();
    let mut changed = Vec::new();
    for &index in selected {
        let recipient = &mut message.recipients[index];
        if !recipient.is_live() {
            continue;
        }
        delta.transition(recipient.state, RecipientState::Cancelled);
        recipient.state = RecipientState::Cancelled;
        recipient.due_ms = None;
        changed.push(index);
    }
    if changed.is_empty() {
        return Ok(0);
    }
    if events.wants(EventKind::Cancelled) {
        for &index in &changed {
            let recipient = &message.recipients[index];
            let address = &recipient.recipient.address;
            let hop = NextHop::routed(router, &message.record.envelope, address, None);
            events.push(EventKind::Cancelled, &message.record, recipient, hop);
        }
    }
    if let Some(notice) = notice
        && dsn::may_notify(&message.record)
    {
        let reported = dsn::cancelled(changed.iter().map(|&i| &message.recipients[i]));
        if !reported.is_empty() {
            match dsn::notice(notice.settings, &message.record, &reported, notice.now) {
                Some(new) => new.write(tx, keys, blobs).await.map(drop)?,
                None => {
                    tracing::error!(queue_id = %id, "a cancel notice exceeds its bound and is not sent")
                }
            }
        }
    }
    let record = &mut message.record;
    if message.recipients.iter().any(|r| r.is_live()) {
        for &index in &changed {
            let recipient = &message.recipients[index];
            tx.set(&keys.recipient(&id, recipient.index), &recipient.encode())?;
        }
        let due = entry_time(record, &message.recipients);
        move_entry(tx, keys, record, due)?;
        tx.set(&keys.message(&id), &record.encode())?;
    } else {
        removal::remove(tx, keys, blobs, message, &mut delta).await?;
    }
    delta.apply(tx, keys, id.shard())?;
    Ok(u32::try_from(changed.len()).unwrap_or(u32::MAX))
}
