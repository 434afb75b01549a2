//! The ferrymail process under test.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::FakeDns;

/// How long any wait for the process may take before the test fails (a guard against hangs,
/// not a performance assertion).
const PATIENCE: Duration = Duration::from_secs(60);

/// How long the log reader pauses after each read (see [`forward_lines`]).
const LOG_READ_PAUSE: Duration = Duration::from_millis(2);
/// Its pause after a read of at least [`BUSY_READ`] bytes: the process is logging fast, as
/// under a benchmark's load, and fewer, larger reads keep the reader's share of the CPU small.
const BUSY_LOG_READ_PAUSE: Duration = Duration::from_millis(20);
/// See [`BUSY_LOG_READ_PAUSE`].
const BUSY_READ: usize = 4096;
/// The capacity asked of the log pipe, so that the process never waits for the reader's
/// pauses: 20 ms of a benchmark's log is about 100 KB, the default capacity 64 KiB.
const LOG_PIPE_BYTES: usize = 1 << 20;

/// The built binary: `FERRYMAIL_BIN`, or `ferrymail` next to the test executable's `deps/`.
pub fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("FERRYMAIL_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(Path::parent).unwrap();
    let bin = profile_dir.join("ferrymail");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p ferrymail` first",
        bin.display()
    );
    bin
}

/// One JSON log line.
#[derive(Debug, Clone)]
pub struct LogLine(pub Value);

impl LogLine {
    pub fn field(&self, name: &str) -> Option<&str> {
        self.0.get(name).and_then(Value::as_str)
    }
    pub fn message(&self) -> &str {
        self.field("message").unwrap_or("")
    }
}

/// A running `ferrymail <role>` with its configuration in a private directory.
pub struct Ferrymail {
    child: Child,
    lines: Receiver<String>,
    pub log: Vec<LogLine>,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    /// The DNS server the process asks when its configuration names none: message
    /// authentication then answers from it, and no test reaches the internet's DNS.
    pub dns: Option<FakeDns>,
}

impl Ferrymail {
    /// Writes `config` to a fresh directory and starts `ferrymail <role> -c it`.
    pub fn start(role: &str, config: &str) -> Self {
        Self::start_with(role, config, &[])
    }

    /// Like [`start`], with extra arguments (e.g. `--config-dir`).
    pub fn start_with(role: &str, config: &str, extra: &[&str]) -> Self {
        Self::start_with_env(role, config, extra, &[])
    }

    /// Like [`start_with`], with extra environment variables (e.g. `OTEL_*`).
    pub fn start_with_env(role: &str, config: &str, extra: &[&str], env: &[(&str, &str)]) -> Self {
        Self::start_program(&binary(), role, config, extra, env)
    }

    /// Like [`start_with_env`], running `program` instead of the built binary: a benchmark
    /// compares a build of an earlier revision with this one.
    pub fn start_program(
        program: &Path,
        role: &str,
        config: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        let dns = (!config.contains("[resolver]")).then(FakeDns::start);
        std::fs::write(&path, completed(config, dns.as_ref())).unwrap();
        let mut child = Command::new(program)
            .args(["--log-format", "json", role, "-c"])
            .arg(&path)
            .args(extra)
            .current_dir(dir.path())
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        // Best effort: a smaller pipe only makes the process wait for the reader sometimes.
        let _ = rustix::pipe::fcntl_setpipe_size(&stderr, LOG_PIPE_BYTES);
        let (sender, lines) = channel();
        std::thread::spawn(move || forward_lines(stderr, &sender));
        Ferrymail {
            child,
            lines,
            log: Vec::new(),
            dir,
            config: path,
            dns,
        }
    }

    /// Replaces the configuration file with `config`, completed as at the start (the test's
    /// DNS server, plain text between the roles unless it says otherwise).
    pub fn write_config(&self, config: &str) {
        std::fs::write(&self.config, completed(config, self.dns.as_ref())).unwrap();
    }

    /// Waits for a log line matching `predicate` and returns it.
    pub fn wait_for(&mut self, what: &str, predicate: impl Fn(&LogLine) -> bool) -> LogLine {
        if let Some(found) = self.log.iter().find(|l| predicate(l)) {
            return found.clone();
        }
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(raw) => {
                    let line =
                        LogLine(serde_json::from_str(&raw).unwrap_or_else(
                            |_| serde_json::json!({ "message": raw, "level": "RAW" }),
                        ));
                    self.log.push(line.clone());
                    if predicate(&line) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!("timed out waiting for {what}; log:\n{}", self.dump())
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("process ended before {what}; log:\n{}", self.dump())
                }
            }
        }
    }

    /// Waits until the role has started and returns the address of listener `id`.
    pub fn address(&mut self, id: &str) -> SocketAddr {
        self.wait_for("the role to start", |l| l.message() == "started");
        let line = self.wait_for(&format!("listener {id}"), |l| {
            l.message() == "listener bound" && l.field("listener") == Some(id)
        });
        line.field("address").unwrap().parse().unwrap()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Every log line read so far, one per line.
    pub fn dump(&self) -> String {
        self.log
            .iter()
            .map(|l| l.0.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Reads the log lines written so far without waiting for more.
    pub fn read_log(&mut self) -> &[LogLine] {
        while let Ok(raw) = self.lines.try_recv() {
            self.log
                .push(LogLine(serde_json::from_str(&raw).unwrap_or_else(
                    |_| serde_json::json!({ "message": raw, "level": "RAW" }),
                )));
        }
        &self.log
    }

    /// Sends `signal` to the process (SIGKILL, SIGSTOP, SIGCONT...).
    pub fn signal(&self, signal: rustix::process::Signal) {
        let pid = i32::try_from(self.child.id())
            .ok()
            .and_then(rustix::process::Pid::from_raw)
            .expect("a child's process id is a valid pid");
        rustix::process::kill_process(pid, signal)
            .unwrap_or_else(|e| panic!("send {signal:?} to ferrymail ({pid:?}): {e}"));
    }

    /// Kills the process at once (SIGKILL: no shutdown, as a crash or an OOM kill), reaps
    /// it and reads the rest of its log.
    pub fn kill(&mut self) {
        self.signal(rustix::process::Signal::KILL);
        let _ = self.child.wait();
        while let Ok(raw) = self.lines.recv_timeout(Duration::from_secs(5)) {
            if let Ok(value) = serde_json::from_str(&raw) {
                self.log.push(LogLine(value));
            }
        }
    }

    /// Sends SIGTERM and waits for the exit status, reading the rest of the log.
    pub fn terminate(mut self) -> (ExitStatus, Vec<LogLine>) {
        let pid = self.child.id().to_string();
        let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(killed.success());
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                while let Ok(raw) = self.lines.recv_timeout(Duration::from_secs(5)) {
                    if let Ok(value) = serde_json::from_str(&raw) {
                        self.log.push(LogLine(value));
                    }
                }
                return (status, std::mem::take(&mut self.log));
            }
            assert!(
                Instant::now() < deadline,
                "process did not stop after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the process to exit on its own.
    pub fn wait_exit(mut self) -> (ExitStatus, String) {
        let status = self.child.wait().unwrap();
        let mut rest = String::new();
        while let Ok(raw) = self.lines.recv_timeout(Duration::from_secs(5)) {
            rest.push_str(&raw);
            rest.push('\n');
        }
        (status, rest)
    }
}

/// Sends every line `stderr` gives to `sender`, until either end closes.
///
/// Reads in bursts, pausing briefly after each read, longer after a large one: a reader woken
/// for every line the process writes would, under load, take a share of the CPU that
/// benchmarks measure (a wake-up costs far more than the copy on a virtual machine).
fn forward_lines(stderr: impl Read, sender: &Sender<String>) {
    let mut reader = BufReader::with_capacity(1 << 20, stderr);
    loop {
        let consumed = match reader.fill_buf() {
            Ok([]) | Err(_) => return,
            Ok(buffered) => {
                // Whole lines only; a partial one waits for its end.
                let Some(end) = buffered.iter().rposition(|b| *b == b'\n') else {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0
                        || sender.send(line.trim_end().to_owned()).is_err()
                    {
                        return;
                    }
                    continue;
                };
                for line in buffered[..end].split(|b| *b == b'\n') {
                    if sender
                        .send(String::from_utf8_lossy(line).into_owned())
                        .is_err()
                    {
                        return;
                    }
                }
                end + 1
            }
        };
        reader.consume(consumed);
        std::thread::sleep(if consumed >= BUSY_READ {
            BUSY_LOG_READ_PAUSE
        } else {
            LOG_READ_PAUSE
        });
    }
}

impl Drop for Ferrymail {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `config` with what a test leaves out appended, so that its own lines keep their numbers:
/// the resolver of `dns`, and plain text between the roles on loopback when it says nothing
/// of TLS between them.
fn completed(config: &str, dns: Option<&FakeDns>) -> String {
    let mut config = config.to_string();
    if !config.contains("[cluster.tls]") {
        config.push_str("\n[cluster.tls]\nenable = false\n");
    }
    if let Some(dns) = dns {
        config.push('\n');
        config.push_str(&dns.resolver_config());
    }
    config
}
