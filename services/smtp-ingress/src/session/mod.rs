//! One SMTP or LMTP session: reading commands (parsed by `smtp-proto`), answering them in
//! order (pipelining), and the state of the mail transaction.

mod auth;
mod data;
mod deadlines;
mod dnsbl;
pub(crate) mod envelope;
mod filters;
mod forged_results;
mod held_message;
mod limits;
mod reply;
mod rewrite;
pub(crate) mod rules;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferrymail_config::model::stage_rules::Stage;
use ferrymail_rpc::queue::Recipient;
use smtp_proto::request::receiver::{MAX_LINE_LENGTH, RequestReceiver};
use smtp_proto::{
    AUTH_LOGIN, AUTH_PLAIN, EXT_8BIT_MIME, EXT_AUTH, EXT_CHUNKING, EXT_DSN,
    EXT_ENHANCED_STATUS_CODES, EXT_EXPN, EXT_FUTURE_RELEASE, EXT_HELP, EXT_MT_PRIORITY,
    EXT_PIPELINING, EXT_REQUIRE_TLS, EXT_SIZE, EXT_SMTP_UTF8, EXT_START_TLS, EXT_VRFY,
    EhloResponse, Request,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use zeroize::Zeroize;

use crate::Shared;
use crate::filter::pipeline::{Filters, session_filters};
use crate::settings::{ListenerSettings, Settings};
use crate::tls::ServerStream;
use deadlines::Deadline;
use filters::Filtered;
pub(crate) use reply::Reply;
use rules::CommandValues;

/// Room for the first read from the socket: commands and small messages fit.
const FIRST_READ: usize = 4 * 1024;
/// Largest read from the socket at once, reached by doubling while reads fill the room.
const LARGEST_READ: usize = 64 * 1024;

/// What the handler wants the loop to do next.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Flow {
    Continue,
    Close,
}

/// Why a session ended early.
#[derive(Debug)]
pub(crate) enum End {
    /// The client went away or the connection broke.
    Disconnected,
    /// A time limit ran out (the client was told).
    TimedOut,
}

/// The open mail transaction.
#[derive(Debug, Default)]
pub(crate) struct Transaction {
    pub(crate) sender: String,
    pub(crate) params: envelope::MailParams,
    pub(crate) recipients: Vec<Recipient>,
    /// The SPF result of MAIL FROM, when it was checked.
    pub(crate) spf_mail_from: Option<mail_auth::SpfOutput>,
}

pub(crate) struct Session {
    pub(crate) stream: ServerStream,
    pub(crate) shared: Arc<Shared>,
    pub(crate) settings: Arc<Settings>,
    pub(crate) listener: Arc<ListenerSettings>,
    pub(crate) peer: SocketAddr,
    pub(crate) started: Instant,
    /// When the last read brought bytes: the first byte of what is pending arrived by then.
    last_read: Instant,
    /// When the first byte of the command line being received arrived.
    line_started: Option<Instant>,
    input: Vec<u8>,
    pos: usize,
    /// Room the next read gets: grows while the client sends faster than one read takes,
    /// so an idle or chatty session holds 4 KiB, not 64.
    read_size: usize,
    out: Vec<u8>,
    receiver: RequestReceiver,
    pub(crate) helo: Option<String>,
    /// The SPF result of the HELO name, when it was checked.
    pub(crate) spf_helo: Option<mail_auth::SpfOutput>,
    pub(crate) esmtp: bool,
    pub(crate) authenticated: Option<String>,
    pub(crate) transaction: Option<Transaction>,
    pub(crate) messages: u32,
    pub(crate) bdat: Option<data::Upload>,
    /// Skipping the rest of a line that was too long.
    discarding: bool,
    errors: u32,
    pub(crate) auth_errors: u32,
    /// A reply that ends the session (421) is queued: nothing more is read.
    closing: bool,
    /// The client's address scored at or below `session.dnsbl.allow-threshold`.
    pub(crate) dnsbl_allowed: bool,
    /// The milters and MTA hooks of the session; `None` when none is configured.
    pub(crate) filters: Option<Box<Filters>>,
    /// The inbound limiters' slots this session holds.
    limits: limits::SessionLimits,
}

impl Session {
    pub(crate) fn new(
        stream: ServerStream,
        shared: Arc<Shared>,
        listener: Arc<ListenerSettings>,
        peer: SocketAddr,
    ) -> Self {
        let settings = shared.settings();
        let filters = session_filters(&shared, &settings);
        let filters =
            (!filters.is_empty()).then(|| Box::new(Filters::new(filters, shared.metrics.clone())));
        Self {
            stream,
            shared,
            settings,
            listener,
            peer,
            started: Instant::now(),
            last_read: Instant::now(),
            line_started: None,
            input: Vec::with_capacity(FIRST_READ),
            pos: 0,
            read_size: FIRST_READ,
            out: Vec::with_capacity(1024),
            receiver: RequestReceiver::default(),
            helo: None,
            spf_helo: None,
            esmtp: false,
            authenticated: None,
            transaction: None,
            messages: 0,
            bdat: None,
            discarding: false,
            errors: 0,
            auth_errors: 0,
            closing: false,
            dnsbl_allowed: false,
            filters,
            limits: limits::SessionLimits::default(),
        }
    }

    pub(crate) fn is_tls(&self) -> bool {
        matches!(self.stream, ServerStream::Tls(_))
    }

    /// Queues a reply; replies go out when the client's pipelined input is used up.
    pub(crate) fn reply(&mut self, reply: Reply) {
        if reply.is_error() {
            self.errors += 1;
        }
        // 421 means the server is closing the connection (RFC 5321 §3.8), whoever chose it:
        // a filter's `SMFIR_SHUTDOWN` as much as the session's own limits.
        if reply.0.starts_with("421") {
            self.closing = true;
        }
        self.out.extend_from_slice(reply.0.as_bytes());
    }

    pub(crate) async fn flush(&mut self) -> Result<(), End> {
        if self.out.is_empty() {
            return Ok(());
        }
        let result = self.stream.write_all(&self.out).await;
        self.out.clear();
        result.map_err(|_| End::Disconnected)?;
        self.stream.flush().await.map_err(|_| End::Disconnected)
    }

    /// Bytes received and not used yet.
    pub(crate) fn pending(&self) -> &[u8] {
        &self.input[self.pos..]
    }

    pub(crate) fn consume(&mut self, n: usize) {
        self.pos += n;
    }

    /// Wipes the input used so far. Reading moves unused input to the front of the buffer,
    /// leaving stale bytes behind: after an AUTH line or SASL response, those would be
    /// credentials.
    pub(crate) fn wipe_consumed_input(&mut self) {
        self.input[..self.pos].zeroize();
    }

    /// Reads more input, waiting at most `timeout`, never past `deadline` (which, unlike
    /// `timeout`, does not move with each byte) nor past the session's duration.
    /// The replies queued so far go out first: in the middle of a BDAT chunk too, the
    /// client must hear about the messages already committed before the server waits.
    pub(crate) async fn fill(
        &mut self,
        timeout: Duration,
        deadline: Option<Deadline>,
    ) -> Result<(), End> {
        self.flush().await?;
        if self.pos > 0 {
            self.input.drain(..self.pos);
            self.pos = 0;
        }
        let left = self
            .settings
            .duration
            .saturating_sub(self.started.elapsed());
        let until_deadline = deadline.map(|d| d.at.saturating_duration_since(Instant::now()));
        let wait = timeout
            .min(left)
            .min(until_deadline.unwrap_or(Duration::MAX));
        // Reads into spare capacity: zeroing a whole chunk per read would cost a client's
        // every byte 64 KiB of work when it sends one byte at a time.
        self.input.reserve(self.read_size);
        let room = self.input.capacity() - self.input.len();
        let read = tokio::time::timeout(wait, self.stream.read_buf(&mut self.input)).await;
        match read {
            Ok(Ok(0)) | Ok(Err(_)) => Err(End::Disconnected),
            Ok(Ok(n)) => {
                self.last_read = Instant::now();
                if n == room {
                    self.read_size = (self.read_size * 2).min(LARGEST_READ);
                }
                Ok(())
            }
            Err(_) => {
                let why = match deadline {
                    Some(deadline) if until_deadline.is_some_and(|d| d <= timeout.min(left)) => {
                        deadline.why
                    }
                    _ if left <= timeout => "session duration exceeded",
                    _ => "timeout, closing connection",
                };
                tracing::info!(client = %self.peer.ip(), why, "session ended by a time limit");
                self.reply(Reply::new(
                    421,
                    "4.4.2",
                    format!("{} {why}", self.settings.hostname),
                ));
                let _ = self.flush().await;
                Err(End::TimedOut)
            }
        }
    }

    /// Serves the session to its end.
    pub(crate) async fn run(mut self) -> ServerStream {
        // A refused client gets the rule's reply instead of the greeting and is let go at
        // once rather than kept waiting for QUIT, holding a session slot.
        if self
            .refused_by_rule(Stage::Connect, CommandValues::default())
            .await
            || self.refused_by_dnsbl_at_connect().await
            || self
                .refused_by_limiter(Stage::Connect, CommandValues::default())
                .await
        {
            return self.close().await;
        }
        if let Filtered::Refused(reply) = self.filter(Stage::Connect, None).await {
            self.reply(reply);
            return self.close().await;
        }
        let greeting = format!("{} {}", self.settings.hostname, self.listener.greeting);
        self.reply(Reply::new(220, "", greeting));
        if self.flush().await.is_ok() {
            let _ = self.serve().await;
        }
        self.close().await
    }

    /// Sends what is queued, and ends the session and its filters' sessions.
    async fn close(mut self) -> ServerStream {
        let _ = self.flush().await;
        let _ = self.stream.shutdown().await;
        if let Some(filters) = self.filters.as_deref_mut() {
            filters.close().await;
        }
        self.stream
    }

    async fn serve(&mut self) -> Result<(), End> {
        loop {
            while !self.pending().is_empty() {
                if self.discarding {
                    match self.pending().iter().position(|&b| b == b'\n') {
                        Some(end) => {
                            self.consume(end + 1);
                            self.discarding = false;
                            self.line_started = None;
                            continue;
                        }
                        None => {
                            let all = self.pending().len();
                            self.consume(all);
                            break;
                        }
                    }
                }
                // Commands reach the parser one whole CRLF line at a time, so that how the
                // input was cut never changes how it is read (smtp-proto reads past a bare LF
                // and bounds only lines that span reads).
                let line = match next_line(self.pending()) {
                    Line::Incomplete => break,
                    Line::TooLong => {
                        self.discarding = true;
                        self.syntax_error(smtp_proto::Error::ResponseTooLong);
                        continue;
                    }
                    Line::BareLf(end) => {
                        // A bare LF is not a line end (RFC 5321 §2.3.8); reading it as one,
                        // or not, is how SMTP smuggling starts. The line is refused whole.
                        self.consume(end);
                        self.line_started = None;
                        self.shared.metrics.rejected("syntax");
                        self.reply(Reply::new(
                            500,
                            "5.5.2",
                            "Bare LF in command: lines end with CRLF",
                        ));
                        continue;
                    }
                    Line::Complete(end) => end,
                };
                let mut iter = self.input[self.pos..self.pos + line].iter();
                let parsed = self.receiver.ingest(&mut iter).map(Request::into_owned);
                self.consume(line);
                self.line_started = None;
                // A whole line that still needs more is one smtp-proto could not finish.
                self.receiver = RequestReceiver::default();
                let flow = match parsed {
                    Ok(request) => self.handle(request).await?,
                    Err(smtp_proto::Error::NeedsMoreData { .. }) => {
                        self.syntax_error(smtp_proto::Error::SyntaxError {
                            syntax: "a complete command line",
                        });
                        Flow::Continue
                    }
                    Err(error) => {
                        // The rest of an overlong line is not a new command.
                        self.discarding = matches!(error, smtp_proto::Error::ResponseTooLong);
                        self.syntax_error(error);
                        Flow::Continue
                    }
                };
                if flow == Flow::Close || self.closing {
                    return self.flush().await;
                }
                if self.errors >= self.settings.max_errors {
                    self.reply(Reply::new(
                        421,
                        "4.7.0",
                        "Too many errors, closing connection",
                    ));
                    self.shared.metrics.rejected("limit");
                    return self.flush().await;
                }
            }
            self.flush().await?;
            let timeout = self.settings.timeout;
            let deadline = self.command_deadline();
            self.fill(timeout, deadline).await?;
        }
    }

    /// The deadline of what the client is in the middle of sending between commands: the
    /// rest of a command line it started, and the rest of a message sent with BDAT.
    fn command_deadline(&mut self) -> Option<Deadline> {
        let in_line = self.discarding || !self.pending().is_empty();
        let line = if in_line {
            let started = *self.line_started.get_or_insert(self.last_read);
            Deadline::command_line(started, self.settings.command_deadline)
        } else {
            self.line_started = None;
            None
        };
        let body = self.bdat.as_ref().and_then(|upload| {
            upload
                .transfer
                .deadline(self.settings.command_deadline, self.settings.data_min_rate)
        });
        Deadline::earliest(line, body)
    }

    /// The deadline of a line started at `started` (set from the last read when `in_line`
    /// and not yet set), outside the command loop (a SASL response).
    pub(crate) fn line_deadline(
        &self,
        started: &mut Option<Instant>,
        in_line: bool,
    ) -> Option<Deadline> {
        if !in_line {
            return None;
        }
        let started = *started.get_or_insert(self.last_read);
        Deadline::command_line(started, self.settings.command_deadline)
    }

    fn syntax_error(&mut self, error: smtp_proto::Error) {
        self.shared.metrics.rejected("syntax");
        let reply = match error {
            smtp_proto::Error::UnknownCommand => Reply::new(500, "5.5.1", "Unknown command"),
            smtp_proto::Error::ResponseTooLong => Reply::new(500, "5.5.2", "Line too long"),
            smtp_proto::Error::InvalidSenderAddress => {
                Reply::new(501, "5.1.7", "Bad sender address syntax")
            }
            smtp_proto::Error::InvalidRecipientAddress => {
                Reply::new(501, "5.1.3", "Bad recipient address syntax")
            }
            smtp_proto::Error::SyntaxError { syntax } => {
                Reply::new(501, "5.5.4", format!("Syntax: {syntax}"))
            }
            smtp_proto::Error::InvalidParameter { param } => {
                Reply::new(501, "5.5.4", format!("Invalid parameter {param:?}"))
            }
            smtp_proto::Error::UnsupportedParameter { param } => {
                let param: String = param
                    .chars()
                    .filter(|c| c.is_ascii_graphic())
                    .take(64)
                    .collect();
                Reply::new(504, "5.5.4", format!("Unsupported parameter {param:?}"))
            }
            _ => Reply::new(500, "5.5.2", "Syntax error"),
        };
        self.reply(reply);
    }

    async fn handle(&mut self, request: Request<String>) -> Result<Flow, End> {
        match request {
            Request::Ehlo { host } if !self.listener.lmtp => self.hello(host, true).await,
            Request::Helo { host } if !self.listener.lmtp => self.hello(host, false).await,
            Request::Lhlo { host } if self.listener.lmtp => self.hello(host, true).await,
            Request::Ehlo { .. } | Request::Helo { .. } | Request::Lhlo { .. } => {
                self.reply(Reply::new(500, "5.5.1", "Unknown command"));
            }
            Request::StartTls => return self.starttls().await,
            Request::Auth {
                mechanism,
                initial_response,
            } => self.auth(mechanism, initial_response).await?,
            Request::Mail { from } => self.mail(from).await,
            Request::Rcpt { to } => self.rcpt(to).await,
            Request::Data => return self.data().await,
            Request::Bdat { chunk_size, is_last } => return self.bdat(chunk_size, is_last).await,
            Request::Rset => {
                self.abandon_bdat().await;
                if self.transaction.take().is_some() {
                    self.end_filtered_transaction(true).await;
                }
                self.reply(Reply::new(250, "2.0.0", "OK"));
            }
            Request::Noop { .. } => self.reply(Reply::new(250, "2.0.0", "OK")),
            Request::Quit => {
                self.reply(Reply::new(221, "2.0.0", "Bye"));
                return Ok(Flow::Close);
            }
            Request::Vrfy { value } => self.vrfy(value, false).await,
            Request::Expn { value } => self.vrfy(value, true).await,
            Request::Help { .. } => self.reply(Reply::new(
                214,
                "2.0.0",
                "Commands: EHLO HELO LHLO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY EXPN HELP AUTH STARTTLS",
            )),
            Request::Etrn { .. } | Request::Atrn { .. } | Request::Burl { .. } => {
                self.reply(Reply::new(502, "5.5.1", "Command not implemented"));
            }
        }
        Ok(Flow::Continue)
    }

    async fn hello(&mut self, host: String, extended: bool) {
        let host: String = host
            .chars()
            .filter(|c| c.is_ascii_graphic())
            .take(255)
            .collect();
        if host.is_empty() {
            self.reply(Reply::new(501, "5.5.4", "A host name is required"));
            return;
        }
        let values = CommandValues {
            helo: Some(&host),
            ..CommandValues::default()
        };
        if self.refused_by_rule(Stage::Ehlo, values).await
            || self.refused_by_dnsbl_at_helo(&host).await
            || self.refused_by_limiter(Stage::Ehlo, values).await
        {
            return;
        }
        if let Some(refusal) = self.spf_at_helo(&host).await {
            self.shared.metrics.rejected("spf");
            self.reply(refusal);
            return;
        }
        // A new greeting starts over, as RFC 5321 §4.1.4 says, a BDAT transfer included.
        self.abandon_bdat().await;
        if self.transaction.take().is_some() {
            self.end_filtered_transaction(true).await;
        }
        let previous = self.helo.replace(host);
        if let Filtered::Refused(reply) = self.filter(Stage::Ehlo, None).await {
            self.helo = previous;
            self.reply(reply);
            return;
        }
        self.esmtp = extended;
        if !extended {
            self.reply(Reply::new(250, "", &self.settings.hostname));
            return;
        }
        let mut ehlo = EhloResponse::new(self.settings.hostname.as_str());
        ehlo.capabilities = EXT_8BIT_MIME
            | EXT_CHUNKING
            | EXT_DSN
            | EXT_ENHANCED_STATUS_CODES
            | EXT_PIPELINING
            | EXT_SIZE
            | EXT_SMTP_UTF8
            | EXT_HELP
            | EXT_MT_PRIORITY
            | EXT_FUTURE_RELEASE
            | EXT_VRFY
            | EXT_EXPN;
        ehlo.size = usize::try_from(self.settings.max_message_size).unwrap_or(usize::MAX);
        // FUTURERELEASE announces the longest hold as an interval and as a date (RFC 4865).
        ehlo.future_release_interval = envelope::MAX_HOLD;
        ehlo.future_release_datetime = envelope::unix_now().saturating_add(envelope::MAX_HOLD);
        if self.is_tls() {
            ehlo.capabilities |= EXT_REQUIRE_TLS;
        } else if self.shared.tls().is_some() {
            ehlo.capabilities |= EXT_START_TLS;
        }
        if self.auth_offered() {
            ehlo.capabilities |= EXT_AUTH;
            ehlo.auth_mechanisms = AUTH_PLAIN | AUTH_LOGIN;
        }
        let mut out = Vec::new();
        if ehlo.write(&mut out).is_ok() {
            // smtp-proto adds a greeting text after the host name; the reply carries only the
            // name, as Postfix's does.
            let first_end = out
                .windows(2)
                .position(|w| w == b"\r\n")
                .unwrap_or(out.len());
            let name_end = 4 + self.settings.hostname.len();
            if first_end > name_end
                && out.get(4..name_end) == Some(self.settings.hostname.as_bytes())
            {
                out.drain(name_end..first_end);
            }
            self.out.extend_from_slice(&out);
        }
    }

    /// Whether AUTH may be used now: a directory checks it, and the connection is encrypted
    /// unless plain-text AUTH is allowed.
    pub(crate) fn auth_offered(&self) -> bool {
        self.settings.auth_directory.is_some()
            && (self.is_tls() || self.settings.auth_allow_plain_text)
            && !self.listener.lmtp
    }

    async fn starttls(&mut self) -> Result<Flow, End> {
        let Some(acceptor) = self.shared.tls() else {
            self.reply(Reply::new(502, "5.5.1", "STARTTLS not available"));
            return Ok(Flow::Continue);
        };
        if self.is_tls() {
            self.reply(Reply::new(503, "5.5.1", "Already in TLS"));
            return Ok(Flow::Continue);
        }
        self.reply(Reply::new(220, "2.0.0", "Ready to start TLS"));
        self.flush().await?;
        // Anything pipelined after STARTTLS was sent in clear text and could have been
        // injected by a man in the middle: it is discarded (RFC 3207 §4.2).
        self.input.clear();
        self.pos = 0;
        self.receiver = RequestReceiver::default();
        let plain = std::mem::replace(&mut self.stream, ServerStream::Detached);
        let ServerStream::Plain(tcp) = plain else {
            return Err(End::Disconnected);
        };
        let handshake = tokio::time::timeout(self.settings.timeout, acceptor.accept(tcp)).await;
        match handshake {
            Ok(Ok(tls)) => {
                self.stream = ServerStream::Tls(Box::new(tls));
                self.shared.metrics.tls();
                self.helo = None;
                if self.transaction.take().is_some() {
                    self.end_filtered_transaction(true).await;
                }
                Ok(Flow::Continue)
            }
            _ => Err(End::Disconnected),
        }
    }
}

/// The next command line in `pending`, as far as it has arrived.
#[derive(Debug, PartialEq, Eq)]
enum Line {
    /// No line end yet, and within the length bound.
    Incomplete,
    /// Longer than the bound, without a line end yet.
    TooLong,
    /// Ends with a LF not preceded by CR, `.0` bytes long with it.
    BareLf(usize),
    /// Ends with CRLF, `.0` bytes long with it.
    Complete(usize),
}

fn next_line(pending: &[u8]) -> Line {
    let Some(lf) = pending.iter().position(|&b| b == b'\n') else {
        return if pending.len() > MAX_LINE_LENGTH {
            Line::TooLong
        } else {
            Line::Incomplete
        };
    };
    if lf + 1 > MAX_LINE_LENGTH {
        // The overlong line is discarded through its end, as one that arrives in pieces.
        return Line::TooLong;
    }
    if lf == 0 || pending[lf - 1] != b'\r' {
        Line::BareLf(lf + 1)
    } else {
        Line::Complete(lf + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines_end_with_crlf_and_are_bounded() {
        assert_eq!(next_line(b""), Line::Incomplete);
        assert_eq!(next_line(b"NOOP"), Line::Incomplete);
        assert_eq!(next_line(b"NOOP\r"), Line::Incomplete);
        assert_eq!(next_line(b"NOOP\r\nQUIT\r\n"), Line::Complete(6));
        assert_eq!(next_line(b"MAIL FROM\n NOOP\r\n"), Line::BareLf(10));
        assert_eq!(next_line(b"\n"), Line::BareLf(1));
        assert_eq!(next_line(b"\r\n"), Line::Complete(2));
        let long = vec![b'a'; MAX_LINE_LENGTH + 1];
        assert_eq!(next_line(&long), Line::TooLong);
        let mut ended = vec![b'a'; MAX_LINE_LENGTH];
        ended.extend_from_slice(b"\r\n");
        assert_eq!(next_line(&ended), Line::TooLong);
        let mut fits = vec![b'a'; MAX_LINE_LENGTH - 2];
        fits.extend_from_slice(b"\r\n");
        assert_eq!(next_line(&fits), Line::Complete(MAX_LINE_LENGTH));
    }
}
