//! How a [`QueueError`] crosses the wire, so the client returns the variant the server did.

use tonic::{Code, Status};

use super::{BodyError, QueueError};
use crate::RpcError;
use crate::malformed::Malformed;
use crate::status::{kind, marked};

impl From<QueueError> for Status {
    fn from(error: QueueError) -> Self {
        match error {
            QueueError::QuotaExceeded(message) => {
                marked(Code::ResourceExhausted, "quota-exceeded", message)
            }
            QueueError::Unavailable(message) => marked(Code::Unavailable, "unavailable", message),
            QueueError::InvalidArgument(message) => {
                marked(Code::InvalidArgument, "invalid-argument", message)
            }
            QueueError::NotFound(message) => marked(Code::NotFound, "not-found", message),
            QueueError::Body(error) => marked(Code::Cancelled, "body", error.reason()),
            QueueError::Internal(message) => marked(Code::Internal, "internal", message),
            QueueError::Transport(error) => {
                marked(Code::Unavailable, "transport", error.to_string())
            }
        }
    }
}

impl From<Status> for QueueError {
    fn from(status: Status) -> Self {
        let message = status.message().to_owned();
        match kind(&status) {
            Some("quota-exceeded") => QueueError::QuotaExceeded(message),
            Some("unavailable") => QueueError::Unavailable(message),
            Some("invalid-argument") => QueueError::InvalidArgument(message),
            Some("not-found") => QueueError::NotFound(message),
            Some("body") => QueueError::Body(BodyError::new(message)),
            Some("internal") => QueueError::Internal(message),
            // "transport", or a status that no ferrymail service produced.
            _ => QueueError::Transport(RpcError::Transport(Box::new(status))),
        }
    }
}

impl From<Malformed> for QueueError {
    fn from(malformed: Malformed) -> Self {
        QueueError::Transport(RpcError::Protocol(malformed.0))
    }
}
