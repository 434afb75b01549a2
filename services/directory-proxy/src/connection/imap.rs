//! IMAP authentication lookups: `AUTHENTICATE PLAIN`, `LOGIN` or `AUTHENTICATE LOGIN`
//! against an IMAP server, judged by the tagged reply's status and response code. Greetings
//! and responses are decoded and commands encoded by `imap-codec`; only the read loop, the
//! choice of command and the classification of replies are ours: imap-codec does no I/O,
//! and it knows the IMAP grammar but not what a reply means for a login.

use std::io;
use std::time::Duration;

use async_trait::async_trait;
use ferrymail_rpc::directory::{Answer, Expansion, Mechanism, RemoteReply, Verdict};
use imap_codec::decode::{Decoder, GreetingDecodeError, ResponseDecodeError};
use imap_codec::encode::{Encoded, Encoder, Fragment};
use imap_codec::imap_types::auth::{AuthMechanism, AuthenticateData};
use imap_codec::imap_types::command::{Command, CommandBody};
use imap_codec::imap_types::core::LiteralMode;
use imap_codec::imap_types::response::{
    Capability, Code, Data, Greeting, GreetingKind, Response, Status, StatusKind,
};
use imap_codec::{AuthenticateDataCodec, CommandCodec, GreetingCodec, ResponseCodec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use zeroize::Zeroizing;

use super::{Connection, MaybeTls, TlsSettings, password_may_be_sent};
use crate::error::ConnectionError;
use crate::target::Target;

/// Longest greeting or response accepted. Replies to the commands sent here are a line or
/// two; the limit keeps a broken server from growing the buffer without end.
const MAX_RESPONSE: usize = 64 * 1024;

/// A greeted IMAP session, in the not-authenticated state until it is spent.
pub(crate) struct ImapConnection {
    /// The connection, upgraded in place by STARTTLS.
    stream: MaybeTls,
    /// Bytes read but not yet decoded: a read may end inside a response, or carry the
    /// untagged data and the tagged reply that follow it.
    buffer: Vec<u8>,
    /// What the server offers now; replaced after STARTTLS.
    capabilities: Vec<Capability<'static>>,
    /// Number of the last tag sent (`a1`, `a2`, …).
    tag: u32,
    /// Limit for each command exchange.
    timeout: Duration,
    /// Failed authentications after which the connection is spent.
    max_auth_errors: u32,
    /// Failed authentications so far.
    auth_errors: u32,
    /// Passwords may be sent without encryption (`tls.allow-plain-text`).
    allow_plain_text: bool,
    /// Set after a successful authentication, too many failed ones or any error.
    spent: bool,
}

/// The tagged reply that completed a command.
struct Completion {
    /// OK, NO or BAD.
    kind: StatusKind,
    /// The response code, e.g. `AUTHENTICATIONFAILED`.
    code: Option<Code<'static>>,
    /// The reply after tag and status, as the server wrote it, code included.
    text: String,
    /// Capabilities listed while the command ran, untagged or in the tagged OK.
    capabilities: Option<Vec<Capability<'static>>>,
}

/// One attempt to decode a message at the start of the read buffer.
enum Decoded<T> {
    /// A message and the number of bytes it took.
    Message(T, usize),
    /// The message has not fully arrived yet.
    Incomplete,
    /// The bytes are not what the protocol allows here.
    Invalid,
}

/// Decodes the server greeting with imap-codec.
fn decode_greeting(input: &[u8]) -> Decoded<Greeting<'static>> {
    match GreetingCodec::new().decode_static(input) {
        Ok((rest, greeting)) => Decoded::Message(greeting, input.len() - rest.len()),
        Err(GreetingDecodeError::Incomplete) => Decoded::Incomplete,
        Err(GreetingDecodeError::Failed) => Decoded::Invalid,
    }
}

/// Decodes one server response (untagged data, continuation request or status) with imap-codec.
fn decode_response(input: &[u8]) -> Decoded<Response<'static>> {
    match ResponseCodec::new().decode_static(input) {
        Ok((rest, response)) => Decoded::Message(response, input.len() - rest.len()),
        // `LiteralFound`: the buffer ends right after a literal's `{n}` announcement; from a
        // server the literal's bytes simply follow, so it is read like any incomplete input.
        Err(ResponseDecodeError::Incomplete | ResponseDecodeError::LiteralFound { .. }) => {
            Decoded::Incomplete
        }
        Err(ResponseDecodeError::Failed) => Decoded::Invalid,
    }
}

/// The text of a tagged reply: what follows tag and status, e.g.
/// `[AUTHENTICATIONFAILED] Authentication failed.`. Cut from the raw line rather than
/// re-encoded, because imap-codec has no encoder for a response code on its own and the
/// server's own words are what is relayed; imap-codec has already checked the line's shape.
fn reply_text(raw: &[u8]) -> String {
    let line = raw.strip_suffix(b"\r\n").unwrap_or(raw);
    let text = line.splitn(3, |b| *b == b' ').nth(2).unwrap_or_default();
    String::from_utf8_lossy(text).into_owned()
}

/// The first line of bytes the server sent, shortened, for an error message.
fn excerpt(bytes: &[u8]) -> String {
    let line = bytes.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    String::from_utf8_lossy(&line[..line.len().min(200)]).into_owned()
}

/// The verdict of a tagged `NO` to a login, from its response code (RFC 5530).
fn refusal(code: Option<&Code<'_>>) -> Verdict {
    let Some(Code::Other(code)) = code else {
        // No code, or a known one that says nothing about the cause (`ALERT`): RFC 3501
        // defines NO to LOGIN and AUTHENTICATE as a failed authentication.
        return Verdict::No;
    };
    let name = code
        .inner()
        .split(|b| *b == b' ')
        .next()
        .unwrap_or_default();
    match name.to_ascii_uppercase().as_slice() {
        b"AUTHENTICATIONFAILED" | b"AUTHORIZATIONFAILED" | b"EXPIRED" => Verdict::No,
        // The server, not the credentials, failed (PRIVACYREQUIRED: it wants TLS first).
        b"UNAVAILABLE" | b"SERVERBUG" | b"LIMIT" | b"INUSE" | b"PRIVACYREQUIRED" => {
            Verdict::TemporaryFailure
        }
        // RFC 3501 §7.1: a client ignores codes it does not know, leaving a plain NO.
        _ => Verdict::No,
    }
}

/// Refuses credentials that could end the command line early and smuggle in another
/// command, or shift the fields of a SASL PLAIN message. The values are never echoed.
fn check_credentials(username: &str, secret: &[u8]) -> Result<(), ConnectionError> {
    let forbidden = |b: &u8| matches!(b, b'\r' | b'\n' | 0);
    if username.as_bytes().iter().any(forbidden) || secret.iter().any(forbidden) {
        return Err(ConnectionError::Protocol(
            "line breaks and NUL are not allowed in a username or secret".into(),
        ));
    }
    Ok(())
}

impl ImapConnection {
    /// Connects, reads the greeting, learns the capabilities and upgrades with STARTTLS
    /// when the connection is not already encrypted and the server offers it.
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
        let mut connection = Self {
            stream,
            buffer: Vec::new(),
            capabilities: Vec::new(),
            tag: 0,
            timeout: target.timeout,
            max_auth_errors: target.max_auth_errors,
            auth_errors: 0,
            allow_plain_text: target.allow_plain_text,
            spent: false,
        };
        // The caller bounds `connect` as a whole, greeting included.
        let (greeting, _) = connection.read(decode_greeting).await?;
        match greeting.kind {
            GreetingKind::Ok => {}
            GreetingKind::Bye => {
                return Err(ConnectionError::Protocol(format!(
                    "the server refused the session: {}",
                    greeting.text
                )));
            }
            GreetingKind::PreAuth => {
                return Err(ConnectionError::Unsupported(
                    "the session is pre-authenticated, so it cannot check credentials".into(),
                ));
            }
        }
        connection.capabilities = match greeting.code {
            Some(Code::Capability(list)) => list.into_inner(),
            _ => connection.capability().await?,
        };
        if !connection.stream.is_tls() && connection.offers(&Capability::StartTls) {
            let reply = connection.command(CommandBody::StartTLS, &[]).await?;
            if reply.kind != StatusKind::Ok {
                return Err(ConnectionError::Protocol(format!(
                    "STARTTLS refused: {}",
                    reply.text
                )));
            }
            // Bytes after the OK came in clear text and may have been injected to pass for
            // protected data (the STARTTLS injection flaw, CVE-2011-0411): refuse them.
            if !connection.buffer.is_empty() {
                return Err(ConnectionError::Protocol(
                    "clear-text data after the STARTTLS reply".into(),
                ));
            }
            connection.stream = connection
                .stream
                .upgrade(&target.address, target.allow_invalid_certs, tls)
                .await?;
            // RFC 3501 §6.2.1: capabilities learnt before TLS must be discarded.
            connection.capabilities = connection.capability().await?;
        }
        Ok(connection)
    }

    /// Whether the server offers `capability`.
    fn offers(&self, capability: &Capability<'_>) -> bool {
        self.capabilities.contains(capability)
    }

    /// Asks for the capabilities with `CAPABILITY`.
    async fn capability(&mut self) -> Result<Vec<Capability<'static>>, ConnectionError> {
        let reply = self.command(CommandBody::Capability, &[]).await?;
        match (reply.kind, reply.capabilities) {
            (StatusKind::Ok, Some(list)) => Ok(list),
            _ => Err(ConnectionError::Protocol(format!(
                "CAPABILITY failed: {}",
                reply.text
            ))),
        }
    }

    /// Runs one command within the target's timeout; any failure spends the connection.
    /// `sasl` answers the server's continuation requests during AUTHENTICATE, in order.
    async fn command(
        &mut self,
        body: CommandBody<'_>,
        sasl: &[&[u8]],
    ) -> Result<Completion, ConnectionError> {
        let timeout = self.timeout;
        let result = tokio::time::timeout(timeout, self.exchange(body, sasl))
            .await
            .unwrap_or(Err(ConnectionError::Timeout(timeout)));
        if result.is_err() {
            self.spent = true;
        }
        result
    }

    /// Sends a command under a fresh tag and reads responses until its tagged reply.
    async fn exchange(
        &mut self,
        body: CommandBody<'_>,
        sasl: &[&[u8]],
    ) -> Result<Completion, ConnectionError> {
        self.tag += 1;
        let tag = format!("a{}", self.tag);
        let command = Command::new(tag.as_str(), body)
            .map_err(|e| ConnectionError::Protocol(format!("invalid tag {tag}: {e}")))?;
        let mut fragments = CommandCodec::new().encode(&command);
        let mut held = self.send(&mut fragments).await?;
        let mut sasl = sasl.iter();
        let mut capabilities = None;
        loop {
            let (response, raw) = self.read(decode_response).await?;
            match response {
                Response::CommandContinuationRequest(_) => {
                    if let Some(literal) = held.take() {
                        self.write(&literal).await?;
                        held = self.send(&mut fragments).await?;
                    } else if let Some(data) = sasl.next() {
                        let line = Zeroizing::new(
                            AuthenticateDataCodec::new()
                                .encode(&AuthenticateData::r#continue(*data))
                                .dump(),
                        );
                        self.write(&line).await?;
                    } else {
                        return Err(ConnectionError::Protocol(
                            "continuation request the command does not expect".into(),
                        ));
                    }
                }
                Response::Data(Data::Capability(list)) => capabilities = Some(list.into_inner()),
                Response::Status(Status::Tagged(tagged)) if tagged.tag.inner() == tag => {
                    let body = tagged.body;
                    if let (StatusKind::Ok, Some(Code::Capability(list))) = (body.kind, &body.code)
                    {
                        capabilities = Some(list.as_ref().to_vec());
                    }
                    return Ok(Completion {
                        kind: body.kind,
                        code: body.code,
                        text: reply_text(&raw),
                        capabilities,
                    });
                }
                Response::Status(Status::Tagged(tagged)) => {
                    return Err(ConnectionError::Protocol(format!(
                        "reply for tag {:?} while waiting for {tag}",
                        tagged.tag.inner()
                    )));
                }
                // Other untagged data and status (`* OK …`, `* BYE` before the server
                // closes) do not complete the command.
                Response::Status(_) | Response::Data(_) => {}
            }
        }
    }

    /// Writes encoded fragments up to a synchronizing literal, which it returns: its bytes
    /// may only follow the server's continuation request (RFC 3501 §7.5). Commands may
    /// carry credentials (LOGIN, AUTHENTICATE with an initial response): every buffer is
    /// wiped once written.
    async fn send(
        &mut self,
        fragments: &mut Encoded,
    ) -> Result<Option<Zeroizing<Vec<u8>>>, ConnectionError> {
        let mut pieces = Vec::new();
        let mut held = None;
        for fragment in fragments.by_ref() {
            match fragment {
                Fragment::Literal {
                    data,
                    mode: LiteralMode::Sync,
                } => {
                    held = Some(Zeroizing::new(data));
                    break;
                }
                Fragment::Line { data } | Fragment::Literal { data, .. } => {
                    pieces.push(Zeroizing::new(data));
                }
            }
        }
        // One buffer of the final size: growing it would leave copies in freed memory.
        let mut out = Zeroizing::new(Vec::with_capacity(pieces.iter().map(|p| p.len()).sum()));
        for piece in &pieces {
            out.extend_from_slice(piece);
        }
        if !out.is_empty() {
            self.write(&out).await?;
        }
        Ok(held)
    }

    /// Writes and flushes bytes to the server.
    async fn write(&mut self, bytes: &[u8]) -> Result<(), ConnectionError> {
        self.stream.write_all(bytes).await?;
        // A TLS stream holds data until flushed.
        self.stream.flush().await?;
        Ok(())
    }

    /// Decodes the next message from the buffer, reading more while it is incomplete;
    /// returns it with its raw bytes and leaves whatever follows it in the buffer.
    async fn read<T>(
        &mut self,
        decode: fn(&[u8]) -> Decoded<T>,
    ) -> Result<(T, Vec<u8>), ConnectionError> {
        loop {
            match decode(&self.buffer) {
                Decoded::Message(message, used) => {
                    let raw = self.buffer.drain(..used).collect();
                    return Ok((message, raw));
                }
                Decoded::Invalid => {
                    return Err(ConnectionError::Protocol(format!(
                        "malformed IMAP response: {}",
                        excerpt(&self.buffer)
                    )));
                }
                Decoded::Incomplete => {}
            }
            if self.buffer.len() >= MAX_RESPONSE {
                return Err(ConnectionError::Protocol(format!(
                    "response longer than {MAX_RESPONSE} bytes"
                )));
            }
            let mut chunk = [0; 4096];
            let read = self.stream.read(&mut chunk).await?;
            if read == 0 {
                return Err(ConnectionError::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the server closed the connection",
                )));
            }
            self.buffer.extend_from_slice(&chunk[..read]);
        }
    }
}

#[async_trait]
impl Connection for ImapConnection {
    async fn authenticate(
        &mut self,
        // IMAP needs the same username and password whichever mechanism the SMTP client
        // used; what the IMAP server offers decides the command that carries them.
        _mechanism: Mechanism,
        username: &str,
        secret: &[u8],
    ) -> Result<Answer, ConnectionError> {
        check_credentials(username, secret)?;
        if self.spent {
            return Err(ConnectionError::Protocol(
                "the connection is spent and must not authenticate again".into(),
            ));
        }
        password_may_be_sent(self.stream.is_tls(), self.allow_plain_text)?;
        let reply = if self.offers(&Capability::Auth(AuthMechanism::Plain)) {
            // RFC 4616 (imap-codec carries SASL data but does not build it): authorization
            // identity (empty: the same), NUL, username, NUL, secret.
            let mut message = Zeroizing::new(Vec::with_capacity(username.len() + secret.len() + 2));
            message.push(0);
            message.extend_from_slice(username.as_bytes());
            message.push(0);
            message.extend_from_slice(secret);
            if self.offers(&Capability::SaslIr) {
                let body = CommandBody::authenticate_with_ir(AuthMechanism::Plain, &message[..]);
                self.command(body, &[]).await?
            } else {
                let body = CommandBody::authenticate(AuthMechanism::Plain);
                self.command(body, &[&message]).await?
            }
        } else if !self.offers(&Capability::LoginDisabled) {
            // imap-codec writes each as an atom, a quoted string or a literal, as needed.
            let body = CommandBody::login(username, secret).map_err(|_| {
                ConnectionError::Protocol("the credentials cannot be written in LOGIN".into())
            })?;
            self.command(body, &[]).await?
        } else if self.offers(&Capability::Auth(AuthMechanism::Login)) {
            let body = CommandBody::authenticate(AuthMechanism::Login);
            self.command(body, &[username.as_bytes(), secret]).await?
        } else {
            return Err(ConnectionError::Unsupported(
                "the server offers neither AUTH=PLAIN, LOGIN nor AUTH=LOGIN".into(),
            ));
        };
        let verdict = match reply.kind {
            StatusKind::Ok => Verdict::Yes,
            StatusKind::No => refusal(reply.code.as_ref()),
            StatusKind::Bad => {
                self.spent = true;
                return Err(ConnectionError::Protocol(format!(
                    "authentication rejected as malformed: {}",
                    reply.text
                )));
            }
        };
        match verdict {
            Verdict::Yes => self.spent = true,
            Verdict::No => {
                self.auth_errors += 1;
                if self.auth_errors >= self.max_auth_errors {
                    self.spent = true;
                }
            }
            Verdict::Refused | Verdict::TemporaryFailure | Verdict::Blocked => {}
        }
        Ok(Answer::new(verdict).with_reply(RemoteReply::imap(reply.text)))
    }

    async fn verify_recipient(&mut self, _: &str) -> Result<Answer, ConnectionError> {
        Err(ConnectionError::Unsupported(
            "IMAP cannot validate recipients".into(),
        ))
    }

    async fn vrfy(&mut self, _: &str) -> Result<Expansion, ConnectionError> {
        Err(ConnectionError::Unsupported("IMAP has no VRFY".into()))
    }

    async fn expn(&mut self, _: &str) -> Result<Expansion, ConnectionError> {
        Err(ConnectionError::Unsupported("IMAP has no EXPN".into()))
    }

    fn reusable(&self) -> bool {
        !self.spent
    }

    async fn close(mut self: Box<Self>) {
        // The reply (`* BYE`, then the tagged OK) is awaited so the server sees a clean
        // logout; failures no longer matter.
        let _ = self.command(CommandBody::Logout, &[]).await;
        // Over TLS this sends close_notify, so the server sees an orderly end.
        let _ = tokio::time::timeout(self.timeout, self.stream.shutdown()).await;
    }
}

// These scripted servers replay Dovecot's exact lines to test parsing and protocol edge
// cases (pipelined data, split reads, literals, response codes, broken servers); the tests
// against a real Dovecot live in the crate's integration tests.
#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::sync::Arc;

    use base64::Engine;
    use base64::engine::general_purpose::STANDARD as BASE64;
    use ferrymail_config::model::cache::CacheSettings;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, BufReader};
    use tokio::net::TcpListener;
    use tokio::task::JoinHandle;

    use super::*;
    use crate::target::Protocol;

    /// Dovecot's greeting on IMAPS or after STARTTLS (the plain-port one adds STARTTLS).
    const GREETING: &str = "* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ AUTH=PLAIN AUTH=LOGIN] Dovecot mta-lab ready.\r\n";
    /// Dovecot's greeting on its clear-text port.
    const GREETING_STARTTLS: &str = "* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ STARTTLS AUTH=PLAIN AUTH=LOGIN] Dovecot mta-lab ready.\r\n";
    const LOGGED_IN: &str =
        "[CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT NOTIFY] Logged in";
    const FAILED: &str = "[AUTHENTICATIONFAILED] Authentication failed.";

    /// A self-signed certificate and key for 127.0.0.1, made for each test run.
    fn test_certificate() -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
        let generated = rcgen::generate_simple_self_signed(vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
        ])
        .unwrap();
        let key = PrivateKeyDer::from_pem_slice(generated.signing_key.serialize_pem().as_bytes())
            .unwrap();
        (generated.cert.der().clone(), key)
    }

    /// One step of a scripted server.
    enum Step {
        /// Writes these bytes at once, so pipelined lines arrive together.
        Send(String),
        /// Reads one line from the client and asserts it is this (CRLF added).
        Expect(Vec<u8>),
        /// Asserts the client sends nothing for a while (it must wait for the server).
        Quiet,
        /// Waits, so a message the previous step started arrives in two reads.
        Pause,
        /// Accepts TLS on the connection with the test certificate.
        StartTls,
        /// Asserts the client closes the connection without sending anything more.
        Eof,
    }

    /// A [`Step::Send`].
    fn send(text: &str) -> Step {
        Step::Send(text.to_string())
    }

    /// A [`Step::Expect`].
    fn expect(line: impl AsRef<[u8]>) -> Step {
        Step::Expect(line.as_ref().to_vec())
    }

    /// The scripted server's stream, before or after TLS.
    trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
    impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

    /// TLS server side with the test certificate.
    fn acceptor() -> tokio_rustls::TlsAcceptor {
        let certificate = test_certificate();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![certificate.0], certificate.1)
            .unwrap();
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    }

    /// Serves one connection on 127.0.0.1 following `script`; the handle fails if the
    /// client strayed from it.
    async fn serve(script: Vec<Step>) -> (u16, JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let handle = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut stream = BufReader::new(Box::new(tcp) as Box<dyn Io>);
            for step in script {
                match step {
                    Step::Send(text) => {
                        stream.get_mut().write_all(text.as_bytes()).await.unwrap();
                        stream.get_mut().flush().await.unwrap();
                    }
                    Step::Expect(mut want) => {
                        want.extend_from_slice(b"\r\n");
                        let mut got = Vec::new();
                        stream.read_until(b'\n', &mut got).await.unwrap();
                        assert_eq!(
                            String::from_utf8_lossy(&got),
                            String::from_utf8_lossy(&want)
                        );
                    }
                    Step::Quiet => {
                        let mut byte = [0; 1];
                        let read = tokio::time::timeout(
                            Duration::from_millis(100),
                            stream.read(&mut byte),
                        )
                        .await;
                        assert!(
                            read.is_err(),
                            "the client sent data it should have held back"
                        );
                    }
                    Step::Pause => tokio::time::sleep(Duration::from_millis(50)).await,
                    Step::StartTls => {
                        assert!(stream.buffer().is_empty());
                        let tls = acceptor().accept(stream.into_inner()).await.unwrap();
                        stream = BufReader::new(Box::new(tls) as Box<dyn Io>);
                    }
                    Step::Eof => {
                        let mut rest = Vec::new();
                        stream.read_to_end(&mut rest).await.unwrap();
                        assert_eq!(String::from_utf8_lossy(&rest), "");
                    }
                }
            }
        });
        (port, handle)
    }

    /// An IMAP target on 127.0.0.1:`port`, clear text with opportunistic STARTTLS; most
    /// scripts speak clear text, so passwords may be sent without it.
    fn target(port: u16) -> Target {
        Target {
            allow_plain_text: true,
            ..strict_target(port)
        }
    }

    /// As [`target`], but passwords go only over TLS (the default of `tls.allow-plain-text`).
    fn strict_target(port: u16) -> Target {
        Target {
            name: "directory/imap".into(),
            protocol: Protocol::Imap,
            address: "127.0.0.1".into(),
            port,
            tls_implicit: false,
            allow_invalid_certs: true,
            allow_plain_text: false,
            timeout: Duration::from_secs(5),
            concurrency: 1,
            max_requests: 50,
            max_auth_errors: 2,
            max_rcpt: 10,
            helo_name: "proxy.example".into(),
            cache: CacheSettings {
                entries: 0,
                ttl_positive: Duration::ZERO,
                ttl_negative: Duration::ZERO,
            },
        }
    }

    /// Connects with fresh TLS settings.
    async fn connect(target: &Target) -> Result<ImapConnection, ConnectionError> {
        ImapConnection::connect(target, &TlsSettings::new()).await
    }

    /// The base64 SASL PLAIN message for `username` and `secret`.
    fn plain(username: &str, secret: &str) -> String {
        BASE64.encode(format!("\0{username}\0{secret}"))
    }

    /// The server's reply text carried by `answer`.
    fn text(answer: &Answer) -> &str {
        &answer.reply.as_ref().unwrap().text
    }

    #[tokio::test]
    async fn sasl_ir_success_spends_the_connection() {
        let (port, server) = serve(vec![
            // The greeting in two reads: the decoder must ask for more.
            send(&GREETING[..40]),
            Step::Pause,
            send(&GREETING[40..]),
            expect("a1 AUTHENTICATE PLAIN AGJvYkBleGFtcGxlLm9yZwBib2ItcGFzcw=="),
            send(&format!("a1 OK {LOGGED_IN}\r\n")),
            expect("a2 LOGOUT"),
            send("* BYE Logging out\r\na2 OK Logout completed (0.001 + 0.000 secs).\r\n"),
            Step::Eof,
        ])
        .await;
        let mut connection = connect(&target(port)).await.unwrap();
        assert!(connection.reusable());
        let answer = connection
            .authenticate(Mechanism::Login, "bob@example.org", b"bob-pass")
            .await
            .unwrap();
        assert_eq!(answer.verdict, Verdict::Yes);
        assert_eq!(text(&answer), LOGGED_IN);
        assert!(
            !connection.reusable(),
            "an authenticated session must not serve another user"
        );
        // Even if asked, it sends nothing more than LOGOUT.
        let error = connection
            .authenticate(Mechanism::Plain, "alice@example.org", b"alice-pass")
            .await
            .unwrap_err();
        assert!(matches!(error, ConnectionError::Protocol(_)), "{error}");
        Box::new(connection).close().await;
        server.await.unwrap();
    }

    #[tokio::test]
    async fn capability_command_and_login_with_untagged_data_before_the_reply() {
        let (port, server) = serve(vec![
            send("* OK Dovecot mta-lab ready.\r\n"),
            expect("a1 CAPABILITY"),
            send("* CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+\r\na1 OK Pre-login capabilities listed, post-login capabilities have more.\r\n"),
            expect("a2 LOGIN alice@example.org alice-pass"),
            // Dovecot repeats the capabilities untagged, in the same write as the reply.
            send("* CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT NOTIFY\r\na2 OK Logged in\r\n"),
            Step::Eof,
        ])
        .await;
        let mut connection = connect(&target(port)).await.unwrap();
        let answer = connection
            .authenticate(Mechanism::Plain, "alice@example.org", b"alice-pass")
            .await
            .unwrap();
        assert_eq!(answer.verdict, Verdict::Yes);
        assert_eq!(text(&answer), "Logged in");
        assert!(!connection.reusable());
        drop(connection);
        server.await.unwrap();
    }

    #[tokio::test]
    async fn plain_continuation_failures_count_towards_the_limit() {
        let greeting = GREETING.replace("SASL-IR ", "");
        let (port, server) = serve(vec![
            send(&greeting),
            expect("a1 AUTHENTICATE PLAIN"),
            send("+ \r\n"),
            expect(plain("alice@example.org", "wrong")),
            send(&format!("a1 NO {FAILED}\r\n")),
            expect("a2 AUTHENTICATE PLAIN"),
            send("+ \r\n"),
            expect(plain("nosuch@example.org", "x")),
            send(&format!("a2 NO {FAILED}\r\n")),
            Step::Eof,
        ])
        .await;
        let mut connection = connect(&target(port)).await.unwrap();
        let answer = connection
            .authenticate(Mechanism::Plain, "alice@example.org", b"wrong")
            .await
            .unwrap();
        assert_eq!(answer, Answer::no().with_reply(RemoteReply::imap(FAILED)));
        assert!(
            connection.reusable(),
            "one failure is below max_auth_errors = 2"
        );
        let answer = connection
            .authenticate(Mechanism::Plain, "nosuch@example.org", b"x")
            .await
            .unwrap();
        assert_eq!(answer.verdict, Verdict::No);
        assert!(
            !connection.reusable(),
            "the second failure reaches max_auth_errors = 2"
        );
        drop(connection);
        server.await.unwrap();
    }

    #[tokio::test]
    async fn unavailable_is_a_temporary_failure() {
        let unavailable =
            "[UNAVAILABLE] Temporary authentication failure. [vm:2026-11-21 20:45:53]";
        let (port, server) = serve(vec![
            send(GREETING),
            expect(format!(
                "a1 AUTHENTICATE PLAIN {}",
                plain("tempfail@example.org", "x")
            )),
            send(&format!("a1 NO {unavailable}\r\n")),
            Step::Eof,
        ])
        .await;
        let mut connection = connect(&target(port)).await.unwrap();
        let answer = connection
            .authenticate(Mechanism::Plain, "tempfail@example.org", b"x")
            .await
            .unwrap();
        assert_eq!(
            answer,
            Answer::temporary_failure().with_reply(RemoteReply::imap(unavailable))
        );
        assert!(connection.reusable());
        drop(connection);
        server.await.unwrap();
    }

    #[tokio::test]
    async fn authenticate_login_when_login_is_disabled() {
        let greeting = "* OK [CAPABILITY IMAP4rev1 LITERAL+ LOGINDISABLED AUTH=LOGIN] Dovecot mta-lab ready.\r\n";
        let (port, server) = serve(vec![
            send(greeting),
            expect("a1 AUTHENTICATE LOGIN"),
            send("+ VXNlcm5hbWU6\r\n"),
            expect(BASE64.encode("alice@example.org")),
            send("+ UGFzc3dvcmQ6\r\n"),
            expect(BASE64.encode("alice-pass")),
            send(&format!("a1 OK {LOGGED_IN}\r\n")),
            Step::Eof,
        ])
        .await;
        let mut connection = connect(&target(port)).await.unwrap();
        let answer = connection
            .authenticate(Mechanism::Plain, "alice@example.org", b"alice-pass")
            .await
            .unwrap();
        assert_eq!(answer.verdict, Verdict::Yes);
        drop(connection);
        server.await.unwrap();
    }

    #[tokio::test]
    async fn login_waits_for_the_continuation_before_a_literal() {
        let greeting = "* OK [CAPABILITY IMAP4rev1] ready.\r\n";
        let (port, server) = serve(vec![
            send(greeting),
            // 8-bit text cannot be quoted: imap-codec writes a synchronizing literal.
            expect("a1 LOGIN alice@example.org {9}"),
            Step::Quiet,
            send("+ OK\r\n"),
            expect("p\u{e4}ssword"),
            send("a1 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"),
            // Spaces and quotes are quoted.
            expect(r#"a2 LOGIN "bob smith" "pa\"ss""#),
            send("a2 OK Logged in\r\n"),
            Step::Eof,
        ])
        .await;
        let mut connection = connect(&target(port)).await.unwrap();
        let answer = connection
            .authenticate(
                Mechanism::Plain,
                "alice@example.org",
                "p\u{e4}ssword".as_bytes(),
            )
            .await
            .unwrap();
        assert_eq!(answer.verdict, Verdict::No);
        let answer = connection
            .authenticate(Mechanism::Plain, "bob smith", b"pa\"ss")
            .await
            .unwrap();
        assert_eq!(answer.verdict, Verdict::Yes);
        drop(connection);
        server.await.unwrap();
    }

    #[tokio::test]
    async fn bad_is_a_protocol_error() {
        let (port, server) = serve(vec![
            send(GREETING),
            expect(format!(
                "a1 AUTHENTICATE PLAIN {}",
                plain("alice@example.org", "secret-pass")
            )),
            send("a1 BAD Error in IMAP command AUTHENTICATE: Invalid arguments.\r\n"),
            Step::Eof,
        ])
        .await;
        let mut connection = connect(&target(port)).await.unwrap();
        let error = connection
            .authenticate(Mechanism::Plain, "alice@example.org", b"secret-pass")
            .await
            .unwrap_err();
        assert!(matches!(error, ConnectionError::Protocol(_)), "{error}");
        assert!(!error.to_string().contains("secret-pass"));
        assert!(!connection.reusable());
        drop(connection);
        server.await.unwrap();
    }

    #[tokio::test]
    async fn connection_closed_mid_reply() {
        let (port, server) = serve(vec![
            send(GREETING),
            expect(format!(
                "a1 AUTHENTICATE PLAIN {}",
                plain("alice@example.org", "x")
            )),
            send("a1 NO [AUTHENTICATIONFAI"),
        ])
        .await;
        let mut connection = connect(&target(port)).await.unwrap();
        let error = connection
            .authenticate(Mechanism::Plain, "alice@example.org", b"x")
            .await
            .unwrap_err();
        assert!(matches!(error, ConnectionError::Io(_)), "{error}");
        assert!(!connection.reusable());
        server.await.unwrap();
    }

    #[tokio::test]
    async fn bye_greeting_is_an_error() {
        let (port, server) = serve(vec![send("* BYE Too many connections\r\n"), Step::Eof]).await;
        let error = connect(&target(port)).await.err().unwrap();
        assert!(
            matches!(&error, ConnectionError::Protocol(text) if text.contains("Too many connections")),
            "{error}"
        );
        server.await.unwrap();
    }

    #[tokio::test]
    async fn garbage_is_a_protocol_error() {
        let (port, server) = serve(vec![
            send(GREETING),
            expect("a1 AUTHENTICATE PLAIN AGEAYg=="),
            send("a1 MAYBE\r\n"),
            Step::Eof,
        ])
        .await;
        let mut connection = connect(&target(port)).await.unwrap();
        let error = connection
            .authenticate(Mechanism::Plain, "a", b"b")
            .await
            .unwrap_err();
        assert!(matches!(error, ConnectionError::Protocol(_)), "{error}");
        assert!(!connection.reusable());
        drop(connection);
        server.await.unwrap();
    }

    #[tokio::test]
    async fn line_breaks_are_refused_before_anything_is_sent() {
        let (port, server) = serve(vec![send(GREETING), Step::Eof]).await;
        let mut connection = connect(&target(port)).await.unwrap();
        for (username, secret) in [
            ("alice\r\na2 LOGOUT", &b"x"[..]),
            ("alice", b"pass\r\na2 LOGOUT"),
            ("alice", b"a\0b"),
        ] {
            let error = connection
                .authenticate(Mechanism::Plain, username, secret)
                .await
                .unwrap_err();
            assert!(matches!(error, ConnectionError::Protocol(_)), "{error}");
            assert!(!error.to_string().contains("LOGOUT"));
        }
        drop(connection);
        server.await.unwrap();
    }

    #[tokio::test]
    async fn a_silent_server_times_out() {
        let (port, server) = serve(vec![
            send(GREETING),
            expect("a1 AUTHENTICATE PLAIN AGEAYg=="),
            Step::Eof,
        ])
        .await;
        let mut target = target(port);
        target.timeout = Duration::from_millis(200);
        let mut connection = connect(&target).await.unwrap();
        let error = connection
            .authenticate(Mechanism::Plain, "a", b"b")
            .await
            .unwrap_err();
        assert!(matches!(error, ConnectionError::Timeout(_)), "{error}");
        assert!(!connection.reusable());
        drop(connection);
        server.await.unwrap();
    }

    #[tokio::test]
    async fn starttls_discards_the_clear_text_capabilities() {
        let (port, server) = serve(vec![
            send(GREETING_STARTTLS),
            expect("a1 STARTTLS"),
            send("a1 OK Begin TLS negotiation now.\r\n"),
            Step::StartTls,
            expect("a2 CAPABILITY"),
            // Over TLS only LOGIN is offered: AUTH=PLAIN from before TLS must not be used.
            send("* CAPABILITY IMAP4rev1 LITERAL+\r\na2 OK Pre-login capabilities listed, post-login capabilities have more.\r\n"),
            expect("a3 LOGIN alice@example.org alice-pass"),
            send("a3 OK Logged in\r\n"),
            expect("a4 LOGOUT"),
            send("* BYE Logging out\r\na4 OK Logout completed (0.001 + 0.000 secs).\r\n"),
            // Needs the client's TLS close_notify: a bare close is an error here.
            Step::Eof,
        ])
        .await;
        // Encrypted by STARTTLS: the password may go without `allow-plain-text`.
        let mut connection = connect(&strict_target(port)).await.unwrap();
        assert!(connection.stream.is_tls());
        let answer = connection
            .authenticate(Mechanism::Plain, "alice@example.org", b"alice-pass")
            .await
            .unwrap();
        assert_eq!(answer.verdict, Verdict::Yes);
        Box::new(connection).close().await;
        server.await.unwrap();
    }

    #[tokio::test]
    async fn no_password_is_sent_in_clear_text_unless_allowed() {
        // No STARTTLS offered (or stripped on the way): the client must not send LOGIN or
        // AUTHENTICATE, only close.
        let (port, server) = serve(vec![send(GREETING), Step::Eof]).await;
        let mut connection = connect(&strict_target(port)).await.unwrap();
        let error = connection
            .authenticate(Mechanism::Plain, "alice@example.org", b"alice-pass")
            .await
            .unwrap_err();
        assert!(matches!(error, ConnectionError::PlainText), "{error}");
        drop(connection);
        server.await.unwrap();
    }

    #[tokio::test]
    async fn clear_text_after_the_starttls_reply_is_refused() {
        let (port, server) = serve(vec![
            send(GREETING_STARTTLS),
            expect("a1 STARTTLS"),
            // An injected response in the same segment as the OK.
            send("a1 OK Begin TLS negotiation now.\r\n* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n"),
            Step::Eof,
        ])
        .await;
        let error = connect(&target(port)).await.err().unwrap();
        assert!(matches!(error, ConnectionError::Protocol(_)), "{error}");
        server.await.unwrap();
    }

    #[tokio::test]
    async fn starttls_refused_is_an_error() {
        let (port, server) = serve(vec![
            send(GREETING_STARTTLS),
            expect("a1 STARTTLS"),
            send("a1 NO TLS support isn't enabled.\r\n"),
            Step::Eof,
        ])
        .await;
        let error = connect(&target(port)).await.err().unwrap();
        assert!(
            matches!(&error, ConnectionError::Protocol(text) if text.contains("TLS support")),
            "{error}"
        );
        server.await.unwrap();
    }

    #[tokio::test]
    async fn recipient_lookups_are_unsupported() {
        let (port, server) = serve(vec![send(GREETING), Step::Eof]).await;
        let mut connection = connect(&target(port)).await.unwrap();
        assert!(matches!(
            connection.verify_recipient("a@b").await,
            Err(ConnectionError::Unsupported(_))
        ));
        assert!(matches!(
            connection.vrfy("a@b").await,
            Err(ConnectionError::Unsupported(_))
        ));
        assert!(matches!(
            connection.expn("a@b").await,
            Err(ConnectionError::Unsupported(_))
        ));
        assert!(connection.reusable());
        drop(connection);
        server.await.unwrap();
    }

    #[test]
    fn response_codes_decide_the_verdict() {
        let verdict = |line: &str| {
            let Decoded::Message(Response::Status(Status::Tagged(tagged)), _) =
                decode_response(line.as_bytes())
            else {
                panic!("not a tagged status: {line}");
            };
            refusal(tagged.body.code.as_ref())
        };
        assert_eq!(
            verdict("a1 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"),
            Verdict::No
        );
        assert_eq!(
            verdict("a1 NO [AUTHORIZATIONFAILED] No such authorization-ID\r\n"),
            Verdict::No
        );
        assert_eq!(verdict("a1 NO [EXPIRED] Password expired\r\n"), Verdict::No);
        assert_eq!(
            verdict("a1 NO [unavailable] Later\r\n"),
            Verdict::TemporaryFailure
        );
        assert_eq!(
            verdict("a1 NO [PRIVACYREQUIRED] Use TLS\r\n"),
            Verdict::TemporaryFailure
        );
        assert_eq!(verdict("a1 NO Login failed\r\n"), Verdict::No);
        assert_eq!(verdict("a1 NO [ALERT] Login failed\r\n"), Verdict::No);
        assert_eq!(verdict("a1 NO [XUNKNOWN] Login failed\r\n"), Verdict::No);
    }

    #[test]
    fn partial_and_pipelined_input() {
        assert!(matches!(
            decode_greeting(b"* OK [CAPABILITY IMAP4rev1 SASL-IR"),
            Decoded::Incomplete
        ));
        assert!(matches!(
            decode_response(b"a1 NO [AUTHENTICATIONFAI"),
            Decoded::Incomplete
        ));
        assert!(matches!(
            decode_response(b"* 1 FETCH (BODY[] {5}\r\n"),
            Decoded::Incomplete
        ));
        let pipelined = b"* CAPABILITY IMAP4rev1 NOTIFY\r\na2 OK Logged in\r\n";
        let Decoded::Message(Response::Data(Data::Capability(_)), used) =
            decode_response(pipelined)
        else {
            panic!("not a CAPABILITY response");
        };
        assert_eq!(&pipelined[used..], b"a2 OK Logged in\r\n");
        assert!(matches!(decode_response(b"a1 MAYBE\r\n"), Decoded::Invalid));
    }

    #[test]
    fn reply_text_keeps_the_code() {
        assert_eq!(
            reply_text(b"a1 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"),
            FAILED
        );
        assert_eq!(reply_text(b"a12 OK Logged in\r\n"), "Logged in");
    }
}
