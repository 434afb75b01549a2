//! The cost of delivery events: relay throughput of `ferrymail all` with events off and on,
//! in the same run with the same load.
//!
//! Postfix's `smtp-source` (20 sessions, 4 KB messages, a connection per message) sends to
//! two `ferrymail all` (the release build, embedded store, relaying to a discarding
//! `smtp-sink` with `concurrency = 20`): one without a webhook (no event is recorded), one with
//! a webhook on loopback (an in-process receiver answering `200`; `throttle = "50ms"`, the
//! default batch of 500), so every delivery also writes its event to the outbox in its commit
//! and the dispatcher posts them. A run is timed from smtp-source's start until the sink has
//! every message; with events, the run then waits until the receiver has every event, and
//! the CPU of the process is counted over the whole of it, so sending the events is paid
//! for. Rounds rotate the order; the table gives medians. The target: events cost at most
//! 10% of the throughput.
//!
//! For reference, a private Postfix (`relayhost`, its own discarding sink) takes the same load
//! in the same rounds: Postfix has no delivery events, so it has one row.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ferrymail_e2e::{
    Ferrymail, PEER_PATIENCE, Postfix, SmtpSink, SmtpSource, WebhookReceiver, bench_config,
    check_received, discarding_sink, load_average, machine_line, median, process_tree_cpu,
    reaped_children_cpu, release_binary, require_peer,
};

const SESSIONS: usize = 20;
const MESSAGE_BYTES: usize = 4096;
const MESSAGES_PER_RUN: usize = 2000;
const WARM_UP_MESSAGES: usize = 2 * SESSIONS;
const ROUNDS: usize = 5;
const RECIPIENT: &str = "rcpt@relay.bench.test";
const REMOTE_CONCURRENCY: usize = 20;

/// The server of a target.
enum Server {
    Ferrymail(Ferrymail),
    Postfix(Postfix),
}

impl Server {
    /// The process whose tree's CPU counts.
    fn pid(&self) -> u32 {
        match self {
            Server::Ferrymail(process) => process.pid(),
            Server::Postfix(postfix) => postfix.master_pid().unwrap(),
        }
    }

    /// Its log, for a failure message.
    fn log(&self) -> String {
        match self {
            Server::Ferrymail(process) => process.dump(),
            Server::Postfix(postfix) => postfix.log(),
        }
    }
}

/// One target: a `ferrymail all` (or Postfix), its sink, and for events its webhook receiver.
struct Target {
    label: &'static str,
    // Dropped in declaration order: the process before its peers.
    server: Server,
    smtp: SocketAddr,
    sink: SmtpSink,
    receiver: Option<WebhookReceiver>,
    sent: usize,
}

/// One measured run.
#[derive(Debug, Clone, Copy)]
struct Run {
    /// Until the sink had every message.
    delivered: Duration,
    /// Until the receiver had every event too (events off: as `delivered`).
    settled: Duration,
    /// CPU of the ferrymail process over the run.
    ferrymail_cpu: Duration,
    /// CPU of the sink over the run.
    sink_cpu: Duration,
    /// CPU of smtp-source over the run.
    client_cpu: Duration,
}

impl Target {
    fn start(label: &'static str, events: bool) -> Target {
        let sink = discarding_sink(None);
        let receiver = events.then(WebhookReceiver::start);
        let webhook = receiver.as_ref().map_or_else(String::new, |r| {
            format!(
                "[webhook.bench]\nurl = \"{}\"\nthrottle = \"50ms\"\n",
                r.url()
            )
        });
        let config = format!(
            "{}{webhook}",
            bench_config(
                sink.address(),
                REMOTE_CONCURRENCY,
                "[session.rcpt]\nrelay = true"
            )
        );
        let mut process = Ferrymail::start("all", &config);
        let smtp = process.address("smtp");
        Target {
            label,
            server: Server::Ferrymail(process),
            smtp,
            sink,
            receiver,
            sent: 0,
        }
    }

    fn postfix() -> Target {
        let sink = discarding_sink(None);
        let postfix = Postfix::start(sink.address());
        Target {
            label: "Postfix",
            smtp: postfix.address(),
            server: Server::Postfix(postfix),
            sink,
            receiver: None,
            sent: 0,
        }
    }

    fn send(&mut self, messages: usize) -> Run {
        let load = SmtpSource {
            sessions: SESSIONS,
            message_bytes: MESSAGE_BYTES,
            messages,
            reuse_connections: false,
            recipient: RECIPIENT.to_owned(),
        };
        self.sent += messages;
        let expected = self.sent;
        let pid = self.server.pid();
        let sink_pid = self.sink.pid();
        let sink_cpu = || sink_pid.map_or(Duration::ZERO, process_tree_cpu);
        let (cpu_before, sink_before, client_before) =
            (process_tree_cpu(pid), sink_cpu(), reaped_children_cpu());
        let started = Instant::now();
        let log = || self.server.log();
        let delivered = load.run_until_received(self.smtp, &self.sink, expected, log);
        if let Some(receiver) = &self.receiver {
            let deadline = Instant::now() + PEER_PATIENCE;
            while receiver.events_by_id().0.len() < expected {
                assert!(
                    Instant::now() < deadline,
                    "{} of {expected} events arrived",
                    receiver.events_by_id().0.len()
                );
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        let settled = started.elapsed();
        check_received(&self.sink, expected, log);
        Run {
            delivered,
            settled,
            ferrymail_cpu: process_tree_cpu(pid).saturating_sub(cpu_before),
            sink_cpu: sink_cpu().saturating_sub(sink_before),
            client_cpu: reaped_children_cpu().saturating_sub(client_before),
        }
    }
}

fn main() {
    for peer in ["smtp-source", "smtp-sink", "postfix"] {
        require_peer(peer);
    }
    let ferrymail_bin = release_binary();
    let load_at_start = load_average();
    let mut targets = [
        Target::start("events off", false),
        Target::start("events on", true),
        Target::postfix(),
    ];
    for target in &mut targets {
        target.send(WARM_UP_MESSAGES);
    }
    let mut runs: Vec<Vec<Run>> = vec![Vec::new(); targets.len()];
    for round in 0..ROUNDS {
        for step in 0..targets.len() {
            let index = (round + step) % targets.len();
            runs[index].push(targets[index].send(MESSAGES_PER_RUN));
        }
    }
    let n = MESSAGES_PER_RUN as f64;
    let per_msg = |d: Duration| d.as_secs_f64() * 1e6 / n;
    println!(
        "Delivery events: smtp-source -> ferrymail all -> smtp-sink, {SESSIONS} sessions, \
         {MESSAGE_BYTES}-byte messages, {MESSAGES_PER_RUN} messages per run, median of {ROUNDS} rounds"
    );
    println!("ferrymail: {}", ferrymail_bin.display());
    println!("Postfix: private instance relaying to its own sink (relayhost), no events");
    println!("{}", machine_line(&load_at_start));
    println!(
        "{:<12} {:>14} {:>16} {:>18} {:>16} {:>18}",
        "", "msgs/s", "msgs/s (events)", "server CPU/msg", "sink CPU/msg", "smtp-source CPU/msg"
    );
    let mut rates = Vec::new();
    let mut cpus = Vec::new();
    for (target, runs) in targets.iter().zip(&runs) {
        let rate = median(
            &runs
                .iter()
                .map(|r| n / r.delivered.as_secs_f64())
                .collect::<Vec<_>>(),
        );
        let settled = median(
            &runs
                .iter()
                .map(|r| n / r.settled.as_secs_f64())
                .collect::<Vec<_>>(),
        );
        let cpu = median(
            &runs
                .iter()
                .map(|r| per_msg(r.ferrymail_cpu))
                .collect::<Vec<_>>(),
        );
        let sink = median(&runs.iter().map(|r| per_msg(r.sink_cpu)).collect::<Vec<_>>());
        let client = median(
            &runs
                .iter()
                .map(|r| per_msg(r.client_cpu))
                .collect::<Vec<_>>(),
        );
        println!(
            "{:<12} {rate:>14.0} {settled:>16.0} {cpu:>15.0} µs {sink:>13.0} µs {client:>15.0} µs",
            target.label
        );
        rates.push(rate);
        cpus.push(cpu);
    }
    println!(
        "events on / off: throughput {:.3}, ferrymail CPU per message {:.3} (target: throughput >= 0.90)",
        rates[1] / rates[0],
        cpus[1] / cpus[0]
    );
    println!(
        "ferrymail / Postfix: throughput {:.2} (events off), {:.2} (events on)",
        rates[0] / rates[2],
        rates[1] / rates[2]
    );
    for (target, runs) in targets.iter().zip(&runs) {
        let rounds: Vec<String> = runs
            .iter()
            .map(|r| format!("{:.0}", n / r.delivered.as_secs_f64()))
            .collect();
        println!("{} rounds (msgs/s): {}", target.label, rounds.join(", "));
    }
}
