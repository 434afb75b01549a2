//! How errors cross the wire: each variant travels as a gRPC status code plus a
//! `ferrymail-error` metadata entry naming the variant.
//!
//! The code alone is ambiguous: tonic itself answers UNAVAILABLE when it cannot connect, so
//! the marker is what lets a client hand back the very variant the server returned. A status
//! without a marker did not come from a ferrymail service (tonic, a proxy): it is a transport
//! failure.

use tonic::{Code, Status, metadata::MetadataValue};

use crate::RpcError;
use crate::malformed::Malformed;

const ERROR_KIND: &str = "ferrymail-error";

/// Builds a status carrying the variant marker `kind`.
pub(crate) fn marked(code: Code, kind: &'static str, message: impl Into<String>) -> Status {
    let mut status = Status::new(code, message);
    status
        .metadata_mut()
        .insert(ERROR_KIND, MetadataValue::from_static(kind));
    status
}

/// The variant marker of a status, when a ferrymail service set one.
pub(crate) fn kind(status: &Status) -> Option<&str> {
    status.metadata().get(ERROR_KIND)?.to_str().ok()
}

/// Status for a request that broke the contract.
pub(crate) fn invalid_request(malformed: Malformed) -> Status {
    RpcError::InvalidArgument(malformed.0).into()
}

impl From<RpcError> for Status {
    fn from(error: RpcError) -> Self {
        match error {
            // A client-side setup error has no meaning for the caller of a server: it is the
            // server's internal failure.
            RpcError::InvalidEndpoint { .. } => {
                marked(Code::Internal, "internal", error.to_string())
            }
            RpcError::Transport(status) => {
                marked(Code::Unavailable, "transport", status.message().to_owned())
            }
            RpcError::Protocol(message) => marked(Code::Internal, "protocol", message),
            RpcError::InvalidArgument(message) => {
                marked(Code::InvalidArgument, "invalid-argument", message)
            }
            RpcError::Unavailable(message) => marked(Code::Unavailable, "unavailable", message),
            RpcError::Internal(message) => marked(Code::Internal, "internal", message),
        }
    }
}

impl From<Status> for RpcError {
    fn from(status: Status) -> Self {
        let message = status.message().to_owned();
        match kind(&status) {
            Some("protocol") => RpcError::Protocol(message),
            Some("invalid-argument") => RpcError::InvalidArgument(message),
            Some("unavailable") => RpcError::Unavailable(message),
            Some("internal") => RpcError::Internal(message),
            // "transport", or no marker at all.
            _ => RpcError::Transport(Box::new(status)),
        }
    }
}

impl From<Malformed> for RpcError {
    fn from(malformed: Malformed) -> Self {
        RpcError::Protocol(malformed.0)
    }
}
