//! One SMTP or LMTP session, shared by relay and MX delivery: the greeting, EHLO/LHLO,
//! STARTTLS, AUTH, then the mail transaction (`transaction`). Callers decide where to
//! connect and which TLS policy applies; this module speaks the protocol.
//!
//! The wire protocol is `mail-send`'s client and `smtp-proto`'s parser; each stage is bounded
//! by its own time limit (`queue.outbound.timeouts.*` for MX hosts, a remote's `timeout`
//! for relays).

use std::time::Duration;

use ferrymail_config::model::outbound::Timeouts;
use ferrymail_tls::dane::DanePolicy;
use ferrymail_tls::{MaybeTls, TlsError, TlsSettings};
use mail_send::{Credentials, SmtpClient};
use smtp_proto::{EXT_START_TLS, EhloResponse, Response};

use super::DeliveryError;

/// A session after the greeting and EHLO/LHLO.
pub(crate) struct Session {
    pub(super) client: SmtpClient<MaybeTls>,
    pub(super) capabilities: EhloResponse<String>,
    pub(super) timeouts: Timeouts,
    lmtp: bool,
    helo: String,
    /// Kept from an earlier transaction: the next one begins with RSET, which also shows the
    /// server has not closed the session meanwhile.
    pub(super) kept: bool,
}

/// Opens a TCP connection to `address:port` within `timeout`, with TLS from the first byte
/// when `implicit` (verifying the certificate unless `allow_invalid_certs`).
pub(crate) async fn connect(
    address: &str,
    port: u16,
    implicit: bool,
    allow_invalid_certs: bool,
    tls: &TlsSettings,
    timeout: Duration,
) -> Result<MaybeTls, DeliveryError> {
    within(
        timeout,
        MaybeTls::connect(address, port, implicit, allow_invalid_certs, tls),
    )
    .await?
    .map_err(DeliveryError::from)
}

impl Session {
    /// Reads the greeting and says EHLO (LHLO when `lmtp`) as `helo`. A greeting other
    /// than `220` is [`DeliveryError::Greeting`].
    pub(crate) async fn open(
        stream: MaybeTls,
        lmtp: bool,
        helo: &str,
        timeouts: Timeouts,
    ) -> Result<Self, DeliveryError> {
        let mut client = SmtpClient {
            stream,
            timeout: timeouts.greeting,
        };
        let greeting = within(timeouts.greeting, client.read())
            .await?
            .map_err(mail_send_error(timeouts.greeting))?;
        if greeting.code != 220 {
            return Err(DeliveryError::Greeting(reply_text(&greeting)));
        }
        let mut session = Self {
            client,
            capabilities: EhloResponse::default(),
            timeouts,
            lmtp,
            helo: helo.to_owned(),
            kept: false,
        };
        session.hello().await?;
        Ok(session)
    }

    async fn hello(&mut self) -> Result<(), DeliveryError> {
        self.client.timeout = self.timeouts.ehlo;
        let reply = if self.lmtp {
            self.client.lhlo(&self.helo).await
        } else {
            self.client.ehlo(&self.helo).await
        };
        self.capabilities = reply.map_err(mail_send_error(self.timeouts.ehlo))?;
        Ok(())
    }

    /// Whether the connection is encrypted.
    pub(crate) fn is_tls(&self) -> bool {
        self.client.stream.is_tls()
    }

    /// Whether the server offers STARTTLS on this (clear-text) connection.
    pub(crate) fn offers_starttls(&self) -> bool {
        !self.is_tls() && self.capabilities.has_capability(EXT_START_TLS)
    }

    /// Upgrades with STARTTLS for host `name`, then says EHLO again (RFC 3207 §4.2). A
    /// refused command is [`DeliveryError::Protocol`], a failed handshake
    /// [`DeliveryError::Tls`]; the session is unusable after either.
    pub(crate) async fn starttls(
        self,
        name: &str,
        allow_invalid_certs: bool,
        tls: &TlsSettings,
    ) -> Result<Self, DeliveryError> {
        self.upgrade(|stream| stream.upgrade(name, allow_invalid_certs, tls))
            .await
    }

    /// Upgrades with STARTTLS accepting only a certificate that satisfies the DANE `policy`
    /// (RFC 7672), then says EHLO again; errors as for [`Session::starttls`].
    pub(crate) async fn starttls_dane(
        self,
        policy: &DanePolicy,
        tls: &TlsSettings,
    ) -> Result<Self, DeliveryError> {
        self.upgrade(|stream| stream.upgrade_dane(policy, tls))
            .await
    }

    /// Sends STARTTLS and runs `handshake` on the connection once the server agreed.
    async fn upgrade<F>(
        mut self,
        handshake: impl FnOnce(MaybeTls) -> F,
    ) -> Result<Self, DeliveryError>
    where
        F: Future<Output = Result<MaybeTls, TlsError>>,
    {
        let limit = self.timeouts.tls;
        self.client.timeout = limit;
        let reply = self
            .client
            .cmd(b"STARTTLS\r\n")
            .await
            .map_err(mail_send_error(limit))?;
        if reply.code != 220 {
            return Err(DeliveryError::Protocol(format!(
                "STARTTLS: {}",
                reply_text(&reply)
            )));
        }
        let SmtpClient { stream, timeout } = self.client;
        let stream = within(limit, handshake(stream)).await??;
        self.client = SmtpClient { stream, timeout };
        self.hello().await?;
        Ok(self)
    }

    /// Authenticates with `credentials` by a mechanism the server offers.
    pub(crate) async fn authenticate(
        &mut self,
        credentials: &Credentials<&str>,
    ) -> Result<(), DeliveryError> {
        self.client.timeout = self.timeouts.ehlo;
        self.client
            .authenticate(credentials, &self.capabilities)
            .await
            .map(|_| ())
            .map_err(mail_send_error(self.timeouts.ehlo))
    }

    /// Whether replies to DATA come one per recipient.
    pub(super) fn is_lmtp(&self) -> bool {
        self.lmtp
    }

    /// Ends the session politely; the outcome is decided already, so errors do not matter.
    pub(crate) async fn quit(mut self) {
        self.client.timeout = self.timeouts.ehlo;
        let _ = self.client.cmd(b"QUIT\r\n").await;
    }
}

/// A reply as recorded for a recipient: `code x.y.z text`.
pub(super) fn reply_text(response: &Response<String>) -> String {
    let [a, b, c] = response.esc;
    if a == 0 {
        format!("{} {}", response.code, response.message)
    } else {
        format!("{} {a}.{b}.{c} {}", response.code, response.message)
    }
}

/// The delivery error of a `mail-send` error, `timeout` being the limit that applied.
pub(super) fn mail_send_error(timeout: Duration) -> impl Fn(mail_send::Error) -> DeliveryError {
    move |error| match error {
        mail_send::Error::Io(e) => DeliveryError::Io(e),
        mail_send::Error::Tls(e) => DeliveryError::Tls(e.to_string()),
        mail_send::Error::Timeout => DeliveryError::Timeout(timeout),
        mail_send::Error::UnexpectedReply(r) | mail_send::Error::AuthenticationFailed(r) => {
            DeliveryError::Protocol(reply_text(&r))
        }
        other => DeliveryError::Protocol(other.to_string()),
    }
}

/// `future`, or [`DeliveryError::Timeout`] once `timeout` has passed.
pub(super) async fn within<T>(
    timeout: Duration,
    future: impl Future<Output = T>,
) -> Result<T, DeliveryError> {
    tokio::time::timeout(timeout, future)
        .await
        .map_err(|_| DeliveryError::Timeout(timeout))
}
