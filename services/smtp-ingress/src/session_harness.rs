//! A whole SMTP or LMTP session driven by a byte string, and the properties every session
//! must keep, for the fuzz targets and for the stable test that replays their corpus.
//!
//! Compiled only with the `fuzzing` feature: the directory and queue below are doubles that
//! answer from the text they are given, so a release build must not be able to wire them.
//!
//! The doubles stand in for the `Directory` and `Queue` services only so that the state
//! machine can be driven through every branch (yes, no, temporary failure, broken call,
//! queue refusal) from the input alone; they are not stand-ins for the remote peers, which
//! the end-to-end tests use for real. What they answer:
//!
//! - local domain: `example.org`; a domain containing `tempfail` fails temporarily.
//! - recipients: a local part starting with `unknown` does not exist, `tempfail` fails
//!   temporarily, `rpcfail` cannot be asked; every other local recipient exists.
//! - logins: `alice` / `secret`; user `tempfail` fails temporarily, `rpcfail` cannot be asked.
//! - lists (`session.*.reject`, `session.rcpt.relay`): a value containing `blocked` is in
//!   every list, one containing `tempfail` fails temporarily; client 127.0.0.1 is in none.
//! - VRFY/EXPN: `alice` and `list` are found, `cannot` cannot be told, `tempfail` fails.
//! - queue: a body containing `queue-fail` is refused (unavailable), `queue-quota` is over
//!   quota; every other complete body is committed.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use ferrymail_config::Config;
use ferrymail_rpc::RpcError;
use ferrymail_rpc::directory::{Answer, AuthRequest, DirectoryService, Expansion, RemoteState};
use ferrymail_rpc::queue::{
    BodyPart, BodyStream, BulkReport, BulkRequest, Envelope, ListPage, ListRequest, MAX_PREPEND,
    MessageDetail, QueueError, QueueId, QueueService, QueueStats,
};
use futures::StreamExt;
use secrecy::ExposeSecret;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::message_auth::Authenticator;
use crate::session::Session;
use crate::settings::{ListenerSettings, Settings};
use crate::tls::ServerStream;
use crate::{IngressMetrics, Shared};

/// The configuration every harnessed session runs with: AUTH without TLS (so the fuzzer
/// reaches it), small limits (so it reaches them), rules that ask the lists, and no message
/// authentication (it would need DNS; the resolver names a closed local port in case).
const CONFIG: &str = r#"
[server]
hostname = "mx.fuzz.test"

[directory.fuzz]
type = "lmtp"
address = "127.0.0.1"
port = 9
lookup.domains = ["example.org"]
lookup.blocked = ["blocked.test"]
lookup.trusted = ["192.0.2.1"]

[session]
timeout = "60s"
duration = "120s"

[session.errors]
total = 10

[session.auth]
directory = "fuzz"
allow-plain-text = true
errors.total = 3

[session.ehlo]
reject = [ { if = "helo-domain", in-list = "fuzz/blocked", then = "550 5.7.1 Go away" }, { else = false } ]

[session.mail]
reject = [ { if = "sender", in-list = "fuzz/blocked", then = "550 5.7.1 Sender blocked" }, { else = false } ]

[session.rcpt]
directory = "fuzz"
max-recipients = 5
relay = [ { if = "remote-ip", in-list = "fuzz/trusted", then = true }, { else = false } ]
reject = [ { if = "rcpt", in-list = "fuzz/blocked", then = "450 4.7.1 Try later" }, { else = false } ]

[session.data]
timeout = "60s"
reject = [ { if = "sender-domain", in-list = "fuzz/blocked", then = "554 5.7.1 No" }, { else = false } ]

[session.data.limits]
size = "64KB"
messages = 3

[auth.spf.verify]
ehlo = "disable"
mail-from = "disable"

[auth.dkim]
verify = "disable"

[auth.arc]
verify = "disable"

[auth.dmarc]
verify = "disable"

[resolver]
type = "custom"
custom = ["127.0.0.1:9"]
"#;

/// How long a session may take before it counts as hung: the client always closes its side
/// after its input, so a session that is still running this long later waits for nothing.
pub const HANG_LIMIT: Duration = Duration::from_secs(10);

/// The protocol of the listener a session is accepted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `protocol = "smtp"`.
    Smtp,
    /// `protocol = "lmtp"`.
    Lmtp,
}

/// What a harnessed session did.
#[derive(Debug, Default)]
pub struct Transcript {
    /// Every byte the server wrote.
    pub output: Vec<u8>,
    /// The queue ids the queue double committed, in order.
    pub committed: Vec<String>,
    /// Breaches of the body stream contract the queue double saw.
    pub violations: Vec<String>,
    /// Whether the session ended within [`HANG_LIMIT`].
    pub ended: bool,
}

/// What every session shares and is costly to build: parsed once per process.
struct Fixed {
    settings: Arc<Settings>,
    auth: Arc<Authenticator>,
    metrics: IngressMetrics,
    /// Built once: loading the trust store for every input would slow fuzzing down.
    hook_client: crate::hook::HookClient,
}

fn fixed() -> Option<&'static Fixed> {
    static FIXED: OnceLock<Option<Fixed>> = OnceLock::new();
    FIXED
        .get_or_init(|| {
            let config: Config = match ferrymail_config::load_str("fuzz.toml", CONFIG) {
                Ok(config) => config,
                Err(errors) => {
                    // A harness bug, not a finding: say so loudly rather than fuzz nothing.
                    eprintln!("the harness configuration does not load: {errors}");
                    return None;
                }
            };
            let auth = match Authenticator::new(&config) {
                Ok(auth) => auth,
                Err(error) => {
                    eprintln!("the harness resolver does not build: {error}");
                    return None;
                }
            };
            let registry = ferrymail_telemetry::Metrics::new("fuzz");
            Some(Fixed {
                settings: Arc::new(Settings::new(&config)),
                auth: Arc::new(auth),
                metrics: IngressMetrics::register(&registry),
                hook_client: crate::hook::HookClient::new(ferrymail_tls::TlsSettings::new()),
            })
        })
        .as_ref()
}

/// Runs one session on a `protocol` listener: `input` is what the client sends, written
/// `write_size` bytes at a time (so the server reads it in pieces no larger), then the client
/// closes its side and reads every reply to the end.
///
/// Each session gets a single-threaded runtime of its own, so that the work it leaves behind
/// (an upload the queue is still reading) is seen to its end before the queue is asked what
/// it committed, and so that runs are repeatable.
///
/// # Panics
/// When the harness's own configuration does not load, or no runtime can be built (harness
/// bugs, never an input's).
pub fn run_session(protocol: Protocol, input: &[u8], write_size: usize) -> Transcript {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => panic!("no runtime for the session harness: {error}"),
    };
    runtime.block_on(session(protocol, input, write_size))
}

async fn session(protocol: Protocol, input: &[u8], write_size: usize) -> Transcript {
    let Some(fixed) = fixed() else {
        panic!("the session harness cannot start; see the message above");
    };
    let write_size = write_size.max(1);
    let queue = Arc::new(QueueDouble::default());
    let shared = Arc::new(Shared {
        settings: RwLock::new(fixed.settings.clone()),
        listeners: RwLock::default(),
        tls: RwLock::new(None),
        auth: RwLock::new(fixed.auth.clone()),
        directory: Arc::new(DirectoryDouble),
        queue: queue.clone(),
        metrics: fixed.metrics.clone(),
        connections: Arc::default(),
        blocklists: crate::dnsbl::Blocklists::default(),
        hook_client: fixed.hook_client.clone(),
    });
    let listener = Arc::new(ListenerSettings {
        id: "fuzz".into(),
        lmtp: protocol == Protocol::Lmtp,
        tls_implicit: false,
        greeting: "ESMTP ferrymail".into(),
        proxy_protocol: false,
        proxy_trusted_networks: Vec::new(),
    });
    let (client, server) = tokio::io::duplex(write_size);
    let peer = SocketAddr::from(([127, 0, 0, 1], 40000));
    let session = Session::new(ServerStream::Memory(server), shared, listener, peer);
    let (mut reader, mut writer) = tokio::io::split(client);
    let write = async move {
        for piece in input.chunks(write_size) {
            // The server may close first (QUIT, 421): the rest of the input is not read.
            if writer.write_all(piece).await.is_err() {
                return;
            }
        }
        let _ = writer.shutdown().await;
    };
    let read = async move {
        let mut output = Vec::new();
        let _ = reader.read_to_end(&mut output).await;
        output
    };
    // The server's end is dropped as soon as the session ends, as a closed socket would be,
    // so a client still writing is told rather than left waiting on a full pipe.
    let serve = async move { drop(session.run().await) };
    let run = async move {
        let (_, output, ()) = tokio::join!(write, read, serve);
        // Uploads run as tasks of their own and may outlive the session: what the queue
        // commits after the client has gone counts too.
        let runtime = tokio::runtime::Handle::current();
        while runtime.metrics().num_alive_tasks() > 0 {
            tokio::task::yield_now().await;
        }
        output
    };
    let (output, ended) = match tokio::time::timeout(HANG_LIMIT, run).await {
        Ok(output) => (output, true),
        Err(_) => (Vec::new(), false),
    };
    let log = queue.log();
    Transcript {
        output,
        committed: log.committed,
        violations: log.violations,
        ended,
    }
}

/// The largest reply line, CRLF included (RFC 5321 §4.5.3.1.5).
const MAX_REPLY_LINE: usize = 512;

/// Checks what every session must keep, whatever the client sent: it ends; the server
/// writes only well-formed replies (three digits, then a space or a hyphen, CRLF, at most
/// 512 octets, continuation lines with the same code) starting with the greeting; nothing
/// follows `221` or `421`; the reply that ends a message (after `354`, or to the last
/// BDAT) is `250` only for a message the queue committed, and every committed message is
/// answered `250`; the body reached the queue as its contract says.
pub fn check(protocol: Protocol, transcript: &Transcript) -> Result<(), String> {
    if !transcript.ended {
        return Err(format!(
            "the session did not end within {HANG_LIMIT:?} after the client closed its side"
        ));
    }
    if let Some(violation) = transcript.violations.first() {
        return Err(format!("body stream contract broken: {violation}"));
    }
    let replies = replies(&transcript.output)?;
    match replies.first() {
        Some(first) if first.code == 220 => {}
        Some(first) => return Err(format!("the first reply is not 220: {:?}", first.text)),
        None => return Err("no greeting".into()),
    }
    if let Some(at) = replies.iter().position(|r| r.code == 221 || r.code == 421)
        && let Some(after) = replies.get(at + 1)
    {
        return Err(format!(
            "a reply after {}: {:?}",
            replies[at].code, after.text
        ));
    }
    let mut acknowledged = Vec::new();
    for reply in &replies {
        if let Some(id) = queued_id(&reply.text) {
            if reply.code != 250 {
                return Err(format!("\"queued\" with code {}", reply.code));
            }
            if !transcript.committed.iter().any(|c| c == id) {
                return Err(format!(
                    "250 for message {id:?}, which the queue did not commit"
                ));
            }
            acknowledged.push(id.to_string());
        }
    }
    for (at, reply) in replies.iter().enumerate() {
        if reply.code != 354 {
            continue;
        }
        // LMTP answers once per recipient; at least the first answer follows at once.
        if let Some(next) = replies.get(at + 1)
            && next.code / 100 == 2
            && queued_id(&next.text).is_none()
        {
            return Err(format!(
                "{} after DATA without a committed message: {:?}",
                next.code, next.text
            ));
        }
    }
    for id in &transcript.committed {
        if !acknowledged.contains(id) {
            return Err(format!(
                "the queue committed {id:?} but the client was never told (it will send it again)"
            ));
        }
    }
    if protocol == Protocol::Smtp && acknowledged.len() != transcript.committed.len() {
        return Err(format!(
            "{} acknowledgements for {} committed messages",
            acknowledged.len(),
            transcript.committed.len()
        ));
    }
    Ok(())
}

/// The queue id a reply announces; only the start counts, since replies echo addresses.
fn queued_id(text: &str) -> Option<&str> {
    text.strip_prefix("2.0.0 Message queued as ")
}

/// One reply line.
struct Line {
    code: u16,
    /// The text after the code and its separator.
    text: String,
}

/// The reply lines of `output`, with multi-line replies folded to their last line (code and
/// text); an error names the first malformed line.
fn replies(output: &[u8]) -> Result<Vec<Line>, String> {
    let mut replies = Vec::new();
    let mut open: Option<u16> = None;
    let mut rest = output;
    while !rest.is_empty() {
        let Some(end) = rest.windows(2).position(|w| w == b"\r\n") else {
            return Err(format!(
                "output does not end with CRLF: {:?}",
                String::from_utf8_lossy(rest)
            ));
        };
        let line = &rest[..end];
        rest = &rest[end + 2..];
        let shown = || String::from_utf8_lossy(line).into_owned();
        if line.len() + 2 > MAX_REPLY_LINE {
            return Err(format!("reply line over 512 octets: {:?}", shown()));
        }
        if line.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0) {
            return Err(format!("a bare CR, LF or NUL in a reply: {:?}", shown()));
        }
        let (Some(digits), Some(&separator)) = (line.get(..3), line.get(3)) else {
            return Err(format!("reply line too short: {:?}", shown()));
        };
        if !digits.iter().all(u8::is_ascii_digit) || !(b'2'..=b'5').contains(&digits[0]) {
            return Err(format!("reply without a valid code: {:?}", shown()));
        }
        let code = digits
            .iter()
            .fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
        if let Some(expected) = open
            && expected != code
        {
            return Err(format!(
                "continuation of {expected} carries code {code}: {:?}",
                shown()
            ));
        }
        match separator {
            b'-' => open = Some(code),
            b' ' => {
                open = None;
                replies.push(Line {
                    code,
                    text: String::from_utf8_lossy(&line[4..]).into_owned(),
                });
            }
            _ => return Err(format!("no space or hyphen after the code: {:?}", shown())),
        }
    }
    if let Some(code) = open {
        return Err(format!("a multi-line {code} reply never ends"));
    }
    Ok(replies)
}

/// Answers lookups from the text asked about (see the module's documentation).
struct DirectoryDouble;

/// The verdict the double gives for `value`, by the words in it.
fn verdict(value: &str, yes: bool) -> Result<Answer, RpcError> {
    let value = value.to_ascii_lowercase();
    if value.contains("rpcfail") {
        Err(RpcError::Unavailable(
            "the directory double was told to fail".into(),
        ))
    } else if value.contains("tempfail") {
        Ok(Answer::temporary_failure())
    } else if yes {
        Ok(Answer::yes())
    } else {
        Ok(Answer::no())
    }
}

#[async_trait]
impl DirectoryService for DirectoryDouble {
    async fn authenticate(&self, request: AuthRequest) -> Result<Answer, RpcError> {
        let right = request.username == "alice" && request.secret.expose_secret() == b"secret";
        verdict(&request.username, right)
    }

    async fn verify_recipient(&self, _directory: &str, address: &str) -> Result<Answer, RpcError> {
        let local = address.rsplit_once('@').map_or(address, |(l, _)| l);
        verdict(address, !local.to_ascii_lowercase().starts_with("unknown"))
    }

    async fn vrfy(&self, directory: &str, address: &str) -> Result<Expansion, RpcError> {
        self.expn(directory, address).await
    }

    async fn expn(&self, _directory: &str, address: &str) -> Result<Expansion, RpcError> {
        let name = address.trim().to_ascii_lowercase();
        verdict(&name, true)?;
        Ok(match name.as_str() {
            "alice" => Expansion::Found {
                values: vec!["Alice <alice@example.org>".into()],
                reply: None,
            },
            "list" => Expansion::Found {
                values: vec!["alice@example.org".into(), "bob@example.org".into()],
                reply: None,
            },
            "cannot" => Expansion::CannotTell { reply: None },
            n if n.contains("tempfail") => Expansion::TemporaryFailure { reply: None },
            _ => Expansion::NotFound { reply: None },
        })
    }

    async fn is_local_domain(&self, _directory: &str, domain: &str) -> Result<Answer, RpcError> {
        verdict(domain, domain.eq_ignore_ascii_case("example.org"))
    }

    async fn in_list(&self, _list: &str, value: &str) -> Result<Answer, RpcError> {
        verdict(value, value.to_ascii_lowercase().contains("blocked"))
    }

    async fn remote_states(&self) -> Result<Vec<RemoteState>, RpcError> {
        // The ingress never asks: reachability is the operator's concern.
        Ok(Vec::new())
    }
}

/// What the queue double saw.
#[derive(Debug, Default, Clone)]
struct QueueLog {
    committed: Vec<String>,
    violations: Vec<String>,
}

/// Reads each body to its end and commits it, unless told to refuse it (see the module's
/// documentation); checks the body stream contract on the way.
#[derive(Default)]
struct QueueDouble {
    log: Mutex<QueueLog>,
}

impl QueueDouble {
    fn log(&self) -> QueueLog {
        self.log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn violation(&self, what: String) -> QueueError {
        let mut log = self
            .log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        log.violations.push(what.clone());
        QueueError::Internal(what)
    }
}

#[async_trait]
impl QueueService for QueueDouble {
    async fn enqueue(
        &self,
        envelope: Envelope,
        mut body: BodyStream,
    ) -> Result<QueueId, QueueError> {
        if envelope.recipients.is_empty() {
            return Err(self.violation("a message without recipients".into()));
        }
        let mut content = Vec::new();
        let mut prepended = false;
        while let Some(part) = body.next().await {
            match part {
                Ok(BodyPart::Chunk(_) | BodyPart::Prepend(_)) if prepended => {
                    return Err(self.violation("a body part after the prepended headers".into()));
                }
                Ok(BodyPart::Dmarc(_)) => {}
                Ok(BodyPart::Chunk(chunk)) => content.extend_from_slice(&chunk),
                Ok(BodyPart::Prepend(headers)) => {
                    if headers.len() > MAX_PREPEND {
                        return Err(self.violation(format!(
                            "{} bytes prepended, over {MAX_PREPEND}",
                            headers.len()
                        )));
                    }
                    prepended = true;
                }
                // The session abandoned the message: nothing is committed.
                Err(error) => return Err(error.into()),
            }
        }
        let contains = |word: &[u8]| content.windows(word.len()).any(|w| w == word);
        if contains(b"queue-fail") {
            return Err(QueueError::Unavailable(
                "the queue double was told to fail".into(),
            ));
        }
        if contains(b"queue-quota") {
            return Err(QueueError::QuotaExceeded(
                "the queue double was told so".into(),
            ));
        }
        let mut log = self
            .log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let id = format!("FUZZ{}", log.committed.len() + 1);
        log.committed.push(id.clone());
        Ok(QueueId::new(id))
    }

    async fn list(&self, _request: ListRequest) -> Result<ListPage, QueueError> {
        Err(not_for_sessions())
    }

    async fn get(&self, _queue_id: &QueueId) -> Result<MessageDetail, QueueError> {
        Err(not_for_sessions())
    }

    async fn retry(&self, _queue_id: &QueueId, _recipients: &[String]) -> Result<u32, QueueError> {
        Err(not_for_sessions())
    }

    async fn cancel(&self, _queue_id: &QueueId, _recipients: &[String]) -> Result<u32, QueueError> {
        Err(not_for_sessions())
    }

    async fn stats(&self) -> Result<QueueStats, QueueError> {
        Err(not_for_sessions())
    }

    async fn hold(&self, _queue_id: &QueueId) -> Result<bool, QueueError> {
        Err(not_for_sessions())
    }

    async fn release(&self, _queue_id: &QueueId) -> Result<bool, QueueError> {
        Err(not_for_sessions())
    }

    async fn bulk(&self, _request: BulkRequest) -> Result<BulkReport, QueueError> {
        Err(not_for_sessions())
    }

    async fn find_by_message_id(&self, _message_id: &str) -> Result<Vec<QueueId>, QueueError> {
        Err(not_for_sessions())
    }
}

/// The queue's admin calls are not part of a session.
fn not_for_sessions() -> QueueError {
    QueueError::Unavailable("the queue double serves sessions only".into())
}
