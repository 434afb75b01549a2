//! AUTH PLAIN and AUTH LOGIN, checked by the `session.auth.directory`.
//!
//! Every buffer that holds credentials — the command line and SASL responses as received,
//! their base64 text, the decoded bytes — is wiped once used, so a password does not linger
//! in freed memory; the password itself travels on in a [`SecretSlice`], wiped when the
//! request is dropped.

use std::time::Instant;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use ferrymail_rpc::directory::{AuthRequest, Mechanism, Verdict};
use secrecy::SecretSlice;
use smtp_proto::request::receiver::{LineReceiver, MAX_LINE_LENGTH};
use smtp_proto::{AUTH_LOGIN, AUTH_PLAIN};
use zeroize::{Zeroize, Zeroizing};

use super::reply::Reply;
use super::{End, Session};

/// Decoded credentials; the secret never reaches a log and is wiped when dropped.
struct Credentials {
    username: String,
    secret: SecretSlice<u8>,
    authzid: Option<String>,
}

/// `authzid NUL authcid NUL passwd` (RFC 4616).
fn parse_plain(decoded: &[u8]) -> Option<Credentials> {
    let mut parts = decoded.splitn(3, |&b| b == 0);
    let (authzid, username, secret) = (parts.next()?, parts.next()?, parts.next()?);
    let username = String::from_utf8(username.to_vec()).ok()?;
    let authzid = String::from_utf8(authzid.to_vec()).ok()?;
    (!username.is_empty()).then(|| Credentials {
        username,
        secret: SecretSlice::from(secret.to_vec()),
        authzid: (!authzid.is_empty()).then_some(authzid),
    })
}

/// Decodes base64 SASL data into a buffer wiped when dropped.
fn decode(text: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    BASE64.decode(text.trim_ascii()).ok().map(Zeroizing::new)
}

/// Escapes a client-given name for the fixed-format log line.
fn loggable(text: &str) -> String {
    text.chars()
        .take(128)
        .flat_map(char::escape_default)
        .collect()
}

impl Session {
    /// Reads one line of a SASL exchange; `None` when the client cancelled with `*`.
    async fn sasl_line(&mut self, challenge: &str) -> Result<Option<Zeroizing<Vec<u8>>>, End> {
        self.reply(Reply(format!("334 {challenge}\r\n")));
        self.flush().await?;
        // Room for the longest line from the start: a growing buffer would leave copies of
        // what it held behind in freed memory.
        let mut line = LineReceiver {
            buf: Vec::with_capacity(MAX_LINE_LENGTH),
            state: (),
        };
        let mut started = None;
        loop {
            let mut iter = self.pending().iter();
            let done = line.ingest(&mut iter);
            let used = self.pending().len() - iter.as_slice().len();
            self.consume(used);
            // Before the next read moves what is left of the input over it.
            self.wipe_consumed_input();
            if done {
                break;
            }
            if line.buf.len() >= MAX_LINE_LENGTH {
                line.buf.zeroize();
                return Ok(None);
            }
            let timeout = self.settings.timeout;
            let in_line = !line.buf.is_empty() || !self.pending().is_empty();
            let deadline = self.line_deadline(&mut started, in_line);
            self.fill(timeout, deadline).await?;
        }
        let text = Zeroizing::new(std::mem::take(&mut line.buf));
        if text.trim_ascii() == b"*" {
            return Ok(None);
        }
        Ok(decode(&text))
    }

    pub(super) async fn auth(&mut self, mechanism: u64, initial: String) -> Result<(), End> {
        // The command line, as received and as parsed, may carry the credentials.
        let initial = Zeroizing::new(initial);
        self.wipe_consumed_input();
        if !self.auth_offered() {
            let why = if self.settings.auth_directory.is_some() && !self.is_tls() {
                Reply::new(
                    538,
                    "5.7.11",
                    "Encryption required for requested authentication mechanism",
                )
            } else {
                Reply::new(503, "5.5.1", "AUTH not available")
            };
            self.reply(why);
            return Ok(());
        }
        if self.authenticated.is_some() {
            self.reply(Reply::new(503, "5.5.1", "Already authenticated"));
            return Ok(());
        }
        if self.transaction.is_some() {
            self.reply(Reply::new(
                503,
                "5.5.1",
                "AUTH not allowed during a mail transaction",
            ));
            return Ok(());
        }
        let started = Instant::now();
        let (credentials, kind) = match mechanism {
            AUTH_PLAIN => {
                let decoded = if initial.is_empty() {
                    self.sasl_line("").await?
                } else if *initial == "=" {
                    Some(Zeroizing::new(Vec::new()))
                } else {
                    decode(initial.as_bytes())
                };
                (decoded.and_then(|d| parse_plain(&d)), Mechanism::Plain)
            }
            AUTH_LOGIN => {
                let username = match decode(initial.as_bytes()).filter(|_| !initial.is_empty()) {
                    Some(name) => Some(name),
                    None => self.sasl_line("VXNlcm5hbWU6").await?,
                };
                let secret = match username {
                    Some(_) => self.sasl_line("UGFzc3dvcmQ6").await?,
                    None => None,
                };
                let username = username.and_then(|name| String::from_utf8(name.to_vec()).ok());
                let credentials = match (username, secret) {
                    (Some(username), Some(secret)) if !username.is_empty() => Some(Credentials {
                        username,
                        secret: SecretSlice::from(secret.to_vec()),
                        authzid: None,
                    }),
                    _ => None,
                };
                (credentials, Mechanism::Login)
            }
            _ => {
                self.reply(Reply::new(504, "5.5.4", "Unrecognized authentication type"));
                return Ok(());
            }
        };
        let Some(credentials) = credentials else {
            self.reply(Reply::new(
                501,
                "5.5.2",
                "Cannot decode the credentials, or cancelled",
            ));
            return Ok(());
        };
        let Some(directory) = self.settings.auth_directory.clone() else {
            return Ok(());
        };
        let request = AuthRequest {
            directory,
            mechanism: kind,
            username: credentials.username.clone(),
            secret: credentials.secret,
            authzid: credentials.authzid,
            client: self.peer.ip(),
        };
        let answer = self.shared.directory.clone().authenticate(request).await;
        self.shared.metrics.stage("auth", started.elapsed());
        match answer.map(|a| a.verdict) {
            Ok(Verdict::Yes) => {
                self.authenticated = Some(credentials.username);
                self.reply(Reply::new(235, "2.7.0", "Authentication successful"));
            }
            Ok(Verdict::No) => {
                self.auth_failed(&credentials.username, kind, None);
                return self
                    .after_auth_failure(Reply::new(
                        535,
                        "5.7.8",
                        "Authentication credentials invalid",
                    ))
                    .await;
            }
            Ok(Verdict::Blocked) => {
                // Too many failures for this login name or address, counted across the
                // cluster: the directory was not asked. A 4xx, identical whatever the
                // password: it tells an attacker nothing, and tells a real user's client to
                // try later rather than ask for another password (README, "Brute force").
                self.auth_failed(&credentials.username, kind, Some("blocked"));
                return self
                    .after_auth_failure(Reply::new(
                        454,
                        "4.7.0",
                        "Too many failed authentications, try again later",
                    ))
                    .await;
            }
            _ => {
                self.shared.metrics.rejected("temporary");
                self.reply(Reply::new(
                    454,
                    "4.7.0",
                    "Temporary authentication failure, try again later",
                ));
            }
        }
        Ok(())
    }

    /// Counts a failed AUTH and writes the fail2ban line: one fixed format, the client
    /// address, never the secret; `reason` is appended when the directory was not asked.
    fn auth_failed(&mut self, username: &str, kind: Mechanism, reason: Option<&str>) {
        self.auth_errors += 1;
        self.shared.metrics.auth_failure();
        self.shared.metrics.rejected("auth");
        let reason = reason.map_or(String::new(), |r| format!(" reason={r}"));
        tracing::warn!(
            target: "ferrymail::auth",
            "authentication failed: client={} user=\"{}\" mechanism={} listener={}{reason}",
            self.peer.ip(),
            loggable(username),
            if kind == Mechanism::Plain { "PLAIN" } else { "LOGIN" },
            self.listener.id
        );
    }

    /// Answers a failed AUTH with `reply`, or ends the session once it has had
    /// `session.auth.errors.total` failures.
    async fn after_auth_failure(&mut self, reply: Reply) -> Result<(), End> {
        if self.auth_errors >= self.settings.max_auth_errors {
            self.reply(Reply::new(
                421,
                "4.7.0",
                "Too many authentication failures, closing connection",
            ));
            self.flush().await?;
            return Err(End::Disconnected);
        }
        self.reply(reply);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    #[test]
    fn sasl_plain_messages() {
        let c = parse_plain(b"\0alice@example.org\0s3cret")
            .map(|c| (c.username, c.secret.expose_secret().to_vec(), c.authzid));
        assert_eq!(
            c,
            Some(("alice@example.org".into(), b"s3cret".to_vec(), None))
        );
        let c = parse_plain(b"admin\0alice\0pw").map(|c| c.authzid);
        assert_eq!(c, Some(Some("admin".into())));
        assert!(parse_plain(b"no-nuls").is_none());
        assert!(parse_plain(b"\0\0pw").is_none());
        assert!(parse_plain(b"\0\xff\0pw").is_none());
    }

    #[test]
    fn log_fields_cannot_forge_lines() {
        assert_eq!(loggable("a\"b\nc"), "a\\\"b\\nc");
    }
}
