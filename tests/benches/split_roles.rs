//! Split-role acceptance, plain text against mutual TLS: Postfix's `smtp-source` (20
//! sessions, 4 KB messages, one message per connection) sends to an `smtp-ingress` process
//! that hands each message over gRPC to a `queue-scheduler` process, which makes it durable
//! (the ingress answers 250 only then) and relays it to a discarding `smtp-sink`. Two such
//! pairs run in the same run: one speaking plain text between the roles, one mutual TLS with
//! certificates made here. A run is timed from smtp-source's start until the sink has every
//! message; the table gives messages per second and the CPU the ingress and the scheduler
//! spend per message, and the overhead of mutual TLS (target: at most 10 %).
//!
//! The recipients are relayed (`session.rcpt.relay = true`, as Postfix's `mynetworks`), so
//! no directory lookup is made: the gRPC traffic is the enqueue and its streamed body. The
//! ingress keeps its connections to the scheduler, as in production, so the handshakes are
//! few; what mutual TLS costs per message is the encryption of the stream. Rounds alternate
//! the pairs so that drift on this noisy machine does not favour one; medians are printed,
//! then every round, with the load average, since other work on the machine skews every
//! figure.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::Duration;

use ferrymail_e2e::{
    ClusterCertificates, Ferrymail, SmtpSink, SmtpSource, discarding_sink, load_average,
    machine_line, median, process_tree_cpu, release_binary, require_peer,
};

/// Concurrent smtp-source sessions.
const SESSIONS: usize = 20;
/// Payload bytes of each message.
const MESSAGE_BYTES: usize = 4096;
/// Messages per measured run.
const MESSAGES_PER_RUN: usize = 2000;
/// Measured runs of each pair.
const ROUNDS: usize = 5;
/// Messages sent to each pair before measuring (connections, pools and caches warm).
const WARM_UP_MESSAGES: usize = 2 * SESSIONS;
/// The relayed recipient.
const RECIPIENT: &str = "rcpt@relay.bench.test";

const BASE: &str = "[server]\nhostname = \"mx.bench.test\"\nshutdown-timeout = \"5s\"\n";

/// An ingress and its scheduler, with the sink the scheduler relays to.
struct Pair {
    label: &'static str,
    ingress: Ferrymail,
    scheduler: Ferrymail,
    smtp: std::net::SocketAddr,
    sink: SmtpSink,
    sent: usize,
}

/// The configuration of a pair's processes: `tls` is each one's `[cluster.tls]` table.
fn pair(label: &'static str, scheduler_tls: &str, ingress_tls: &str, scheme: &str) -> Pair {
    let sink = discarding_sink(None);
    let scheduler_config = format!(
        "{BASE}[server.listener.grpc]\nbind = \"127.0.0.1:0\"\nprotocol = \"grpc\"\n\
         [store.local]\ntype = \"embedded\"\npath = \"data\"\n[storage]\ndata = \"local\"\n\
         [remote.relay]\naddress = \"127.0.0.1\"\nport = {}\nprotocol = \"smtp\"\n\
         tls.implicit = false\ntimeout = \"30s\"\nconcurrency = 20\n[queue.outbound]\n\
         next-hop = \"relay\"\n{scheduler_tls}",
        sink.address().port()
    );
    let mut scheduler = Ferrymail::start("queue-scheduler", &scheduler_config);
    let grpc = scheduler.address("grpc");
    // The ingress needs a directory endpoint; with every recipient relayed it never asks it.
    let ingress_config = format!(
        "{BASE}[server.listener.smtp]\nbind = \"127.0.0.1:0\"\nprotocol = \"smtp\"\n\
         [session.rcpt]\nrelay = true\n[cluster.queue]\nendpoint = \"{scheme}://{grpc}\"\n\
         [cluster.directory]\nendpoint = \"{scheme}://{grpc}\"\n{ingress_tls}"
    );
    let mut ingress = Ferrymail::start("smtp-ingress", &ingress_config);
    let smtp = ingress.address("smtp");
    Pair {
        label,
        ingress,
        scheduler,
        smtp,
        sink,
        sent: 0,
    }
}

/// One measured run: wall time until relayed, and the CPU of the ingress and the scheduler.
#[derive(Debug, Clone, Copy)]
struct Run {
    elapsed: Duration,
    ingress: Duration,
    scheduler: Duration,
}

impl Pair {
    fn send(&mut self, messages: usize) -> Run {
        let cpu = |pair: &Pair| {
            (
                process_tree_cpu(pair.ingress.pid()),
                process_tree_cpu(pair.scheduler.pid()),
            )
        };
        let before = cpu(self);
        let load = SmtpSource {
            sessions: SESSIONS,
            message_bytes: MESSAGE_BYTES,
            messages,
            reuse_connections: false,
            recipient: RECIPIENT.to_owned(),
        };
        self.sent += messages;
        let elapsed = load.run_until_received(self.smtp, &self.sink, self.sent, || {
            format!(
                "ingress:\n{}\nscheduler:\n{}",
                self.ingress.dump(),
                self.scheduler.dump()
            )
        });
        let after = cpu(self);
        Run {
            elapsed,
            ingress: after.0.saturating_sub(before.0),
            scheduler: after.1.saturating_sub(before.1),
        }
    }
}

fn per_message(runs: &[Run], side: fn(&Run) -> Duration) -> f64 {
    let micros: Vec<f64> = runs
        .iter()
        .map(|run| side(run).as_secs_f64() * 1e6 / MESSAGES_PER_RUN as f64)
        .collect();
    median(&micros)
}

fn main() {
    for peer in ["smtp-source", "smtp-sink"] {
        require_peer(peer);
    }
    let ferrymail_bin = release_binary();
    let load_at_start = load_average();
    let certificates_dir = tempfile::tempdir().unwrap();
    let certificates = ClusterCertificates::generate(certificates_dir.path(), "bench");
    let plain = "[cluster.tls]\nenable = false\n";
    let mut pairs = [
        pair("plain text", plain, plain, "http"),
        pair(
            "mutual TLS",
            &certificates.config(&certificates.role(&["queue-scheduler"])),
            &certificates.config(&certificates.role(&["smtp-ingress"])),
            "https",
        ),
    ];
    for pair in &mut pairs {
        pair.send(WARM_UP_MESSAGES);
    }
    let mut runs: [Vec<Run>; 2] = [Vec::new(), Vec::new()];
    for round in 0..ROUNDS {
        for step in 0..pairs.len() {
            let index = (round + step) % pairs.len();
            runs[index].push(pairs[index].send(MESSAGES_PER_RUN));
        }
    }

    let rates: Vec<Vec<f64>> = runs
        .iter()
        .map(|rounds| {
            rounds
                .iter()
                .map(|run| MESSAGES_PER_RUN as f64 / run.elapsed.as_secs_f64())
                .collect()
        })
        .collect();
    println!(
        "Split-role acceptance: smtp-source ({SESSIONS} sessions, {MESSAGE_BYTES}-byte messages, \
         1 per connection) -> smtp-ingress -> gRPC -> queue-scheduler -> smtp-sink, \
         {MESSAGES_PER_RUN} messages per run, timed until the sink has them all, median of \
         {ROUNDS} rounds"
    );
    println!("ferrymail: {}", ferrymail_bin.display());
    println!("{}", machine_line(&load_at_start));
    println!(
        "{:<12} {:>10} {:>22} {:>22}",
        "", "msgs/s", "ingress CPU/msg (us)", "scheduler CPU/msg (us)"
    );
    for (index, pair) in pairs.iter().enumerate() {
        println!(
            "{:<12} {:>10.0} {:>22.0} {:>22.0}",
            pair.label,
            median(&rates[index]),
            per_message(&runs[index], |r| r.ingress),
            per_message(&runs[index], |r| r.scheduler),
        );
    }
    let cpu = |index: usize| {
        per_message(&runs[index], |r| r.ingress) + per_message(&runs[index], |r| r.scheduler)
    };
    println!(
        "mutual TLS / plain text: throughput {:.2}x, CPU per message {:.2}x (target: \
         throughput >= 0.90x)",
        median(&rates[1]) / median(&rates[0]),
        cpu(1) / cpu(0)
    );
    println!("every round (msgs/s):");
    for (index, pair) in pairs.iter().enumerate() {
        let rounds: Vec<String> = rates[index].iter().map(|r| format!("{r:.0}")).collect();
        println!("  {:<12} {}", pair.label, rounds.join("  "));
    }
}
