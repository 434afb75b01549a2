//! Operating on a queue of 10,000 messages: ferrymail next to Postfix, in one run.
//!
//! Both hold the same 10,000 messages, from ten senders (`s0@…` to `s9@…`, 1,000 each), none
//! of them due: ferrymail's are queued for tomorrow (FUTURERELEASE) through the queue's API on
//! its embedded store; Postfix's are sent by `smtp-source` to a private instance that defers
//! all relaying (`defer_transports = smtp`), so they sit in its deferred queue. Then, a round
//! at a time, each system does what an on-call engineer does:
//!
//! 1. **list one page**: ferrymail's `List` RPC for 100 messages (what `ferrymail queue list`
//!    reads) and the HTTP API's `GET /api/queue/messages?limit=100`, which also counts the
//!    whole queue for its `total` as Stalwart's does; Postfix's `postqueue -j`, read until its
//!    100th message (it has no paging: `showq` walks the whole queue regardless).
//! 2. **count by filter**: the messages of one sender — ferrymail's bulk dry run
//!    (`queue bulk … --dry-run`) and `GET /api/queue/messages?from=…`; Postfix's whole
//!    `postqueue -j`, counted.
//! 3. **bulk retry**: the 1,000 messages of one sender due now — ferrymail's `Bulk` retry;
//!    Postfix's `postqueue -j` selected and piped to `postsuper -r -` (requeue). Each round
//!    retries another sender, so the selection is always 1,000 still-queued messages.
//!
//! Read-only operations run ten times a round and count as the average of the ten. Wall
//! times are medians of the rounds; next to each, the CPU the server spent during the
//! operation (ferrymail's process; Postfix's master and the daemons under it) and the CPU of
//! the commands run for it (curl, postqueue, postsuper). A retried ferrymail message is
//! delivered at once to a discarding smtp-sink; the deliveries that overlap the call are in
//! its CPU figure. Every count is checked.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use ferrymail_e2e::{
    EMBEDDED_STORE, Ferrymail, LOAD_HELO, Postfix, discarding_sink, load_average, machine_line,
    median, process_tree_cpu, reaped_children_cpu, release_binary, require_peer,
};
use ferrymail_rpc::queue::{
    BodyError, BodyStream, BulkAction, BulkFilter, BulkRequest, Envelope, GrpcQueue, ListRequest,
    QueueService, Recipient,
};

/// Messages in each queue.
const MESSAGES: usize = 10_000;
/// Senders; each sent an equal share.
const SENDERS: usize = 10;
/// Rounds of each operation (each retry round takes another sender's messages).
const ROUNDS: usize = 3;
/// Messages per listed page.
const PAGE: usize = 100;
/// The API key the bench configures.
const TOKEN: &str = "bench-token";
/// Messages enqueued at once while preloading ferrymail.
const PRELOAD_CONCURRENCY: usize = 32;

fn sender(n: usize) -> String {
    format!("s{n}@remote.test")
}

/// One measured operation: wall time, the server's CPU, the commands' CPU.
#[derive(Clone, Copy, Default)]
struct Sample {
    wall: Duration,
    server_cpu: Duration,
    client_cpu: Duration,
}

/// Times a read-only operation is repeated per round: one takes less than the CPU clock's
/// 10 ms tick.
const REPEAT: u32 = 10;

/// Runs the read-only `operation` [`REPEAT`] times; the sample of one run, on average.
fn measure_repeated<T>(pid: u32, mut operation: impl FnMut() -> T) -> (T, Sample) {
    let (values, total) = measure(pid, || (0..REPEAT).map(|_| operation()).collect::<Vec<_>>());
    let sample = Sample {
        wall: total.wall / REPEAT,
        server_cpu: total.server_cpu / REPEAT,
        client_cpu: total.client_cpu / REPEAT,
    };
    (values.into_iter().next_back().unwrap(), sample)
}

/// Runs `operation`, measuring it against the server process tree `pid`.
fn measure<T>(pid: u32, operation: impl FnOnce() -> T) -> (T, Sample) {
    let (server_before, client_before) = (process_tree_cpu(pid), reaped_children_cpu());
    let started = Instant::now();
    let value = operation();
    let wall = started.elapsed();
    let sample = Sample {
        wall,
        server_cpu: process_tree_cpu(pid).saturating_sub(server_before),
        client_cpu: reaped_children_cpu().saturating_sub(client_before),
    };
    (value, sample)
}

/// `curl` with the API key; the body of a 200 as JSON.
fn api(admin: SocketAddr, method: &str, path: &str) -> serde_json::Value {
    let output = Command::new(require_peer("curl"))
        .args(["-sS", "--fail-with-body", "-X", method])
        .args(["-H", &format!("Authorization: Bearer {TOKEN}")])
        .arg(format!("http://{admin}{path}"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{method} {path}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

struct FerrymailQueue {
    process: Ferrymail,
    queue: GrpcQueue,
    admin: SocketAddr,
}

impl FerrymailQueue {
    fn start(runtime: &tokio::runtime::Runtime, sink: SocketAddr) -> Self {
        let config = format!(
            "[server]\nhostname = \"queue.bench.test\"\n\
             [server.listener.grpc]\nbind = \"127.0.0.1:0\"\nprotocol = \"grpc\"\n\
             [server.listener.admin]\nbind = \"127.0.0.1:0\"\nprotocol = \"http\"\n\
             {EMBEDDED_STORE}\
             [remote.sink]\naddress = \"127.0.0.1\"\nport = {}\nprotocol = \"smtp\"\n\
             tls.implicit = false\nconcurrency = 20\n\
             [queue.outbound]\nnext-hop = \"sink\"\n\
             [authentication.api-key.bench]\nsecret = \"{TOKEN}\"\n",
            sink.port()
        );
        let mut process = Ferrymail::start("queue-scheduler", &config);
        let grpc = format!("http://{}", process.address("grpc"));
        let admin = process.address("admin");
        let queue = runtime
            .block_on(async { GrpcQueue::connect(&grpc) })
            .unwrap();
        Self {
            process,
            queue,
            admin,
        }
    }

    /// Queues the bench's messages, due tomorrow.
    fn preload(&self, runtime: &tokio::runtime::Runtime) {
        let tomorrow = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 86_400;
        runtime.block_on(async {
            let mut tasks = tokio::task::JoinSet::new();
            for worker in 0..PRELOAD_CONCURRENCY {
                let queue = self.queue.clone();
                tasks.spawn(async move {
                    for n in (worker..MESSAGES).step_by(PRELOAD_CONCURRENCY) {
                        let envelope = Envelope {
                            hold_until: Some(tomorrow),
                            sender: sender(n % SENDERS),
                            recipients: vec![Recipient::new("rcpt@bench.test")],
                            helo: LOAD_HELO.into(),
                            ..Envelope::default()
                        };
                        let body = format!(
                            "Message-Id: <{n}@{LOAD_HELO}>\r\nSubject: {n}\r\n\r\n{}\r\n",
                            "X".repeat(1000)
                        );
                        let body: BodyStream =
                            Box::pin(futures::stream::iter([Ok::<_, BodyError>(
                                Bytes::from(body).into(),
                            )]));
                        queue.enqueue(envelope, body).await.unwrap();
                    }
                });
            }
            while let Some(done) = tasks.join_next().await {
                done.unwrap();
            }
        });
        let stats = runtime.block_on(self.queue.stats()).unwrap();
        assert_eq!(stats.messages, MESSAGES as u64);
    }

    fn list_rpc(&self, runtime: &tokio::runtime::Runtime) -> Sample {
        let request = ListRequest {
            page_size: PAGE as u32,
            ..ListRequest::default()
        };
        let (page, sample) = measure_repeated(self.process.pid(), || {
            runtime.block_on(self.queue.list(request.clone())).unwrap()
        });
        assert_eq!(page.messages.len(), PAGE);
        sample
    }

    fn list_api(&self) -> Sample {
        let path = format!("/api/queue/messages?limit={PAGE}");
        let (page, sample) = measure_repeated(self.process.pid(), || api(self.admin, "GET", &path));
        assert_eq!(page["data"]["items"].as_array().unwrap().len(), PAGE);
        assert!(page["data"]["total"].as_u64().unwrap() >= (MESSAGES - ROUNDS * 1000) as u64);
        sample
    }

    /// A bulk call over the whole queue (following the cursor), as `queue bulk` does.
    fn bulk(
        &self,
        runtime: &tokio::runtime::Runtime,
        action: BulkAction,
        dry_run: bool,
        who: usize,
    ) -> (u64, Sample) {
        let request = BulkRequest {
            action,
            filter: BulkFilter {
                sender: Some(sender(who)),
                ..BulkFilter::default()
            },
            dry_run,
            cursor: None,
            batch_size: 0,
            limit: 0,
        };
        let walk = || {
            let mut request = request.clone();
            let mut matched = 0;
            loop {
                let report = runtime.block_on(self.queue.bulk(request.clone())).unwrap();
                matched += report.matched;
                match report.cursor {
                    Some(cursor) => request.cursor = Some(cursor),
                    None => return matched,
                }
            }
        };
        if dry_run {
            measure_repeated(self.process.pid(), walk)
        } else {
            measure(self.process.pid(), walk)
        }
    }

    fn count_api(&self, who: usize) -> (u64, Sample) {
        let path = format!("/api/queue/messages?limit=1&from={}", sender(who));
        let (page, sample) = measure_repeated(self.process.pid(), || api(self.admin, "GET", &path));
        (page["data"]["total"].as_u64().unwrap(), sample)
    }
}

struct PostfixQueue {
    postfix: Postfix,
}

impl PostfixQueue {
    fn start(sink: SocketAddr) -> Self {
        // Relaying is deferred: the messages stay queued, as ferrymail's wait for tomorrow.
        let postfix = Postfix::start_with_settings(sink, "defer_transports = smtp\n");
        Self { postfix }
    }

    fn preload(&self) {
        let address = self.postfix.address();
        for n in 0..SENDERS {
            // smtp-source as the other benches run it, with this share's sender.
            let output = Command::new(require_peer("smtp-source"))
                .args(["-s", "10", "-l", "1000", "-d"])
                .args(["-m", &(MESSAGES / SENDERS).to_string()])
                .args(["-M", LOAD_HELO, "-f", &sender(n), "-t", "rcpt@bench.test"])
                .arg(format!("{}:{}", address.ip(), address.port()))
                .stdin(Stdio::null())
                .output()
                .unwrap();
            assert!(output.status.success(), "{output:?}");
        }
        let deadline = Instant::now() + Duration::from_secs(300);
        while self.deferred_count() < MESSAGES {
            assert!(
                Instant::now() < deadline,
                "Postfix queued {}",
                self.deferred_count()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn deferred_count(&self) -> usize {
        self.postqueue_lines(usize::MAX).len()
    }

    fn postqueue(&self) -> Command {
        let mut command = Command::new(require_peer("postqueue"));
        command.arg("-c").arg(self.postfix.config_dir()).arg("-j");
        command
    }

    /// The first `limit` lines `postqueue -j` prints (then it is stopped).
    fn postqueue_lines(&self, limit: usize) -> Vec<String> {
        let mut child = self.postqueue().stdout(Stdio::piped()).spawn().unwrap();
        let lines: Vec<String> = BufReader::new(child.stdout.take().unwrap())
            .lines()
            .map_while(Result::ok)
            .take(limit)
            .collect();
        // Stopped early, it ends on a broken pipe; either way it is reaped.
        let _ = child.kill();
        let _ = child.wait();
        lines
    }

    fn pid(&self) -> u32 {
        self.postfix.master_pid().unwrap()
    }

    fn list(&self) -> Sample {
        let (lines, sample) = measure_repeated(self.pid(), || self.postqueue_lines(PAGE));
        assert_eq!(lines.len(), PAGE);
        sample
    }

    fn ids_of(&self, who: usize) -> Vec<String> {
        let wanted = sender(who);
        self.postqueue_lines(usize::MAX)
            .iter()
            .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
            .filter(|m| m["sender"] == wanted.as_str())
            .map(|m| m["queue_id"].as_str().unwrap().to_owned())
            .collect()
    }

    fn count(&self, who: usize) -> (u64, Sample) {
        let (ids, sample) = measure_repeated(self.pid(), || self.ids_of(who));
        (ids.len() as u64, sample)
    }

    fn requeue(&self, who: usize) -> (u64, Sample) {
        measure(self.pid(), || {
            let ids = self.ids_of(who);
            let mut postsuper = Command::new(require_peer("postsuper"))
                .arg("-c")
                .arg(self.postfix.config_dir())
                .args(["-r", "-"])
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let mut stdin = postsuper.stdin.take().unwrap();
            for id in &ids {
                writeln!(stdin, "{id}").unwrap();
            }
            drop(stdin);
            let output = postsuper.wait_with_output().unwrap();
            assert!(output.status.success(), "{output:?}");
            ids.len() as u64
        })
    }
}

/// `op | wall | server CPU | commands' CPU` for each system.
fn row(operation: &str, system: &str, samples: &[Sample]) {
    let ms = |f: fn(&Sample) -> Duration| {
        median(
            &samples
                .iter()
                .map(|s| f(s).as_secs_f64() * 1000.0)
                .collect::<Vec<_>>(),
        )
    };
    println!(
        "{operation:<34} {system:<28} {:>9.1} ms {:>9.1} ms {:>9.1} ms",
        ms(|s| s.wall),
        ms(|s| s.server_cpu),
        ms(|s| s.client_cpu)
    );
}

fn main() {
    for peer in [
        "smtp-source",
        "smtp-sink",
        "postfix",
        "postqueue",
        "postsuper",
        "curl",
    ] {
        require_peer(peer);
    }
    release_binary();
    let load_at_start = load_average();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let sink = discarding_sink(None);

    println!("preloading {MESSAGES} messages into each queue…");
    let ferrymail = FerrymailQueue::start(&runtime, sink.address());
    ferrymail.preload(&runtime);
    let postfix = PostfixQueue::start(sink.address());
    postfix.preload();

    let mut samples: Vec<(&str, &str, Vec<Sample>)> = vec![
        ("list one page (100)", "ferrymail List RPC", vec![]),
        ("list one page (100)", "ferrymail HTTP API + total", vec![]),
        ("list one page (100)", "Postfix postqueue -j", vec![]),
        (
            "count by sender (1,000 of them)",
            "ferrymail bulk dry run",
            vec![],
        ),
        (
            "count by sender (1,000 of them)",
            "ferrymail HTTP API",
            vec![],
        ),
        (
            "count by sender (1,000 of them)",
            "Postfix postqueue -j",
            vec![],
        ),
        (
            "bulk retry by sender (1,000)",
            "ferrymail Bulk retry",
            vec![],
        ),
        (
            "bulk retry by sender (1,000)",
            "Postfix postqueue|postsuper -r",
            vec![],
        ),
    ];
    let per_sender = (MESSAGES / SENDERS) as u64;
    for round in 0..ROUNDS {
        samples[0].2.push(ferrymail.list_rpc(&runtime));
        samples[1].2.push(ferrymail.list_api());
        samples[2].2.push(postfix.list());
        // Counts look at a sender no retry takes.
        let counted = SENDERS - 1;
        let (count, sample) = ferrymail.bulk(&runtime, BulkAction::Retry, true, counted);
        assert_eq!(count, per_sender);
        samples[3].2.push(sample);
        let (count, sample) = ferrymail.count_api(counted);
        assert_eq!(count, per_sender);
        samples[4].2.push(sample);
        let (count, sample) = postfix.count(counted);
        assert_eq!(count, per_sender);
        samples[5].2.push(sample);
        let (count, sample) = ferrymail.bulk(&runtime, BulkAction::Retry, false, round);
        assert_eq!(count, per_sender);
        samples[6].2.push(sample);
        let (count, sample) = postfix.requeue(round);
        assert_eq!(count, per_sender);
        samples[7].2.push(sample);
    }

    println!();
    println!(
        "Operating on a queue of {MESSAGES} messages (median of {ROUNDS} rounds; CPU during the operation)"
    );
    println!(
        "{:<34} {:<28} {:>12} {:>12} {:>12}",
        "operation", "system", "wall", "server CPU", "commands CPU"
    );
    for (operation, system, list) in &samples {
        row(operation, system, list);
    }
    println!("{}", machine_line(&load_at_start));
}
