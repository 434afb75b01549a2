//! One connection to a lookup server, whatever its protocol.

mod end_of_stream;
pub(crate) mod imap;
pub(crate) mod smtp;

use async_trait::async_trait;
use ferrymail_rpc::directory::{Answer, Expansion, Mechanism};

pub(crate) use ferrymail_tls::{MaybeTls, TlsSettings};

use crate::error::ConnectionError;
use crate::target::{Protocol, Target};

/// An open, greeted connection that answers lookups.
///
/// `Ok` carries the server's answer — yes, no, or a temporary failure the server itself
/// reported (4xx, `[UNAVAILABLE]`); `Err` means the connection failed and must be dropped.
#[async_trait]
pub(crate) trait Connection: Send {
    /// Checks credentials.
    async fn authenticate(
        &mut self,
        mechanism: Mechanism,
        username: &str,
        secret: &[u8],
    ) -> Result<Answer, ConnectionError>;
    /// Checks that a recipient exists (`RCPT TO`).
    async fn verify_recipient(&mut self, address: &str) -> Result<Answer, ConnectionError>;
    /// `VRFY`.
    async fn vrfy(&mut self, address: &str) -> Result<Expansion, ConnectionError>;
    /// `EXPN`.
    async fn expn(&mut self, address: &str) -> Result<Expansion, ConnectionError>;
    /// Whether the connection may serve another request. False once it has authenticated
    /// a user (an authenticated session must never serve another user), after too many
    /// failed authentications, or after anything unexpected.
    fn reusable(&self) -> bool;
    /// Ends the session politely (QUIT / LOGOUT); errors are irrelevant then.
    async fn close(self: Box<Self>);
}

/// Refuses to send a password on a connection that is not encrypted, unless the target
/// allows it (`tls.allow-plain-text`): STARTTLS that is missing, or was stripped by someone
/// on the way, must not turn into a password in clear text.
pub(crate) fn password_may_be_sent(
    encrypted: bool,
    allow_plain_text: bool,
) -> Result<(), ConnectionError> {
    if encrypted || allow_plain_text {
        Ok(())
    } else {
        Err(ConnectionError::PlainText)
    }
}

/// Opens and greets a connection to `target`.
pub(crate) async fn connect(
    target: &Target,
    tls: &TlsSettings,
) -> Result<Box<dyn Connection>, ConnectionError> {
    let timeout = target.timeout;
    tokio::time::timeout(timeout, async {
        Ok::<Box<dyn Connection>, ConnectionError>(match target.protocol {
            Protocol::Imap => Box::new(imap::ImapConnection::connect(target, tls).await?),
            Protocol::Smtp | Protocol::Lmtp => {
                Box::new(smtp::SmtpConnection::connect(target, tls).await?)
            }
        })
    })
    .await
    .map_err(|_| ConnectionError::Timeout(timeout))?
}
