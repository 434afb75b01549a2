//! SMTP and LMTP lookups: AUTH against a submission server, recipient validation with
//! `MAIL FROM:<>` / `RCPT TO`, VRFY and EXPN. The wire protocol is `mail-send`'s client
//! and `smtp-proto`'s parser; only the classification of replies is ours.

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use ferrymail_rpc::directory::{Answer, Expansion, Mechanism, RemoteReply, Verdict};
use mail_send::SmtpClient;
use smtp_proto::{AUTH_LOGIN, AUTH_PLAIN, EXT_START_TLS, EhloResponse, Response};

use super::{Connection, MaybeTls, TlsSettings};
use crate::error::ConnectionError;
use crate::target::{Protocol, Target};

/// A greeted SMTP or LMTP session.
pub(crate) struct SmtpConnection {
    client: SmtpClient<MaybeTls>,
    capabilities: EhloResponse<String>,
    lmtp: bool,
    max_rcpt: u32,
    max_auth_errors: u32,
    /// `MAIL FROM:<>` was accepted and no `RSET` followed.
    in_transaction: bool,
    rcpts: u32,
    auth_errors: u32,
    /// Set after a successful AUTH or anything unexpected: never reuse then.
    spent: bool,
}

fn mail_send_error(error: mail_send::Error) -> ConnectionError {
    match error {
        mail_send::Error::Io(e) => ConnectionError::Io(e),
        mail_send::Error::Tls(e) => ConnectionError::Tls(e.to_string()),
        mail_send::Error::Timeout => ConnectionError::Timeout(std::time::Duration::ZERO),
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

/// RCPT and AUTH results: 2xx yes, 5xx no, anything else a temporary failure.
fn verdict(code: u16) -> Verdict {
    match code {
        200..=299 => Verdict::Yes,
        500..=599 => Verdict::No,
        _ => Verdict::TemporaryFailure,
    }
}

/// VRFY/EXPN results, as RFC 5321 §3.5 defines them.
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
        550 | 551 | 553 | 500 | 502 => Expansion::NotFound { reply },
        400..=499 => Expansion::TemporaryFailure { reply },
        // Other refusals (syntax, authentication required) do not answer the question.
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
            stream,
            timeout: target.timeout,
        };
        let greeting = client.read().await.map_err(mail_send_error)?;
        if greeting.code != 220 {
            return Err(ConnectionError::Protocol(format!(
                "greeting refused: {}",
                reply_of(&greeting).text
            )));
        }
        let lmtp = target.protocol == Protocol::Lmtp;
        let mut capabilities = hello(&mut client, lmtp, &target.helo_name).await?;
        if !client.stream.is_tls() && capabilities.has_capability(EXT_START_TLS) {
            let reply = client.cmd(b"STARTTLS\r\n").await.map_err(mail_send_error)?;
            if reply.code != 220 {
                return Err(ConnectionError::Protocol(format!(
                    "STARTTLS refused: {}",
                    reply_of(&reply).text
                )));
            }
            let SmtpClient { stream, timeout } = client;
            let stream = stream
                .upgrade(&target.address, target.allow_invalid_certs, tls)
                .await?;
            client = SmtpClient { stream, timeout };
            capabilities = hello(&mut client, lmtp, &target.helo_name).await?;
        }
        Ok(Self {
            client,
            capabilities,
            lmtp,
            max_rcpt: target.max_rcpt.max(1),
            max_auth_errors: target.max_auth_errors,
            in_transaction: false,
            rcpts: 0,
            auth_errors: 0,
            spent: false,
        })
    }

    async fn command(&mut self, line: &str) -> Result<Response<String>, ConnectionError> {
        let result = self
            .client
            .cmd(format!("{line}\r\n").as_bytes())
            .await
            .map_err(mail_send_error);
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
                let mut message = Vec::with_capacity(username.len() + secret.len() + 2);
                message.push(0);
                message.extend_from_slice(username.as_bytes());
                message.push(0);
                message.extend_from_slice(secret);
                self.command(&format!("AUTH PLAIN {}", BASE64.encode(&message)))
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
                self.command(&BASE64.encode(secret)).await
            }
        }
    }
}

async fn hello(
    client: &mut SmtpClient<MaybeTls>,
    lmtp: bool,
    name: &str,
) -> Result<EhloResponse<String>, ConnectionError> {
    let result = if lmtp {
        client.lhlo(name).await
    } else {
        client.ehlo(name).await
    };
    result.map_err(mail_send_error)
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
            Verdict::TemporaryFailure => {
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
        Ok(Answer::new(verdict(reply.code)).with_reply(reply_of(&reply)))
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

    #[test]
    fn vrfy_codes() {
        assert!(
            matches!(expansion(&response(250, "Alice <alice@example.org>")), Expansion::Found { values, .. } if values == ["Alice <alice@example.org>"])
        );
        assert!(matches!(
            expansion(&response(252, "Try RCPT instead")),
            Expansion::CannotTell { .. }
        ));
        for code in [550, 551, 553, 500, 502] {
            assert!(
                matches!(expansion(&response(code, "no")), Expansion::NotFound { .. }),
                "{code}"
            );
        }
        assert!(matches!(
            expansion(&response(451, "later")),
            Expansion::TemporaryFailure { .. }
        ));
        assert!(matches!(
            expansion(&response(501, "syntax")),
            Expansion::CannotTell { .. }
        ));
    }

    #[test]
    fn rcpt_codes() {
        assert_eq!(verdict(250), Verdict::Yes);
        assert_eq!(verdict(550), Verdict::No);
        assert_eq!(verdict(451), Verdict::TemporaryFailure);
        assert_eq!(verdict(354), Verdict::TemporaryFailure);
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
