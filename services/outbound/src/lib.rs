//! outbound: delivering one message's recipients to one next hop, and what each recipient's
//! attempt came to.
//!
//! A relay (`relay`: a `remote.<id>` over SMTP or LMTP, with its TLS options and
//! credentials) or the recipient domains' MX hosts (`mx`: MX resolution, MTA-STS policies in
//! `mta_sts`, DANE in `dane`), over sessions kept between messages (`pool`), each message one
//! SMTP/LMTP transaction, pipelined where the server allows (`session`, `transaction`). It
//! knows nothing of the store, leases or retries: the queue-scheduler asks it to deliver and
//! records the [`Outcome`] of each recipient. What it remembers across processes (MTA-STS
//! policies) it keeps through the caller's [`mta_sts::PolicyMemory`].

pub mod dane;
mod deadline;
pub mod host_health;
mod metrics;
pub mod mta_sts;
pub mod mx;
pub mod pool;
pub mod relay;
mod session;
pub mod tls_report;
mod transaction;

pub use deadline::Deadline;
pub use metrics::OutboundMetrics;

use std::time::Duration;

pub use ferrymail_tls::TlsSettings;

/// What one delivery attempt came to for one recipient.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The next hop accepted it (2xx), with its reply.
    Delivered(String),
    /// Try again later: a 4xx reply, a connection failure or a timeout.
    TempFailed(String),
    /// Never: a 5xx reply, or the message expired.
    PermFailed(String),
    /// Not attempted: a throttle holds deliveries back until `until_ms` (Unix milliseconds).
    Deferred {
        /// When to try.
        until_ms: u64,
        /// Which throttle.
        reason: String,
    },
    /// Not handed over: the caller's [`Deadline`] passed before the next hop could take the
    /// message, so the session was given up. Not the next hop's doing: no attempt counts.
    Abandoned(String),
}

impl Outcome {
    /// The outcome of a reply with `code`, described by `text`.
    pub(crate) fn of_reply(code: u16, text: String) -> Self {
        match code {
            200..=299 => Outcome::Delivered(text),
            500..=599 => Outcome::PermFailed(text),
            _ => Outcome::TempFailed(text),
        }
    }

    /// The reply or reason recorded for the recipient.
    pub fn reply(&self) -> &str {
        match self {
            Outcome::Delivered(r)
            | Outcome::TempFailed(r)
            | Outcome::PermFailed(r)
            | Outcome::Abandoned(r) => r,
            Outcome::Deferred { reason, .. } => reason,
        }
    }

    /// The outcome's name in logs: `delivered`, `temp-failed`, `perm-failed`, `throttled` or
    /// `abandoned`.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Delivered(_) => "delivered",
            Outcome::TempFailed(_) => "temp-failed",
            Outcome::PermFailed(_) => "perm-failed",
            Outcome::Deferred { .. } => "throttled",
            Outcome::Abandoned(_) => "abandoned",
        }
    }
}

/// Why a session failed before the remote answered for a recipient.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The network failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The TLS handshake failed.
    #[error("TLS: {0}")]
    Tls(String),
    /// The remote did not answer in time.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The remote said something unexpected, or refused the session.
    #[error("{0}")]
    Protocol(String),
    /// The remote greeted with something other than `220`.
    #[error("greeting: {0}")]
    Greeting(String),
    /// STARTTLS is required (`queue.outbound.tls.starttls = "require"`) and not offered.
    #[error("STARTTLS is required and the server does not offer it")]
    StartTlsNotOffered,
    /// The host has usable DANE TLSA records and does not offer STARTTLS.
    #[error("the host has DANE TLSA records and does not offer STARTTLS")]
    DaneWithoutStartTls,
    /// The remote has credentials, the session is not encrypted (no STARTTLS offered) and
    /// `tls.allow-plain-text` is off: the password was not sent.
    #[error(
        "the session is not encrypted (no STARTTLS offered), so the password was not sent; \
         set tls.allow-plain-text = true to send it in clear text"
    )]
    PlainTextAuth,
    /// The queued body could not be read.
    #[error("reading the queued body: {0}")]
    Body(String),
    /// A session kept from an earlier message failed its RSET (the server closed it while it
    /// was idle): nothing of the message was sent, so another session may carry it.
    #[error("a kept session no longer answers: {0}")]
    KeptSessionClosed(String),
    /// The caller's [`Deadline`] passed before the message was handed over: the session was
    /// given up before the next command that could deliver it (the envelope and DATA, or the
    /// end of data), and the next hop did not take the message.
    #[error("{0}")]
    Abandoned(String),
}

impl From<ferrymail_tls::TlsError> for DeliveryError {
    fn from(error: ferrymail_tls::TlsError) -> Self {
        match error {
            ferrymail_tls::TlsError::Io(e) => DeliveryError::Io(e),
            ferrymail_tls::TlsError::Handshake(e) => DeliveryError::Tls(e),
        }
    }
}
