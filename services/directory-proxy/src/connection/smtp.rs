//! SMTP and LMTP lookups: AUTH against a submission server, recipient validation with
//! `MAIL FROM:<>` / `RCPT TO`, VRFY and EXPN. The wire protocol is `mail-send`'s client
//! and `smtp-proto`'s parser; only the classification of replies is ours.

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use ferrymail_rpc::directory::{Answer, Expansion, Mechanism, RemoteReply, Verdict};
use mail_send::SmtpClient;
use smtp_proto::{AUTH_LOGIN, AUTH_PLAIN, EXT_START_TLS, EhloResponse, Response};
use zeroize::Zeroizing;

use super::end_of_stream::EndAware;
use super::{Connection, MaybeTls, TlsSettings, password_may_be_sent};
use crate::error::ConnectionError;
use crate::target::{Protocol, Target};

/// The client's stream: TLS or not, noting when the server ends it.
type Stream = EndAware<MaybeTls>;

/// A greeted SMTP or LMTP session.
pub(crate) struct SmtpConnection {
    client: SmtpClient<Stream>,
    capabilities: EhloResponse<String>,
    lmtp: bool,
    max_rcpt: u32,
    max_auth_errors: u32,
    /// Passwords may be sent without encryption (`tls.allow-plain-text`).
    allow_plain_text: bool,
    /// `MAIL FROM:<>` was accepted and no `RSET` followed.
    in_transaction: bool,
    rcpts: u32,
    auth_errors: u32,
    /// Set after a successful AUTH or anything unexpected: never reuse then.
    spent: bool,
}

/// `error` from `mail-send` on `stream`: an unparseable reply at the end of the stream is
/// the server closing the connection, not a protocol error.
fn mail_send_error(error: mail_send::Error, stream: &Stream) -> ConnectionError {
    match error {
        mail_send::Error::Io(e) => ConnectionError::Io(e),
        mail_send::Error::Tls(e) => ConnectionError::Tls(e.to_string()),
        mail_send::Error::Timeout => ConnectionError::Timeout(std::time::Duration::ZERO),
        mail_send::Error::UnparseableReply if stream.ended() => {
            ConnectionError::Closed("end of stream".into())
        }
        other => ConnectionError::Protocol(other.to_string()),
    }
}

/// The remote's reply as the RPC carries it: code, enhanced status, text.
pub(crate) fn reply_of(response: &Response<String>) -> RemoteReply {
    let [a, b, c] = response.esc;
    let text = if a == 0 {
        response.message.clone()
    } else {
        format!("{a}.{b}.{c} {}", response.message)
    };
    RemoteReply::smtp(response.code, text)
}

/// Whether a refusal says the mailbox does not exist: an enhanced status `5.1.x` (bad
/// mailbox, domain or address syntax), or without one the codes RFC 5321 gives for it.
/// `5.1.7` and `5.1.8` are about the sender, which is the proxy's own `MAIL FROM:<>`.
fn says_unknown(reply: &Response<String>) -> bool {
    match reply.esc {
        [5, 1, detail] => !matches!(detail, 7 | 8),
        [0, _, _] => matches!(reply.code, 550 | 551 | 553),
        _ => false,
    }
}

/// Whether a refusal is the mailbox's own: it exists but is disabled, full or takes no
/// message of this size (`5.2.x`; `552` without an enhanced status).
fn says_mailbox_refuses(reply: &Response<String>) -> bool {
    match reply.esc {
        [5, 2, _] => true,
        [0, _, _] => reply.code == 552,
        _ => false,
    }
}

/// What a reply to `RCPT TO` says about the recipient (README, "Recipient checks").
/// Only "no such user" is a `No`, cached as such; a mailbox that refuses is `Refused`,
/// passed on and not cached; every other refusal (a policy on the proxy's own session,
/// a sequence error, a system problem) says nothing about the recipient and is temporary.
fn rcpt_verdict(reply: &Response<String>) -> Verdict {
    match reply.code {
        200..=299 => Verdict::Yes,
        500..=599 if says_unknown(reply) => Verdict::No,
        500..=599 if says_mailbox_refuses(reply) => Verdict::Refused,
        _ => Verdict::TemporaryFailure,
    }
}

/// Whether the server did not understand a command in this state (`500`–`504`, `5.5.x`):
/// the session is not where the proxy thinks it is.
fn out_of_step(reply: &Response<String>) -> bool {
    matches!(reply.code, 500..=504) || matches!(reply.esc, [5, 5, _])
}

/// VRFY/EXPN results, as RFC 5321 §3.5 defines them. As for RCPT, only a refusal that
/// says the mailbox does not exist is "not found"; an unknown or unimplemented command, a
/// policy refusal and the like do not answer the question.
fn expansion(response: &Response<String>) -> Expansion {
    let reply = Some(reply_of(response));
    match response.code {
        250 | 251 => Expansion::Found {
            values: response
                .message
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(String::from)
                .collect(),
            reply,
        },
        // "Cannot VRFY user, but will accept message": says nothing about existence.
        252 => Expansion::CannotTell { reply },
        400..=499 => Expansion::TemporaryFailure { reply },
        500..=599 if says_unknown(response) => Expansion::NotFound { reply },
        _ => Expansion::CannotTell { reply },
    }
}

/// The VRFY/EXPN argument as an RFC 5321 `String`: an atom as is, anything else quoted
/// (Dovecot refuses a bare address, since `@` is not an atom character).
fn smtp_string(text: &str) -> String {
    let atext = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c);
    if !text.is_empty() && text.chars().all(atext) {
        text.to_string()
    } else {
        format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

/// Refuses input that would smuggle a second command into ours.
fn single_line(text: &str) -> Result<&str, ConnectionError> {
    if text.contains(['\r', '\n']) {
        Err(ConnectionError::Protocol(
            "line breaks are not allowed in a lookup".into(),
        ))
    } else {
        Ok(text)
    }
}

impl SmtpConnection {
    /// Connects, reads the greeting, says EHLO/LHLO and upgrades with STARTTLS when the
    /// connection is not already encrypted and the server offers it.
    pub(crate) async fn connect(
        target: &Target,
        tls: &TlsSettings,
    ) -> Result<Self, ConnectionError> {
        let stream = MaybeTls::connect(
            &target.address,
            target.port,
            target.tls_implicit,
            target.allow_invalid_certs,
            tls,
        )
        .await?;
        let mut client = SmtpClient {
            stream: EndAware::new(stream),
            timeout: target.timeout,
        };
        let greeting = client
            .read()
            .await
            .map_err(|e| mail_send_error(e, &client.stream))?;
        if greeting.code != 220 {
            return Err(ConnectionError::Protocol(format!(
                "greeting refused: {}",
                reply_of(&greeting).text
            )));
        }
        let lmtp = target.protocol == Protocol::Lmtp;
        let mut capabilities = hello(&mut client, lmtp, &target.helo_name).await?;
        if !client.stream.get_ref().is_tls() && capabilities.has_capability(EXT_START_TLS) {
            let reply = client
                .cmd(b"STARTTLS\r\n")
                .await
                .map_err(|e| mail_send_error(e, &client.stream))?;
            if reply.code != 220 {
                return Err(ConnectionError::Protocol(format!(
                    "STARTTLS refused: {}",
                    reply_of(&reply).text
                )));
            }
            let SmtpClient { stream, timeout } = client;
            let stream = stream
                .into_inner()
                .upgrade(&target.address, target.allow_invalid_certs, tls)
                .await?;
            client = SmtpClient {
                stream: EndAware::new(stream),
                timeout,
            };
            capabilities = hello(&mut client, lmtp, &target.helo_name).await?;
        }
        Ok(Self {
            client,
            capabilities,
            lmtp,
            max_rcpt: target.max_rcpt.max(1),
            max_auth_errors: target.max_auth_errors,
            allow_plain_text: target.allow_plain_text,
            in_transaction: false,
            rcpts: 0,
            auth_errors: 0,
            spent: false,
        })
    }

    /// Sends `line` and reads the reply.
    async fn command(&mut self, line: &str) -> Result<Response<String>, ConnectionError> {
        self.send(format!("{line}\r\n").as_bytes()).await
    }

    /// [`Self::command`] for a line that carries credentials: every copy of it is wiped.
    async fn secret_command(
        &mut self,
        line: Zeroizing<String>,
    ) -> Result<Response<String>, ConnectionError> {
        let mut bytes = Zeroizing::new(Vec::with_capacity(line.len() + 2));
        bytes.extend_from_slice(line.as_bytes());
        bytes.extend_from_slice(b"\r\n");
        self.send(&bytes).await
    }

    /// Sends a command line and reads the reply. A `421` is the server closing the session,
    /// whenever it comes (an idle timeout announced before our command, a shutdown): an
    /// error, so the connection is never reused and a pooled one is replaced.
    async fn send(&mut self, line: &[u8]) -> Result<Response<String>, ConnectionError> {
        let result = match self.client.cmd(line).await {
            Ok(reply) if reply.code == 421 => Err(ConnectionError::Closed(reply_of(&reply).text)),
            Ok(reply) => Ok(reply),
            Err(error) => Err(mail_send_error(error, &self.client.stream)),
        };
        if result.is_err() {
            self.spent = true;
        }
        result
    }

    /// Ends a mail transaction, if one is open.
    async fn reset(&mut self) -> Result<(), ConnectionError> {
        if self.in_transaction {
            let reply = self.command("RSET").await?;
            if reply.code / 100 != 2 {
                self.spent = true;
                return Err(ConnectionError::Protocol(format!(
                    "RSET refused: {}",
                    reply_of(&reply).text
                )));
            }
            self.in_transaction = false;
            self.rcpts = 0;
        }
        Ok(())
    }

    async fn sasl(
        &mut self,
        mechanism: Mechanism,
        username: &str,
        secret: &[u8],
    ) -> Result<Response<String>, ConnectionError> {
        match mechanism {
            Mechanism::Plain => {
                let mut message =
                    Zeroizing::new(Vec::with_capacity(username.len() + secret.len() + 2));
                message.push(0);
                message.extend_from_slice(username.as_bytes());
                message.push(0);
                message.extend_from_slice(secret);
                let encoded = Zeroizing::new(BASE64.encode(&*message));
                self.secret_command(Zeroizing::new(format!("AUTH PLAIN {}", *encoded)))
                    .await
            }
            Mechanism::Login => {
                let reply = self.command("AUTH LOGIN").await?;
                if reply.code != 334 {
                    return Ok(reply);
                }
                let reply = self.command(&BASE64.encode(username)).await?;
                if reply.code != 334 {
                    return Ok(reply);
                }
                self.secret_command(Zeroizing::new(BASE64.encode(secret)))
                    .await
            }
        }
    }
}

async fn hello(
    client: &mut SmtpClient<Stream>,
    lmtp: bool,
    name: &str,
) -> Result<EhloResponse<String>, ConnectionError> {
    let result = if lmtp {
        client.lhlo(name).await
    } else {
        client.ehlo(name).await
    };
    result.map_err(|e| mail_send_error(e, &client.stream))
}

#[async_trait]
impl Connection for SmtpConnection {
    async fn authenticate(
        &mut self,
        mechanism: Mechanism,
        username: &str,
        secret: &[u8],
    ) -> Result<Answer, ConnectionError> {
        single_line(username)?;
        if self.lmtp {
            return Err(ConnectionError::Unsupported(
                "LMTP has no AUTH; use an smtp or imap directory".into(),
            ));
        }
        password_may_be_sent(self.client.stream.get_ref().is_tls(), self.allow_plain_text)?;
        let offered = self.capabilities.auth_mechanisms;
        let mechanism = match mechanism {
            Mechanism::Plain if offered & AUTH_PLAIN != 0 => Mechanism::Plain,
            Mechanism::Login if offered & AUTH_LOGIN != 0 => Mechanism::Login,
            _ if offered & AUTH_PLAIN != 0 => Mechanism::Plain,
            _ if offered & AUTH_LOGIN != 0 => Mechanism::Login,
            _ => {
                return Err(ConnectionError::Unsupported(
                    "the server offers neither AUTH PLAIN nor AUTH LOGIN".into(),
                ));
            }
        };
        self.reset().await?;
        let reply = self.sasl(mechanism, username, secret).await?;
        // 535 is the permanent "bad credentials"; other 5xx (538 encryption required, 534
        // mechanism too weak) say nothing about the credentials, so they are temporary.
        let verdict = match reply.code {
            235 => Verdict::Yes,
            535 => Verdict::No,
            _ => Verdict::TemporaryFailure,
        };
        match verdict {
            Verdict::Yes => self.spent = true,
            Verdict::No => {
                self.auth_errors += 1;
                if self.auth_errors >= self.max_auth_errors {
                    self.spent = true;
                }
            }
            Verdict::TemporaryFailure | Verdict::Refused | Verdict::Blocked => {
                if reply.code == 334 {
                    // A challenge we did not expect: the session is mid-exchange.
                    self.spent = true;
                }
            }
        }
        Ok(Answer::new(verdict).with_reply(reply_of(&reply)))
    }

    async fn verify_recipient(&mut self, address: &str) -> Result<Answer, ConnectionError> {
        single_line(address)?;
        if self.in_transaction && self.rcpts >= self.max_rcpt {
            self.reset().await?;
        }
        if !self.in_transaction {
            let reply = self.command("MAIL FROM:<>").await?;
            if reply.code / 100 != 2 {
                // The server will not take a transaction (e.g. 530 authentication required):
                // that is no answer about the recipient.
                self.spent = true;
                return Ok(Answer::temporary_failure().with_reply(reply_of(&reply)));
            }
            self.in_transaction = true;
        }
        let reply = self.command(&format!("RCPT TO:<{address}>")).await?;
        self.rcpts += 1;
        if out_of_step(&reply) {
            self.spent = true;
        }
        Ok(Answer::new(rcpt_verdict(&reply)).with_reply(reply_of(&reply)))
    }

    async fn vrfy(&mut self, address: &str) -> Result<Expansion, ConnectionError> {
        single_line(address)?;
        let reply = self
            .command(&format!("VRFY {}", smtp_string(address)))
            .await?;
        Ok(expansion(&reply))
    }

    async fn expn(&mut self, address: &str) -> Result<Expansion, ConnectionError> {
        single_line(address)?;
        let reply = self
            .command(&format!("EXPN {}", smtp_string(address)))
            .await?;
        Ok(expansion(&reply))
    }

    fn reusable(&self) -> bool {
        !self.spent
    }

    async fn close(mut self: Box<Self>) {
        let _ = self.client.cmd(b"QUIT\r\n").await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(code: u16, message: &str) -> Response<String> {
        Response {
            code,
            esc: [0, 0, 0],
            message: message.to_string(),
        }
    }

    fn enhanced(code: u16, esc: [u8; 3]) -> Response<String> {
        Response {
            code,
            esc,
            message: "text".to_string(),
        }
    }

    #[test]
    fn vrfy_codes() {
        assert!(
            matches!(expansion(&response(250, "Alice <alice@example.org>")), Expansion::Found { values, .. } if values == ["Alice <alice@example.org>"])
        );
        assert!(matches!(
            expansion(&response(252, "Try RCPT instead")),
            Expansion::CannotTell { .. }
        ));
        for code in [550, 551, 553] {
            assert!(
                matches!(expansion(&response(code, "no")), Expansion::NotFound { .. }),
                "{code}"
            );
        }
        assert!(matches!(
            expansion(&enhanced(550, [5, 1, 1])),
            Expansion::NotFound { .. }
        ));
        assert!(matches!(
            expansion(&response(451, "later")),
            Expansion::TemporaryFailure { .. }
        ));
        // Syntax, an unknown or unimplemented command, a policy: no answer about existence.
        for reply in [
            response(501, "syntax"),
            response(500, "unknown command"),
            response(502, "not implemented"),
            enhanced(550, [5, 7, 1]),
        ] {
            assert!(
                matches!(expansion(&reply), Expansion::CannotTell { .. }),
                "{reply:?}"
            );
        }
    }

    #[test]
    fn only_no_such_user_is_a_no() {
        assert_eq!(rcpt_verdict(&response(250, "ok")), Verdict::Yes);
        assert_eq!(rcpt_verdict(&enhanced(250, [2, 1, 5])), Verdict::Yes);
        for unknown in [
            enhanced(550, [5, 1, 1]),
            enhanced(550, [5, 1, 2]),
            enhanced(553, [5, 1, 3]),
            enhanced(551, [5, 1, 6]),
            enhanced(554, [5, 1, 10]),
            // Servers without enhanced status codes: RFC 5321's "mailbox unavailable".
            response(550, "no such user"),
            response(551, "user not local"),
            response(553, "mailbox name not allowed"),
        ] {
            assert_eq!(rcpt_verdict(&unknown), Verdict::No, "{unknown:?}");
        }
        for refusal in [
            enhanced(552, [5, 2, 2]),
            enhanced(550, [5, 2, 1]),
            enhanced(552, [5, 2, 3]),
            response(552, "mailbox full"),
        ] {
            assert_eq!(rcpt_verdict(&refusal), Verdict::Refused, "{refusal:?}");
        }
        for temporary in [
            response(451, "later"),
            enhanced(452, [4, 2, 2]),
            enhanced(450, [4, 1, 1]),
            // About the proxy's own session, not the recipient.
            enhanced(550, [5, 7, 1]),
            enhanced(554, [5, 7, 1]),
            enhanced(503, [5, 5, 1]),
            response(503, "bad sequence of commands"),
            enhanced(550, [5, 1, 8]),
            enhanced(553, [5, 1, 7]),
            enhanced(554, [5, 3, 0]),
            enhanced(550, [5, 4, 1]),
            enhanced(550, [5, 0, 0]),
            response(554, "transaction failed"),
            response(354, "go ahead"),
        ] {
            assert_eq!(
                rcpt_verdict(&temporary),
                Verdict::TemporaryFailure,
                "{temporary:?}"
            );
        }
    }

    #[test]
    fn a_sequence_or_syntax_error_means_the_session_is_out_of_step() {
        assert!(out_of_step(&response(503, "bad sequence")));
        assert!(out_of_step(&enhanced(501, [5, 5, 4])));
        assert!(out_of_step(&enhanced(550, [5, 5, 0])));
        assert!(!out_of_step(&enhanced(550, [5, 1, 1])));
        assert!(!out_of_step(&enhanced(552, [5, 2, 2])));
    }

    #[test]
    fn strings_are_quoted_unless_atoms() {
        assert_eq!(smtp_string("alice"), "alice");
        assert_eq!(smtp_string("alice@example.org"), "\"alice@example.org\"");
        assert_eq!(smtp_string("a\"b"), "\"a\\\"b\"");
    }

    #[test]
    fn enhanced_codes_are_kept_in_the_reply() {
        let r = Response {
            code: 550,
            esc: [5, 1, 1],
            message: "<x@y> User doesn't exist".into(),
        };
        assert_eq!(reply_of(&r).text, "5.1.1 <x@y> User doesn't exist");
    }
}
