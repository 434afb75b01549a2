//! SMTP ingress throughput: Postfix's `smtp-source` (20 sessions, 4 KB messages) against
//! `ferrymail all`, against Postfix and against `smtp-sink`, in the same run, first with one
//! message per connection, then with every session reusing its connection (`-d`).
//!
//! - ferrymail (the release build) answers 250 only once the message is committed durably
//!   to its embedded store, and relays everything to an smtp-sink of its own while it
//!   accepts, as Postfix does. The recipient is a local user confirmed by a real directory
//!   (Dovecot over LMTP), since smtp-source sends HELO and no AUTH; message authentication
//!   (SPF, DKIM, DMARC) runs as configured by default, against a local DNS server.
//! - Postfix queues durably (it fsyncs before 250) and relays everything to an smtp-sink.
//! - smtp-sink alone accepts and discards: the protocol-only ceiling of this machine.
//!
//! A second table gives the CPU each side spent per message, from the start of a run until
//! everything was relayed: the receiving server (ferrymail's process; Postfix's master and
//! every daemon it runs), the smtp-sink it relays to, and smtp-source. Those figures move
//! much less than throughput with whatever else runs on the machine. A third turns them into
//! the ratio to smtp-sink that CPU alone allows (all processes share the cores), and into the
//! CPU per message ferrymail's process could spend and still reach 0.5x.
//!
//! Every message counted got a 250 (smtp-source stops at the first other reply, and its
//! exit status is checked), and each target's own count is checked after every run. The
//! stores of ferrymail and Postfix are both in temporary directories, on the same
//! filesystem. Each case runs several rounds, in a rotating order so that drift on this
//! noisy machine does not favour one target; the table gives the median.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ferrymail_e2e::{
    ALICE, Dovecot, DovecotOptions, Ferrymail, PEER_PATIENCE, Postfix, SmtpSink, SmtpSource,
    bench_config, check_received, discarding_sink, load_average, machine_line, median,
    process_tree_cpu, reaped_children_cpu, release_binary, require_peer,
};
use ferrymail_rpc::queue::{GrpcQueue, QueueService};

/// Concurrent smtp-source sessions.
const SESSIONS: usize = 20;
/// Payload bytes of each message (smtp-source adds a few header lines).
const MESSAGE_BYTES: usize = 4096;
/// Messages sent to one target in one measured run.
const MESSAGES_PER_RUN: usize = 2000;
/// Measured runs of every target in every mode.
const ROUNDS: usize = 5;
/// Messages sent to every target before measuring, so that process pools, connection
/// pools and caches are warm (two per session).
const WARM_UP_MESSAGES: usize = 2 * SESSIONS;

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
    /// Where the target's runs and rates are, in [`TARGETS`] order.
    fn index(self) -> usize {
        TARGETS.iter().position(|t| *t == self).unwrap()
    }

    fn label(self) -> &'static str {
        match self {
            Target::Ferrymail => "ferrymail",
            Target::Postfix => "Postfix",
            Target::SmtpSink => "smtp-sink",
        }
    }
}

/// One measured run: its wall time, and the CPU each side used until all was relayed.
#[derive(Debug, Clone, Copy)]
struct Run {
    elapsed: Duration,
    /// The receiving server's processes.
    server: Duration,
    /// The smtp-sink the server relays to (none for smtp-sink itself).
    relay: Duration,
    /// smtp-source.
    client: Duration,
}

/// CPU of each side so far: (server, relay sink, reaped clients).
type CpuSnapshot = (Duration, Duration, Duration);

/// Every target, running, with what checks its count of accepted messages.
struct Lab {
    // Dropped in declaration order: clients of a server go before it.
    ferrymail_queue: GrpcQueue,
    ferrymail: Ferrymail,
    ferrymail_smtp: SocketAddr,
    ferrymail_relay: SmtpSink,
    _dovecot: Dovecot,
    postfix: Postfix,
    postfix_relay: SmtpSink,
    sink: SmtpSink,
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
        let ferrymail_relay = discarding_sink(None);
        let mut ferrymail = Ferrymail::start(
            "all",
            &ferrymail_config(dovecot.ports.lmtp, ferrymail_relay.address()),
        );
        let ferrymail_smtp = ferrymail.address("smtp");
        let grpc = ferrymail.address("grpc");
        // The channel spawns its connection task on the runtime it is created in; with a
        // current-thread runtime that task runs during `block_on`, when stats are asked.
        let ferrymail_queue = {
            let _context = runtime.enter();
            GrpcQueue::connect(&format!("http://{grpc}"))
                .unwrap_or_else(|e| panic!("queue client for {grpc}: {e}"))
        };
        let postfix_relay = discarding_sink(None);
        let postfix = Postfix::start(postfix_relay.address());
        let sink = discarding_sink(None);
        Lab {
            ferrymail,
            ferrymail_smtp,
            ferrymail_relay,
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
            Target::SmtpSink => self.sink.address(),
        }
    }

    /// CPU used so far by `target`'s server, by the sink it relays to, and by finished clients.
    fn cpu(&self, target: Target) -> CpuSnapshot {
        let tree = |pid: Option<u32>| pid.map_or(Duration::ZERO, process_tree_cpu);
        let (server, relay) = match target {
            Target::Ferrymail => (Some(self.ferrymail.pid()), self.ferrymail_relay.pid()),
            Target::Postfix => (self.postfix.master_pid(), self.postfix_relay.pid()),
            Target::SmtpSink => (self.sink.pid(), None),
        };
        (tree(server), tree(relay), reaped_children_cpu())
    }

    /// Sends `messages` to `target` with smtp-source and measures the run; panics unless
    /// every message was accepted and relayed.
    fn send(&mut self, target: Target, mode: Mode, messages: usize) -> Run {
        let before = self.cpu(target);
        let address = self.address(target);
        let load = SmtpSource {
            sessions: SESSIONS,
            message_bytes: MESSAGE_BYTES,
            messages,
            reuse_connections: mode == Mode::ConnectionReuse,
            recipient: ALICE.0.to_owned(),
        };
        let (elapsed, output) = load.run(address);
        if !output.status.success() {
            panic!(
                "smtp-source against {} ({address}, {mode:?}) failed ({}): {}{}",
                target.label(),
                output.status,
                String::from_utf8_lossy(&output.stderr),
                self.target_log(target),
            );
        }
        let index = target.index();
        self.sent[index] += messages;
        self.check_accepted(target, self.sent[index]);
        let after = self.cpu(target);
        Run {
            elapsed,
            server: after.0.saturating_sub(before.0),
            relay: after.1.saturating_sub(before.1),
            client: after.2.saturating_sub(before.2),
        }
    }

    /// Checks that `target` itself counts `expected` messages: queued by ferrymail,
    /// relayed by Postfix (whose queue is then empty), received by smtp-sink.
    fn check_accepted(&self, target: Target, expected: usize) {
        match target {
            Target::Ferrymail => {
                check_received(&self.ferrymail_relay, expected, || self.ferrymail.dump());
                // As for Postfix: the next run should not share the machine with deliveries.
                let deadline = Instant::now() + PEER_PATIENCE;
                loop {
                    let stats = self
                        .runtime
                        .block_on(self.ferrymail_queue.stats())
                        .unwrap_or_else(|e| panic!("ferrymail queue stats: {e}"));
                    if stats.messages == 0 {
                        break;
                    }
                    assert!(
                        Instant::now() < deadline,
                        "ferrymail still queues {} messages its relay received",
                        stats.messages
                    );
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            Target::Postfix => {
                check_received(&self.postfix_relay, expected, || self.postfix.log());
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
                check_received(&self.sink, expected, String::new);
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
fn ferrymail_config(lmtp_port: u16, relay: SocketAddr) -> String {
    // With -d the sessions share smtp-source's message count, so one of them may carry more
    // than its even share; Postfix has no such limit either.
    let session = format!(
        "[directory.mailboxes]\ntype = \"lmtp\"\naddress = \"127.0.0.1\"\nport = {lmtp_port}\ntls.allow-invalid-certs = true\nlookup.domains = [\"example.org\"]\n[session.rcpt]\ndirectory = \"mailboxes\"\n[session.data.limits]\nmessages = {MESSAGES_PER_RUN}"
    );
    bench_config(relay, 20, &session)
}

fn main() {
    for peer in ["smtp-source", "smtp-sink", "postfix", "dovecot"] {
        require_peer(peer);
    }
    let ferrymail_bin = release_binary();
    let load_at_start = load_average();
    let mut lab = Lab::start();

    let modes = [Mode::ConnectionPerMessage, Mode::ConnectionReuse];
    // runs[mode][target]: every measured round.
    let mut runs: Vec<Vec<Vec<Run>>> =
        vec![vec![Vec::with_capacity(ROUNDS); TARGETS.len()]; modes.len()];
    for (mode_index, mode) in modes.into_iter().enumerate() {
        for target in TARGETS {
            lab.send(target, mode, WARM_UP_MESSAGES);
        }
        for round in 0..ROUNDS {
            for step in 0..TARGETS.len() {
                let target_index = (round + step) % TARGETS.len();
                let run = lab.send(TARGETS[target_index], mode, MESSAGES_PER_RUN);
                runs[mode_index][target_index].push(run);
            }
        }
    }

    let rate = |run: &Run| MESSAGES_PER_RUN as f64 / run.elapsed.as_secs_f64();
    let rates: Vec<Vec<Vec<f64>>> = runs
        .iter()
        .map(|mode| {
            mode.iter()
                .map(|rounds| rounds.iter().map(rate).collect())
                .collect()
        })
        .collect();
    println!(
        "SMTP ingress: smtp-source, {SESSIONS} sessions, {MESSAGE_BYTES}-byte messages, \
         {MESSAGES_PER_RUN} messages per run, median of {ROUNDS} rounds (msgs/s)"
    );
    println!("ferrymail: {}", ferrymail_bin.display());
    println!("{}", machine_line(&load_at_start));
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
    print_cpu(&modes, &runs);
    print_cpu_bound(&modes, &runs);
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

/// Microseconds of `side`'s CPU per message, median of `rounds`.
fn per_message(rounds: &[Run], side: fn(&Run) -> Duration) -> f64 {
    let micros: Vec<f64> = rounds
        .iter()
        .map(|run| side(run).as_secs_f64() * 1e6 / MESSAGES_PER_RUN as f64)
        .collect();
    median(&micros)
}

/// The CPU table: microseconds per message of each side, median of the rounds.
fn print_cpu(modes: &[Mode], runs: &[Vec<Vec<Run>>]) {
    println!(
        "CPU per message, until relayed (us, median of {ROUNDS} rounds; /proc ticks of 10 ms):"
    );
    println!(
        "{:<30} {:<10} {:>10} {:>12} {:>12}",
        "", "", "server", "relay sink", "smtp-source"
    );
    for (mode_index, mode) in modes.iter().enumerate() {
        for (target_index, target) in TARGETS.into_iter().enumerate() {
            let rounds = &runs[mode_index][target_index];
            let relay = match target {
                Target::SmtpSink => "-".to_owned(),
                _ => format!("{:.0}", per_message(rounds, |r| r.relay)),
            };
            println!(
                "{:<30} {:<10} {:>10.0} {:>12} {:>12.0}",
                mode.label(),
                target.label(),
                per_message(rounds, |r| r.server),
                relay,
                per_message(rounds, |r| r.client),
            );
        }
    }
}

/// What the CPU figures alone predict. smtp-source, the server and its relay sink share the
/// machine's cores, so when they are all busy, throughput is the cores' time divided by the
/// CPU all processes spend per message: the ratio to smtp-sink is then the ratio of those
/// sums, and reaching 0.5x leaves ferrymail's own process twice smtp-sink's sum, less what
/// its relay sink and smtp-source take.
fn print_cpu_bound(modes: &[Mode], runs: &[Vec<Vec<Run>>]) {
    let total = |rounds: &[Run]| {
        per_message(rounds, |r| r.server)
            + per_message(rounds, |r| r.relay)
            + per_message(rounds, |r| r.client)
    };
    println!(
        "If CPU is what bounds every target: ferrymail/smtp-sink as the ratio of all CPU per \
         message, and the ferrymail CPU per message (us) that 0.5x leaves, against its own:"
    );
    println!(
        "{:<30} {:>20} {:>12} {:>12}",
        "", "ferrymail/smtp-sink", "for 0.5x", "ferrymail"
    );
    for (mode_index, mode) in modes.iter().enumerate() {
        let ferrymail = &runs[mode_index][Target::Ferrymail.index()];
        let sink = &runs[mode_index][Target::SmtpSink.index()];
        let others = per_message(ferrymail, |r| r.relay) + per_message(ferrymail, |r| r.client);
        println!(
            "{:<30} {:>19.2}x {:>12.0} {:>12.0}",
            mode.label(),
            total(sink) / total(ferrymail),
            2.0 * total(sink) - others,
            per_message(ferrymail, |r| r.server),
        );
    }
}
