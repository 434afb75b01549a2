//! The outcome of an administrator's change to one message (retry, cancel).

use ferrymail_rpc::queue::QueueError;

use crate::model::queue_id::MessageId;
use crate::service::not_found;

/// What a change to one message found; `T` is what a done change reports.
pub(crate) enum Change<T = u32> {
    /// The message was there; usually how many recipients changed.
    Done(T),
    /// No such message.
    NoMessage,
    /// The message has no recipient of this address.
    NoRecipient(String),
}

impl<T> Change<T> {
    /// What was done, or the error the caller gets.
    pub(crate) fn into_result(self, id: &MessageId) -> Result<T, QueueError> {
        match self {
            Change::Done(count) => Ok(count),
            Change::NoMessage => Err(not_found(id)),
            Change::NoRecipient(address) => Err(QueueError::NotFound(format!(
                "message {id} has no recipient {address:?}"
            ))),
        }
    }
}
