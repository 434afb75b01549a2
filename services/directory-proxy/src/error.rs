//! Why a lookup could not get an answer from its server. Every one of these is a
//! *temporary* failure for the SMTP client (4xx), never "unknown user".

/// A failure to talk to a lookup server.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    /// Connecting, TLS or a command took longer than the target's `timeout`.
    #[error("timed out after {0:?}")]
    Timeout(std::time::Duration),
    /// The network failed (refused, reset, closed).
    #[error("network error: {0}")]
    Io(#[from] std::io::Error),
    /// The TLS handshake failed (certificate not trusted, name mismatch, …).
    #[error("TLS error: {0}")]
    Tls(String),
    /// The server ended the session: the stream ended, or it replied `421` (RFC 5321 §3.8),
    /// as servers do when they close an idle connection or shut down.
    #[error("the server closed the connection: {0}")]
    Closed(String),
    /// The server said something the protocol does not allow here.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The connection is not encrypted (the server offers no STARTTLS, or someone on the way
    /// removed it) and the target does not allow passwords in clear text: none was sent.
    #[error(
        "the connection is not encrypted (no STARTTLS offered), so the password was not sent; \
         set tls.allow-plain-text = true to send it in clear text"
    )]
    PlainText,
    /// The server does not offer what the lookup needs (no AUTH mechanism we speak, …).
    #[error("not supported by the server: {0}")]
    Unsupported(String),
}

impl From<ferrymail_tls::TlsError> for ConnectionError {
    fn from(error: ferrymail_tls::TlsError) -> Self {
        match error {
            ferrymail_tls::TlsError::Io(e) => ConnectionError::Io(e),
            ferrymail_tls::TlsError::Handshake(e) => ConnectionError::Tls(e),
        }
    }
}
