//! A message held whole until the data-stage filters (milters, MTA hooks) have answered,
//! then queued as they left it — or refused, discarded, or quarantined.

use ferrymail_rpc::queue::QueueId;

use super::data::{Destination, HeldMessage, Upload};
use super::filters::{change_envelope, transaction_facts};
use super::reply::Reply;
use super::{Session, Transaction};
use crate::filter::pipeline::{DataOutcome, Fate, filter_failure};
use crate::message_auth::PendingMessage;

/// What is sent to the queue at once: as much as one socket read brings.
const FORWARD_CHUNK: usize = 64 * 1024;

/// A message the filters let through.
struct Filtered {
    /// Queue it on hold, for this reason.
    quarantine: Option<String>,
    message: Vec<u8>,
    /// This server's `Received` field as it was before the filters.
    received: Vec<u8>,
}

impl Session {
    /// Asks the data-stage filters about a held message, then starts its enqueue as they
    /// left it. `Some` is the answer when the message is not to be queued (refused,
    /// discarded, or a filter's failure); `None` when it is on its way to the queue, or was
    /// never held.
    pub(crate) async fn release_held(&mut self, upload: &mut Upload) -> Option<Reply> {
        let held = match std::mem::replace(
            &mut upload.destination,
            Destination::Discarded(QueueId::new("")),
        ) {
            Destination::Held(held) => *held,
            other => {
                upload.destination = other;
                return None;
            }
        };
        let HeldMessage {
            mut transaction,
            queue_id,
            bytes,
            received,
        } = held;
        upload.destination = Destination::Discarded(queue_id.clone());
        let session = self.session_facts();
        let facts = transaction_facts(&transaction, Some(queue_id.to_string()));
        let outcome = match self.filters.as_deref_mut() {
            Some(filters) => filters.check_message(&session, &facts, bytes).await,
            None => DataOutcome::Proceed {
                message: bytes,
                envelope: Vec::new(),
            },
        };
        let message = match outcome {
            DataOutcome::Refuse(reply) => {
                self.shared.metrics.rejected("filter");
                self.end_filtered_transaction(true).await;
                return Some(reply);
            }
            DataOutcome::Proceed { message, envelope } => {
                if let Err(reply) = change_envelope(&mut transaction, &envelope) {
                    self.shared.metrics.rejected("filter");
                    self.end_filtered_transaction(true).await;
                    return Some(reply);
                }
                message
            }
        };
        let fate = self.filters.as_deref().map(|f| f.fate().clone());
        let fate = fate.unwrap_or_default();
        if fate == Fate::Discard || transaction.recipients.is_empty() {
            self.end_filtered_transaction(false).await;
            return Some(self.discarded(&queue_id));
        }
        if message.len() as u64 > self.settings.max_message_size {
            tracing::warn!(queue_id = %queue_id, size = message.len(), "a filter made the message larger than the size limit; answering 451");
            self.shared.metrics.rejected("filter");
            self.end_filtered_transaction(true).await;
            return Some(filter_failure());
        }
        let quarantine = match fate {
            Fate::Quarantine(reason) => {
                tracing::info!(queue_id = %queue_id, reason, "message quarantined by a filter: queued on hold");
                Some(reason)
            }
            _ => None,
        };
        let filtered = Filtered {
            quarantine,
            message,
            received,
        };
        self.forward_filtered(upload, &transaction, queue_id, filtered)
            .await;
        None
    }

    /// Starts the enqueue of the filtered message and sends it whole.
    async fn forward_filtered(
        &mut self,
        upload: &mut Upload,
        transaction: &Transaction,
        queue_id: QueueId,
        filtered: Filtered,
    ) {
        let Filtered {
            quarantine,
            message,
            received,
        } = filtered;
        upload.destination =
            Destination::Queue(self.start_upload(transaction, queue_id, quarantine));
        upload.size = message.len() as u64;
        // Message authentication judges the client's message as the filters left it; this
        // server's own Received field is not part of it, when the filters left it first.
        let own = if message.starts_with(&received) {
            received.len()
        } else {
            0
        };
        upload.pending = Some(PendingMessage {
            copy: self.message_copy(transaction).await,
            sender: transaction.sender.clone(),
            spf_mail_from: transaction.spf_mail_from.clone(),
        });
        let (ours, theirs) = message.split_at(own);
        if !ours.is_empty() {
            // Sent without passing through authentication's copy.
            let copy = upload.pending.take();
            upload.forward(ours.to_vec()).await;
            upload.pending = copy;
        }
        for chunk in theirs.chunks(FORWARD_CHUNK) {
            upload.forward(chunk.to_vec()).await;
        }
    }
}
