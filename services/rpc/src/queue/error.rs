//! [`QueueError`] and [`BodyError`].

use thiserror::Error;

use crate::RpcError;

/// Why the queue did not do what was asked.
#[derive(Debug, Error)]
pub enum QueueError {
    /// A queue quota would be exceeded (ingress answers 452).
    #[error("queue quota exceeded: {0}")]
    QuotaExceeded(String),
    /// The queue cannot accept or answer now (ingress answers 451).
    #[error("queue unavailable: {0}")]
    Unavailable(String),
    /// The request is malformed.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// No such message (or recipient).
    #[error("not found: {0}")]
    NotFound(String),
    /// The message body could not be read to its end; nothing was queued.
    #[error("message body aborted: {0}")]
    Body(#[from] BodyError),
    /// The queue failed while answering.
    #[error("internal queue error: {0}")]
    Internal(String),
    /// The queue could not be asked (client side): unreachable, broken call, contract violation.
    #[error(transparent)]
    Transport(#[from] RpcError),
}

/// The message body stream failed before its end: the client went away mid-DATA, or the stream
/// broke the contract. The enqueue must be abandoned and nothing committed.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("{reason}")]
pub struct BodyError {
    reason: String,
}

impl BodyError {
    /// A body error for `reason`.
    pub fn new(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
        }
    }

    /// Why the body failed.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl From<std::io::Error> for BodyError {
    fn from(error: std::io::Error) -> Self {
        Self::new(error.to_string())
    }
}
