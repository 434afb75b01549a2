//! What can go wrong with a milter: every case ends the milter's connection and becomes the
//! verdict `tempfail-on-error` says.

use std::time::Duration;

/// Why a milter conversation failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum MilterError {
    /// The milter could not be reached or the connection broke.
    #[error("network error: {0}")]
    Io(#[from] std::io::Error),
    /// The TLS handshake failed.
    #[error("{0}")]
    Tls(#[from] ferrymail_tls::TlsError),
    /// The milter took longer than the configured time limit.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The milter closed the connection in the middle of a packet or a conversation.
    #[error("the milter closed the connection")]
    Closed,
    /// A packet longer than `options.max-response-size`.
    #[error("a packet of {size} bytes is longer than max-response-size ({limit})")]
    TooLarge { size: u64, limit: u64 },
    /// A packet that does not follow the protocol.
    #[error("malformed reply: {0}")]
    Malformed(String),
    /// A reply the protocol does not allow at this step.
    #[error("unexpected reply {0:?} at this step")]
    Unexpected(char),
    /// An action the milter did not negotiate, or one outside what was offered.
    #[error("action not negotiated: {0}")]
    NotNegotiated(String),
}
