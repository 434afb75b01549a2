//! Postfix's `smtp-sink` on a loopback port: a real SMTP (or LMTP) server that accepts mail
//! and throws it away, or rejects chosen commands, for delivery tests.
//!
//! Each complete message (after the final `.`) is counted from the running counters that
//! `-c` prints, and dumped by `-d` into a private directory, one file per message (unless
//! [`SmtpSinkOptions::discard`] says otherwise).

use std::io::Read;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime};

use crate::peer::{
    PEER_PATIENCE, accepts_connections, free_loopback_ports, loopback, require_peer, wait_until,
};

/// How many times a start is retried when the chosen port was taken meanwhile.
const START_ATTEMPTS: u32 = 5;
/// How long the counter reader pauses after each read: `smtp-sink -c` prints an update for
/// every session and message, and a reader woken for each would, under a benchmark's load,
/// take a share of the CPU the benchmark measures. The pipe holds thousands of updates.
const COUNTER_READ_PAUSE: Duration = Duration::from_millis(2);

/// Options for [`SmtpSink::start`]. Command names are SMTP verbs (`MAIL`, `RCPT`, `DATA`),
/// `.` (end of data), `CONNECT` (the greeting), `EHLO`, `HELO`, `LHLO`, `RSET`, `QUIT`.
#[derive(Debug, Clone, Default)]
pub struct SmtpSinkOptions {
    /// Speak LMTP instead of SMTP (`-L`).
    pub lmtp: bool,
    /// Commands answered with a temporary error (`-r`): by default
    /// `450 4.3.0 Error: command failed`.
    pub reject_temporarily: Vec<String>,
    /// Commands answered with a permanent error (`-f`): by default
    /// `500 5.3.0 Error: command failed`.
    pub reject_permanently: Vec<String>,
    /// The reply used for temporary errors instead of the default (`-b`), e.g.
    /// `451 4.3.0 Try again later`.
    pub temporary_reply: Option<String>,
    /// The reply used for permanent errors instead of the default (`-B`), e.g.
    /// `550 5.1.1 No such user`.
    pub permanent_reply: Option<String>,
    /// Commands after which the connection is dropped without a reply (`-q`).
    pub disconnect_after: Vec<String>,
    /// Commands answered `421` and then disconnected (`-Q`).
    pub shutdown_after: Vec<String>,
    /// The name in the greeting and EHLO reply (`-h`); smtp-sink's default is `smtp-sink`.
    pub hostname: Option<String>,
    /// Seconds to wait before answering DATA (`-w`): keeps deliveries in flight.
    pub data_delay: Option<u32>,
    /// Do not announce PIPELINING (`-p`): clients must wait for each reply.
    pub no_pipelining: bool,
    /// Count messages without dumping them (no `-d`; [`SmtpSink::messages`] is then empty):
    /// for benchmarks, where writing a file per message would slow the sink itself down.
    pub discard: bool,
}

/// Counters parsed from `smtp-sink -c`.
#[derive(Debug, Default)]
struct Counters {
    messages: usize,
    /// Sessions ended (smtp-sink's `sess=`).
    sessions: usize,
    /// smtp-sink's stdout was closed: it exited.
    ended: bool,
    /// The end of what it printed on stdout, for failure messages.
    output: String,
}

type Shared = Arc<(Mutex<Counters>, Condvar)>;

/// A running `smtp-sink`; killed on drop.
pub struct SmtpSink {
    child: Option<Child>,
    address: SocketAddr,
    dir: tempfile::TempDir,
    counters: Shared,
}

impl SmtpSink {
    /// Starts smtp-sink on a free loopback port and waits until it accepts connections.
    pub fn start(options: SmtpSinkOptions) -> SmtpSink {
        let binary = require_peer("smtp-sink");
        for attempt in 1..=START_ATTEMPTS {
            let dir = tempfile::Builder::new()
                .prefix("smtp-sink.")
                .tempdir()
                .unwrap();
            // smtp-sink writes dumps after dropping to nobody.
            let dump = dir.path().join("dump");
            std::fs::create_dir(&dump).unwrap();
            for path in [dir.path(), dump.as_path()] {
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o777)).unwrap();
            }
            let [port] = free_loopback_ports();
            let address = loopback(port);
            let mut command = Command::new(&binary);
            command.args(["-c", "-u", "nobody"]);
            if !options.discard {
                // A template for strftime(3) and a prefix: files are `dump/message.<hex>`.
                command.arg("-d").arg(dump.join("message."));
            }
            if options.lmtp {
                command.arg("-L");
            }
            if options.no_pipelining {
                command.arg("-p");
            }
            for (flag, commands) in [
                ("-r", &options.reject_temporarily),
                ("-f", &options.reject_permanently),
                ("-q", &options.disconnect_after),
                ("-Q", &options.shutdown_after),
            ] {
                if !commands.is_empty() {
                    command.arg(flag).arg(commands.join(","));
                }
            }
            for (flag, value) in [
                ("-b", &options.temporary_reply),
                ("-B", &options.permanent_reply),
                ("-h", &options.hostname),
            ] {
                if let Some(value) = value {
                    command.arg(flag).arg(value);
                }
            }
            if let Some(delay) = options.data_delay {
                command.arg("-w").arg(delay.to_string());
            }
            command.arg(format!("127.0.0.1:{port}")).arg("64");
            let mut child = command
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| panic!("spawn {}: {e}", binary.display()));
            let counters = read_counters(child.stdout.take().unwrap());
            let mut stderr = child.stderr.take().unwrap();

            // Ready when the port accepts connections; failed when smtp-sink exits first.
            let mut exited = None;
            wait_until(
                &format!("smtp-sink to listen on {address}"),
                || {
                    exited = child.try_wait().unwrap();
                    exited.is_some() || accepts_connections(address)
                },
                || format!("command: {command:?}"),
            );
            let Some(status) = exited else {
                // Keep draining stderr so smtp-sink never blocks writing a warning.
                std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
                return SmtpSink {
                    child: Some(child),
                    address,
                    dir,
                    counters,
                };
            };
            let mut errors = String::new();
            let _ = stderr.read_to_string(&mut errors);
            if errors.contains("Address already in use") && attempt < START_ATTEMPTS {
                continue;
            }
            panic!("smtp-sink exited at start ({status}): {errors}\ncommand: {command:?}");
        }
        unreachable!("the last attempt either returns or panics")
    }

    /// The process id, until stopped.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Where it listens (127.0.0.1).
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// How many complete messages it has received so far.
    pub fn received(&self) -> usize {
        self.counters.0.lock().unwrap().messages
    }

    /// Sessions that have ended (the client quit or went away) so far.
    pub fn sessions_ended(&self) -> usize {
        self.counters.0.lock().unwrap().sessions
    }

    /// Waits until it has received at least `count` messages (the counter is updated just
    /// after smtp-sink answers the final `.`, so it may lag behind a client's 250).
    pub fn wait_for_messages(&self, count: usize) {
        let (lock, changed) = &*self.counters;
        let deadline = Instant::now() + PEER_PATIENCE;
        let mut counters = lock.lock().unwrap();
        while counters.messages < count {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero() && !counters.ended,
                "smtp-sink on {} received {} message(s), {count} awaited{}; its output: {:?}",
                self.address,
                counters.messages,
                if counters.ended { " (it exited)" } else { "" },
                counters.output,
            );
            counters = changed.wait_timeout(counters, left).unwrap().0;
        }
    }

    /// Waits up to `timeout` until it has received at least `count` messages; returns how
    /// many it has received (fewer when the time ran out). Panics when smtp-sink exited.
    pub fn received_within(&self, count: usize, timeout: Duration) -> usize {
        let (lock, changed) = &*self.counters;
        let deadline = Instant::now() + timeout;
        let mut counters = lock.lock().unwrap();
        while counters.messages < count {
            assert!(
                !counters.ended,
                "smtp-sink on {} exited after {} message(s); its output: {:?}",
                self.address, counters.messages, counters.output,
            );
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            counters = changed.wait_timeout(counters, left).unwrap().0;
        }
        counters.messages
    }

    /// The dumped messages, each with smtp-sink's `X-Client-Addr`, `X-Mail-Args`,
    /// `X-Rcpt-Args` and `Received` headers first, ordered by file name (not by arrival).
    /// A message still being received is included, partly: wait for the count first.
    pub fn messages(&self) -> Vec<String> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.dir.path().join("dump"))
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .collect();
        files.sort();
        files
            .iter()
            .map(|file| std::fs::read_to_string(file).unwrap())
            .collect()
    }

    /// Every message received so far, in the order smtp-sink finished writing them.
    pub fn messages_in_order(&self) -> Vec<String> {
        let mut files: Vec<(std::time::SystemTime, PathBuf)> =
            std::fs::read_dir(self.dir.path().join("dump"))
                .unwrap()
                .map(|entry| {
                    let path = entry.unwrap().path();
                    (std::fs::metadata(&path).unwrap().modified().unwrap(), path)
                })
                .collect();
        files.sort();
        files
            .iter()
            .map(|(_, file)| std::fs::read_to_string(file).unwrap())
            .collect()
    }

    /// Every message dumped so far, with its Message-ID, the name its sender gave in
    /// HELO/EHLO and when smtp-sink last wrote it (for a complete message: when its final
    /// `.` arrived), in order of arrival. A message still being received, or whose sender
    /// went away before the final `.`, is included, partly: [`Delivery::text`] says.
    pub fn deliveries(&self) -> Vec<Delivery> {
        let mut deliveries: Vec<Delivery> = std::fs::read_dir(self.dir.path().join("dump"))
            .expect("read smtp-sink's dump directory")
            .filter_map(|entry| {
                let path = entry.ok()?.path();
                // A file is written as the message arrives: its time is read after the text,
                // so that it is at least that of the text's last write.
                let text = std::fs::read_to_string(&path).ok()?;
                let arrived = std::fs::metadata(&path).ok()?.modified().ok()?;
                Some(Delivery::parse(text, arrived))
            })
            .collect();
        deliveries.sort_by_key(|d| d.arrived);
        deliveries
    }

    /// Stops smtp-sink (SIGKILL) and reaps it. Does nothing when already stopped.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Reads `smtp-sink -c` output (`sess=N quit=N mesg=N`, each update ended by `\r`) in a thread.
fn read_counters(mut stdout: impl Read + Send + 'static) -> Shared {
    let shared: Shared = Arc::default();
    let writer = Arc::clone(&shared);
    std::thread::spawn(move || {
        let mut buffer = vec![0; 64 << 10];
        let mut pending = String::new();
        loop {
            let read = stdout.read(&mut buffer).unwrap_or(0);
            let (lock, changed) = &*writer;
            let mut counters = lock.lock().unwrap();
            if read == 0 {
                counters.ended = true;
                changed.notify_all();
                return;
            }
            let text = String::from_utf8_lossy(&buffer[..read]);
            counters.output.push_str(&text);
            if counters.output.len() > 4096 {
                let cut = counters.output.len() - 2048;
                let cut = (cut..counters.output.len())
                    .find(|&i| counters.output.is_char_boundary(i))
                    .unwrap_or(0);
                counters.output.drain(..cut);
            }
            pending.push_str(&text);
            while let Some(end) = pending.find(['\r', '\n']) {
                let update: String = pending.drain(..=end).collect();
                if let Some(messages) = update
                    .split_whitespace()
                    .find_map(|field| field.strip_prefix("mesg="))
                    .and_then(|n| n.parse().ok())
                {
                    counters.messages = messages;
                }
                if let Some(sessions) = update
                    .split_whitespace()
                    .find_map(|field| field.strip_prefix("sess="))
                    .and_then(|n| n.parse().ok())
                {
                    counters.sessions = sessions;
                }
            }
            changed.notify_all();
            drop(counters);
            std::thread::sleep(COUNTER_READ_PAUSE);
        }
    });
    shared
}

/// One message as smtp-sink dumped it.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The message's `Message-ID`, without angle brackets.
    pub message_id: Option<String>,
    /// The HELO/EHLO name of the client that sent it (smtp-sink's `Received: from <helo>`).
    pub helo: String,
    /// When smtp-sink last wrote the message's file.
    pub arrived: SystemTime,
    /// The dump: smtp-sink's own headers, then the message as received.
    pub text: String,
}

impl Delivery {
    fn parse(text: String, arrived: SystemTime) -> Delivery {
        let mut message_id = None;
        let mut helo = String::new();
        for line in text.lines() {
            if line.is_empty() {
                break;
            }
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            if name.eq_ignore_ascii_case("Message-ID") && message_id.is_none() {
                message_id = Some(value.trim().trim_matches(['<', '>']).to_owned());
            }
            // smtp-sink's own header comes first: `Received: from <helo> ([addr])`.
            if name.eq_ignore_ascii_case("Received") && helo.is_empty() {
                helo = value
                    .split_whitespace()
                    .skip_while(|word| *word != "from")
                    .nth(1)
                    .unwrap_or_default()
                    .to_owned();
            }
        }
        Delivery {
            message_id,
            helo,
            arrived,
            text,
        }
    }
}
