//! Hold and release: an administrator stops a message's delivery until told otherwise.
//!
//! The hold is a flag in the message record, written in the transaction that takes the
//! message's entry out of the due index, so every scheduler sees it at once: none claims a
//! message that is not in the index. An attempt already under way when the hold commits
//! finishes and records its results; its commit keeps the message out of the index. A held
//! message never expires, as in Postfix: expiry is judged at the attempts it does not get, so
//! a message released after its lifetime expires at its next attempt.

use std::time::SystemTime;

use ferrymail_rpc::queue::QueueError;
use ferrymail_store::{StoreError, Transaction};

use crate::events::next_hop::NextHop;
use crate::events::{EventKind, EventTally, EventWriter};
use crate::message_change::Change;
use crate::model::due_index::{DueEntry, entry_time, move_entry};
use crate::model::keys::Keys;
use crate::model::queue_id::{MessageId, unix_millis};
use crate::model::stored_message::StoredMessage;
use crate::route::Router;
use crate::service::Queue;
use crate::store_failure::from_store;

impl Queue {
    /// Holds (`held` true) or releases message `id`; returns whether its state changed.
    pub(crate) async fn set_held(&self, id: &MessageId, held: bool) -> Result<bool, QueueError> {
        let (keys, id) = (self.keys.clone(), *id);
        let (events, router) = (self.events.current(), self.router.load_full());
        let now_ms = unix_millis(SystemTime::now());
        let (due, tally) = self
            .store
            .transact(move |tx| {
                let (keys, router) = (keys.clone(), router.clone());
                let mut events = EventWriter::new(events.clone(), now_ms);
                Box::pin(async move {
                    let Some(mut message) = StoredMessage::read(tx, &keys, &id).await? else {
                        return Ok((Change::NoMessage, EventTally::default()));
                    };
                    if !hold_in(tx, &keys, &mut message, held)? {
                        return Ok((Change::Done(None), EventTally::default()));
                    }
                    held_events(&mut events, &message, held, router.as_deref());
                    let tally = events.write(tx, &keys)?;
                    let record = &message.record;
                    let due = Some((record.due_ms, record.envelope.priority));
                    Ok((Change::Done(due), tally))
                })
            })
            .await
            .map_err(|e| from_store(if held { "hold" } else { "release" }, e))?;
        self.events.settle(tally, &self.metrics);
        let due = due.into_result(&id)?;
        let Some((due, priority)) = due else {
            return Ok(false);
        };
        tracing::info!(queue_id = %id, held, "message hold changed");
        // A released message already due is offered to this process's scheduler at once.
        if let Some(due_ms) = due
            && due_ms <= unix_millis(SystemTime::now())
        {
            self.push_fresh(DueEntry {
                queue_id: id,
                shard: id.shard(),
                priority,
                due_ms,
            });
        }
        Ok(true)
    }
}

/// Holds (`held` true) or releases `message` in `tx`; returns whether its state changed.
pub(crate) fn hold_in(
    tx: &Transaction,
    keys: &Keys,
    message: &mut StoredMessage,
    held: bool,
) -> Result<bool, StoreError> {
    if message.record.held == held {
        return Ok(false);
    }
    message.record.held = held;
    let due = entry_time(&message.record, &message.recipients);
    move_entry(tx, keys, &mut message.record, due)?;
    tx.set(&keys.message(&message.record.id), &message.record.encode())?;
    Ok(true)
}

/// The events of holding (`held` true) or releasing `message`: one per live recipient.
pub(crate) fn held_events(
    events: &mut EventWriter,
    message: &StoredMessage,
    held: bool,
    router: Option<&Router>,
) {
    let kind = if held {
        EventKind::Held
    } else {
        EventKind::Released
    };
    if !events.wants(kind) {
        return;
    }
    for recipient in message.recipients.iter().filter(|r| r.is_live()) {
        let address = &recipient.recipient.address;
        let hop = NextHop::routed(router, &message.record.envelope, address, None);
        events.push(kind, &message.record, recipient, hop);
    }
}
