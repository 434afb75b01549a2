//! The outcome of an administrator's change to one message (retry, cancel).

use ferrymail_rpc::queue::QueueError;

use crate::queue_id::MessageId;
use crate::service::not_found;

/// What a change to one message found.
pub(crate) enum Change {
    /// The message was there; this many recipients changed.
    Done(u32),
    /// No such message.
    NoMessage,
    /// The message has no recipient of this address.
    NoRecipient(String),
}

impl Change {
    /// The count, or the error the caller gets.
    pub(crate) fn into_result(self, id: &MessageId) -> Result<u32, QueueError> {
        match self {
            Change::Done(count) => Ok(count),
            Change::NoMessage => Err(not_found(id)),
            Change::NoRecipient(address) => Err(QueueError::NotFound(format!(
                "message {id} has no recipient {address:?}"
            ))),
        }
    }
}
