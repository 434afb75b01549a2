//! [`RpcError`]: a service could not be asked.

use thiserror::Error;

/// A service could not be asked or could not answer: unreachable peer, broken call, contract
/// violation, or a request it refuses.
///
/// Callers answer the SMTP client with a 4xx, as for a temporary failure, but log it apart: it
/// says something about ferrymail itself, not about the remote directory.
#[derive(Debug, Error)]
pub enum RpcError {
    /// The endpoint given to a client is not a usable address.
    #[error("invalid endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint {
        /// The endpoint as given.
        endpoint: String,
        /// Why it was refused.
        reason: String,
    },
    /// The peer could not be reached, or the call broke off.
    #[error("transport failure ({}): {}", .0.code(), .0.message())]
    Transport(#[source] Box<tonic::Status>),
    /// The peer sent a message that breaks the contract (unspecified enum, missing field, ...).
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// The request is malformed or names something unknown (a directory, a list).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The service cannot answer now (starting, overloaded, shutting down).
    #[error("service unavailable: {0}")]
    Unavailable(String),
    /// The service failed while answering.
    #[error("internal error: {0}")]
    Internal(String),
}
