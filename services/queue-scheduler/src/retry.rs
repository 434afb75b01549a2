//! Retry now: an administrator makes recipients due at once, ahead of their schedule or hold.

use std::time::SystemTime;

use ferrymail_rpc::queue::QueueError;
use ferrymail_store::{StoreError, Transaction};

use crate::message_change::Change;
use crate::model::due_index::{DueEntry, entry_time, move_entry};
use crate::model::keys::Keys;
use crate::model::queue_id::{MessageId, unix_millis};
use crate::model::stored_message::StoredMessage;
use crate::service::Queue;
use crate::store_failure::from_store;

impl Queue {
    /// Makes the live (pending or temp-failed) recipients among `addresses` (all when empty) of
    /// message `id` due at `now`; returns how many. Their state and attempt count stay: only
    /// the schedule changes. Delivered, failed and cancelled recipients are left alone.
    pub(crate) async fn retry_now(
        &self,
        id: &MessageId,
        addresses: &[String],
        now: SystemTime,
    ) -> Result<u32, QueueError> {
        let (keys, id, now_ms) = (self.keys.clone(), *id, unix_millis(now));
        let addresses = addresses.to_vec();
        self.store
            .transact(move |tx| {
                let (keys, addresses) = (keys.clone(), addresses.clone());
                Box::pin(async move {
                    let Some(mut message) = StoredMessage::read(tx, &keys, &id).await? else {
                        return Ok(Change::NoMessage);
                    };
                    let selected = match message.select(&addresses) {
                        Ok(selected) => selected,
                        Err(address) => return Ok(Change::NoRecipient(address)),
                    };
                    let rescheduled = retry_in(tx, &keys, &mut message, &selected, now_ms)?;
                    let priority = message.record.envelope.priority;
                    Ok(Change::Done((rescheduled, priority)))
                })
            })
            .await
            .map_err(|e| from_store("retry", e))?
            .into_result(&id)
            .map(|(rescheduled, priority)| {
                self.push_fresh(DueEntry {
                    queue_id: id,
                    shard: id.shard(),
                    priority,
                    due_ms: now_ms,
                });
                rescheduled
            })
    }
}

/// Makes the live recipients of `message` at the `selected` positions due at `now_ms`, in
/// `tx`; returns how many are live. A held message stays held: only the schedule it resumes
/// with changes.
pub(crate) fn retry_in(
    tx: &Transaction,
    keys: &Keys,
    message: &mut StoredMessage,
    selected: &[usize],
    now_ms: u64,
) -> Result<u32, StoreError> {
    let id = message.record.id;
    let mut rescheduled = 0u32;
    for &index in selected {
        let recipient = &mut message.recipients[index];
        let Some(due) = recipient.due_ms else {
            continue; // Not live.
        };
        rescheduled += 1;
        if due > now_ms {
            recipient.due_ms = Some(now_ms);
            tx.set(&keys.recipient(&id, recipient.index), &recipient.encode())?;
        }
    }
    let due = entry_time(&message.record, &message.recipients);
    if due != message.record.due_ms {
        move_entry(tx, keys, &mut message.record, due)?;
        tx.set(&keys.message(&id), &message.record.encode())?;
    }
    Ok(rescheduled)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::time::Duration;

    use bytes::Bytes;
    use ferrymail_rpc::queue::{
        BodyError, BodyStream, Envelope, QueueService, QueueStats, Recipient, RecipientCounts,
        RecipientState,
    };
    use ferrymail_store::{Store, StoreError, StoreOptions};

    use super::*;
    use crate::model::counters::CounterDelta;
    use crate::model::due_index::earliest;

    fn body(data: &'static [u8]) -> BodyStream {
        Box::pin(futures::stream::iter([Ok::<_, BodyError>(
            Bytes::from_static(data).into(),
        )]))
    }

    /// Records a delivery outcome for recipient `index`, as delivery will: state, schedule,
    /// due entry and counters in one transaction.
    async fn record_attempt(
        queue: &Queue,
        id: MessageId,
        index: usize,
        state: RecipientState,
        due_ms: Option<u64>,
        reply: &str,
    ) {
        let keys = queue.keys.clone();
        let reply = reply.to_owned();
        queue
            .store
            .transact(move |tx| {
                let (keys, reply) = (keys.clone(), reply.clone());
                Box::pin(async move {
                    let mut message = StoredMessage::read(tx, &keys, &id).await?.unwrap();
                    let recipient = &mut message.recipients[index];
                    let mut delta = CounterDelta::default();
                    delta.transition(recipient.state, state);
                    recipient.state = state;
                    recipient.attempts += 1;
                    recipient.due_ms = due_ms;
                    recipient.last_reply = Some(reply);
                    tx.set(&keys.recipient(&id, recipient.index), &recipient.encode())?;
                    let due = earliest(&message.recipients);
                    move_entry(tx, &keys, &mut message.record, due)?;
                    tx.set(&keys.message(&id), &message.record.encode())?;
                    delta.apply(tx, &keys, id.shard())?;
                    Ok::<_, StoreError>(())
                })
            })
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn retry_reschedules_temp_failed_recipients_and_keeps_their_history() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_embedded(dir.path(), StoreOptions::default()).unwrap();
        let config = ferrymail_config::load_str("t.toml", "[server]\nhostname = \"h\"\n").unwrap();
        let queue = Queue::new(store, &config.queue);
        let envelope = Envelope {
            sender: "a@example.org".into(),
            recipients: vec![
                Recipient::new("b@example.net"),
                Recipient::new("c@example.net"),
            ],
            ..Envelope::default()
        };
        let wire = queue.enqueue(envelope, body(b"hello")).await.unwrap();
        let id = MessageId::from_wire(&wire).unwrap();
        let later = unix_millis(SystemTime::now() + Duration::from_secs(3600));
        record_attempt(
            &queue,
            id,
            0,
            RecipientState::TempFailed,
            Some(later),
            "451 4.4.1 later",
        )
        .await;
        record_attempt(
            &queue,
            id,
            1,
            RecipientState::Delivered,
            None,
            "250 2.0.0 ok",
        )
        .await;

        let stats = queue.stats().await.unwrap();
        assert_eq!(
            stats.recipients,
            RecipientCounts {
                temp_failed: 1,
                delivered: 1,
                ..RecipientCounts::default()
            }
        );
        let not_yet = queue.due(id.shard(), SystemTime::now(), 100).await.unwrap();
        assert!(not_yet.iter().all(|e| e.queue_id != id), "due in an hour");

        assert_eq!(
            queue.retry(&wire, &[]).await.unwrap(),
            1,
            "the delivered one stays"
        );
        let detail = queue.get(&wire).await.unwrap();
        let failed = &detail.recipients[0];
        assert_eq!(failed.state, RecipientState::TempFailed);
        assert_eq!(failed.attempts, 1);
        assert_eq!(failed.last_reply.as_deref(), Some("451 4.4.1 later"));
        assert!(failed.next_attempt.unwrap() * 1000 < later);
        assert_eq!(detail.recipients[1].next_attempt, None);
        let now = queue.due(id.shard(), SystemTime::now(), 100).await.unwrap();
        assert_eq!(now.iter().filter(|e| e.queue_id == id).count(), 1);

        // Cancelling the last live recipient removes the message and its counts.
        assert_eq!(queue.cancel(&wire, &[]).await.unwrap(), 1);
        assert_eq!(queue.stats().await.unwrap(), QueueStats::default());
    }
}
