//! A private Postfix on loopback that queues every message durably and relays it to one
//! SMTP server: the reference MTA of the ingress benchmark.
//!
//! Every instance lives in its own temporary directory (configuration, queue, data, log)
//! and listens only on 127.0.0.1, on a port chosen at start. It runs as root without
//! systemd or syslog: `postfix -c <dir>/etc start|stop`, logging to a file through
//! `postlogd`. See the project's peer notes for the gotchas this follows.
//!
//! Mail from 127.0.0.0/8 (`mynetworks`) may relay to any domain; it goes to the one relay
//! host given at start, by IP literal and without DNS. Postfix delivers nothing locally and
//! sends no mail of its own (no bounces, no notices). [`Postfix::start_with_tls`] also
//! offers STARTTLS with test certificates (the TLS peer of outbound TLS and DANE tests).
//! Queueing keeps Postfix's defaults:
//! `cleanup` fsyncs the queue file before `smtpd` answers 250, and `in_flow_delay` (1 s)
//! may slow clients down when the queue manager falls behind, as in production.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::peer::{
    PEER_PATIENCE, accepts_connections, free_loopback_ports, loopback, process_alive, require_peer,
    wait_until,
};
use crate::tls::TestCertificates;

/// How many times a start is retried when the chosen port was taken meanwhile.
const START_ATTEMPTS: u32 = 5;

/// The name Postfix gives itself in greetings and `Received` headers (set explicitly: the
/// machine's host name may have no domain part, which Postfix would complete on its own).
pub const POSTFIX_HOSTNAME: &str = "postfix.lab.test";

/// A running private Postfix; stopped on drop.
pub struct Postfix {
    dir: tempfile::TempDir,
    binary: PathBuf,
    address: SocketAddr,
    /// The master process, until stopped.
    master_pid: Option<u32>,
}

impl Postfix {
    /// Starts an instance that relays everything to `relay` and waits until its smtpd
    /// accepts connections.
    pub fn start(relay: SocketAddr) -> Postfix {
        Self::start_with_settings(relay, "")
    }

    /// Like [`Postfix::start`], with smtpd offering STARTTLS (`smtpd_tls_security_level =
    /// may`) with the server certificate of `certificates`, presenting the CA certificate
    /// in its chain too; sessions are logged with their TLS details.
    pub fn start_with_tls(relay: SocketAddr, certificates: &TestCertificates) -> Postfix {
        Self::start_with_settings(relay, &tls_cf(certificates))
    }

    /// Like [`Postfix::start`], with `settings` (`main.cf` lines) after the defaults, which
    /// they override: a recipient table, an access map, a short `smtpd_timeout`.
    pub fn start_with_settings(relay: SocketAddr, settings: &str) -> Postfix {
        let binary = require_peer("postfix");
        let dir = tempfile::Builder::new()
            .prefix("postfix-lab.")
            .tempdir()
            .unwrap();
        // Postfix's daemons run as the `postfix` user and must reach the queue below.
        set_mode(dir.path(), 0o755);
        for sub in ["etc", "queue", "data", "log"] {
            std::fs::create_dir(dir.path().join(sub)).unwrap();
        }
        let mut postfix = Postfix {
            dir,
            binary,
            address: loopback(0),
            master_pid: None,
        };
        let mut main_cf = postfix.main_cf(relay);
        main_cf.push_str(settings);
        std::fs::write(postfix.config_dir().join("main.cf"), main_cf).unwrap();

        for attempt in 1..=START_ATTEMPTS {
            let [port] = free_loopback_ports();
            postfix.address = loopback(port);
            let master = master_cf(port);
            std::fs::write(postfix.config_dir().join("master.cf"), master).unwrap();
            if attempt == 1 {
                // Creates the queue directories with the ownership the daemons expect; the
                // configuration only changes in its port between attempts, so once is enough.
                postfix.run_postfix("set-permissions");
                postfix.check();
            }
            match postfix.try_start() {
                Ok(()) => return postfix,
                Err(output) if output.contains("Address already in use") => {
                    if attempt == START_ATTEMPTS {
                        panic!(
                            "Postfix could not bind a free port in {START_ATTEMPTS} attempts:\n\
                             {output}\nlog:\n{}",
                            postfix.log()
                        );
                    }
                }
                Err(output) => panic!(
                    "postfix -c {} start failed:\n{output}\nlog:\n{}",
                    postfix.config_dir().display(),
                    postfix.log()
                ),
            }
        }
        unreachable!("the last attempt either returns or panics")
    }

    /// Where its smtpd listens (127.0.0.1).
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The master process's id, while it runs: its daemons are its children.
    pub fn master_pid(&self) -> Option<u32> {
        self.master_pid
    }

    /// The instance's directory (`etc/` configuration, `queue/`, `data/`, `log/`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The configuration directory given to `postfix -c`.
    pub fn config_dir(&self) -> PathBuf {
        self.dir().join("etc")
    }

    /// Postfix's log file (every daemon logs here through `postlogd`).
    pub fn log_path(&self) -> PathBuf {
        self.dir().join("log/postfix.log")
    }

    /// The log so far, for failure messages.
    pub fn log(&self) -> String {
        let path = self.log_path();
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| format!("(no log at {}: {e})", path.display()))
    }

    /// How many messages are in the queue (received and not yet delivered or bounced).
    /// The queue directories belong to the `postfix` user; this reads them as root.
    pub fn queued(&self) -> usize {
        // A queue file lives in exactly one of these, in hashed subdirectories.
        ["incoming", "active", "deferred", "hold"]
            .iter()
            .map(|queue| count_files(&self.dir().join("queue").join(queue)))
            .sum()
    }

    fn main_cf(&self, relay: SocketAddr) -> String {
        let root = self.dir();
        let log = root.join("log");
        format!(
            "\
compatibility_level = 3.6
myhostname = {POSTFIX_HOSTNAME}
queue_directory = {queue}
data_directory = {data}
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
# Clients on loopback may relay (smtp-source sends HELO and no AUTH).
mynetworks = 127.0.0.0/8
# Nothing is delivered locally and Postfix sends no mail of its own.
mydestination =
local_transport = error:local delivery is disabled
alias_maps =
alias_database =
notify_classes =
# An IP literal and no DNS: this machine may have no resolver.
relayhost = [{relay_ip}]:{relay_port}
smtp_dns_support_level = disabled
# No syslog here: postlogd writes the log file (the default prefixes allow only /var).
maillog_file = {log_file}
maillog_file_prefixes = {log_dir}
",
            queue = root.join("queue").display(),
            data = root.join("data").display(),
            relay_ip = relay.ip(),
            relay_port = relay.port(),
            log_file = self.log_path().display(),
            log_dir = log.display(),
        )
    }

    /// Runs `postfix -c <etc> check` on a pseudo-terminal, the only place where `postfix`
    /// prints its errors, and panics with them when the configuration is refused.
    fn check(&self) {
        let script = require_peer("script");
        let command = format!(
            "{} -c {} check",
            shell_quote(&self.binary.display().to_string()),
            shell_quote(&self.config_dir().display().to_string())
        );
        let output = Command::new(script)
            .args(["-qec", &command, "/dev/null"])
            .stdin(Stdio::null())
            .output()
            .expect("run script(1)");
        assert!(
            output.status.success(),
            "`{command}` failed ({}):\n{}{}\nlog:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            self.log()
        );
    }

    /// Runs `postfix -c <etc> <verb>` to completion and panics when it fails.
    fn run_postfix(&self, verb: &str) {
        let output = Command::new(&self.binary)
            .arg("-c")
            .arg(self.config_dir())
            .arg(verb)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e}", self.binary.display()));
        assert!(
            output.status.success(),
            "postfix -c {} {verb} failed ({}):\n{}{}\nlog:\n{}",
            self.config_dir().display(),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            self.log()
        );
    }

    /// Starts the master and waits until smtpd accepts connections; on failure returns
    /// what `postfix start` printed and what this attempt logged.
    fn try_start(&mut self) -> Result<(), String> {
        // A failed attempt's lines stay in the log; only this attempt's explain its failure.
        let logged_before = std::fs::metadata(self.log_path()).map_or(0, |meta| meta.len());
        let logged_before = usize::try_from(logged_before).unwrap_or(usize::MAX);
        let logged_now = |postfix: &Postfix| {
            let log = postfix.log();
            log.get(logged_before..).unwrap_or(&log).to_owned()
        };
        // The master inherits the stdout and stderr it was started with and keeps them
        // open: a pipe would never reach end-of-file, so they go to a file.
        let start_output = self.dir().join("log/start.out");
        let output = std::fs::File::create(&start_output).unwrap();
        let status = Command::new(&self.binary)
            .arg("-c")
            .arg(self.config_dir())
            .arg("start")
            .stdin(Stdio::null())
            .stdout(output.try_clone().unwrap())
            .stderr(output)
            .status()
            .unwrap_or_else(|e| panic!("run {}: {e}", self.binary.display()));
        if !status.success() {
            let printed = std::fs::read_to_string(&start_output).unwrap_or_default();
            return Err(format!("{status}: {printed}\n{}", logged_now(self)));
        }
        let pid_file = self.dir().join("queue/pid/master.pid");
        let mut pid = None;
        wait_until(
            "Postfix's master.pid",
            || {
                pid = std::fs::read_to_string(&pid_file)
                    .ok()
                    .and_then(|text| text.trim().parse().ok());
                pid.is_some()
            },
            || self.log(),
        );
        self.master_pid = pid;
        // `postfix start` waits for the master to initialize (`master -w`) and fails when a
        // listener cannot be bound; the master may still die just after.
        let address = self.address;
        let mut master_died = false;
        wait_until(
            &format!("Postfix's smtpd to listen on {address}"),
            || {
                master_died = !pid.is_some_and(process_alive);
                master_died || accepts_connections(address)
            },
            || self.log(),
        );
        if master_died {
            self.master_pid = None;
            return Err(format!("the master exited at start\n{}", logged_now(self)));
        }
        Ok(())
    }

    /// Stops Postfix and waits until the master process is gone. Does nothing when already
    /// stopped.
    ///
    /// `postfix stop` returns before the master has exited; a start that followed at once
    /// would find it still running.
    pub fn stop(&mut self) {
        if let Err(problem) = self.shutdown() {
            panic!("{problem}\nlog:\n{}", self.log());
        }
    }

    fn shutdown(&mut self) -> Result<(), String> {
        let Some(pid) = self.master_pid.take() else {
            return Ok(());
        };
        let stopped = Command::new(&self.binary)
            .arg("-c")
            .arg(self.config_dir())
            .arg("stop")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + PEER_PATIENCE;
        while process_alive(pid) {
            if Instant::now() > deadline {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .stderr(Stdio::null())
                    .status();
                return Err(format!(
                    "Postfix's master (pid {pid}) outlived `postfix stop` ({stopped:?}) by \
                     {PEER_PATIENCE:?}; killed it"
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        if let Err(problem) = self.shutdown() {
            eprintln!("{problem}");
        }
    }
}

/// `master.cf`: smtpd on 127.0.0.1:`port` and the daemons needed to queue and relay mail,
/// all without chroot (the queue directory holds none of the files a chroot would need).
fn master_cf(port: u16) -> String {
    format!(
        "\
# service type  private unpriv  chroot  wakeup  maxproc command
127.0.0.1:{port} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
"
    )
}

/// The `main.cf` lines of STARTTLS with `certificates`: the key, then the server
/// certificate and the CA certificate (the chain a DANE-TA record can match).
fn tls_cf(certificates: &TestCertificates) -> String {
    format!(
        "\
smtpd_tls_security_level = may
smtpd_tls_chain_files = {key}, {cert}, {ca}
smtpd_tls_loglevel = 1
",
        key = certificates.key_pem.display(),
        cert = certificates.cert_pem.display(),
        ca = certificates.ca_pem.display(),
    )
}

/// How many files are below `dir` (0 when it does not exist).
fn count_files(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .map_while(Result::ok)
        .map(|entry| match entry.file_type() {
            Ok(kind) if kind.is_dir() => count_files(&entry.path()),
            Ok(_) => 1,
            Err(_) => 0,
        })
        .sum()
}

/// `text` as one word for sh(1).
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {mode:o} {}: {e}", path.display()));
}
