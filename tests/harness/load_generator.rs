//! A load of SMTP clients for fault tests: N messages, each with its own Message-ID, sent over
//! several concurrent sessions to a set of ingress addresses, in the background while the
//! test breaks things.
//!
//! It records what a sender learns: which Message-IDs were answered 250 after the final `.`
//! (the server took responsibility for them), how many were deferred with a 4xx (allowed
//! while a fault lasts: a real client would try again later), every 5xx (a failure: a fault
//! inside the cluster must never look permanent to a client), and the messages whose final
//! `.` got no answer at all (the connection ended or timed out: the client cannot know).
//!
//! Postfix's `smtp-source` cannot tell which message got which reply, nor go on through
//! dropped connections, so the sessions are written here, with the least SMTP they need.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

/// The HELO name of the load's sessions.
pub const LOAD_CLIENT_HELO: &str = "load.client.test";
/// The domain of the load's Message-IDs.
const MESSAGE_ID_DOMAIN: &str = "load.test";
/// How long a session waits to connect before it tries the next address.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How many 4xx replies a report keeps the text of.
const DEFERRED_SAMPLES: usize = 10;
/// Pause after a failed connection, so a session does not spin against an address that
/// refuses.
const RECONNECT_PAUSE: Duration = Duration::from_millis(200);

/// What to send.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Messages in all.
    pub messages: usize,
    /// Concurrent sessions; session `i` starts on address `i` (modulo their number) and moves
    /// to the next address each time its connection fails.
    pub sessions: usize,
    /// Each message goes to one of these, in turn.
    pub recipients: Vec<String>,
    /// Most messages started per second over all sessions, so that the load lasts through
    /// the faults a test injects; `None` sends as fast as the servers answer.
    pub rate: Option<f64>,
    /// How long a session waits for any one reply before it gives up on the connection: long
    /// enough to outlast a stopped process the server waits on.
    pub reply_timeout: Duration,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            messages: 100,
            sessions: 4,
            recipients: vec!["alice@example.org".into()],
            rate: None,
            reply_timeout: Duration::from_secs(90),
        }
    }
}

/// What the load has learned so far.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    /// Message-IDs answered 250 after the final `.`, with when the answer came.
    pub accepted: Vec<(String, SystemTime)>,
    /// Message-IDs whose final `.` was sent and got no answer (connection ended, timeout).
    pub unanswered: Vec<String>,
    /// Replies 4xx, at whatever command (the message is then given up, not retried).
    pub deferred: usize,
    /// The first of those replies, each with the command it answered, for messages.
    pub deferred_samples: Vec<String>,
    /// Every 5xx reply, with the command it answered.
    pub refused: Vec<String>,
    /// Connections that could not be made or ended outside a message.
    pub connection_failures: usize,
    /// Messages whose final `.` was sent (answered or not): every one the cluster may hold.
    pub data_sent: usize,
    /// Whether every session is done.
    pub finished: bool,
}

impl LoadReport {
    /// The accepted Message-IDs alone.
    pub fn accepted_ids(&self) -> Vec<String> {
        self.accepted.iter().map(|(id, _)| id.clone()).collect()
    }
}

/// A load running in the background.
pub struct Load {
    sessions: Vec<JoinHandle<()>>,
    report: Arc<Mutex<LoadReport>>,
    stop: Arc<AtomicBool>,
}

/// What the sessions share.
struct Plan {
    targets: Vec<SocketAddr>,
    options: LoadOptions,
    /// The next message number to send.
    next: AtomicUsize,
    started: Instant,
    run: String,
}

impl Load {
    /// Starts sending `options.messages` messages to `targets`.
    pub fn start(targets: Vec<SocketAddr>, options: LoadOptions) -> Load {
        assert!(!targets.is_empty(), "the load needs an address to send to");
        assert!(!options.recipients.is_empty(), "the load needs a recipient");
        let run = format!(
            "{:x}.{:x}",
            std::process::id(),
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        );
        let plan = Arc::new(Plan {
            targets,
            next: AtomicUsize::new(0),
            started: Instant::now(),
            run,
            options,
        });
        let report = Arc::new(Mutex::new(LoadReport::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let sessions = (0..plan.options.sessions)
            .map(|index| {
                let (plan, report, stop) = (plan.clone(), report.clone(), stop.clone());
                std::thread::spawn(move || session(index, &plan, &report, &stop))
            })
            .collect();
        Load {
            sessions,
            report,
            stop,
        }
    }

    /// What it has learned so far.
    pub fn report(&self) -> LoadReport {
        let mut report = self.report.lock().expect("load report lock").clone();
        report.finished = self.sessions.iter().all(JoinHandle::is_finished);
        report
    }

    /// How many messages were answered 250 so far.
    pub fn accepted(&self) -> usize {
        self.report.lock().expect("load report lock").accepted.len()
    }

    /// Waits until every session is done, and reports.
    pub fn wait(self) -> LoadReport {
        for session in self.sessions {
            session.join().expect("a load session panicked");
        }
        let mut report = self.report.lock().expect("load report lock").clone();
        report.finished = true;
        report
    }

    /// Asks the sessions to stop after their current message, and waits for them.
    pub fn stop(self) -> LoadReport {
        self.stop.store(true, Ordering::SeqCst);
        self.wait()
    }
}

/// The marker ending each message's body: a dumped message that has it arrived whole.
pub fn end_marker(message_id: &str) -> String {
    format!("end of message {message_id}")
}

/// One session: messages one after another, reconnecting (to the next address) whenever the
/// connection fails, until every message has been tried.
fn session(index: usize, plan: &Plan, report: &Mutex<LoadReport>, stop: &AtomicBool) {
    let mut target = index % plan.targets.len();
    let mut connection: Option<Connection> = None;
    loop {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let number = plan.next.fetch_add(1, Ordering::SeqCst);
        if number >= plan.options.messages {
            break;
        }
        if let Some(rate) = plan.options.rate {
            let due = plan.started + Duration::from_secs_f64(number as f64 / rate);
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
        }
        let message_id = format!("{number}.{}@{MESSAGE_ID_DOMAIN}", plan.run);
        let recipient = &plan.options.recipients[number % plan.options.recipients.len()];
        // A message is tried once; a session whose connection fails, or that the server
        // asks to reconnect, tries it on a new connection, at most once per address and
        // once more.
        let mut outcome = Outcome::NotSent;
        for _ in 0..=plan.targets.len() {
            let conn = match connection.take() {
                Some(conn) => conn,
                None => match Connection::open(plan.targets[target], &plan.options) {
                    Ok(conn) => conn,
                    Err(_) => {
                        report.lock().expect("load report lock").connection_failures += 1;
                        target = (target + 1) % plan.targets.len();
                        std::thread::sleep(RECONNECT_PAUSE);
                        continue;
                    }
                },
            };
            let (result, conn) = send(conn, &message_id, recipient);
            connection = conn;
            outcome = result;
            if matches!(outcome, Outcome::Reconnect) {
                continue;
            }
            if matches!(outcome, Outcome::ConnectionFailed) {
                report.lock().expect("load report lock").connection_failures += 1;
                target = (target + 1) % plan.targets.len();
                continue;
            }
            break;
        }
        let mut report = report.lock().expect("load report lock");
        match outcome {
            Outcome::Accepted => {
                report.data_sent += 1;
                report.accepted.push((message_id, SystemTime::now()));
            }
            Outcome::Unanswered => {
                report.data_sent += 1;
                report.unanswered.push(message_id);
            }
            Outcome::Deferred { data_sent, reply } => {
                report.data_sent += usize::from(data_sent);
                report.deferred += 1;
                if report.deferred_samples.len() < DEFERRED_SAMPLES {
                    report.deferred_samples.push(reply);
                }
            }
            Outcome::Refused { data_sent, reply } => {
                report.data_sent += usize::from(data_sent);
                report.refused.push(format!("{message_id}: {reply}"));
            }
            Outcome::NotSent | Outcome::ConnectionFailed | Outcome::Reconnect => {}
        }
    }
    if let Some(mut conn) = connection {
        let _ = conn.command("QUIT");
    }
}

/// What became of one message.
enum Outcome {
    Accepted,
    /// The final `.` was sent and no reply came.
    Unanswered,
    Deferred {
        data_sent: bool,
        reply: String,
    },
    Refused {
        data_sent: bool,
        reply: String,
    },
    /// The connection failed before the message's final `.`: it may be tried elsewhere.
    ConnectionFailed,
    /// MAIL FROM was deferred, as a server does at its limit of messages per session: the
    /// message is tried again on a new connection.
    Reconnect,
    NotSent,
}

/// Sends one message on `conn`; returns the outcome and the connection when it can go on.
fn send(mut conn: Connection, message_id: &str, recipient: &str) -> (Outcome, Option<Connection>) {
    let steps = [
        "MAIL FROM:<load@remote.test>".to_owned(),
        format!("RCPT TO:<{recipient}>"),
        "DATA".to_owned(),
    ];
    for (step, line) in steps.iter().enumerate() {
        let expected = if step == 2 { 3 } else { 2 };
        match conn.command(line) {
            Err(_) => return (Outcome::ConnectionFailed, None),
            Ok(reply) if reply.code / 100 == expected => {}
            Ok(reply) if step == 0 && reply.code / 100 == 4 => {
                let _ = conn.command("QUIT");
                return (Outcome::Reconnect, None);
            }
            Ok(reply) => {
                let outcome = if reply.code / 100 == 4 {
                    Outcome::Deferred {
                        data_sent: false,
                        reply: format!("{line}: {}", reply.text),
                    }
                } else {
                    Outcome::Refused {
                        data_sent: false,
                        reply: format!("{line}: {}", reply.text),
                    }
                };
                // 421 ends the session; otherwise the session goes on after RSET.
                let keep = reply.code != 421 && conn.command("RSET").is_ok_and(|r| r.code == 250);
                return (outcome, keep.then_some(conn));
            }
        }
    }
    let body = format!(
        "From: <load@remote.test>\r\nTo: <{recipient}>\r\nSubject: load\r\nMessage-ID: <{message_id}>\r\n\r\nA message of the cluster test's load.\r\n{}\r\n.",
        end_marker(message_id)
    );
    match conn.command(&body) {
        Err(_) => (Outcome::Unanswered, None),
        Ok(reply) if reply.code == 250 => (Outcome::Accepted, Some(conn)),
        Ok(reply) => {
            let keep = reply.code != 421;
            let outcome = if reply.code / 100 == 4 {
                Outcome::Deferred {
                    data_sent: true,
                    reply: format!("end of data: {}", reply.text),
                }
            } else {
                Outcome::Refused {
                    data_sent: true,
                    reply: format!("end of data: {}", reply.text),
                }
            };
            (outcome, keep.then_some(conn))
        }
    }
}

/// A reply: its code and its lines.
struct Reply {
    code: u16,
    text: String,
}

/// One SMTP connection after EHLO.
struct Connection {
    writer: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Connection {
    fn open(address: SocketAddr, options: &LoadOptions) -> std::io::Result<Connection> {
        let stream = TcpStream::connect_timeout(&address, CONNECT_TIMEOUT)?;
        stream.set_read_timeout(Some(options.reply_timeout))?;
        stream.set_write_timeout(Some(options.reply_timeout))?;
        let _ = stream.set_nodelay(true);
        let mut conn = Connection {
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
        };
        let greeting = conn.read_reply()?;
        let ehlo = conn.command(&format!("EHLO {LOAD_CLIENT_HELO}"))?;
        if greeting.code != 220 || ehlo.code != 250 {
            return Err(std::io::Error::other(format!(
                "greeting {} / EHLO {}",
                greeting.text, ehlo.text
            )));
        }
        Ok(conn)
    }

    fn command(&mut self, line: &str) -> std::io::Result<Reply> {
        self.writer.write_all(line.as_bytes())?;
        self.writer.write_all(b"\r\n")?;
        self.read_reply()
    }

    fn read_reply(&mut self) -> std::io::Result<Reply> {
        let mut text = String::new();
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line)? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            text.push_str(&line);
            let bytes = line.as_bytes();
            if bytes.len() < 4 || bytes[3] != b'-' {
                let code = line
                    .get(..3)
                    .and_then(|code| code.parse().ok())
                    .ok_or_else(|| std::io::Error::other(format!("not a reply: {line:?}")))?;
                return Ok(Reply {
                    code,
                    text: text.trim_end().to_owned(),
                });
            }
        }
    }
}
