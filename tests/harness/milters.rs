//! Real milters on loopback ports, each from a private configuration directory, without
//! systemd: rspamd's proxy worker in milter mode ([`Rspamd`]) and OpenDKIM signing
//! ([`OpenDkim`]), and stunnel in front of one for milters spoken to over TLS
//! ([`TlsTunnel`]). All are stopped (SIGTERM, then SIGKILL) on drop.

use std::fs;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};

use crate::peer::{accepts_connections, free_loopback_ports, loopback, require_peer, wait_until};
use crate::tls::TestCertificates;

/// A milter process and its directory; stopped on drop.
struct MilterProcess {
    child: Child,
    address: SocketAddr,
    dir: tempfile::TempDir,
}

impl MilterProcess {
    /// Starts `command` (its output to `output.log` in `dir`) and waits until `address`
    /// accepts connections.
    fn start(
        name: &str,
        mut command: Command,
        address: SocketAddr,
        dir: tempfile::TempDir,
    ) -> Self {
        let log = fs::File::create(dir.path().join("output.log")).expect("milter log file");
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let mut process = Self {
            child,
            address,
            dir,
        };
        let log_path = process.dir.path().join("output.log");
        wait_until(
            &format!("{name} to listen on {address}"),
            || {
                let exited = process.child.try_wait().ok().flatten().is_some();
                exited || accepts_connections(address)
            },
            || fs::read_to_string(&log_path).unwrap_or_default(),
        );
        if let Ok(Some(status)) = process.child.try_wait() {
            panic!(
                "{name} exited ({status}) before listening:\n{}",
                fs::read_to_string(&log_path).unwrap_or_default()
            );
        }
        process
    }
}

impl Drop for MilterProcess {
    fn drop(&mut self) {
        // SIGTERM first: rspamd's main process then stops its workers.
        if let Some(pid) = i32::try_from(self.child.id()).ok().and_then(Pid::from_raw) {
            let _ = kill_process(pid, Signal::TERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// rspamd 3.x's proxy worker in milter mode, scanning by itself (`self_scan`), on a loopback
/// port. It reads Debian's shipped configuration with a private `LOCAL_CONFDIR` that turns
/// the other workers off, and points its resolver at a closed loopback port and drops the
/// fuzzy-hash servers, so it makes no network lookups. GTUBE is rejected by rspamd's core.
pub struct Rspamd {
    process: MilterProcess,
}

impl Rspamd {
    /// Starts rspamd; it is ready when its milter port accepts connections (it compiles its
    /// rules first, which takes seconds).
    pub fn start() -> Rspamd {
        let binary = require_peer("rspamd");
        let dir = tempfile::tempdir().expect("rspamd directory");
        let [port] = free_loopback_ports::<1>();
        let address = loopback(port);
        write_rspamd_config(dir.path(), address);
        let root = dir.path().display().to_string();
        let mut command = Command::new(binary);
        // -i: the tests may run as root, which rspamd refuses without it.
        command.args(["-f", "-i", "-c", "/etc/rspamd/rspamd.conf"]);
        for var in ["LOCAL_CONFDIR", "DBDIR", "RUNDIR", "LOGDIR"] {
            command.arg("--var").arg(format!("{var}={root}"));
        }
        Rspamd {
            process: MilterProcess::start("rspamd", command, address, dir),
        }
    }

    /// The milter port.
    pub fn address(&self) -> SocketAddr {
        self.process.address
    }

    /// The main process, whose tree's CPU a benchmark counts.
    pub fn pid(&self) -> u32 {
        self.process.child.id()
    }
}

fn write_rspamd_config(dir: &Path, address: SocketAddr) {
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        fs::create_dir_all(path.parent().expect("a parent directory")).expect("config dir");
        fs::write(path, text).expect("rspamd config file");
    };
    write(
        "override.d/worker-proxy.inc",
        &format!(
            "bind_socket = \"{address}\";\nmilter = yes;\ntimeout = 120s;\n\
             upstream \"local\" {{ default = yes; self_scan = yes; }}\n"
        ),
    );
    write("override.d/worker-normal.inc", "enabled = false;\n");
    write("override.d/worker-controller.inc", "enabled = false;\n");
    write(
        "override.d/logging.inc",
        "type = \"console\";\nlevel = \"error\";\n",
    );
    write(
        "override.d/options.inc",
        "filters = \"chartable,dkim,regexp\";\n\
         dns { nameserver = [\"127.0.0.1:9\"]; timeout = 0.2s; retransmits = 0; }\n",
    );
    // Headers on every message, local and authenticated ones included (the tests submit
    // from loopback).
    write(
        "local.d/milter_headers.conf",
        "use = [\"x-spamd-result\", \"x-spam-status\"];\nskip_local = false;\nskip_authenticated = false;\n",
    );
}

/// OpenDKIM signing (`Mode s`) for one domain with a key made by `opendkim-genkey`, in the
/// foreground on a loopback port. It signs mail from its `InternalHosts` (loopback by
/// default) or from authenticated clients whose `From` is in the domain.
pub struct OpenDkim {
    process: MilterProcess,
    /// The TXT record to publish at `<selector>._domainkey.<domain>`.
    pub dns_record: String,
    pub domain: String,
    pub selector: String,
}

impl OpenDkim {
    /// Starts OpenDKIM signing for `domain` with selector `selector`.
    pub fn start(domain: &str, selector: &str) -> OpenDkim {
        let binary = require_peer("opendkim");
        let genkey = require_peer("opendkim-genkey");
        let dir = tempfile::tempdir().expect("opendkim directory");
        let status = Command::new(genkey)
            .arg("-D")
            .arg(dir.path())
            .args(["-d", domain, "-s", selector])
            .status()
            .expect("opendkim-genkey runs");
        assert!(status.success(), "opendkim-genkey failed: {status}");
        let dns_record = txt_record(
            &fs::read_to_string(dir.path().join(format!("{selector}.txt"))).expect("key record"),
        );
        let [port] = free_loopback_ports::<1>();
        let address = loopback(port);
        let root = dir.path().display();
        // RequireSafeKeys off: the private directory is safe (0700) but lives under /tmp,
        // which OpenDKIM's path check refuses as writable by others.
        let config = format!(
            "Mode s\nDomain {domain}\nSelector {selector}\nKeyFile {root}/{selector}.private\n\
             Socket inet:{port}@127.0.0.1\nBackground no\nPidFile {root}/opendkim.pid\n\
             Syslog no\nCanonicalization relaxed/simple\nRequireSafeKeys no\n"
        );
        fs::write(dir.path().join("opendkim.conf"), config).expect("opendkim.conf");
        let mut command = Command::new(binary);
        command
            .arg("-f")
            .arg("-x")
            .arg(dir.path().join("opendkim.conf"));
        OpenDkim {
            process: MilterProcess::start("opendkim", command, address, dir),
            dns_record,
            domain: domain.to_owned(),
            selector: selector.to_owned(),
        }
    }

    /// The milter port.
    pub fn address(&self) -> SocketAddr {
        self.process.address
    }
}

/// The TXT record's text from `opendkim-genkey`'s zone file line: the quoted strings joined.
fn txt_record(zone_line: &str) -> String {
    zone_line
        .split('"')
        .skip(1)
        .step_by(2)
        .collect::<Vec<_>>()
        .concat()
}

/// stunnel accepting TLS on a loopback port and passing the plain stream to `target`: a milter
/// reached over TLS, as across hosts. Its certificate, for `localhost` and `127.0.0.1`, is
/// signed by a test CA nobody trusts unless told to.
pub struct TlsTunnel {
    process: MilterProcess,
    /// The certificates it serves (the CA to trust, if a test wants it verified).
    pub certificates: TestCertificates,
}

impl TlsTunnel {
    /// Starts stunnel in the foreground in front of `target`.
    pub fn start(target: SocketAddr) -> TlsTunnel {
        let binary = require_peer("stunnel");
        let dir = tempfile::tempdir().expect("stunnel directory");
        let certificates = TestCertificates::generate(dir.path());
        let [port] = free_loopback_ports::<1>();
        let address = loopback(port);
        let config = format!(
            "foreground = yes\npid =\n[milter]\naccept = {address}\nconnect = {target}\n\
             cert = {}\nkey = {}\n",
            certificates.cert_pem.display(),
            certificates.key_pem.display()
        );
        fs::write(dir.path().join("stunnel.conf"), config).expect("stunnel.conf");
        let mut command = Command::new(binary);
        command.arg(dir.path().join("stunnel.conf"));
        TlsTunnel {
            process: MilterProcess::start("stunnel", command, address, dir),
            certificates,
        }
    }

    /// The TLS port.
    pub fn address(&self) -> SocketAddr {
        self.process.address
    }
}
