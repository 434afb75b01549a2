//! Relay delivery: one message to a `remote.<id>` over SMTP or LMTP, with the remote's TLS
//! options and credentials, the body streamed from the blob store.
//!
//! One connection per message: `limits.requests` (messages per connection) is therefore always
//! honoured; connection pooling comes later. The wire protocol is `mail-send`'s client and
//! `smtp-proto`'s parser; the transaction and the classification of replies are ours.

use bytes::Bytes;
use ferrymail_config::model::remote::{Remote, RemoteProtocol};
use ferrymail_rpc::queue::{BodyType, DsnReturn, Envelope, Notify, Recipient};
use ferrymail_store::blob::BlobError;
use futures::{Stream, StreamExt};
use mail_send::{Credentials, SmtpClient};
use smtp_proto::{EXT_8BIT_MIME, EXT_DSN, EXT_SMTP_UTF8, EXT_START_TLS, EhloResponse, Response};
use tokio::io::AsyncWriteExt;

use super::{DeliveryError, Outcome};
use ferrymail_tls::{MaybeTls, TlsSettings};

/// What one relay delivery needs besides the body.
pub(crate) struct RelayJob<'a> {
    /// The remote's id, for replies and logs.
    pub id: &'a str,
    /// The remote.
    pub remote: &'a Remote,
    /// Our name in EHLO/LHLO.
    pub helo: &'a str,
    /// The envelope.
    pub envelope: &'a Envelope,
    /// The recipients to deliver, in order.
    pub recipients: &'a [Recipient],
}

/// Delivers the message to the job's recipients; one outcome per recipient, in order.
pub(crate) async fn deliver(
    job: &RelayJob<'_>,
    tls: &TlsSettings,
    body: impl Stream<Item = Result<Bytes, BlobError>>,
) -> Vec<Outcome> {
    let mut outcomes: Vec<Option<Outcome>> = vec![None; job.recipients.len()];
    let result = session(job, tls, body, &mut outcomes).await;
    let failure = result.err().map(|error| {
        format!(
            "remote.{} ({}:{}): {error}",
            job.id, job.remote.address, job.remote.port
        )
    });
    outcomes
        .into_iter()
        .map(|outcome| {
            outcome.unwrap_or_else(|| {
                Outcome::TempFailed(
                    failure
                        .clone()
                        .unwrap_or_else(|| "the session ended without a reply".into()),
                )
            })
        })
        .collect()
}

/// A reply as recorded for a recipient: `code x.y.z text`.
fn reply_text(response: &Response<String>) -> String {
    let [a, b, c] = response.esc;
    if a == 0 {
        format!("{} {}", response.code, response.message)
    } else {
        format!("{} {a}.{b}.{c} {}", response.code, response.message)
    }
}

fn mail_send_error(timeout: std::time::Duration) -> impl Fn(mail_send::Error) -> DeliveryError {
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

/// Runs the session, filling `outcomes` as the remote answers for recipients; an `Err`
/// leaves the recipients without an answer to be failed temporarily.
async fn session(
    job: &RelayJob<'_>,
    tls: &TlsSettings,
    body: impl Stream<Item = Result<Bytes, BlobError>>,
    outcomes: &mut [Option<Outcome>],
) -> Result<(), DeliveryError> {
    let remote = job.remote;
    let timeout = remote.timeout;
    let error = mail_send_error(timeout);
    let lmtp = match remote.protocol {
        RemoteProtocol::Smtp => false,
        RemoteProtocol::Lmtp => true,
        RemoteProtocol::Imap => {
            return Err(DeliveryError::Protocol(
                "an imap remote cannot receive mail".into(),
            ));
        }
    };
    let stream = tokio::time::timeout(
        timeout,
        MaybeTls::connect(
            &remote.address,
            remote.port,
            remote.tls_implicit,
            remote.allow_invalid_certs,
            tls,
        ),
    )
    .await
    .map_err(|_| DeliveryError::Timeout(timeout))??;
    let mut client = SmtpClient { stream, timeout };
    let greeting = within(timeout, client.read()).await?.map_err(&error)?;
    if greeting.code != 220 {
        return Err(DeliveryError::Protocol(format!(
            "greeting: {}",
            reply_text(&greeting)
        )));
    }
    let mut capabilities = hello(&mut client, lmtp, job.helo).await.map_err(&error)?;
    // Opportunistic STARTTLS: upgrade when offered, carry on in clear text when not.
    if !client.stream.is_tls() && capabilities.has_capability(EXT_START_TLS) {
        let reply = client.cmd(b"STARTTLS\r\n").await.map_err(&error)?;
        if reply.code != 220 {
            return Err(DeliveryError::Protocol(format!(
                "STARTTLS: {}",
                reply_text(&reply)
            )));
        }
        let SmtpClient { stream, timeout } = client;
        let stream = stream
            .upgrade(&remote.address, remote.allow_invalid_certs, tls)
            .await?;
        client = SmtpClient { stream, timeout };
        capabilities = hello(&mut client, lmtp, job.helo).await.map_err(&error)?;
    }
    if let Some(auth) = &remote.auth {
        let credentials = Credentials::new(auth.username.clone(), auth.secret.expose().to_owned());
        client
            .authenticate(&credentials, &capabilities)
            .await
            .map_err(&error)?;
    }

    let envelope = job.envelope;
    let mut mail = format!("MAIL FROM:<{}>", envelope.sender);
    if envelope.body_type == BodyType::EightBitMime && capabilities.has_capability(EXT_8BIT_MIME) {
        mail.push_str(" BODY=8BITMIME");
    }
    if envelope.smtputf8 && capabilities.has_capability(EXT_SMTP_UTF8) {
        mail.push_str(" SMTPUTF8");
    }
    let dsn = capabilities.has_capability(EXT_DSN);
    if dsn {
        mail.push_str(&dsn_mail_parameters(envelope));
    }
    let reply = command(&mut client, &mail).await.map_err(&error)?;
    if reply.code / 100 != 2 {
        // Refusing the sender answers for every recipient.
        let outcome = Outcome::of_reply(reply.code, format!("MAIL FROM: {}", reply_text(&reply)));
        outcomes.fill(Some(outcome));
        quit(client).await;
        return Ok(());
    }
    let mut accepted = Vec::new();
    for (index, rcpt) in job.recipients.iter().enumerate() {
        let mut line = format!("RCPT TO:<{}>", rcpt.address);
        if dsn {
            line.push_str(&dsn_rcpt_parameters(rcpt));
        }
        let reply = command(&mut client, &line).await.map_err(&error)?;
        if reply.code / 100 == 2 {
            accepted.push(index);
        } else {
            outcomes[index] = Some(Outcome::of_reply(reply.code, reply_text(&reply)));
        }
    }
    if accepted.is_empty() {
        quit(client).await;
        return Ok(());
    }
    let reply = command(&mut client, "DATA").await.map_err(&error)?;
    if reply.code != 354 {
        let outcome = Outcome::of_reply(reply.code, format!("DATA: {}", reply_text(&reply)));
        for &index in &accepted {
            outcomes[index] = Some(outcome.clone());
        }
        quit(client).await;
        return Ok(());
    }
    within(timeout, send_body(&mut client.stream, body, timeout)).await??;
    if lmtp {
        // LMTP answers once per accepted recipient, in RCPT order.
        let replies = within(timeout, client.read_many(accepted.len()))
            .await?
            .map_err(&error)?;
        for (&index, reply) in accepted.iter().zip(&replies) {
            outcomes[index] = Some(Outcome::of_reply(reply.code, reply_text(reply)));
        }
    } else {
        let reply = within(timeout, client.read()).await?.map_err(&error)?;
        let outcome = Outcome::of_reply(reply.code, reply_text(&reply));
        for &index in &accepted {
            outcomes[index] = Some(outcome.clone());
        }
    }
    quit(client).await;
    Ok(())
}

async fn within<T>(
    timeout: std::time::Duration,
    future: impl Future<Output = T>,
) -> Result<T, DeliveryError> {
    tokio::time::timeout(timeout, future)
        .await
        .map_err(|_| DeliveryError::Timeout(timeout))
}

async fn hello(
    client: &mut SmtpClient<MaybeTls>,
    lmtp: bool,
    name: &str,
) -> mail_send::Result<EhloResponse<String>> {
    if lmtp {
        client.lhlo(name).await
    } else {
        client.ehlo(name).await
    }
}

async fn command(
    client: &mut SmtpClient<MaybeTls>,
    line: &str,
) -> mail_send::Result<Response<String>> {
    client.cmd(format!("{line}\r\n").as_bytes()).await
}

/// RET and ENVID for a MAIL command (RFC 3461), as the sender gave them.
fn dsn_mail_parameters(envelope: &Envelope) -> String {
    let mut parameters = String::new();
    match envelope.ret {
        Some(DsnReturn::Full) => parameters.push_str(" RET=FULL"),
        Some(DsnReturn::Headers) => parameters.push_str(" RET=HDRS"),
        None => {}
    }
    if let Some(envid) = &envelope.envid {
        parameters.push_str(&format!(" ENVID={}", xtext(envid)));
    }
    parameters
}

/// NOTIFY and ORCPT for a RCPT command (RFC 3461), as the sender gave them.
fn dsn_rcpt_parameters(recipient: &Recipient) -> String {
    let mut parameters = String::new();
    match recipient.notify {
        Notify::Default => {}
        Notify::Never => parameters.push_str(" NOTIFY=NEVER"),
        Notify::On(on) => {
            let conditions: Vec<&str> = [
                (on.success(), "SUCCESS"),
                (on.failure(), "FAILURE"),
                (on.delay(), "DELAY"),
            ]
            .into_iter()
            .filter_map(|(set, name)| set.then_some(name))
            .collect();
            parameters.push_str(&format!(" NOTIFY={}", conditions.join(",")));
        }
    }
    if let Some(orcpt) = &recipient.orcpt {
        parameters.push_str(&format!(" ORCPT=rfc822;{}", xtext(orcpt)));
    }
    parameters
}

/// `text` as xtext (RFC 3461 §4): printable ASCII but `+` and `=` as is, every other byte as
/// `+HH`. Written here because the SMTP crates only decode it.
fn xtext(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if (b'!'..=b'~').contains(&byte) && byte != b'+' && byte != b'=' {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("+{byte:02X}"));
        }
    }
    encoded
}

/// Ends the session politely; the outcome is decided already, so errors do not matter.
async fn quit(mut client: SmtpClient<MaybeTls>) {
    let _ = client.cmd(b"QUIT\r\n").await;
}

/// Writes the body dot-stuffed (RFC 5321 §4.5.2), chunk by chunk as the blob store yields it,
/// then the terminating `.`; each write is bounded by `timeout` (the whole body by the caller).
async fn send_body(
    stream: &mut MaybeTls,
    body: impl Stream<Item = Result<Bytes, BlobError>>,
    timeout: std::time::Duration,
) -> Result<(), DeliveryError> {
    let mut stuffer = DotStuffer::default();
    let mut body = std::pin::pin!(body);
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| DeliveryError::Body(e.to_string()))?;
        let out = stuffer.push(&chunk);
        within(timeout, stream.write_all(&out)).await??;
    }
    within(timeout, stream.write_all(stuffer.finish())).await??;
    within(timeout, stream.flush()).await??;
    Ok(())
}

/// Dot-stuffing across chunk boundaries: a line starting with `.` gets another `.`.
#[derive(Debug)]
struct DotStuffer {
    /// The next byte starts a line.
    line_start: bool,
}

impl Default for DotStuffer {
    fn default() -> Self {
        Self { line_start: true }
    }
}

impl DotStuffer {
    /// `chunk`, stuffed.
    fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(chunk.len() + 16);
        for &byte in chunk {
            if self.line_start && byte == b'.' {
                out.push(b'.');
            }
            out.push(byte);
            self.line_start = byte == b'\n';
        }
        out
    }

    /// The end of data: a line break first unless the body ended with one.
    fn finish(&self) -> &'static [u8] {
        if self.line_start {
            b".\r\n"
        } else {
            b"\r\n.\r\n"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dsn_parameters_travel_on_xtext_encoded() {
        assert_eq!(xtext("George @Tax+ME=.GOV"), "George+20@Tax+2BME+3D.GOV");
        assert_eq!(xtext("é"), "+C3+A9");
        let envelope = Envelope {
            ret: Some(DsnReturn::Headers),
            envid: Some("QQ 314159".into()),
            ..Envelope::default()
        };
        assert_eq!(
            dsn_mail_parameters(&envelope),
            " RET=HDRS ENVID=QQ+20314159"
        );
        assert_eq!(dsn_mail_parameters(&Envelope::default()), "");
        let recipient = Recipient {
            address: "bob@example.net".into(),
            notify: Notify::On(
                ferrymail_rpc::queue::NotifyOn::new(false, true, true)
                    .unwrap_or_else(|| unreachable!()),
            ),
            orcpt: Some("Bob@Example.NET".into()),
        };
        assert_eq!(
            dsn_rcpt_parameters(&recipient),
            " NOTIFY=FAILURE,DELAY ORCPT=rfc822;Bob@Example.NET"
        );
        let never = Recipient {
            notify: Notify::Never,
            ..Recipient::new("a@b")
        };
        assert_eq!(dsn_rcpt_parameters(&never), " NOTIFY=NEVER");
    }

    #[test]
    fn dots_are_stuffed_across_chunks() {
        let mut stuffer = DotStuffer::default();
        let mut out = stuffer.push(b".start\r\nmid.dle\r");
        out.extend(stuffer.push(b"\n.."));
        out.extend(stuffer.push(b"\r\n"));
        out.extend_from_slice(stuffer.finish());
        assert_eq!(out, b"..start\r\nmid.dle\r\n...\r\n.\r\n");
        let mut unterminated = DotStuffer::default();
        let mut out = unterminated.push(b"no newline");
        out.extend_from_slice(unterminated.finish());
        assert_eq!(out, b"no newline\r\n.\r\n");
    }
}
