//! Outbound delivery throughput, in two parts printed side by side.
//!
//! **Relay end to end.** Postfix's `smtp-source` (20 sessions, 4 KB messages, one message per
//! connection) sends to a target that queues durably and relays everything to a discarding
//! `smtp-sink`; a run is timed from smtp-source's start until *the sink* has received every
//! message, not until the target accepted them. The targets, in the same run with the same
//! load: `ferrymail all` (the release build, embedded store, `session.rcpt.relay = true` for
//! loopback clients like Postfix's `mynetworks`, `queue.outbound.next-hop` = a remote at the
//! sink with `concurrency = 20`, Postfix's default destination concurrency) and a private
//! Postfix relaying to its own sink (`relayhost`). Both fsync before answering 250. Between
//! runs each target's queue is waited on until empty, so no run inherits another's backlog.
//!
//! **Delivery rate with 1 and 4 schedulers.** N messages are enqueued through the library
//! into a fresh embedded store while no scheduler runs; then 1 or 4 [`Scheduler`]s start over
//! that store and are timed until the sink has received all N. The embedded store is
//! single-process, so the four run in this process, over one store, each with its own
//! [`Queue`] as each pod has (the shape a FoundationDB cluster gives separate pods). Each
//! reads an even share of the shards (shard `s` goes to scheduler `s mod n`), fixed from the
//! start. Heartbeats would split them by rendezvous hashing, which is uneven for four members:
//! with random pod names the busiest owns about 20 of the 64 shards (23 one time in ten), so a
//! backlog drains at most about 64/20 = 3.2 times faster than with one scheduler; an even
//! split measures the scaling of delivery itself. Fixing the split also avoids a start-up
//! transient: whichever scheduler beats first owns every shard until the next beat and claims
//! up to `max_in_flight` messages at once, which would blur a run of a few seconds (sharing
//! with the queue-scheduler). Each scheduler honours `remote.<id>.concurrency` (20) on its
//! own, so four open up to four times as many connections. Two sinks:
//!
//! - one that answers at once: delivery is CPU-bound (claim, SMTP session, commit, and the
//!   sink itself). All schedulers, the sink and the store share this machine's cores, so on
//!   two cores four schedulers cannot be much faster than one: expect a ratio near 1, which
//!   says the shared queue costs little, not that four pods would not scale on four machines.
//! - one that waits a second before answering DATA (`smtp-sink -w 1`), as remote MTAs take
//!   their time: delivery is latency-bound, one scheduler delivers about `concurrency` per
//!   second, and more schedulers should scale with their number until the CPU runs out.
//!
//! Every count is checked: smtp-source's exit status, the sink's count (exactly what was
//! sent, never more), and the queue empty after every run. Each case runs several rounds in
//! a rotating order so that drift on this noisy machine does not favour one; the table gives
//! the median and every round follows.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod preload;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferrymail_e2e::{
    Ferrymail, PEER_PATIENCE, Postfix, SmtpSink, SmtpSource, bench_config, check_received,
    discarding_sink, load_average, machine_line, median, release_binary, require_peer,
};
use ferrymail_queue_scheduler::{Queue, SHARDS, Scheduler, SchedulerOptions};
use ferrymail_rpc::queue::{GrpcQueue, QueueService, QueueStats};
use ferrymail_store::{Store, StoreOptions};
use futures::StreamExt;
use preload::{preloaded_body, preloaded_envelope};
use tokio_util::sync::CancellationToken;

/// Concurrent smtp-source sessions.
const SESSIONS: usize = 20;
/// Payload bytes of each message (smtp-source adds a few header lines).
const MESSAGE_BYTES: usize = 4096;
/// Messages relayed end to end in one measured run.
const RELAY_MESSAGES: usize = 2000;
/// Messages sent to every relay target before measuring (two per session).
const WARM_UP_MESSAGES: usize = 2 * SESSIONS;
/// Measured runs of every case.
const ROUNDS: usize = 3;
/// The recipient of every message: a domain no target delivers locally.
const RECIPIENT: &str = "rcpt@relay.bench.test";
/// `remote.<id>.concurrency` of ferrymail's relay, for each scheduler; Postfix's
/// `default_destination_concurrency_limit` is also 20.
const REMOTE_CONCURRENCY: usize = 20;
/// How many schedulers drain the preloaded queue.
const SCHEDULER_COUNTS: [usize; 2] = [1, 4];
/// Messages enqueued before the schedulers start, by sink.
const QUEUED_FOR_FAST_SINK: usize = 2000;
const QUEUED_FOR_SLOW_SINK: usize = 400;
/// Seconds the slow sink waits before answering DATA.
const SLOW_SINK_DELAY: u32 = 1;
/// Messages enqueued at once while preloading.
const PRELOAD_CONCURRENCY: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Ferrymail,
    Postfix,
}

const TARGETS: [Target; 2] = [Target::Ferrymail, Target::Postfix];

impl Target {
    fn label(self) -> &'static str {
        match self {
            Target::Ferrymail => "ferrymail",
            Target::Postfix => "Postfix",
        }
    }
}

/// Both relays, running, each with its own sink.
struct RelayLab {
    // Dropped in declaration order: clients of a server go before it.
    ferrymail_queue: GrpcQueue,
    ferrymail: Ferrymail,
    ferrymail_smtp: SocketAddr,
    ferrymail_sink: SmtpSink,
    postfix: Postfix,
    postfix_sink: SmtpSink,
    /// Messages each target has relayed so far (warm-up included).
    sent: [usize; 2],
}

impl RelayLab {
    fn start(runtime: &tokio::runtime::Runtime) -> RelayLab {
        let ferrymail_sink = discarding_sink(None);
        let mut ferrymail = Ferrymail::start("all", &relay_config(ferrymail_sink.address()));
        let ferrymail_smtp = ferrymail.address("smtp");
        let grpc = ferrymail.address("grpc");
        let ferrymail_queue = {
            let _context = runtime.enter();
            GrpcQueue::connect(&format!("http://{grpc}"))
                .unwrap_or_else(|e| panic!("queue client for {grpc}: {e}"))
        };
        let postfix_sink = discarding_sink(None);
        let postfix = Postfix::start(postfix_sink.address());
        RelayLab {
            ferrymail_queue,
            ferrymail,
            ferrymail_smtp,
            ferrymail_sink,
            postfix,
            postfix_sink,
            sent: [0; 2],
        }
    }

    /// Sends `messages` through `target` and returns the time until its sink had them all;
    /// then waits until the target's queue is empty again.
    fn relay(
        &mut self,
        runtime: &tokio::runtime::Runtime,
        target: Target,
        messages: usize,
    ) -> Duration {
        let load = SmtpSource {
            sessions: SESSIONS,
            message_bytes: MESSAGE_BYTES,
            messages,
            reuse_connections: false,
            recipient: RECIPIENT.to_owned(),
        };
        let index = TARGETS.iter().position(|t| *t == target).unwrap();
        self.sent[index] += messages;
        let expected = self.sent[index];
        let (address, sink) = match target {
            Target::Ferrymail => (self.ferrymail_smtp, &self.ferrymail_sink),
            Target::Postfix => (self.postfix.address(), &self.postfix_sink),
        };
        let log = || self.log(target);
        let elapsed = load.run_until_received(address, sink, expected, log);
        // Relayed messages leave the queue just after the sink's 250; the next run should
        // not share the machine with this one's clean-up.
        match target {
            Target::Ferrymail => wait_until_empty(runtime, &self.ferrymail_queue, log),
            Target::Postfix => {
                let deadline = Instant::now() + PEER_PATIENCE;
                while self.postfix.queued() > 0 {
                    assert!(
                        Instant::now() < deadline,
                        "Postfix still queues {} messages that its sink received\n{}",
                        self.postfix.queued(),
                        log()
                    );
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
        check_received(sink, expected, log);
        elapsed
    }

    fn log(&self, target: Target) -> String {
        match target {
            Target::Ferrymail => format!("ferrymail log:\n{}", self.ferrymail.dump()),
            Target::Postfix => format!("Postfix log:\n{}", self.postfix.log()),
        }
    }
}

/// `ferrymail all` with an SMTP listener, a gRPC listener (to read the queue's count), the
/// embedded store (durable: every commit is fsynced), relaying for any client (the load
/// comes from loopback and sends HELO, no AUTH) to `remote.relay` at `sink`.
fn relay_config(sink: SocketAddr) -> String {
    bench_config(sink, REMOTE_CONCURRENCY, "[session.rcpt]\nrelay = true")
}

/// `remote.sink` at `sink` as `queue.outbound.next-hop`.
fn remote_config(sink: SocketAddr) -> String {
    format!(
        r#"
[remote.sink]
address = "{ip}"
port = {port}
protocol = "smtp"
tls.implicit = false
timeout = "30s"
concurrency = {REMOTE_CONCURRENCY}
[queue.outbound]
next-hop = "sink"
"#,
        ip = sink.ip(),
        port = sink.port()
    )
}

/// Waits until `queue` holds nothing; panics, with `context()`, after [`PEER_PATIENCE`].
fn wait_until_empty(
    runtime: &tokio::runtime::Runtime,
    queue: &impl QueueService,
    context: impl Fn() -> String,
) {
    let deadline = Instant::now() + PEER_PATIENCE;
    loop {
        let stats = runtime
            .block_on(queue.stats())
            .unwrap_or_else(|e| panic!("queue stats: {e}"));
        if stats == QueueStats::default() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the queue still holds {stats:?} after its sink received everything\n{}",
            context()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A sink for the scheduler runs, counting what every run delivered to it.
struct DrainSink {
    label: String,
    sink: SmtpSink,
    /// Messages each run preloads.
    messages: usize,
    /// Messages delivered to it so far.
    received: usize,
}

/// Enqueues `messages` into a fresh embedded store with no scheduler running, then starts
/// `schedulers` schedulers over it and returns the time until `sink` received them all.
fn drain(runtime: &tokio::runtime::Runtime, schedulers: usize, sink: &mut DrainSink) -> Duration {
    let dir = tempfile::Builder::new()
        .prefix("delivery-bench.")
        .tempdir()
        .unwrap();
    let text = format!(
        "[server]\nhostname = \"queue.bench.test\"\n{}",
        remote_config(sink.sink.address())
    );
    let config = ferrymail_config::load_str("bench.toml", &text).unwrap();
    let store = Store::open_embedded(dir.path(), StoreOptions::default()).unwrap();

    let messages = sink.messages;
    runtime.block_on(async {
        let intake = Queue::new(store.clone(), &config.queue);
        futures::stream::iter(0..messages)
            .map(|n| {
                intake.enqueue(
                    preloaded_envelope(RECIPIENT),
                    preloaded_body(n, RECIPIENT, MESSAGE_BYTES),
                )
            })
            .buffer_unordered(PRELOAD_CONCURRENCY)
            .for_each(|queued| async move {
                queued.unwrap_or_else(|e| panic!("enqueue: {e}"));
            })
            .await;
        let stats = intake.stats().await.unwrap();
        assert_eq!(stats.messages, messages as u64, "preloaded {stats:?}");
    });

    let workers: Vec<Arc<Scheduler>> = (0..schedulers)
        .map(|n| {
            let queue = Arc::new(Queue::new(store.clone(), &config.queue));
            let shards = (0..SHARDS).filter(|s| usize::from(*s) % schedulers == n);
            let options = SchedulerOptions {
                owner: format!("bench-{n}"),
                shards: Some(shards.collect()),
                ..SchedulerOptions::new("queue.bench.test")
            };
            Arc::new(Scheduler::new(queue, &config, options))
        })
        .collect();

    let expected = sink.received + messages;
    let stop = CancellationToken::new();
    let started = Instant::now();
    let runs: Vec<_> = workers
        .iter()
        .map(|worker| runtime.spawn(worker.clone().run(stop.clone())))
        .collect();
    let received = sink.sink.received_within(expected, PEER_PATIENCE);
    let elapsed = started.elapsed();
    let queue = workers[0].queue();
    assert!(
        received >= expected,
        "{schedulers} scheduler(s) delivered {} of {messages} messages to the {} in \
         {PEER_PATIENCE:?}; the queue holds {:?}",
        received - sink.received,
        sink.label,
        runtime.block_on(queue.stats())
    );
    wait_until_empty(runtime, queue.as_ref(), String::new);
    stop.cancel();
    runtime.block_on(async {
        for run in runs {
            run.await.unwrap();
        }
    });
    check_received(&sink.sink, expected, String::new);
    sink.received = expected;
    elapsed
}

fn main() {
    for peer in ["smtp-source", "smtp-sink", "postfix"] {
        require_peer(peer);
    }
    let ferrymail_bin = release_binary();
    let load_at_start = load_average();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();

    // Relay end to end: rates[target] in msgs/s, one per round.
    let mut relay_rates = vec![Vec::with_capacity(ROUNDS); TARGETS.len()];
    {
        let mut lab = RelayLab::start(&runtime);
        for target in TARGETS {
            lab.relay(&runtime, target, WARM_UP_MESSAGES);
        }
        for round in 0..ROUNDS {
            for step in 0..TARGETS.len() {
                let index = (round + step) % TARGETS.len();
                let elapsed = lab.relay(&runtime, TARGETS[index], RELAY_MESSAGES);
                relay_rates[index].push(RELAY_MESSAGES as f64 / elapsed.as_secs_f64());
            }
        }
    }

    // Draining a preloaded queue: drain_rates[sink][schedulers] in msgs/s, one per round.
    let mut sinks = [
        DrainSink {
            label: "sink answering at once".to_owned(),
            sink: discarding_sink(None),
            messages: QUEUED_FOR_FAST_SINK,
            received: 0,
        },
        DrainSink {
            label: format!("sink answering DATA after {SLOW_SINK_DELAY} s"),
            sink: discarding_sink(Some(SLOW_SINK_DELAY)),
            messages: QUEUED_FOR_SLOW_SINK,
            received: 0,
        },
    ];
    let mut drain_rates = vec![vec![Vec::with_capacity(ROUNDS); SCHEDULER_COUNTS.len()]; 2];
    for (sink_index, sink) in sinks.iter_mut().enumerate() {
        for round in 0..ROUNDS {
            for step in 0..SCHEDULER_COUNTS.len() {
                let index = (round + step) % SCHEDULER_COUNTS.len();
                let elapsed = drain(&runtime, SCHEDULER_COUNTS[index], sink);
                drain_rates[sink_index][index].push(sink.messages as f64 / elapsed.as_secs_f64());
            }
        }
    }

    println!(
        "Relay end to end: smtp-source ({SESSIONS} sessions, {MESSAGE_BYTES}-byte messages, \
         1 per connection) -> target -> smtp-sink, {RELAY_MESSAGES} messages per run, timed \
         until the sink has them all, median of {ROUNDS} rounds (msgs/s)"
    );
    println!("ferrymail: {}", ferrymail_bin.display());
    println!("{}", machine_line(&load_at_start));
    println!(
        "{:<40} {:>12} {:>12} {:>18}",
        "", "ferrymail", "Postfix", "ferrymail/Postfix"
    );
    let [ferrymail, postfix] = [0, 1].map(|target| median(&relay_rates[target]));
    println!(
        "{:<40} {:>12.0} {:>12.0} {:>17.2}x",
        format!("relayed (remote concurrency {REMOTE_CONCURRENCY})"),
        ferrymail,
        postfix,
        ferrymail / postfix
    );
    println!("{:<40} {:>12} {:>12} {:>18}", "target", "", "", ">= 3x");
    println!();
    println!(
        "Delivery from a preloaded queue (embedded store, schedulers in one process sharing \
         its cores, shards split evenly, remote concurrency {REMOTE_CONCURRENCY} each), timed \
         until the sink has them all, median of {ROUNDS} rounds (msgs/s)"
    );
    println!(
        "{:<40} {:>12} {:>12} {:>18}",
        "", "1 scheduler", "4 schedulers", "4/1"
    );
    for (sink_index, sink) in sinks.iter().enumerate() {
        let [one, four] = [0, 1].map(|index| median(&drain_rates[sink_index][index]));
        println!(
            "{:<40} {:>12.0} {:>12.0} {:>17.2}x",
            format!("{}, {} msgs", sink.label, sink.messages),
            one,
            four,
            four / one
        );
    }
    println!(
        "{:<40} {:>12} {:>12} {:>18}",
        "target", "", "", ">= 3x (latency-bound)"
    );
    println!("every round (msgs/s):");
    for (index, target) in TARGETS.into_iter().enumerate() {
        println!(
            "  {:<48} {}",
            format!("relayed by {}", target.label()),
            rounds(&relay_rates[index])
        );
    }
    for (sink_index, sink) in sinks.iter().enumerate() {
        for (index, count) in SCHEDULER_COUNTS.into_iter().enumerate() {
            println!(
                "  {:<48} {}",
                format!("{}, {count} scheduler(s)", sink.label),
                rounds(&drain_rates[sink_index][index])
            );
        }
    }
}

fn rounds(rates: &[f64]) -> String {
    rates
        .iter()
        .map(|rate| format!("{rate:.0}"))
        .collect::<Vec<_>>()
        .join("  ")
}
