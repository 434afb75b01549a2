//! A message about to enter the queue: its records prepared outside any transaction, so that
//! every run of a retried transaction writes the same, and how a transaction writes them.
//!
//! Enqueue writes one in a transaction of its own; a delivery commit writes the notice it
//! sends to the sender (a DSN) in the commit's transaction, so the notice exists exactly when
//! the failure it reports is recorded.

use bytes::Bytes;
use ferrymail_rpc::queue::Envelope;
use ferrymail_store::blob::{BlobId, BlobStore, SmallBlob};
use ferrymail_store::{StoreError, Transaction};

use crate::model::counters::CounterDelta;
use crate::model::due_index::{DueEntry, move_entry};
use crate::model::keys::{Keys, blob_owner};
use crate::model::queue_id::MessageId;
use crate::model::quota::{self, Charge};
use crate::model::record::{MessageRecord, RecipientRecord};
use crate::model::stored_message::StoredMessage;
use crate::model::{enqueued, message_id_index};

/// Where a new message's body is.
#[derive(Debug, Clone)]
pub(crate) enum Body {
    /// Written with the message, in its transaction.
    Small(SmallBlob),
    /// Already in the blob store, unreferenced until the message's transaction names it.
    Streamed {
        /// The blob.
        blob: BlobId,
        /// Its size in bytes.
        size: u64,
    },
}

impl Body {
    fn blob(&self) -> BlobId {
        match self {
            Self::Small(small) => small.id(),
            Self::Streamed { blob, .. } => *blob,
        }
    }

    fn size(&self) -> u64 {
        match self {
            Self::Small(small) => small.size(),
            Self::Streamed { size, .. } => *size,
        }
    }
}

/// What [`NewMessage::write`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Written {
    /// It wrote the message.
    Now,
    /// An earlier run of the same transaction had: nothing was written.
    Before,
}

/// A new message's records, ready to write.
#[derive(Debug, Clone)]
pub(crate) struct NewMessage {
    record: MessageRecord,
    recipients: Vec<RecipientRecord>,
    due_ms: u64,
    body: Body,
    /// The quota groups it is charged to.
    charges: Vec<Charge>,
    /// Its `Message-ID`, normalized for the index (`message_id_index`).
    message_id: Option<String>,
}

impl NewMessage {
    /// `envelope` with `body` (and `prepend` before it), arriving as `id` and kept for
    /// `expire_ms` after it is first due.
    pub(crate) fn new(
        id: MessageId,
        mut envelope: Envelope,
        body: Body,
        prepend: Option<Bytes>,
        expire_ms: u64,
    ) -> Self {
        let arrival_ms = id.unix_millis();
        // A quarantined message is written on hold; the reason is the ingress's to log.
        let held = envelope.quarantine.take().is_some();
        // A hold in the past, or none, makes the message due at once.
        let due_ms = envelope
            .hold_until
            .map_or(arrival_ms, |hold| hold.saturating_mul(1000).max(arrival_ms));
        let recipients = std::mem::take(&mut envelope.recipients)
            .into_iter()
            .zip(0u32..)
            .map(|(recipient, index)| RecipientRecord::pending(index, recipient, due_ms))
            .collect::<Vec<_>>();
        let prepend = prepend.map(Vec::from).unwrap_or_default();
        let record = MessageRecord {
            id,
            envelope,
            size: body.size() + prepend.len() as u64,
            arrival_ms,
            // Counted from the release: a held message (FUTURERELEASE) gets its full lifetime
            // after the hold instead of expiring before its first attempt.
            expiry_ms: due_ms.saturating_add(expire_ms),
            blob: body.blob(),
            prepend,
            delay_notices: 0,
            due_ms: None,
            recipients: u32::try_from(recipients.len()).unwrap_or(u32::MAX),
            held,
        };
        Self {
            record,
            recipients,
            due_ms,
            body,
            charges: Vec::new(),
            message_id: None,
        }
    }

    /// The message, charged to `charges` when it is written.
    pub(crate) fn charged(self, charges: Vec<Charge>) -> Self {
        Self { charges, ..self }
    }

    /// The message, indexed under `message_id` (normalized) when it has one.
    pub(crate) fn with_message_id(self, message_id: Option<String>) -> Self {
        Self { message_id, ..self }
    }

    /// The message's queue id.
    pub(crate) fn id(&self) -> MessageId {
        self.record.id
    }

    /// Its entry in the due index.
    pub(crate) fn due_entry(&self) -> DueEntry {
        DueEntry {
            queue_id: self.record.id,
            shard: self.record.id.shard(),
            priority: self.record.envelope.priority,
            due_ms: self.due_ms,
        }
    }

    /// When it is due in the index: never while it is held.
    fn entry_time(&self) -> Option<u64> {
        (!self.record.held).then_some(self.due_ms)
    }

    /// Whether it is written on hold.
    pub(crate) fn held(&self) -> bool {
        self.record.held
    }

    /// Its size as delivered.
    pub(crate) fn size(&self) -> u64 {
        self.record.size
    }

    /// The message and its recipients as [`NewMessage::write`] stores them.
    pub(crate) fn stored(&self) -> StoredMessage {
        StoredMessage {
            record: MessageRecord {
                due_ms: self.entry_time(),
                ..self.record.clone()
            },
            recipients: self.recipients.clone(),
        }
    }

    /// Its body's chunks, when it is small enough to be written in the enqueue's own
    /// transaction.
    pub(crate) fn small_body(&self) -> Option<&[Bytes]> {
        match &self.body {
            Body::Small(small) => Some(small.chunks()),
            Body::Streamed { .. } => None,
        }
    }

    /// Writes the message in `tx`: quota charges, record, recipients, due entry, counters, body
    /// reference and the record that it was enqueued; aborts with [`quota::QuotaExceeded`]
    /// when a quota is full. Writes nothing if an earlier run of the same transaction
    /// committed although its result was reported unknown ([`Written::Before`]): the message
    /// is queued once, even if it was delivered and removed since, or claimed by a scheduler.
    pub(crate) async fn write(
        &self,
        tx: &Transaction,
        keys: &Keys,
        blobs: &BlobStore,
    ) -> Result<Written, StoreError> {
        let id = self.record.id;
        let message_key = keys.message(&id);
        // The message's own key as well: its enqueue record may be collected while it waits.
        if enqueued::exists(tx, keys, &id).await? || tx.get(&message_key).await?.is_some() {
            return Ok(Written::Before);
        }
        quota::charge(tx, keys, &id, self.record.size, &self.charges).await?;
        let mut delta = CounterDelta::default();
        for recipient in &self.recipients {
            tx.set(&keys.recipient(&id, recipient.index), &recipient.encode())?;
            delta.recipient(recipient.state, 1);
        }
        let mut record = self.record.clone();
        move_entry(tx, keys, &mut record, self.entry_time())?;
        tx.set(&message_key, &record.encode())?;
        delta.message(record.size, 1);
        delta.apply(tx, keys, id.shard())?;
        enqueued::record(tx, keys, &id)?;
        if let Some(message_id) = &self.message_id {
            message_id_index::add(tx, keys, &id, message_id)?;
        }
        let owner = blob_owner(&id);
        match &self.body {
            Body::Small(small) => blobs.write_referenced(tx, small, &owner),
            Body::Streamed { blob, .. } => blobs.reference(tx, blob, &owner).await,
        }
        .map_err(StoreError::from)?;
        Ok(Written::Now)
    }
}
