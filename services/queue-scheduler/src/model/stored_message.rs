//! A message with its recipients, read in one transaction, and how the admin API shows it.

use ferrymail_rpc::queue::{MessageDetail, MessageSummary, RecipientStatus};
use ferrymail_store::{StoreError, Transaction};

use crate::model::keys::Keys;
use crate::model::queue_id::MessageId;
use crate::model::record::{MessageRecord, RecipientRecord};

/// Recipient keys read per range request (recipients are bounded by the envelope check).
const RECIPIENT_PAGE: usize = 1024;

/// A queued message and its recipients, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredMessage {
    /// The message record.
    pub record: MessageRecord,
    /// Its recipients in envelope order.
    pub recipients: Vec<RecipientRecord>,
}

impl StoredMessage {
    /// Reads message `id` and its recipients in `tx`; `None` if there is no such message.
    pub(crate) async fn read(
        tx: &Transaction,
        keys: &Keys,
        id: &MessageId,
    ) -> Result<Option<Self>, StoreError> {
        let Some(value) = tx.get(&keys.message(id)).await? else {
            return Ok(None);
        };
        let record = MessageRecord::decode(*id, &value)?;
        let recipients = read_recipients(tx, keys, id).await?;
        Ok(Some(Self { record, recipients }))
    }

    /// The admin view of the message and each recipient.
    pub fn detail(&self) -> MessageDetail {
        MessageDetail {
            summary: self.record.summary(),
            recipients: self
                .recipients
                .iter()
                .map(|r| RecipientStatus {
                    address: r.recipient.address.clone(),
                    state: r.state,
                    attempts: r.attempts,
                    next_attempt: r.due_ms.map(seconds),
                    last_reply: r.last_reply.clone(),
                })
                .collect(),
        }
    }

    /// Indexes of the recipients `addresses` names (all of them when it is empty); `Err` with
    /// the first address that names no recipient. Addresses compare without regard to ASCII
    /// case, as an administrator types them.
    pub(crate) fn select(&self, addresses: &[String]) -> Result<Vec<usize>, String> {
        if addresses.is_empty() {
            return Ok((0..self.recipients.len()).collect());
        }
        let mut selected = Vec::new();
        for address in addresses {
            let before = selected.len();
            selected.extend(
                self.recipients
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| r.recipient.address.eq_ignore_ascii_case(address))
                    .map(|(i, _)| i),
            );
            if selected.len() == before {
                return Err(address.clone());
            }
        }
        selected.sort_unstable();
        selected.dedup();
        Ok(selected)
    }
}

/// Every recipient of message `id`, in `tx`.
pub(crate) async fn read_recipients(
    tx: &Transaction,
    keys: &Keys,
    id: &MessageId,
) -> Result<Vec<RecipientRecord>, StoreError> {
    let pairs = tx.get_all(&keys.recipients(id), RECIPIENT_PAGE).await?;
    let mut recipients = Vec::with_capacity(pairs.len());
    for pair in pairs {
        let index = keys
            .parse_recipient(&pair.key)
            .ok_or_else(|| StoreError::Corrupt(format!("message {id}: bad recipient key")))?;
        recipients.push(RecipientRecord::decode(index, &pair.value)?);
    }
    Ok(recipients)
}

impl MessageRecord {
    /// The admin view of the message at a glance.
    pub fn summary(&self) -> MessageSummary {
        MessageSummary {
            queue_id: self.id.to_wire(),
            sender: self.envelope.sender.clone(),
            recipients: self.recipients,
            size: self.size,
            arrival: seconds(self.arrival_ms),
            next_attempt: self.due_ms.map(seconds),
            priority: self.envelope.priority,
            held: self.held,
        }
    }
}

/// Unix milliseconds as the admin API's Unix seconds.
fn seconds(ms: u64) -> u64 {
    ms / 1000
}
