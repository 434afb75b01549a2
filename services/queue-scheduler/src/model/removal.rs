//! Removing a message with no live recipient left, in the transaction that decided it: record,
//! recipients, due entry, its share of the counters, its lease, its quota charges, its
//! Message-ID index entry, and its
//! reference to the body blob (which collection then deletes).

use ferrymail_store::blob::BlobStore;
use ferrymail_store::{StoreError, Transaction};

use crate::model::counters::CounterDelta;
use crate::model::due_index::move_entry;
use crate::model::keys::{Keys, blob_owner};
use crate::model::stored_message::StoredMessage;
use crate::model::{lease, message_id_index, quota};

/// Removes `message` in `tx`, taking its counts out through `delta`.
pub(crate) async fn remove(
    tx: &Transaction,
    keys: &Keys,
    blobs: &BlobStore,
    message: &mut StoredMessage,
    delta: &mut CounterDelta,
) -> Result<(), StoreError> {
    let id = message.record.id;
    for recipient in &message.recipients {
        delta.recipient(recipient.state, -1);
    }
    let record = &mut message.record;
    delta.message(record.size, -1);
    move_entry(tx, keys, record, None)?;
    tx.clear_range(&keys.recipients(&id))?;
    tx.clear(&keys.message(&id))?;
    lease::remove(tx, keys, &id)?;
    message_id_index::remove(tx, keys, &id).await?;
    quota::release(tx, keys, &id).await?;
    blobs.release(tx, &record.blob, &blob_owner(&id)).await?;
    Ok(())
}
