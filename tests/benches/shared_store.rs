//! The PostgreSQL store next to the embedded store and Postfix, in one run, in three parts.
//!
//! **Durable acceptance and relay end to end.** Postfix's `smtp-source` (20 sessions, 4 KB
//! messages, one message per connection) sends to three targets, each relaying everything to
//! a discarding `smtp-sink` of its own: `ferrymail all` (the release build) on the embedded
//! store, `ferrymail all` on a private PostgreSQL cluster on loopback (`fsync = on`, the
//! default `synchronous_commit`), and a private Postfix (`relayhost`). ferrymail answers 250
//! only once the message is committed; Postfix fsyncs before 250. Recipients are relayed
//! (`session.rcpt.relay = true`, as Postfix's `mynetworks`), so no directory is asked. Each
//! run gives two figures: acceptance, until smtp-source has every 250 (the target relays
//! meanwhile, as in production), and relay, until the sink has every message. Next to each,
//! the CPU per message over the same interval: of the target's process tree, of the
//! PostgreSQL server's (the postmaster, its backends and background workers), of the sink
//! and of smtp-source. All of them share this machine's cores.
//!
//! **Draining a preloaded queue on PostgreSQL with 1 and 3 `queue-scheduler` processes.** A
//! fresh database is preloaded through the queue's library API while no scheduler runs; then
//! 1 or 3 separate `queue-scheduler` processes start on it and are timed, from the first
//! start, until the sink (answering at once) has every message. Each honours
//! `remote.<id>.concurrency` (20) on its own. They split the shards by heartbeat, as pods do,
//! so the split is uneven and the first to beat owns everything for a moment. On two cores
//! this case is CPU-bound: the ratio says what the shared queue costs, not what three machines
//! would do.
//!
//! **Where PostgreSQL's time goes.** The cluster runs with `pg_stat_statements` (nested
//! statements tracked) and `track_wal_io_timing`. Per run, from the statements of the run's
//! database and the WAL position: store commits (`ferrymail.commit(..)` calls) per message,
//! WAL bytes per message, and the share of the server's statement time spent in the commit
//! function. After each part, with every client gone (a backend reports its counters when it
//! ends): transactions per message, WAL flushes and their time, and the statements that took
//! the most time. Commits take turns on one row (`meta.clock`) that each holds until its
//! commit is flushed, so one WAL flush per store commit is the ceiling to compare with
//! (`make bench` also runs the store's own commit bench on PostgreSQL).
//!
//! Every count is checked: smtp-source's exit status, each sink's count (exactly what was
//! sent), and every queue empty after every run. Each case runs several rounds in a rotating
//! order so that drift on this noisy machine does not favour one; tables give the median,
//! and every round follows.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod preload;

use std::net::SocketAddr;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use ferrymail_e2e::{
    EMBEDDED_STORE, Ferrymail, PEER_PATIENCE, Postfix, Postgres, SmtpSink, SmtpSource,
    bench_config_on, check_received, discarding_sink, http_get, load_average, machine_line, median,
    process_tree_cpu, reaped_children_cpu, release_binary, require_peer,
};
use ferrymail_queue_scheduler::Queue;
use ferrymail_rpc::queue::{GrpcQueue, QueueService, QueueStats};
use ferrymail_store::{PostgresSettings, Store, StoreOptions};
use futures::StreamExt;
use preload::{preloaded_body, preloaded_envelope};

/// Concurrent smtp-source sessions.
const SESSIONS: usize = 20;
/// Payload bytes of each message (smtp-source adds a few header lines).
const MESSAGE_BYTES: usize = 4096;
/// Messages sent to one target in one measured run.
const MESSAGES_PER_RUN: usize = 1500;
/// Messages sent to every target before measuring (two per session).
const WARM_UP_MESSAGES: usize = 2 * SESSIONS;
/// Measured runs of every case.
const ROUNDS: usize = 3;
/// The recipient of every message: a domain no target delivers locally.
const RECIPIENT: &str = "rcpt@relay.bench.test";
/// `remote.<id>.concurrency` of every ferrymail relay and scheduler; Postfix's
/// `default_destination_concurrency_limit` is also 20.
const REMOTE_CONCURRENCY: usize = 20;
/// Messages preloaded before the schedulers start.
const DRAIN_MESSAGES: usize = 1000;
/// How many `queue-scheduler` processes drain it.
const SCHEDULER_COUNTS: [usize; 2] = [1, 3];
/// Messages enqueued at once while preloading.
const PRELOAD_CONCURRENCY: usize = 32;
/// Connections of the preloading store.
const PRELOAD_CONNECTIONS: usize = 16;

/// What the private cluster tracks, on top of the harness's settings: every statement, also
/// those the commit function runs, and the time WAL writes and flushes take.
const STATISTICS: &str = "shared_preload_libraries = 'pg_stat_statements'\n\
     pg_stat_statements.track = all\n\
     pg_stat_statements.max = 1000\n\
     track_wal_io_timing = on\n";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Embedded,
    Postgres,
    Postfix,
}

const TARGETS: [Target; 3] = [Target::Embedded, Target::Postgres, Target::Postfix];

impl Target {
    fn label(self) -> &'static str {
        match self {
            Target::Embedded => "ferrymail, embedded",
            Target::Postgres => "ferrymail, PostgreSQL",
            Target::Postfix => "Postfix",
        }
    }
}

/// CPU used so far by each side of a target.
#[derive(Debug, Clone, Copy, Default)]
struct Cpu {
    /// The target's process tree (ferrymail's process; Postfix's master and its daemons).
    server: Duration,
    /// The PostgreSQL server's process tree.
    postgres: Duration,
    /// The smtp-sink the target relays to.
    sink: Duration,
    /// Children this process reaped (smtp-source, once it is done).
    client: Duration,
}

impl Cpu {
    fn since(self, before: Cpu) -> Cpu {
        Cpu {
            server: self.server.saturating_sub(before.server),
            postgres: self.postgres.saturating_sub(before.postgres),
            sink: self.sink.saturating_sub(before.sink),
            client: self.client.saturating_sub(before.client),
        }
    }
}

/// What the PostgreSQL server did for one database so far, from `pg_stat_statements` (up to
/// date at the end of each statement) and the WAL position.
#[derive(Debug, Clone, Copy, Default)]
struct ServerWork {
    /// Calls of the commit function: store transactions that wrote.
    commits: f64,
    /// Milliseconds in the commit function.
    commit_ms: f64,
    /// Milliseconds in every top-level statement.
    statement_ms: f64,
    /// The WAL position, in bytes.
    wal: f64,
}

impl ServerWork {
    fn read(postgres: &Postgres, database: &str) -> ServerWork {
        let row = postgres.sql(
            "postgres",
            &format!(
                "SELECT coalesce(sum(calls) FILTER (WHERE query LIKE 'SELECT ferrymail.commit%'), 0), \
                 coalesce(sum(total_exec_time) FILTER (WHERE query LIKE 'SELECT ferrymail.commit%'), 0), \
                 coalesce(sum(total_exec_time), 0), \
                 pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0') \
                 FROM pg_stat_statements WHERE toplevel AND dbid = \
                 (SELECT oid FROM pg_database WHERE datname = '{database}')"
            ),
        );
        let fields: Vec<f64> = row
            .split('|')
            .map(|field| {
                field
                    .parse()
                    .unwrap_or_else(|e| panic!("{field:?} of {row:?}: {e}"))
            })
            .collect();
        let [commits, commit_ms, statement_ms, wal] = fields[..] else {
            panic!("four fields expected: {row:?}");
        };
        ServerWork {
            commits,
            commit_ms,
            statement_ms,
            wal,
        }
    }

    fn since(self, before: ServerWork) -> ServerWork {
        ServerWork {
            commits: self.commits - before.commits,
            commit_ms: self.commit_ms - before.commit_ms,
            statement_ms: self.statement_ms - before.statement_ms,
            wal: self.wal - before.wal,
        }
    }
}

/// What ferrymail's store reported on `/metrics`: durable commits with writes, their time,
/// and attempts run again.
#[derive(Debug, Clone, Copy, Default)]
struct StoreReport {
    commits: f64,
    commit_seconds: f64,
    conflicts: f64,
    other_retries: f64,
}

impl StoreReport {
    fn scrape(admin: SocketAddr) -> StoreReport {
        let body = http_get(admin, "/metrics")
            .unwrap_or_else(|e| panic!("/metrics of {admin}: {e}"))
            .body;
        let mut report = StoreReport::default();
        for line in body.lines() {
            let Some((name, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            match name {
                "store_commit_duration_seconds_count" => report.commits += value,
                "store_commit_duration_seconds_sum" => report.commit_seconds += value,
                "store_transaction_retries_total{reason=\"conflict\"}" => {
                    report.conflicts += value;
                }
                _ if name.starts_with("store_transaction_retries_total{") => {
                    report.other_retries += value;
                }
                _ => {}
            }
        }
        report
    }

    fn plus(self, other: StoreReport) -> StoreReport {
        StoreReport {
            commits: self.commits + other.commits,
            commit_seconds: self.commit_seconds + other.commit_seconds,
            conflicts: self.conflicts + other.conflicts,
            other_retries: self.other_retries + other.other_retries,
        }
    }

    fn since(self, before: StoreReport) -> StoreReport {
        StoreReport {
            commits: self.commits - before.commits,
            commit_seconds: self.commit_seconds - before.commit_seconds,
            conflicts: self.conflicts - before.conflicts,
            other_retries: self.other_retries - before.other_retries,
        }
    }

    fn print(&self, label: &str, messages: usize) {
        let per = |value: f64| value / messages as f64;
        println!(
            "{label:<32} {:>12.2} {:>14.2} {:>12.3} {:>12.3}",
            per(self.commits),
            if self.commits > 0.0 {
                self.commit_seconds * 1e3 / self.commits
            } else {
                0.0
            },
            per(self.conflicts),
            per(self.other_retries),
        );
    }
}

/// `[server.listener.admin]`, for `/metrics`.
const ADMIN: &str = "[server.listener.admin]\nbind = \"127.0.0.1:0\"\nprotocol = \"http\"\n";

/// One measured run of a target.
#[derive(Debug, Clone, Copy)]
struct Run {
    /// Until smtp-source had every 250, and the CPU until then.
    accepted: Duration,
    accepted_cpu: Cpu,
    /// Until the sink had every message, and the CPU until then.
    relayed: Duration,
    relayed_cpu: Cpu,
    /// From the run's start until the queue was empty again (PostgreSQL only).
    work: ServerWork,
}

/// A target, running, with the sink it relays to.
struct Relay {
    target: Target,
    // Dropped in declaration order: clients of a server go before it.
    queue: Option<GrpcQueue>,
    ferrymail: Option<Ferrymail>,
    postfix: Option<Postfix>,
    smtp: SocketAddr,
    /// ferrymail's admin listener.
    admin: Option<SocketAddr>,
    sink: SmtpSink,
    /// Messages it has relayed so far (warm-up included).
    sent: usize,
}

/// The database of the PostgreSQL target.
const RELAY_DATABASE: &str = "relay";

impl Relay {
    fn start(target: Target, postgres: &Postgres, runtime: &tokio::runtime::Runtime) -> Relay {
        let sink = discarding_sink(None);
        let store = match target {
            Target::Embedded => EMBEDDED_STORE.to_owned(),
            Target::Postgres => postgres.store_config("shared", RELAY_DATABASE, postgres.port()),
            Target::Postfix => {
                let postfix = Postfix::start(sink.address());
                return Relay {
                    target,
                    queue: None,
                    ferrymail: None,
                    smtp: postfix.address(),
                    admin: None,
                    postfix: Some(postfix),
                    sink,
                    sent: 0,
                };
            }
        };
        let config = bench_config_on(
            &store,
            sink.address(),
            REMOTE_CONCURRENCY,
            &format!("{ADMIN}[session.rcpt]\nrelay = true"),
        );
        let mut ferrymail = Ferrymail::start("all", &config);
        let smtp = ferrymail.address("smtp");
        let grpc = ferrymail.address("grpc");
        let admin = ferrymail.address("admin");
        // The channel's connection task runs on the runtime it is created in.
        let queue = {
            let _context = runtime.enter();
            GrpcQueue::connect(&format!("http://{grpc}"))
                .unwrap_or_else(|e| panic!("queue client for {grpc}: {e}"))
        };
        Relay {
            target,
            queue: Some(queue),
            ferrymail: Some(ferrymail),
            postfix: None,
            smtp,
            admin: Some(admin),
            sink,
            sent: 0,
        }
    }

    fn cpu(&self, postgres: &Postgres) -> Cpu {
        let tree = |pid: Option<u32>| pid.map_or(Duration::ZERO, process_tree_cpu);
        let server = match (&self.ferrymail, &self.postfix) {
            (Some(ferrymail), _) => Some(ferrymail.pid()),
            (None, Some(postfix)) => postfix.master_pid(),
            (None, None) => None,
        };
        Cpu {
            server: tree(server),
            postgres: process_tree_cpu(postgres.pid()),
            sink: tree(self.sink.pid()),
            client: reaped_children_cpu(),
        }
    }

    fn store_report(&self) -> Option<StoreReport> {
        self.admin.map(StoreReport::scrape)
    }

    fn log(&self) -> String {
        match (&self.ferrymail, &self.postfix) {
            (Some(ferrymail), _) => format!("ferrymail log:\n{}", ferrymail.dump()),
            (None, Some(postfix)) => format!("Postfix log:\n{}", postfix.log()),
            (None, None) => String::new(),
        }
    }

    /// Sends `messages` with smtp-source and measures until they are all accepted and all
    /// relayed; then waits until the target's queue is empty.
    fn run(
        &mut self,
        postgres: &Postgres,
        runtime: &tokio::runtime::Runtime,
        messages: usize,
    ) -> Run {
        let load = SmtpSource {
            sessions: SESSIONS,
            message_bytes: MESSAGE_BYTES,
            messages,
            reuse_connections: false,
            recipient: RECIPIENT.to_owned(),
        };
        let expected = self.sent + messages;
        // psql runs outside the CPU window: it is a child of this process too.
        let work_before = ServerWork::read(postgres, RELAY_DATABASE);
        let before = self.cpu(postgres);
        let started = Instant::now();
        let mut child = load
            .command(self.smtp)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run smtp-source");
        let mut accepted = None;
        let mut relayed = None;
        while accepted.is_none() || relayed.is_none() {
            if accepted.is_none() && self.exited(&mut child) {
                accepted = Some((started.elapsed(), self.cpu(postgres)));
            }
            // Woken at once when the count moves; the timeout bounds how late smtp-source's
            // exit is seen.
            if relayed.is_none()
                && self
                    .sink
                    .received_within(expected, Duration::from_millis(5))
                    >= expected
            {
                relayed = Some((started.elapsed(), self.cpu(postgres)));
            }
            assert!(
                started.elapsed() < PEER_PATIENCE,
                "{}: smtp-sink received {} of {expected} messages in {PEER_PATIENCE:?}\n{}",
                self.target.label(),
                self.sink.received(),
                self.log()
            );
        }
        // Already reaped by `exited`: this returns its status at once.
        child.wait().expect("smtp-source's status");
        let (accepted, at_accept) = accepted.unwrap();
        let (relayed, mut at_relay) = relayed.unwrap();
        // smtp-source is reaped when it exits, which may come after the sink's last message.
        at_relay.client = at_accept.client;
        self.sent = expected;
        self.wait_until_empty(runtime);
        check_received(&self.sink, expected, || self.log());
        let work = ServerWork::read(postgres, RELAY_DATABASE).since(work_before);
        Run {
            accepted,
            accepted_cpu: at_accept.since(before),
            relayed,
            relayed_cpu: at_relay.since(before),
            work,
        }
    }

    /// Whether smtp-source has exited; panics if it failed.
    fn exited(&self, child: &mut Child) -> bool {
        let Some(status) = child.try_wait().unwrap() else {
            return false;
        };
        if !status.success() {
            let mut stderr = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
            }
            panic!(
                "smtp-source against {} ({}) failed ({status}): {stderr}\n{}",
                self.target.label(),
                self.smtp,
                self.log()
            );
        }
        true
    }

    /// Relayed messages leave the queue just after the sink's 250; the next run should not
    /// share the machine with this one's clean-up.
    fn wait_until_empty(&self, runtime: &tokio::runtime::Runtime) {
        let deadline = Instant::now() + PEER_PATIENCE;
        loop {
            let queued = match (&self.queue, &self.postfix) {
                (Some(queue), _) => {
                    let stats = runtime
                        .block_on(queue.stats())
                        .unwrap_or_else(|e| panic!("queue stats: {e}"));
                    usize::from(stats != QueueStats::default())
                }
                (None, Some(postfix)) => postfix.queued(),
                (None, None) => 0,
            };
            if queued == 0 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} still queues messages its sink received\n{}",
                self.target.label(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// One drain of a preloaded queue.
#[derive(Debug, Clone, Copy)]
struct Drain {
    elapsed: Duration,
    /// Every scheduler's CPU, from its start until the sink had every message.
    schedulers: Duration,
    /// The PostgreSQL server's, over the same time.
    postgres: Duration,
    work: ServerWork,
    /// What the schedulers' stores reported, over their whole life.
    store: StoreReport,
    /// Rows of the table of recent writes, which every commit checks, at the end.
    writes: f64,
}

/// Preloads [`DRAIN_MESSAGES`] into fresh database `database`, then starts `schedulers`
/// `queue-scheduler` processes on it and measures until `sink` has them all.
fn drain(
    postgres: &Postgres,
    runtime: &tokio::runtime::Runtime,
    database: &str,
    schedulers: usize,
    sink: &SmtpSink,
    received: &mut usize,
) -> Drain {
    postgres.create_database(database);
    let settings = PostgresSettings {
        host: "127.0.0.1".into(),
        port: postgres.port(),
        database: database.into(),
        user: postgres.user().into(),
        password: Some(postgres.password().into()),
        timeout: Duration::from_secs(15),
        tls: None,
        max_connections: PRELOAD_CONNECTIONS,
    };
    let remote = format!(
        "[remote.sink]\naddress = \"127.0.0.1\"\nport = {}\nprotocol = \"smtp\"\n\
         tls.implicit = false\ntimeout = \"30s\"\nconcurrency = {REMOTE_CONCURRENCY}\n\
         [queue.outbound]\nnext-hop = \"sink\"\n",
        sink.address().port()
    );
    let text = format!("[server]\nhostname = \"queue.bench.test\"\n{remote}");
    let config = ferrymail_config::load_str("bench.toml", &text).unwrap();
    let intake = runtime.block_on(async {
        let store = Store::open_postgresql(&settings, StoreOptions::default())
            .await
            .unwrap_or_else(|e| panic!("open {database}: {e}"));
        let intake = Queue::new(store, &config.queue);
        futures::stream::iter(0..DRAIN_MESSAGES)
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
        assert_eq!(stats.messages, DRAIN_MESSAGES as u64, "preloaded {stats:?}");
        intake
    });

    let work_before = ServerWork::read(postgres, database);
    let postgres_before = process_tree_cpu(postgres.pid());
    let started = Instant::now();
    let mut processes: Vec<Ferrymail> = (0..schedulers)
        .map(|n| {
            let config = format!(
                "[server]\nhostname = \"scheduler-{n}.bench.test\"\nshutdown-timeout = \"5s\"\n\
                 [server.listener.grpc]\nbind = \"127.0.0.1:0\"\nprotocol = \"grpc\"\n\
                 {ADMIN}{}{remote}",
                postgres.store_config("shared", database, postgres.port())
            );
            Ferrymail::start("queue-scheduler", &config)
        })
        .collect();
    let expected = *received + DRAIN_MESSAGES;
    let got = sink.received_within(expected, PEER_PATIENCE);
    let elapsed = started.elapsed();
    let schedulers_cpu = processes.iter().map(|p| process_tree_cpu(p.pid())).sum();
    let postgres_cpu = process_tree_cpu(postgres.pid()).saturating_sub(postgres_before);
    let logs = |processes: &mut Vec<Ferrymail>| {
        processes
            .iter_mut()
            .map(|p| {
                p.read_log();
                p.dump()
            })
            .collect::<Vec<_>>()
            .join("\n---\n")
    };
    if got < expected {
        panic!(
            "{schedulers} scheduler(s) delivered {} of {DRAIN_MESSAGES} messages in \
             {PEER_PATIENCE:?}; the queue holds {:?}\n{}",
            got - *received,
            runtime.block_on(intake.stats()),
            logs(&mut processes)
        );
    }
    let deadline = Instant::now() + PEER_PATIENCE;
    loop {
        let stats = runtime.block_on(intake.stats()).unwrap();
        if stats == QueueStats::default() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the queue still holds {stats:?} after its sink received everything\n{}",
            logs(&mut processes)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let work = ServerWork::read(postgres, database).since(work_before);
    let store = processes
        .iter_mut()
        .map(|p| StoreReport::scrape(p.address("admin")))
        .fold(StoreReport::default(), StoreReport::plus);
    let writes = writes_rows(postgres, database);
    drop(processes);
    drop(intake);
    check_received(sink, expected, String::new);
    *received = expected;
    Drain {
        elapsed,
        schedulers: schedulers_cpu,
        postgres: postgres_cpu,
        work,
        store,
        writes,
    }
}

/// Rows of `ferrymail.writes` in `database`.
fn writes_rows(postgres: &Postgres, database: &str) -> f64 {
    postgres
        .sql(database, "SELECT count(*) FROM ferrymail.writes")
        .parse()
        .unwrap()
}

/// Counters the server keeps for itself, since their last reset: up to date only once the
/// backends that did the work have reported them (at the latest when they end).
#[derive(Debug, Clone, Copy, Default)]
struct ServerCounters {
    /// Transactions committed in the databases measured.
    transactions: f64,
    /// Blocks read from shared buffers or from the kernel in them.
    blocks: f64,
    /// WAL records, full-page images, bytes; flushes and their time (ms), cluster-wide.
    wal_records: f64,
    wal_fpi: f64,
    wal_bytes: f64,
    wal_syncs: f64,
    wal_sync_ms: f64,
}

/// Resets the WAL counters, the statements, and the counters of `database` if given.
fn reset_counters(postgres: &Postgres, database: Option<&str>) {
    postgres.sql(
        "postgres",
        "SELECT pg_stat_reset_shared('wal'), pg_stat_statements_reset()",
    );
    if let Some(database) = database {
        postgres.sql(database, "SELECT pg_stat_reset()");
    }
}

/// The counters of `databases` (a SQL `LIKE` pattern) and the cluster's WAL counters.
fn read_counters(postgres: &Postgres, databases: &str) -> ServerCounters {
    let row = postgres.sql(
        "postgres",
        &format!(
            "SELECT (SELECT coalesce(sum(xact_commit), 0) FROM pg_stat_database \
             WHERE datname LIKE '{databases}'), \
             (SELECT coalesce(sum(blks_hit + blks_read), 0) FROM pg_stat_database \
             WHERE datname LIKE '{databases}'), \
             wal_records, wal_fpi, wal_bytes, wal_sync, wal_sync_time FROM pg_stat_wal"
        ),
    );
    let fields: Vec<f64> = row.split('|').map(|f| f.parse().unwrap()).collect();
    let [
        transactions,
        blocks,
        wal_records,
        wal_fpi,
        wal_bytes,
        wal_syncs,
        wal_sync_ms,
    ] = fields[..]
    else {
        panic!("seven fields expected: {row:?}");
    };
    ServerCounters {
        transactions,
        blocks,
        wal_records,
        wal_fpi,
        wal_bytes,
        wal_syncs,
        wal_sync_ms,
    }
}

/// The statements of `databases` that took the most time, top-level or run by the commit
/// function, with calls and milliseconds per message.
fn top_statements(postgres: &Postgres, databases: &str, messages: usize) -> String {
    let rows = postgres.sql(
        "postgres",
        &format!(
            "SELECT CASE WHEN s.toplevel THEN 'top' ELSE 'in' END, sum(s.calls), \
             sum(s.total_exec_time), left(regexp_replace(s.query, '\\s+', ' ', 'g'), 72) \
             FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid \
             WHERE d.datname LIKE '{databases}' \
             GROUP BY 1, 4 ORDER BY 3 DESC LIMIT 8"
        ),
    );
    let mut text = format!(
        "  {:<4} {:>10} {:>12} {:>10}  statement (\"in\": run by a function)\n",
        "", "calls/msg", "us/msg", "us/call"
    );
    for row in rows.lines() {
        let fields: Vec<&str> = row.splitn(4, '|').collect();
        let [level, calls, ms, query] = fields[..] else {
            continue;
        };
        let calls: f64 = calls.parse().unwrap_or(0.0);
        let ms: f64 = ms.parse().unwrap_or(0.0);
        text.push_str(&format!(
            "  {level:<4} {:>10.2} {:>12.0} {:>10.0}  {query}\n",
            calls / messages as f64,
            ms * 1e3 / messages as f64,
            if calls > 0.0 { ms * 1e3 / calls } else { 0.0 },
        ));
    }
    text
}

fn print_counters(label: &str, counters: ServerCounters, messages: usize) {
    let per = |value: f64| value / messages as f64;
    println!(
        "{label}: per message {:.1} transactions, {:.0} blocks touched, {:.1} WAL records \
         ({:.2} full-page images), {:.0} WAL bytes, {:.2} WAL flushes of {:.2} ms each \
         ({:.0} us/msg)",
        per(counters.transactions),
        per(counters.blocks),
        per(counters.wal_records),
        per(counters.wal_fpi),
        per(counters.wal_bytes),
        per(counters.wal_syncs),
        if counters.wal_syncs > 0.0 {
            counters.wal_sync_ms / counters.wal_syncs
        } else {
            0.0
        },
        counters.wal_sync_ms * 1e3 / messages as f64,
    );
}

/// Microseconds of `side` per message, median of `runs`.
fn per_message<T>(runs: &[T], messages: usize, side: impl Fn(&T) -> Duration) -> f64 {
    let micros: Vec<f64> = runs
        .iter()
        .map(|run| side(run).as_secs_f64() * 1e6 / messages as f64)
        .collect();
    median(&micros)
}

fn work_per_message<T>(runs: &[T], messages: usize, value: impl Fn(&T) -> f64) -> f64 {
    let values: Vec<f64> = runs
        .iter()
        .map(|run| value(run) / messages as f64)
        .collect();
    median(&values)
}

fn rounds(rates: &[f64]) -> String {
    rates
        .iter()
        .map(|rate| format!("{rate:.0}"))
        .collect::<Vec<_>>()
        .join("  ")
}

fn main() {
    for peer in ["smtp-source", "smtp-sink", "postfix", "initdb"] {
        require_peer(peer);
    }
    let ferrymail_bin = release_binary();
    let load_at_start = load_average();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    // Declared first, dropped last: every client of the cluster goes before it.
    let mut postgres = Postgres::start();
    postgres.configure(STATISTICS);
    postgres.sql("postgres", "CREATE EXTENSION pg_stat_statements");
    postgres.create_database(RELAY_DATABASE);

    // Acceptance and relay: runs[target], one per round.
    let mut runs: Vec<Vec<Run>> = vec![Vec::with_capacity(ROUNDS); TARGETS.len()];
    let relay_counters;
    let relay_reports;
    let relay_writes;
    {
        let mut relays: Vec<Relay> = TARGETS
            .into_iter()
            .map(|target| Relay::start(target, &postgres, &runtime))
            .collect();
        for relay in &mut relays {
            relay.run(&postgres, &runtime, WARM_UP_MESSAGES);
        }
        reset_counters(&postgres, Some(RELAY_DATABASE));
        let reports_before: Vec<Option<StoreReport>> =
            relays.iter().map(Relay::store_report).collect();
        for round in 0..ROUNDS {
            for step in 0..TARGETS.len() {
                let index = (round + step) % TARGETS.len();
                let run = relays[index].run(&postgres, &runtime, MESSAGES_PER_RUN);
                runs[index].push(run);
            }
        }
        relay_reports = relays
            .iter()
            .zip(reports_before)
            .map(|(relay, before)| Some(relay.store_report()?.since(before?)))
            .collect::<Vec<_>>();
        relay_writes = writes_rows(&postgres, RELAY_DATABASE);
        // ferrymail's connections end with it, reporting their counters.
        let top = top_statements(&postgres, RELAY_DATABASE, ROUNDS * MESSAGES_PER_RUN);
        drop(relays);
        std::thread::sleep(Duration::from_secs(1));
        relay_counters = (read_counters(&postgres, RELAY_DATABASE), top);
    }

    // Draining: drains[count], one per round, each on its own database.
    let sink = discarding_sink(None);
    let mut received = 0;
    let mut drains: Vec<Vec<Drain>> = vec![Vec::with_capacity(ROUNDS); SCHEDULER_COUNTS.len()];
    reset_counters(&postgres, None);
    // The counters of the drains cover the preloads too; the statements are per run.
    let mut drain_tops = Vec::new();
    for round in 0..ROUNDS {
        for step in 0..SCHEDULER_COUNTS.len() {
            let index = (round + step) % SCHEDULER_COUNTS.len();
            let count = SCHEDULER_COUNTS[index];
            let database = format!("drain_{count}_{round}");
            let run = drain(&postgres, &runtime, &database, count, &sink, &mut received);
            drains[index].push(run);
        }
    }
    for count in SCHEDULER_COUNTS {
        drain_tops.push(top_statements(
            &postgres,
            &format!("drain_{count}_%"),
            ROUNDS * DRAIN_MESSAGES,
        ));
    }
    std::thread::sleep(Duration::from_secs(1));
    let drain_counters = read_counters(&postgres, "drain_%");

    let machine = machine_line(&load_at_start);
    println!(
        "Shared store: smtp-source ({SESSIONS} sessions, {MESSAGE_BYTES}-byte messages, 1 per \
         connection) -> target -> smtp-sink, {MESSAGES_PER_RUN} messages per run, median of \
         {ROUNDS} rounds; PostgreSQL {} on loopback, fsync on, synchronous_commit on",
        postgres.sql("postgres", "SHOW server_version")
    );
    println!("ferrymail: {}", ferrymail_bin.display());
    println!("{machine}");
    let rate = |elapsed: Duration| MESSAGES_PER_RUN as f64 / elapsed.as_secs_f64();
    let accepted: Vec<f64> = (0..TARGETS.len())
        .map(|i| median(&runs[i].iter().map(|r| rate(r.accepted)).collect::<Vec<_>>()))
        .collect();
    let relayed: Vec<f64> = (0..TARGETS.len())
        .map(|i| median(&runs[i].iter().map(|r| rate(r.relayed)).collect::<Vec<_>>()))
        .collect();
    for (title, rates, is_relay) in [
        (
            "1. durable acceptance (until smtp-source has every 250)",
            &accepted,
            false,
        ),
        (
            "2. relay end to end (until the sink has every message)",
            &relayed,
            true,
        ),
    ] {
        println!();
        println!("{title}; CPU per message over the same interval (us; /proc ticks of 10 ms):");
        println!(
            "{:<24} {:>8} {:>10} {:>10} {:>10} {:>10} {:>12}",
            "", "msgs/s", "/Postfix", "server", "PostgreSQL", "sink", "smtp-source"
        );
        for (index, target) in TARGETS.into_iter().enumerate() {
            let cpu = |side: fn(&Cpu) -> Duration| {
                per_message(&runs[index], MESSAGES_PER_RUN, |run| {
                    side(if is_relay {
                        &run.relayed_cpu
                    } else {
                        &run.accepted_cpu
                    })
                })
            };
            let postgres_cpu = if target == Target::Postgres {
                format!("{:.0}", cpu(|c| c.postgres))
            } else {
                "-".to_owned()
            };
            println!(
                "{:<24} {:>8.0} {:>9.2}x {:>10.0} {:>10} {:>10.0} {:>12.0}",
                target.label(),
                rates[index],
                rates[index] / rates[2],
                cpu(|c| c.server),
                postgres_cpu,
                cpu(|c| c.sink),
                cpu(|c| c.client),
            );
        }
    }
    let postgres_runs = &runs[1];
    println!(
        "PostgreSQL ratios: acceptance {:.2}x embedded, relay {:.2}x embedded",
        accepted[1] / accepted[0],
        relayed[1] / relayed[0]
    );

    println!();
    println!(
        "3. draining {DRAIN_MESSAGES} preloaded messages on PostgreSQL with separate \
         queue-scheduler processes (remote concurrency {REMOTE_CONCURRENCY} each, sink \
         answering at once), timed from the first start until the sink has them all; CPU per \
         message (us):"
    );
    println!(
        "{:<16} {:>8} {:>12} {:>12}",
        "", "msgs/s", "schedulers", "PostgreSQL"
    );
    let drain_rate = |d: &Drain| DRAIN_MESSAGES as f64 / d.elapsed.as_secs_f64();
    let drain_rates: Vec<f64> = drains
        .iter()
        .map(|runs| median(&runs.iter().map(drain_rate).collect::<Vec<_>>()))
        .collect();
    for (index, count) in SCHEDULER_COUNTS.into_iter().enumerate() {
        println!(
            "{:<16} {:>8.0} {:>12.0} {:>12.0}",
            format!("{count} scheduler(s)"),
            drain_rates[index],
            per_message(&drains[index], DRAIN_MESSAGES, |d| d.schedulers),
            per_message(&drains[index], DRAIN_MESSAGES, |d| d.postgres),
        );
    }
    println!(
        "3/1: throughput {:.2}x, CPU per message: schedulers {:.2}x, PostgreSQL {:.2}x",
        drain_rates[1] / drain_rates[0],
        per_message(&drains[1], DRAIN_MESSAGES, |d| d.schedulers)
            / per_message(&drains[0], DRAIN_MESSAGES, |d| d.schedulers),
        per_message(&drains[1], DRAIN_MESSAGES, |d| d.postgres)
            / per_message(&drains[0], DRAIN_MESSAGES, |d| d.postgres),
    );

    println!();
    println!(
        "Where PostgreSQL's time goes (per message, median of the runs; commit(): the store's \
         commit function, one call per store transaction that writes; share: of the time of \
         every top-level statement):"
    );
    println!(
        "{:<32} {:>12} {:>10} {:>14} {:>10} {:>14}",
        "", "commits/msg", "WAL B/msg", "commit() us/msg", "share", "statements us/msg"
    );
    let work_row = |label: String, works: Vec<ServerWork>, messages: usize| {
        let commits = work_per_message(&works, messages, |w| w.commits);
        let wal = work_per_message(&works, messages, |w| w.wal);
        let commit_us = work_per_message(&works, messages, |w| w.commit_ms * 1e3);
        let statement_us = work_per_message(&works, messages, |w| w.statement_ms * 1e3);
        let shares: Vec<f64> = works
            .iter()
            .map(|w| w.commit_ms / w.statement_ms.max(f64::MIN_POSITIVE))
            .collect();
        println!(
            "{label:<32} {commits:>12.2} {wal:>10.0} {commit_us:>14.0} {:>9.0}% {statement_us:>14.0}",
            median(&shares) * 100.0
        );
    };
    work_row(
        "ferrymail all: accept + relay".to_owned(),
        postgres_runs.iter().map(|r| r.work).collect(),
        MESSAGES_PER_RUN,
    );
    for (index, count) in SCHEDULER_COUNTS.into_iter().enumerate() {
        work_row(
            format!("drain, {count} scheduler(s)"),
            drains[index].iter().map(|d| d.work).collect(),
            DRAIN_MESSAGES,
        );
    }
    let commit_rates: Vec<f64> = postgres_runs
        .iter()
        .map(|r| r.work.commits / r.relayed.as_secs_f64())
        .chain(
            drains
                .iter()
                .flatten()
                .map(|d| d.work.commits / d.elapsed.as_secs_f64()),
        )
        .collect();
    println!(
        "store commits per second reached: {} (accept + relay rounds, then drains)",
        rounds(&commit_rates)
    );
    println!(
        "rows of ferrymail.writes (recent writes every commit checks) at the end: {:.0} after \
         accept + relay, {} after the drains",
        relay_writes,
        rounds(
            &drains
                .iter()
                .flatten()
                .map(|d| d.writes)
                .collect::<Vec<_>>()
        )
    );
    println!();
    println!("What ferrymail's stores reported on /metrics, per message:");
    println!(
        "{:<32} {:>12} {:>14} {:>12} {:>12}",
        "", "commits/msg", "ms per commit", "conflicts", "other retries"
    );
    for (index, target) in TARGETS.into_iter().enumerate() {
        if let Some(report) = relay_reports[index] {
            report.print(
                &format!("{}, accept + relay", target.label()),
                ROUNDS * MESSAGES_PER_RUN,
            );
        }
    }
    for (index, count) in SCHEDULER_COUNTS.into_iter().enumerate() {
        let report = drains[index]
            .iter()
            .map(|d| d.store)
            .fold(StoreReport::default(), StoreReport::plus);
        report.print(
            &format!("drain, {count} scheduler(s)"),
            ROUNDS * DRAIN_MESSAGES,
        );
    }
    println!();
    let (counters, top) = &relay_counters;
    print_counters(
        "ferrymail all, accept + relay (server counters)",
        *counters,
        ROUNDS * MESSAGES_PER_RUN,
    );
    print!("{top}");
    print_counters(
        "drains, preloads included (server counters)",
        drain_counters,
        2 * ROUNDS * DRAIN_MESSAGES,
    );
    for (index, count) in SCHEDULER_COUNTS.into_iter().enumerate() {
        println!("drain, {count} scheduler(s), preloads included:");
        print!("{}", drain_tops[index]);
    }

    println!("every round (msgs/s):");
    for (index, target) in TARGETS.into_iter().enumerate() {
        let accepted: Vec<f64> = runs[index].iter().map(|r| rate(r.accepted)).collect();
        let relayed: Vec<f64> = runs[index].iter().map(|r| rate(r.relayed)).collect();
        println!(
            "  {:<40} {}",
            format!("accepted by {}", target.label()),
            rounds(&accepted)
        );
        println!(
            "  {:<40} {}",
            format!("relayed by {}", target.label()),
            rounds(&relayed)
        );
    }
    for (index, count) in SCHEDULER_COUNTS.into_iter().enumerate() {
        let rates: Vec<f64> = drains[index].iter().map(drain_rate).collect();
        println!(
            "  {:<40} {}",
            format!("drained by {count} scheduler(s)"),
            rounds(&rates)
        );
    }
    println!("{}", machine_line(&load_at_start));
}
