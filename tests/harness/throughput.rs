//! What the throughput benchmarks share: Postfix's `smtp-source` as the load, counting what a
//! sink received, the release build they measure, and the figures they print (medians, the
//! machine's load).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::lab_config::EMBEDDED_STORE;
use crate::peer::{PEER_PATIENCE, require_peer};
use crate::process::binary;
use crate::smtp_sink::{SmtpSink, SmtpSinkOptions};

/// The HELO name smtp-source announces.
pub const LOAD_HELO: &str = "source.bench.test";
/// The envelope sender of the load: not local anywhere.
pub const LOAD_SENDER: &str = "sender@remote.test";

/// One run of `smtp-source`: `sessions` concurrent sessions sending `messages` messages of
/// `message_bytes` payload bytes each (smtp-source adds a few header lines) to `recipient`.
#[derive(Debug, Clone)]
pub struct SmtpSource {
    pub sessions: usize,
    pub message_bytes: usize,
    pub messages: usize,
    /// Each session sends message after message on one connection, without RSET (`-d`);
    /// otherwise every message has its own connection.
    pub reuse_connections: bool,
    pub recipient: String,
}

impl SmtpSource {
    /// The smtp-source command line against `address`.
    pub fn command(&self, address: SocketAddr) -> Command {
        let mut command = Command::new(require_peer("smtp-source"));
        command
            .args(["-s", &self.sessions.to_string()])
            .args(["-l", &self.message_bytes.to_string()])
            .args(["-m", &self.messages.to_string()])
            .args(["-M", LOAD_HELO, "-f", LOAD_SENDER, "-t", &self.recipient]);
        if self.reuse_connections {
            command.arg("-d");
        }
        command
            .arg(format!("{}:{}", address.ip(), address.port()))
            .stdin(Stdio::null());
        command
    }

    /// Runs smtp-source to completion against `address` and returns its wall time and output.
    pub fn run(&self, address: SocketAddr) -> (Duration, Output) {
        let mut command = self.command(address);
        let started = Instant::now();
        let output = command.output().expect("run smtp-source");
        (started.elapsed(), output)
    }

    /// Sends the load to `address` and returns the time from the start until `sink` has
    /// received `expected` messages in all (those of earlier runs included), which may be
    /// after smtp-source is done. Panics, with `context()` (a log, say), when smtp-source
    /// fails or the sink stops short.
    pub fn run_until_received(
        &self,
        address: SocketAddr,
        sink: &SmtpSink,
        expected: usize,
        context: impl Fn() -> String,
    ) -> Duration {
        let mut command = self.command(address);
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        let started = Instant::now();
        let mut child = command.spawn().expect("run smtp-source");
        let elapsed = loop {
            // Woken at once when the count moves; the timeout only bounds how late a failed
            // smtp-source is noticed.
            if sink.received_within(expected, Duration::from_millis(50)) >= expected {
                break started.elapsed();
            }
            if child
                .try_wait()
                .unwrap()
                .is_some_and(|status| !status.success())
            {
                smtp_source_failed(address, &child.wait_with_output().unwrap(), &context);
            }
            assert!(
                started.elapsed() < PEER_PATIENCE,
                "smtp-sink on {} received {} of {expected} messages in {PEER_PATIENCE:?}\n{}",
                sink.address(),
                sink.received(),
                context()
            );
        };
        let output = child.wait_with_output().unwrap();
        if !output.status.success() {
            smtp_source_failed(address, &output, &context);
        }
        elapsed
    }
}

fn smtp_source_failed(address: SocketAddr, output: &Output, context: impl Fn() -> String) -> ! {
    panic!(
        "smtp-source against {address} failed ({}): {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr),
        context()
    )
}

/// An smtp-sink that counts messages and keeps none of them, answering DATA after
/// `data_delay` seconds when given (a remote MTA's latency).
pub fn discarding_sink(data_delay: Option<u32>) -> SmtpSink {
    SmtpSink::start(SmtpSinkOptions {
        discard: true,
        data_delay,
        ..SmtpSinkOptions::default()
    })
}

/// Waits until `sink` has received `expected` messages in all; panics, with `context()`, when
/// it stops short or gets more.
pub fn check_received(sink: &SmtpSink, expected: usize, context: impl Fn() -> String) {
    let received = sink.received_within(expected, PEER_PATIENCE);
    assert!(
        received == expected,
        "smtp-sink on {} received {received} messages, {expected} were sent\n{}",
        sink.address(),
        context()
    );
}

/// The ferrymail binary the harness starts ([`binary`]): `FERRYMAIL_BIN`, or `ferrymail` in the
/// calling benchmark's own profile directory (`target/release`), which `make bench` builds
/// first. Checked here to say which build is missing.
pub fn release_binary() -> PathBuf {
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
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|e| format!("unknown ({e})"))
}

/// The line that says how busy the machine was: other work shows in every figure.
pub fn machine_line(load_at_start: &str) -> String {
    format!(
        "machine: {} cores; load average at the start {load_at_start}, at the end {}",
        std::thread::available_parallelism().map_or(0, usize::from),
        load_average()
    )
}

/// The median of `values` (the upper one of an even count); panics when empty.
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

/// The part of a benchmarked `ferrymail all`'s configuration the benches share: SMTP and
/// gRPC listeners, the embedded store (durable: every commit is fsynced), and `remote.relay`
/// at `relay` (with `concurrency` connections) as the next hop; `session` adds the bench's own
/// session settings.
pub fn bench_config(relay: SocketAddr, concurrency: usize, session: &str) -> String {
    bench_config_on(EMBEDDED_STORE, relay, concurrency, session)
}

/// [`bench_config`] on another store: `store` holds the `[store.<id>]` and `[storage]` tables.
pub fn bench_config_on(
    store: &str,
    relay: SocketAddr,
    concurrency: usize,
    session: &str,
) -> String {
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
{store}{session}
[remote.relay]
address = "{ip}"
port = {port}
protocol = "smtp"
tls.implicit = false
timeout = "30s"
concurrency = {concurrency}
[queue.outbound]
next-hop = "relay"
"#,
        ip = relay.ip(),
        port = relay.port()
    )
}
