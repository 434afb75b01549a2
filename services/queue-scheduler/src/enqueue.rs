//! Enqueue: the body streamed into a blob, then the message made durable in one transaction.
//!
//! Until that transaction commits, nothing names the blob: a body that fails mid-stream is
//! deleted by the blob write itself, and a blob left by a process that died, or by a commit
//! that failed, stays unreferenced and is collected after the grace period. A message is
//! therefore either whole (record, recipients, due entry, counters and blob reference) or
//! absent.

use std::sync::Arc;
use std::time::SystemTime;

use ferrymail_rpc::queue::{BodyError, BodyStream, Envelope, QueueError};
use ferrymail_store::StoreError;
use ferrymail_store::blob::{BlobError, BlobId};
use futures::StreamExt;

use crate::counters::CounterDelta;
use crate::due_index::move_entry;
use crate::envelope_check;
use crate::keys::blob_owner;
use crate::queue_id::MessageId;
use crate::record::{MessageRecord, RecipientRecord};
use crate::service::Queue;
use crate::store_failure::from_blob;

/// Everything the enqueue transaction writes, prepared outside it so that every run of the
/// closure writes the same.
struct Plan {
    record: MessageRecord,
    recipients: Vec<RecipientRecord>,
    due_ms: u64,
}

impl Queue {
    /// Queues `envelope` with `body`, arriving at `now`; returns once the message is durable.
    pub(crate) async fn enqueue_message(
        &self,
        mut envelope: Envelope,
        body: BodyStream,
        now: SystemTime,
    ) -> Result<MessageId, QueueError> {
        envelope_check::check(&envelope)?;
        let (blob, size) = self.write_body(body).await?;
        let id = MessageId::generate(now);
        let arrival_ms = id.unix_millis();
        // A hold in the past, or none, makes the message due at once.
        let due_ms = envelope
            .hold_until
            .map_or(arrival_ms, |hold| hold.saturating_mul(1000).max(arrival_ms));
        let recipients = std::mem::take(&mut envelope.recipients)
            .into_iter()
            .zip(0u32..)
            .map(|(recipient, index)| RecipientRecord::pending(index, recipient, due_ms))
            .collect::<Vec<_>>();
        let expire_ms = u64::try_from(self.expire().as_millis()).unwrap_or(u64::MAX);
        let record = MessageRecord {
            id,
            envelope,
            size,
            arrival_ms,
            // Counted from the release: a held message (FUTURERELEASE) gets its full lifetime
            // after the hold instead of expiring before its first attempt.
            expiry_ms: due_ms.saturating_add(expire_ms),
            blob,
            due_ms: None,
            recipients: u32::try_from(recipients.len()).unwrap_or(u32::MAX),
        };
        let plan = Arc::new(Plan {
            record,
            recipients,
            due_ms,
        });
        let (keys, blobs) = (self.keys.clone(), self.blobs.clone());
        self.store
            .transact(move |tx| {
                let (plan, keys, blobs) = (plan.clone(), keys.clone(), blobs.clone());
                Box::pin(async move {
                    let id = plan.record.id;
                    let message_key = keys.message(&id);
                    if tx.get(&message_key).await?.is_some() {
                        // An earlier run of this transaction committed although its result was
                        // reported unknown: the message is queued, once.
                        return Ok(());
                    }
                    let mut delta = CounterDelta::default();
                    for recipient in &plan.recipients {
                        tx.set(&keys.recipient(&id, recipient.index), &recipient.encode())?;
                        delta.recipient(recipient.state, 1);
                    }
                    let mut record = plan.record.clone();
                    move_entry(tx, &keys, &mut record, Some(plan.due_ms))?;
                    tx.set(&message_key, &record.encode())?;
                    delta.message(record.size, 1);
                    delta.apply(tx, &keys, id.shard())?;
                    blobs
                        .reference(tx, &record.blob, &blob_owner(&id))
                        .await
                        .map_err(StoreError::from)
                })
            })
            .await
            .map_err(|e| from_blob("enqueue", BlobError::from(e)))?;
        tracing::debug!(queue_id = %id, size, "message queued");
        self.metrics.enqueued();
        self.wake.notify_one();
        Ok(id)
    }

    /// Streams `body` into a new blob; returns it with the body's size.
    async fn write_body(&self, body: BodyStream) -> Result<(BlobId, u64), QueueError> {
        let mut size = 0u64;
        let counted = body.inspect(|piece| {
            if let Ok(piece) = piece {
                size += piece.len() as u64;
            }
        });
        match self.blobs.write(counted).await {
            Ok(blob) => Ok((blob, size)),
            Err(BlobError::Body(error)) => {
                // The blob write deleted what it had stored; nothing else was written.
                let error = match error.downcast::<BodyError>() {
                    Ok(body) => *body,
                    Err(other) => BodyError::new(other.to_string()),
                };
                tracing::debug!(%error, "enqueue abandoned: the body stream failed");
                Err(QueueError::Body(error))
            }
            Err(error) => Err(from_blob("enqueue", error)),
        }
    }
}
