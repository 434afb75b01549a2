//! The mail transaction of a session (RFC 5321 §3.3, RFC 2033 for LMTP): MAIL FROM with the
//! sender's DSN parameters, one RCPT TO per recipient, DATA with the body streamed from the
//! blob store and dot-stuffed, and the reply (one per accepted recipient over LMTP), turned
//! into one outcome per recipient. Shared by relay and MX delivery.

use bytes::Bytes;
use ferrymail_rpc::queue::{BodyType, DsnReturn, Envelope, Notify, Recipient};
use futures::{Stream, StreamExt};
use smtp_proto::{EXT_8BIT_MIME, EXT_DSN, EXT_PIPELINING, EXT_SMTP_UTF8, Response};
use tokio::io::AsyncWriteExt;

use super::session::{Session, mail_send_error, reply_text, within};
use super::{Deadline, DeliveryError, Outcome};
use ferrymail_tls::MaybeTls;

/// One outcome per recipient: the answers given, and for recipients without one `failure`,
/// or a temporary failure saying that the session ended.
pub(crate) fn settle(outcomes: Vec<Option<Outcome>>, failure: Option<Outcome>) -> Vec<Outcome> {
    let failure =
        failure.unwrap_or_else(|| Outcome::TempFailed("the session ended without a reply".into()));
    outcomes
        .into_iter()
        .map(|outcome| outcome.unwrap_or_else(|| failure.clone()))
        .collect()
}

/// The outcome of the recipients left without an answer when a session failed with `error`
/// (described with `place`): abandoned when the caller's deadline passed, otherwise a
/// temporary failure.
pub(crate) fn unanswered(place: &str, error: DeliveryError) -> Outcome {
    match error {
        DeliveryError::Abandoned(reason) => Outcome::Abandoned(format!("{place}: {reason}")),
        error => Outcome::TempFailed(format!("{place}: {error}")),
    }
}

impl Session {
    /// One mail transaction, leaving the session open for the next. A session kept from an
    /// earlier transaction is reset first, and one that fails the reset is
    /// [`DeliveryError::KeptSessionClosed`] with nothing of the message sent. Fills
    /// `outcomes` (by recipient index) as the server answers; an `Err` leaves the recipients
    /// without an answer undecided. Once `deadline` has passed, the transaction is given up
    /// ([`DeliveryError::Abandoned`]) before the envelope, before DATA and before the end of
    /// data, so that the next hop never takes a message its sender no longer may hand over.
    pub(crate) async fn transact(
        &mut self,
        envelope: &Envelope,
        recipients: &[Recipient],
        body: impl Stream<Item = Result<Bytes, impl std::fmt::Display>>,
        deadline: &Deadline,
        outcomes: &mut [Option<Outcome>],
    ) -> Result<(), DeliveryError> {
        // Pipelined, DATA goes with the envelope: this check is the one before DATA.
        deadline.check("the envelope")?;
        let dsn = self.capabilities.has_capability(EXT_DSN);
        let reset = std::mem::take(&mut self.kept);
        let accepted = if self.capabilities.has_capability(EXT_PIPELINING) {
            self.envelope_pipelined(envelope, recipients, dsn, reset, outcomes)
                .await?
        } else {
            if reset {
                self.reset()
                    .await
                    .map_err(|e| DeliveryError::KeptSessionClosed(e.to_string()))?;
            }
            self.envelope_in_turn(envelope, recipients, dsn, deadline, outcomes)
                .await?
        };
        let Some(accepted) = accepted else {
            return Ok(());
        };
        let limit = self.timeouts.data;
        let sending = send_body(&mut self.client.stream, body, deadline, limit);
        within(limit, sending).await??;
        self.read_data_replies(&accepted, outcomes).await
    }

    /// MAIL, each RCPT and DATA, each waiting for its reply. The indexes of the recipients
    /// accepted once the server is ready for the body (354), or `None` when the transaction
    /// ended before it, every recipient answered.
    async fn envelope_in_turn(
        &mut self,
        envelope: &Envelope,
        recipients: &[Recipient],
        dsn: bool,
        deadline: &Deadline,
        outcomes: &mut [Option<Outcome>],
    ) -> Result<Option<Vec<usize>>, DeliveryError> {
        let reply = self
            .command(&self.mail_line(envelope, dsn), self.timeouts.mail_from)
            .await?;
        if reply.code / 100 != 2 {
            refuse_sender(&reply, outcomes);
            return Ok(None);
        }
        let mut accepted = Vec::new();
        for (index, rcpt) in recipients.iter().enumerate() {
            let reply = self
                .command(&rcpt_line(rcpt, dsn), self.timeouts.rcpt_to)
                .await?;
            answer_rcpt(index, &reply, &mut accepted, outcomes);
        }
        if accepted.is_empty() {
            return Ok(None);
        }
        deadline.check("DATA")?;
        let reply = self.command("DATA", self.timeouts.data).await?;
        Ok(ready_for_body(&reply, accepted, outcomes))
    }

    /// The same as [`Session::envelope_in_turn`] in one round trip (PIPELINING, RFC 2920):
    /// MAIL, every RCPT and DATA written at once, then their replies read in order.
    async fn envelope_pipelined(
        &mut self,
        envelope: &Envelope,
        recipients: &[Recipient],
        dsn: bool,
        reset: bool,
        outcomes: &mut [Option<Outcome>],
    ) -> Result<Option<Vec<usize>>, DeliveryError> {
        // The reset of a kept session goes in the same batch: checking that the server is
        // still there then costs no round trip of its own.
        let mut batch = String::from(if reset { "RSET\r\n" } else { "" });
        batch.push_str(&self.mail_line(envelope, dsn));
        batch.push_str("\r\n");
        for rcpt in recipients {
            batch.push_str(&rcpt_line(rcpt, dsn));
            batch.push_str("\r\n");
        }
        batch.push_str("DATA\r\n");
        let expected = recipients.len() + 2 + usize::from(reset);
        let all = self.exchange(&batch, expected).await.map_err(|error| {
            // Nothing was accepted before the failure: another session may carry the message.
            if reset {
                DeliveryError::KeptSessionClosed(error.to_string())
            } else {
                error
            }
        })?;
        let replies = match (reset, all.split_first()) {
            (false, _) => all.as_slice(),
            (true, Some((rset, rest))) if rset.code / 100 == 2 => rest,
            (true, Some((rset, _))) => {
                let refusal = format!("RSET: {}", reply_text(rset));
                return Err(DeliveryError::KeptSessionClosed(refusal));
            }
            (true, None) => return Err(DeliveryError::KeptSessionClosed("no reply".into())),
        };
        let [mail, rcpts @ .., data] = replies else {
            return Err(DeliveryError::Protocol(
                "too few replies to a pipelined envelope".into(),
            ));
        };
        let mut accepted = Vec::new();
        if mail.code / 100 != 2 {
            // The server answers the RCPTs too (503), but the sender's refusal is the reason.
            refuse_sender(mail, outcomes);
        } else {
            for (index, reply) in rcpts.iter().enumerate() {
                answer_rcpt(index, reply, &mut accepted, outcomes);
            }
        }
        if accepted.is_empty() {
            if data.code == 354 {
                // A server that took DATA without a recipient waits for a message: an empty one
                // ends it (RFC 2920 §3.1), and its reply carries no recipient's outcome.
                self.command(".", self.timeouts.data).await?;
            }
            return Ok(None);
        }
        Ok(ready_for_body(data, accepted, outcomes))
    }

    /// Sends the pipelined commands of `batch` and reads their `expected` replies.
    async fn exchange(
        &mut self,
        batch: &str,
        expected: usize,
    ) -> Result<Vec<Response<String>>, DeliveryError> {
        let limit = self.timeouts.mail_from.max(self.timeouts.rcpt_to);
        let stream = &mut self.client.stream;
        within(limit, stream.write_all(batch.as_bytes())).await??;
        within(limit, stream.flush()).await??;
        within(limit, self.client.read_many(expected))
            .await?
            .map_err(mail_send_error(limit))
    }

    /// RSET: the server forgets any transaction begun, and shows it is still there (a
    /// session kept for reuse may have been closed by the server meanwhile).
    async fn reset(&mut self) -> Result<(), DeliveryError> {
        let reply = self.command("RSET", self.timeouts.ehlo).await?;
        if reply.code / 100 == 2 {
            Ok(())
        } else {
            Err(DeliveryError::Protocol(format!(
                "RSET: {}",
                reply_text(&reply)
            )))
        }
    }

    /// The MAIL command for `envelope`, with the parameters the server supports.
    fn mail_line(&self, envelope: &Envelope, dsn: bool) -> String {
        let mut mail = format!("MAIL FROM:<{}>", envelope.sender);
        if envelope.body_type == BodyType::EightBitMime
            && self.capabilities.has_capability(EXT_8BIT_MIME)
        {
            mail.push_str(" BODY=8BITMIME");
        }
        if envelope.smtputf8 && self.capabilities.has_capability(EXT_SMTP_UTF8) {
            mail.push_str(" SMTPUTF8");
        }
        if dsn {
            mail.push_str(&dsn_mail_parameters(envelope));
        }
        mail
    }

    /// The reply after the body: one for all (SMTP), or one per accepted recipient in RCPT
    /// order (LMTP).
    async fn read_data_replies(
        &mut self,
        accepted: &[usize],
        outcomes: &mut [Option<Outcome>],
    ) -> Result<(), DeliveryError> {
        let limit = self.timeouts.data;
        let error = mail_send_error(limit);
        if self.is_lmtp() {
            let replies = within(limit, self.client.read_many(accepted.len()))
                .await?
                .map_err(&error)?;
            for (&index, reply) in accepted.iter().zip(&replies) {
                outcomes[index] = Some(Outcome::of_reply(reply.code, reply_text(reply)));
            }
        } else {
            let reply = within(limit, self.client.read()).await?.map_err(&error)?;
            let outcome = Outcome::of_reply(reply.code, reply_text(&reply));
            for &index in accepted {
                outcomes[index] = Some(outcome.clone());
            }
        }
        Ok(())
    }

    async fn command(
        &mut self,
        line: &str,
        limit: std::time::Duration,
    ) -> Result<Response<String>, DeliveryError> {
        self.client.timeout = limit;
        self.client
            .cmd(format!("{line}\r\n").as_bytes())
            .await
            .map_err(mail_send_error(limit))
    }
}

/// The RCPT command for `rcpt`.
fn rcpt_line(rcpt: &Recipient, dsn: bool) -> String {
    let mut line = format!("RCPT TO:<{}>", rcpt.address);
    if dsn {
        line.push_str(&dsn_rcpt_parameters(rcpt));
    }
    line
}

/// A refused sender answers for every recipient.
fn refuse_sender(reply: &Response<String>, outcomes: &mut [Option<Outcome>]) {
    let outcome = Outcome::of_reply(reply.code, format!("MAIL FROM: {}", reply_text(reply)));
    outcomes.fill(Some(outcome));
}

/// Records the reply to recipient `index`'s RCPT: accepted, or its outcome.
fn answer_rcpt(
    index: usize,
    reply: &Response<String>,
    accepted: &mut Vec<usize>,
    outcomes: &mut [Option<Outcome>],
) {
    if reply.code / 100 == 2 {
        accepted.push(index);
    } else {
        outcomes[index] = Some(Outcome::of_reply(reply.code, reply_text(reply)));
    }
}

/// The `accepted` recipients when the reply to DATA asks for the body; otherwise their
/// outcome is that reply.
fn ready_for_body(
    reply: &Response<String>,
    accepted: Vec<usize>,
    outcomes: &mut [Option<Outcome>],
) -> Option<Vec<usize>> {
    if reply.code == 354 {
        return Some(accepted);
    }
    let outcome = Outcome::of_reply(reply.code, format!("DATA: {}", reply_text(reply)));
    for index in accepted {
        outcomes[index] = Some(outcome.clone());
    }
    None
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

/// Writes the body dot-stuffed (RFC 5321 §4.5.2), as the blob store yields it, then the
/// terminating `.`; each write is bounded by `timeout` (the whole body by the caller). The
/// terminator is not sent once `deadline` has passed: closing the session without it makes
/// the server discard the message (RFC 5321 §3.8).
///
/// Chunks are gathered into writes of up to [`BODY_WRITE`] bytes, the terminator with the
/// last: a small message then costs one write, not one per stored chunk.
async fn send_body(
    stream: &mut MaybeTls,
    body: impl Stream<Item = Result<Bytes, impl std::fmt::Display>>,
    deadline: &Deadline,
    timeout: std::time::Duration,
) -> Result<(), DeliveryError> {
    let mut stuffer = DotStuffer::default();
    let mut out = Vec::new();
    let mut body = std::pin::pin!(body);
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| DeliveryError::Body(e.to_string()))?;
        stuffer.push(&chunk, &mut out);
        if out.len() >= BODY_WRITE {
            within(timeout, stream.write_all(&out)).await??;
            out.clear();
        }
    }
    // A long transfer may have outlasted the deadline: checked just before the end of data.
    deadline.check("the end of data")?;
    out.extend_from_slice(stuffer.finish());
    within(timeout, stream.write_all(&out)).await??;
    within(timeout, stream.flush()).await??;
    Ok(())
}

/// How many body bytes are gathered before a write.
const BODY_WRITE: usize = 64 * 1024;

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
    /// Appends `chunk`, stuffed, to `out`.
    fn push(&mut self, mut chunk: &[u8], out: &mut Vec<u8>) {
        out.reserve(chunk.len() + 16);
        while let Some(&first) = chunk.first() {
            if self.line_start && first == b'.' {
                out.push(b'.');
            }
            match memchr::memchr(b'\n', chunk) {
                Some(end) => {
                    out.extend_from_slice(&chunk[..=end]);
                    chunk = &chunk[end + 1..];
                    self.line_start = true;
                }
                None => {
                    out.extend_from_slice(chunk);
                    self.line_start = false;
                    return;
                }
            }
        }
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
        let mut out = Vec::new();
        for chunk in [&b".start\r\nmid.dle\r"[..], b"\n..", b"", b"\r\n", b".\n.x"] {
            stuffer.push(chunk, &mut out);
        }
        out.extend_from_slice(stuffer.finish());
        assert_eq!(out, b"..start\r\nmid.dle\r\n...\r\n..\n..x\r\n.\r\n");
        let mut unterminated = DotStuffer::default();
        let mut out = Vec::new();
        unterminated.push(b"no newline", &mut out);
        out.extend_from_slice(unterminated.finish());
        assert_eq!(out, b"no newline\r\n.\r\n");
    }
}
