//! SMTP ingress throughput: Postfix's `smtp-source` (20 sessions, 4 KB messages) against
//! `ferrymail all`, against Postfix and against `smtp-sink`, in the same run, first with one
//! message per connection, then with every session reusing its connection (`-d`).
//!
//! - ferrymail (the release build) answers 250 only once the message is committed durably
//!   to its embedded store; nothing is delivered yet, so this is the cost of acceptance.
//!   The recipient is a local user confirmed by a real directory (Dovecot over LMTP), since
//!   smtp-source sends HELO and no AUTH.
//! - Postfix queues durably (it fsyncs before 250) and relays everything to an smtp-sink.
//! - smtp-sink alone accepts and discards: the protocol-only ceiling of this machine.
//!
//! Every message counted got a 250 (smtp-source stops at the first other reply, and its
//! exit status is checked), and each target's own count is checked after every run. The
//! stores of ferrymail and Postfix are both in temporary directories, on the same
//! filesystem. Each case runs several rounds, in a rotating order so that drift on this
//! noisy machine does not favour one target; the table gives the median.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ferrymail_e2e::{
    ALICE, Dovecot, DovecotOptions, Ferrymail, PEER_PATIENCE, Postfix, binary, require_peer,
};
use ferrymail_rpc::queue::{GrpcQueue, QueueService};

/// Concurrent smtp-source sessions.
const SESSIONS: usize = 20;
/// Payload bytes of each message (smtp-source adds a few header lines).
const MESSAGE_BYTES: usize = 4096;
/// Messages sent to one target in one measured run.
const MESSAGES_PER_RUN: usize = 2000;
/// Measured runs of every target in every mode.
const ROUNDS: usize = 3;
/// Messages sent to every target before measuring, so that process pools, connection
/// pools and caches are warm (two per session).
const WARM_UP_MESSAGES: usize = 2 * SESSIONS;
/// The HELO name smtp-source announces.
const HELO_NAME: &str = "source.bench.test";
/// An envelope sender that is not local anywhere.
const SENDER: &str = "sender@remote.test";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// A new connection for every message (HELO, MAIL, RCPT, DATA, QUIT).
    ConnectionPerMessage,
    /// Each session sends message after message on one connection, without RSET (`-d`).
    ConnectionReuse,
}

impl Mode {
    fn label(self) -> String {
        match self {
            Mode::ConnectionPerMessage => "1 message per connection".to_owned(),
            Mode::ConnectionReuse => {
                format!("~{} messages per connection", MESSAGES_PER_RUN / SESSIONS)
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Ferrymail,
    Postfix,
    SmtpSink,
}

const TARGETS: [Target; 3] = [Target::Ferrymail, Target::Postfix, Target::SmtpSink];

impl Target {
    fn label(self) -> &'static str {
        match self {
            Target::Ferrymail => "ferrymail",
            Target::Postfix => "Postfix",
            Target::SmtpSink => "smtp-sink",
        }
    }
}

/// Every target, running, with what checks its count of accepted messages.
struct Lab {
    // Dropped in declaration order: clients of a server go before it.
    ferrymail_queue: GrpcQueue,
    ferrymail: Ferrymail,
    ferrymail_smtp: SocketAddr,
    _dovecot: Dovecot,
    postfix: Postfix,
    postfix_relay: DiscardingSink,
    sink: DiscardingSink,
    runtime: tokio::runtime::Runtime,
    /// Messages each target has accepted so far (warm-up included).
    sent: [usize; 3],
}

impl Lab {
    fn start() -> Lab {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let dovecot = Dovecot::start_with(DovecotOptions {
            auth_penalty: false,
            ..DovecotOptions::default()
        });
        let mut ferrymail = Ferrymail::start("all", &ferrymail_config(dovecot.ports.lmtp));
        let ferrymail_smtp = ferrymail.address("smtp");
        let grpc = ferrymail.address("grpc");
        // The channel spawns its connection task on the runtime it is created in; with a
        // current-thread runtime that task runs during `block_on`, when stats are asked.
        let ferrymail_queue = {
            let _context = runtime.enter();
            GrpcQueue::connect(&format!("http://{grpc}"))
                .unwrap_or_else(|e| panic!("queue client for {grpc}: {e}"))
        };
        let postfix_relay = DiscardingSink::start();
        let postfix = Postfix::start(postfix_relay.address);
        let sink = DiscardingSink::start();
        Lab {
            ferrymail,
            ferrymail_smtp,
            ferrymail_queue,
            _dovecot: dovecot,
            postfix,
            postfix_relay,
            sink,
            runtime,
            sent: [0; 3],
        }
    }

    fn address(&self, target: Target) -> SocketAddr {
        match target {
            Target::Ferrymail => self.ferrymail_smtp,
            Target::Postfix => self.postfix.address(),
            Target::SmtpSink => self.sink.address,
        }
    }

    /// Sends `messages` to `target` with smtp-source and returns the wall time it took;
    /// panics unless every message was accepted.
    fn send(&mut self, target: Target, mode: Mode, messages: usize) -> Duration {
        let address = self.address(target);
        let (elapsed, output) = smtp_source(address, mode, messages);
        if !output.status.success() {
            panic!(
                "smtp-source against {} ({address}, {mode:?}) failed ({}): {}{}",
                target.label(),
                output.status,
                String::from_utf8_lossy(&output.stderr),
                self.target_log(target),
            );
        }
        let index = TARGETS.iter().position(|t| *t == target).unwrap();
        self.sent[index] += messages;
        self.check_accepted(target, self.sent[index]);
        elapsed
    }

    /// Checks that `target` itself counts `expected` messages: queued by ferrymail,
    /// relayed by Postfix (whose queue is then empty), received by smtp-sink.
    fn check_accepted(&self, target: Target, expected: usize) {
        match target {
            Target::Ferrymail => {
                let stats = self
                    .runtime
                    .block_on(self.ferrymail_queue.stats())
                    .unwrap_or_else(|e| panic!("ferrymail queue stats: {e}"));
                assert_eq!(
                    stats.messages, expected as u64,
                    "ferrymail's queue holds {} messages after {expected} were accepted",
                    stats.messages
                );
            }
            Target::Postfix => {
                self.postfix_relay
                    .wait_for_messages(expected, || self.postfix.log());
                // Relayed messages leave the queue just after the relay's 250; the next run
                // should not share the machine with Postfix's clean-up.
                let deadline = Instant::now() + PEER_PATIENCE;
                while self.postfix.queued() > 0 {
                    assert!(
                        Instant::now() < deadline,
                        "Postfix still queues {} messages that its relay received\n{}",
                        self.postfix.queued(),
                        self.postfix.log()
                    );
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            Target::SmtpSink => {
                self.sink.wait_for_messages(expected, String::new);
            }
        }
    }

    fn target_log(&self, target: Target) -> String {
        match target {
            Target::Ferrymail => format!("\nferrymail log:\n{}", self.ferrymail.dump()),
            Target::Postfix => format!("\nPostfix log:\n{}", self.postfix.log()),
            Target::SmtpSink => String::new(),
        }
    }
}

/// `ferrymail all` with an SMTP listener, a gRPC listener (to read the queue's count), the
/// embedded store (durable: every commit is fsynced) and Dovecot's LMTP as the directory
/// that confirms recipients of the local domain example.org.
fn ferrymail_config(lmtp_port: u16) -> String {
    format!(
        r#"
[server]
hostname = "mx.bench.test"
shutdown-timeout = "5s"
[server.listener.smtp]
bind = "127.0.0.1:0"
protocol = "smtp"
[server.listener.grpc]
bind = "127.0.0.1:0"
protocol = "grpc"
[store.local]
type = "embedded"
path = "data"
[storage]
data = "local"
[directory.mailboxes]
type = "lmtp"
address = "127.0.0.1"
port = {lmtp_port}
tls.allow-invalid-certs = true
lookup.domains = ["example.org"]
[session.rcpt]
directory = "mailboxes"
# With -d the sessions share smtp-source's message count, so one of them may carry more
# than its even share; Postfix has no such limit either.
[session.data.limits]
messages = {MESSAGES_PER_RUN}
"#
    )
}

/// Runs smtp-source to completion against `address` and returns its wall time and output.
fn smtp_source(
    address: SocketAddr,
    mode: Mode,
    messages: usize,
) -> (Duration, std::process::Output) {
    let mut command = Command::new(require_peer("smtp-source"));
    command
        .args(["-s", &SESSIONS.to_string()])
        .args(["-l", &MESSAGE_BYTES.to_string()])
        .args(["-m", &messages.to_string()])
        .args(["-M", HELO_NAME, "-f", SENDER, "-t", ALICE.0]);
    if mode == Mode::ConnectionReuse {
        command.arg("-d");
    }
    command
        .arg(format!("{}:{}", address.ip(), address.port()))
        .stdin(Stdio::null());
    let started = Instant::now();
    let output = command.output().expect("run smtp-source");
    (started.elapsed(), output)
}

/// `smtp-sink` accepting every message and writing none of them anywhere.
///
/// The harness's `SmtpSink` dumps each message to a file, which would make the reference
/// slower than smtp-sink alone (and, as Postfix's relay target, take CPU from Postfix).
struct DiscardingSink {
    child: Child,
    address: SocketAddr,
    /// smtp-sink's `-c` counters (`sess=N quit=N mesg=N`, each update ended by `\r`).
    counters: PathBuf,
    _dir: tempfile::TempDir,
}

impl DiscardingSink {
    fn start() -> DiscardingSink {
        let binary = require_peer("smtp-sink");
        const ATTEMPTS: u32 = 5;
        for attempt in 1..=ATTEMPTS {
            let dir = tempfile::Builder::new()
                .prefix("smtp-sink.")
                .tempdir()
                .unwrap();
            let counters = dir.path().join("counters");
            let errors = dir.path().join("errors");
            // A port that was free a moment ago; another process may take it first, then
            // smtp-sink exits with "Address already in use" and a new port is tried.
            let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
                .and_then(|listener| listener.local_addr())
                .expect("a free loopback port")
                .port();
            let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            // As root, smtp-sink must be told which user to become.
            let mut child = Command::new(&binary)
                .args(["-c", "-u", "nobody"])
                .arg(address.to_string())
                .arg("128")
                .stdin(Stdio::null())
                .stdout(File::create(&counters).unwrap())
                .stderr(File::create(&errors).unwrap())
                .spawn()
                .unwrap_or_else(|e| panic!("spawn {}: {e}", binary.display()));
            let deadline = Instant::now() + PEER_PATIENCE;
            loop {
                if let Some(status) = child.try_wait().unwrap() {
                    let errors = std::fs::read_to_string(&errors).unwrap_or_default();
                    if errors.contains("Address already in use") && attempt < ATTEMPTS {
                        break;
                    }
                    panic!("smtp-sink on {address} exited at start ({status}): {errors}");
                }
                if TcpStream::connect_timeout(&address, Duration::from_secs(1)).is_ok() {
                    return DiscardingSink {
                        child,
                        address,
                        counters,
                        _dir: dir,
                    };
                }
                assert!(
                    Instant::now() < deadline,
                    "smtp-sink did not listen on {address} within {PEER_PATIENCE:?}"
                );
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        unreachable!("the last attempt either returns or panics")
    }

    /// Complete messages received so far (the last counter update smtp-sink printed).
    fn received(&self) -> usize {
        let text = std::fs::read_to_string(&self.counters).unwrap_or_default();
        text.split(['\r', '\n'])
            .filter_map(|update| {
                update
                    .split_whitespace()
                    .find_map(|field| field.strip_prefix("mesg="))
                    .and_then(|n| n.parse().ok())
            })
            .next_back()
            .unwrap_or(0)
    }

    /// Waits until it has received `count` messages; panics, with `context()`, when it
    /// stops short or gets more.
    fn wait_for_messages(&self, count: usize, context: impl Fn() -> String) {
        let deadline = Instant::now() + PEER_PATIENCE;
        loop {
            let received = self.received();
            assert!(
                received <= count,
                "smtp-sink on {} received {received} messages, only {count} were sent",
                self.address
            );
            if received == count {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "smtp-sink on {} received {received} of {count} messages in {PEER_PATIENCE:?}\n{}",
                self.address,
                context()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for DiscardingSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The ferrymail binary the harness will start ([`binary`]): `FERRYMAIL_BIN`, or `ferrymail`
/// in this bench's own profile directory (`target/release`), which `make bench` builds
/// first. Checked here to say which build is missing.
fn release_binary() -> PathBuf {
    let path = match std::env::var_os("FERRYMAIL_BIN") {
        Some(path) => PathBuf::from(path),
        None => {
            let exe = std::env::current_exe().unwrap();
            exe.parent()
                .and_then(Path::parent)
                .map(|profile_dir| profile_dir.join("ferrymail"))
                .unwrap_or_else(|| panic!("no profile directory above {}", exe.display()))
        }
    };
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --release -p ferrymail` first (`make bench` does), \
         or point FERRYMAIL_BIN at a release build",
        path.display()
    );
    assert_eq!(binary(), path, "the harness would start another binary");
    path
}

/// The 1-, 5- and 15-minute load averages.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|e| format!("unknown ({e})"))
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

fn main() {
    for peer in ["smtp-source", "smtp-sink", "postfix", "dovecot"] {
        require_peer(peer);
    }
    let ferrymail_bin = release_binary();
    let load_at_start = load_average();
    let mut lab = Lab::start();

    let modes = [Mode::ConnectionPerMessage, Mode::ConnectionReuse];
    // rates[mode][target]: msgs/s of every round.
    let mut rates = vec![vec![Vec::with_capacity(ROUNDS); TARGETS.len()]; modes.len()];
    for (mode_index, mode) in modes.into_iter().enumerate() {
        for target in TARGETS {
            lab.send(target, mode, WARM_UP_MESSAGES);
        }
        for round in 0..ROUNDS {
            for step in 0..TARGETS.len() {
                let target_index = (round + step) % TARGETS.len();
                let elapsed = lab.send(TARGETS[target_index], mode, MESSAGES_PER_RUN);
                rates[mode_index][target_index]
                    .push(MESSAGES_PER_RUN as f64 / elapsed.as_secs_f64());
            }
        }
    }

    println!(
        "SMTP ingress: smtp-source, {SESSIONS} sessions, {MESSAGE_BYTES}-byte messages, \
         {MESSAGES_PER_RUN} messages per run, median of {ROUNDS} rounds (msgs/s)"
    );
    println!("ferrymail: {}", ferrymail_bin.display());
    // Other work on the machine shows in every figure; say how busy it was.
    println!(
        "machine: {} cores; load average at the start {load_at_start}, at the end {}",
        std::thread::available_parallelism().map_or(0, usize::from),
        load_average()
    );
    println!(
        "{:<30} {:>10} {:>10} {:>10} {:>18} {:>20}",
        "", "ferrymail", "Postfix", "smtp-sink", "ferrymail/Postfix", "ferrymail/smtp-sink"
    );
    for (mode_index, mode) in modes.into_iter().enumerate() {
        let [ferrymail, postfix, sink] = [0, 1, 2].map(|target| median(&rates[mode_index][target]));
        println!(
            "{:<30} {:>10.0} {:>10.0} {:>10.0} {:>17.2}x {:>19.2}x",
            mode.label(),
            ferrymail,
            postfix,
            sink,
            ferrymail / postfix,
            ferrymail / sink
        );
    }
    println!(
        "{:<30} {:>10} {:>10} {:>10} {:>18} {:>20}",
        "target", "", "", "", ">= 4x", ">= 0.5x"
    );
    println!("every round (msgs/s):");
    for (mode_index, mode) in modes.into_iter().enumerate() {
        for (target_index, target) in TARGETS.into_iter().enumerate() {
            let rounds: Vec<String> = rates[mode_index][target_index]
                .iter()
                .map(|rate| format!("{rate:.0}"))
                .collect();
            println!(
                "  {:<30} {:<10} {}",
                mode.label(),
                target.label(),
                rounds.join("  ")
            );
        }
    }
}
