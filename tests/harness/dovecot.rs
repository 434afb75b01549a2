//! A private Dovecot 2.3 on loopback: IMAP, IMAPS, LMTP and submission, the real remote
//! directory of the directory proxy and a real LMTP delivery target.
//!
//! Every instance lives in its own temporary directory (configuration, `base_dir`, log,
//! mail, certificates) and listens only on 127.0.0.1, on ports chosen at start. It runs as
//! root without systemd: `dovecot -c <dir>/dovecot.conf` daemonizes, SIGTERM to its master
//! stops it. See the project's peer notes for the replies it gives.
//!
//! Users: [`ALICE`] and [`BOB`] (passwd-file, mail as `nobody:nogroup`), anyone added with
//! [`Dovecot::add_user`], and [`TEMPFAIL_USER`], for whom every lookup fails temporarily:
//! IMAP `NO [UNAVAILABLE]`, submission `454 4.7.0`, LMTP RCPT `451 4.3.0`.
//!
//! Timing: after a failed login (wrong password, unknown user, or the temporary failure),
//! Dovecot's auth penalty delays the *next* login from 127.0.0.1 by 2 s, doubling up to
//! 15 s, even for a correct password (reset by a successful login). Every failed login
//! itself takes about 0.5 s. LMTP RCPT lookups are not delayed. Use
//! [`DovecotOptions::auth_penalty`] `= false` where a test is not about that delay.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::mail_clients::{ImapClient, SmtpClient};
use crate::peer::{
    PEER_PATIENCE, free_loopback_ports, loopback, process_alive, require_peer, wait_until,
};
use crate::tls::TestCertificates;

/// A user with a mailbox: (address, password).
pub const ALICE: (&str, &str) = ("alice@example.org", "alice-pass");
/// A second user with a mailbox: (address, password).
pub const BOB: (&str, &str) = ("bob@example.org", "bob-pass");
/// The user whose every lookup fails temporarily (the checkpassword script exits 111).
pub const TEMPFAIL_USER: &str = "tempfail@example.org";

/// Dovecot's name in greetings and replies (`220 lab.example.org Dovecot ferrymail-lab ready.`).
pub const DOVECOT_HOSTNAME: &str = "lab.example.org";

/// Diffie-Hellman parameters shipped by Debian's dovecot-core.
const DH_PARAMS: &str = "/usr/share/dovecot/dh.pem";

/// Where submission relays to when the test gives no relay: port 1 on loopback, where
/// nothing listens (it is privileged and unassigned here), so connections are refused.
const RELAY_DOWN: u16 = 1;

/// How many times a start is retried when a chosen port was taken meanwhile.
const START_ATTEMPTS: u32 = 5;

/// Options for [`Dovecot::start_with`].
#[derive(Debug, Clone)]
pub struct DovecotOptions {
    /// Where submission relays mail after AUTH; `None`: an address where nothing listens,
    /// so any command after a successful AUTH gets
    /// `421 4.4.0 ... Failed to connect to relay server (connect)`.
    pub relay: Option<SocketAddr>,
    /// Dovecot's auth penalty (see the module documentation): on by default, as in
    /// production. Off, the anvil `anvil-auth-penalty` listener is not created and the
    /// auth process silently skips the penalty.
    pub auth_penalty: bool,
    /// TLS (`ssl = yes`): STARTTLS offered on IMAP, LMTP and submission, and IMAPS. Off
    /// (`ssl = no`), nothing is encrypted and STARTTLS is not offered, as on a server whose
    /// TLS is missing or stripped by someone on the way; IMAPS then does not listen.
    pub tls: bool,
}

impl Default for DovecotOptions {
    fn default() -> Self {
        DovecotOptions {
            relay: None,
            auth_penalty: true,
            tls: true,
        }
    }
}

/// The loopback ports of one instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DovecotPorts {
    /// IMAP, plain with STARTTLS.
    pub imap: u16,
    /// IMAP over TLS.
    pub imaps: u16,
    /// LMTP, plain with STARTTLS.
    pub lmtp: u16,
    /// Submission, plain with STARTTLS; AUTH PLAIN/LOGIN allowed without TLS.
    pub submission: u16,
}

/// A running private Dovecot; stopped on drop.
pub struct Dovecot {
    dir: tempfile::TempDir,
    binary: PathBuf,
    config: PathBuf,
    log_path: PathBuf,
    users_path: PathBuf,
    certificates: TestCertificates,
    /// The ports it listens on (all on 127.0.0.1).
    pub ports: DovecotPorts,
    /// The master process, until stopped.
    master_pid: Option<u32>,
}

impl Dovecot {
    /// Starts an instance with the default options (auth penalty on, relay down).
    pub fn start() -> Dovecot {
        Dovecot::start_with(DovecotOptions::default())
    }

    /// Starts an instance and waits until IMAP, LMTP and submission greet.
    pub fn start_with(options: DovecotOptions) -> Dovecot {
        let binary = require_peer("dovecot");
        assert!(
            Path::new(DH_PARAMS).exists(),
            "{DH_PARAMS} is missing: run `make test-deps` (it installs Dovecot from Debian)"
        );
        for attempt in 1..=START_ATTEMPTS {
            let [imap, imaps, lmtp, submission] = free_loopback_ports();
            let ports = DovecotPorts {
                imap,
                imaps,
                lmtp,
                submission,
            };
            let mut dovecot = Dovecot::prepare(binary.clone(), ports, &options);
            let (status, errors) = dovecot.launch("start.out");
            if status.success() {
                dovecot.wait_until_ready();
                return dovecot;
            }
            if errors.contains("Address already in use") && attempt < START_ATTEMPTS {
                continue; // a chosen port was taken meanwhile: new ports, new directory
            }
            panic!(
                "dovecot -c {} failed ({status}):\n{errors}\nlog:\n{}",
                dovecot.config.display(),
                dovecot.log()
            );
        }
        unreachable!("the last attempt either returns or panics")
    }

    /// Writes the configuration directory for one start attempt.
    fn prepare(binary: PathBuf, ports: DovecotPorts, options: &DovecotOptions) -> Dovecot {
        let dir = tempfile::Builder::new()
            .prefix("dovecot-lab.")
            .tempdir()
            .unwrap();
        let root = dir.path();
        // Login processes (dovenull), the checkpassword script (auth) and mail processes
        // (nobody) reach into this directory.
        set_mode(root, 0o755);
        for sub in ["log", "state"] {
            std::fs::create_dir(root.join(sub)).unwrap();
        }
        // Mail homes are created by the mail processes, as nobody.
        let mail = root.join("mail");
        std::fs::create_dir(&mail).unwrap();
        set_mode(&mail, 0o1777);

        let certificates = TestCertificates::generate(root);
        let users_path = root.join("users");
        let mut users = String::new();
        for (address, password) in [ALICE, BOB] {
            users.push_str(&passwd_file_line(address, password));
        }
        std::fs::write(&users_path, users).unwrap();

        let checkpassword = root.join("checkpassword.sh");
        std::fs::write(
            &checkpassword,
            CHECKPASSWORD.replace("@tempfail_user@", TEMPFAIL_USER),
        )
        .unwrap();
        set_mode(&checkpassword, 0o755);

        let log_path = root.join("log/dovecot.log");
        let config = root.join("dovecot.conf");
        let relay = options.relay.unwrap_or(loopback(RELAY_DOWN));
        let mut text = fill_template(
            include_str!("dovecot.conf.in"),
            &[
                ("root", root.display().to_string()),
                ("log_path", log_path.display().to_string()),
                ("hostname", DOVECOT_HOSTNAME.to_owned()),
                ("cert", certificates.cert_pem.display().to_string()),
                ("key", certificates.key_pem.display().to_string()),
                ("dh", DH_PARAMS.to_owned()),
                ("relay_host", relay.ip().to_string()),
                ("relay_port", relay.port().to_string()),
                ("users", users_path.display().to_string()),
                ("checkpassword", checkpassword.display().to_string()),
                ("imap", ports.imap.to_string()),
                ("imaps", ports.imaps.to_string()),
                ("lmtp", ports.lmtp.to_string()),
                ("submission", ports.submission.to_string()),
            ],
        );
        if !options.tls {
            text = without_tls(&text);
        }
        if !options.auth_penalty {
            // mode 0: the listener is not created; auth then finds no socket (ENOENT) and
            // runs without the penalty, silently.
            text.push_str(
                "\nservice anvil {\n  unix_listener anvil-auth-penalty {\n    mode = 0\n  }\n}\n",
            );
        }
        std::fs::write(&config, text).unwrap();

        Dovecot {
            dir,
            binary,
            config,
            log_path,
            users_path,
            certificates,
            ports,
            master_pid: None,
        }
    }

    fn wait_until_ready(&mut self) {
        let pid_file = self.dir.path().join("run/master.pid");
        let mut pid = None;
        wait_until(
            "Dovecot's master.pid",
            || {
                pid = std::fs::read_to_string(&pid_file)
                    .ok()
                    .and_then(|text| text.trim().parse().ok());
                pid.is_some()
            },
            || self.log(),
        );
        self.master_pid = pid;
        // The master binds every listener before it daemonizes; a greeting shows that the
        // login and LMTP processes start too.
        let imap = ImapClient::connect(self.imap());
        assert!(
            imap.greeting.starts_with("* OK"),
            "IMAP greeting {:?}\n{}",
            imap.greeting,
            self.log()
        );
        for addr in [self.lmtp(), self.submission()] {
            let client = SmtpClient::connect(addr);
            assert_eq!(
                client.greeting.code,
                220,
                "greeting of {addr}: {}\n{}",
                client.greeting,
                self.log()
            );
        }
    }

    /// IMAP (plain, STARTTLS offered) on loopback.
    pub fn imap(&self) -> SocketAddr {
        loopback(self.ports.imap)
    }

    /// IMAP over TLS on loopback.
    pub fn imaps(&self) -> SocketAddr {
        loopback(self.ports.imaps)
    }

    /// LMTP (plain, STARTTLS offered) on loopback.
    pub fn lmtp(&self) -> SocketAddr {
        loopback(self.ports.lmtp)
    }

    /// Submission (plain, STARTTLS offered, AUTH without TLS allowed) on loopback.
    pub fn submission(&self) -> SocketAddr {
        loopback(self.ports.submission)
    }

    /// The PEM file of the CA that issued the server certificate: trust it to verify
    /// Dovecot (as `localhost` or `127.0.0.1`); without it verification fails.
    pub fn ca_pem(&self) -> &Path {
        &self.certificates.ca_pem
    }

    /// The PEM file of the server certificate.
    pub fn cert_pem(&self) -> &Path {
        &self.certificates.cert_pem
    }

    /// The instance's directory (configuration, `run/` base_dir, `log/`, `mail/`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Dovecot's log file (every process logs here; `auth_verbose` is on).
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The log so far, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path)
            .unwrap_or_else(|e| format!("(no log at {}: {e})", self.log_path.display()))
    }

    /// Waits until a log line contains `needle` and returns that line.
    pub fn wait_for_log(&self, needle: &str) -> String {
        let mut found = None;
        wait_until(
            &format!("a Dovecot log line containing {needle:?}"),
            || {
                found = self
                    .log()
                    .lines()
                    .find(|line| line.contains(needle))
                    .map(str::to_owned);
                found.is_some()
            },
            || format!("log:\n{}", self.log()),
        );
        found.unwrap()
    }

    /// Adds a passwd-file user and waits until Dovecot knows it. (Dovecot looks at the file's
    /// size and mtime at most once a second, so an edit takes up to a second to show; the
    /// auth cache is off, so nothing else delays it.)
    pub fn add_user(&self, address: &str, password: &str) {
        use std::io::Write as _;
        let mut users = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.users_path)
            .unwrap();
        users
            .write_all(passwd_file_line(address, password).as_bytes())
            .unwrap();
        let doveadm = require_peer("doveadm");
        let last = std::cell::RefCell::new(None);
        wait_until(
            &format!("Dovecot to know the new user {address}"),
            || {
                let output = Command::new(&doveadm)
                    .arg("-c")
                    .arg(&self.config)
                    .args(["user", address])
                    .stdin(Stdio::null())
                    .output()
                    .expect("run doveadm user");
                let known = output.status.success();
                *last.borrow_mut() = Some(output);
                known
            },
            || {
                let last = last.borrow();
                format!("last doveadm user: {last:?}\nlog:\n{}", self.log())
            },
        );
    }

    /// The Maildir of `address` (created at its first delivery or login).
    pub fn maildir(&self, address: &str) -> PathBuf {
        let (local, domain) = address
            .split_once('@')
            .unwrap_or_else(|| panic!("{address:?} is not user@domain"));
        self.dir()
            .join("mail")
            .join(domain.to_lowercase())
            .join(local.to_lowercase())
            .join("Maildir")
    }

    /// How many messages the Maildir of `address` holds (`new/` and `cur/`).
    pub fn delivered(&self, address: &str) -> usize {
        let maildir = self.maildir(address);
        ["new", "cur"]
            .iter()
            .filter_map(|sub| std::fs::read_dir(maildir.join(sub)).ok())
            .map(Iterator::count)
            .sum()
    }

    /// Stops Dovecot and starts it again with the same configuration and ports, as a
    /// server restarted under its clients' connections.
    pub fn restart(&mut self) {
        self.stop();
        // A pid file the old master left would be taken for the new one's.
        let _ = std::fs::remove_file(self.dir().join("run/master.pid"));
        let (status, errors) = self.launch("restart.out");
        assert!(
            status.success(),
            "dovecot -c {} failed to start again ({status}):\n{errors}\nlog:\n{}",
            self.config.display(),
            self.log()
        );
        self.wait_until_ready();
    }

    /// Runs `dovecot -c <config>`, which daemonizes; returns its exit status and what it
    /// printed, kept in `log/<output>`.
    fn launch(&self, output: &str) -> (std::process::ExitStatus, String) {
        // The daemon keeps the stdout and stderr it was started with open: a pipe would
        // never reach end-of-file, so they go to a file.
        let path = self.dir().join("log").join(output);
        let file = std::fs::File::create(&path).unwrap();
        let status = Command::new(&self.binary)
            .arg("-c")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .status()
            .expect("run dovecot");
        (status, std::fs::read_to_string(&path).unwrap_or_default())
    }

    /// Stops Dovecot and waits until the master process is gone (about a second: the master
    /// waits for its log process). Does nothing when already stopped.
    ///
    /// It sends the master SIGTERM, which is all `dovecot -c ... stop` does; but that command
    /// then polls the pid for 3 s, and in a container whose init does not reap orphans the
    /// dead master stays a zombie until then. A zombie counts as gone here.
    pub fn stop(&mut self) {
        if let Err(problem) = self.shutdown() {
            panic!("{problem}\nlog:\n{}", self.log());
        }
    }

    fn shutdown(&mut self) -> Result<(), String> {
        let Some(pid) = self.master_pid.take() else {
            return Ok(());
        };
        let signal = |name: &str| {
            Command::new("kill")
                .args([name, &pid.to_string()])
                .stderr(Stdio::null())
                .status()
        };
        let terminated = signal("-TERM");
        let deadline = Instant::now() + PEER_PATIENCE;
        while process_alive(pid) {
            if Instant::now() > deadline {
                let _ = signal("-KILL");
                return Err(format!(
                    "Dovecot's master (pid {pid}) outlived SIGTERM ({terminated:?}) by \
                     {PEER_PATIENCE:?}; killed it"
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        if let Err(problem) = self.shutdown() {
            eprintln!("{problem}");
        }
    }
}

/// A passwd-file line: `{PLAIN}` password, mail as nobody:nogroup, home from `mail_home`.
fn passwd_file_line(address: &str, password: &str) -> String {
    assert!(
        !address.contains(':') && !password.contains(':') && !password.contains('\n'),
        "passwd-file fields cannot hold ':' or newlines"
    );
    let mut line = String::new();
    writeln!(line, "{address}:{{PLAIN}}{password}:nobody:nogroup::::").unwrap();
    line
}

/// The configuration `text` with TLS off: `ssl = no`, and no IMAPS listener (port 0), since
/// Dovecot refuses an `ssl = yes` listener without TLS.
fn without_tls(text: &str) -> String {
    let text = text.replacen("\nssl = yes\n", "\nssl = no\n", 1);
    let imaps = text
        .find("inet_listener imaps {")
        .expect("the template has an imaps listener");
    let (head, tail) = text.split_at(imaps);
    let tail = tail.replacen("    ssl = yes\n", "", 1);
    let port_start = tail.find("port = ").expect("the imaps listener has a port");
    let port_end = port_start + tail[port_start..].find('\n').expect("a line end");
    format!("{head}{}port = 0{}", &tail[..port_start], &tail[port_end..])
}

/// `template` with every `@name@` replaced by its value; panics on one left unreplaced.
fn fill_template(template: &str, values: &[(&str, String)]) -> String {
    let mut text = template.to_owned();
    for (name, value) in values {
        text = text.replace(&format!("@{name}@"), value);
    }
    if let Some(start) = text.find("@") {
        panic!(
            "unfilled placeholder in the Dovecot template: {}",
            &text[start..]
        );
    }
    text
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {mode:o} {}: {e}", path.display()));
}

/// The checkpassword program behind the passwd-file (see `dovecot.conf.in`). Dovecot writes
/// `user\0password\0` to its fd 3; a userdb lookup sets `AUTHORIZED`. Exit codes: 1 =
/// authentication failed (passdb), 3 = unknown user (userdb), 111 = temporary failure.
const CHECKPASSWORD: &str = r#"#!/bin/sh
# Sees only users the passwd-file does not know.
user=$(tr '\0' '\n' <&3 | head -n 1)
if [ "$user" = "@tempfail_user@" ]; then
  exit 111
fi
if [ -n "$AUTHORIZED" ]; then
  exit 3
fi
exit 1
"#;
