//! A private PostgreSQL cluster on loopback: the shared store of the tests that run several
//! processes, and the `postgresql` backend of the store's conformance suite.
//!
//! Every instance is its own cluster (`initdb`) in a temporary directory, with its socket
//! there too, listening only on 127.0.0.1 on a port chosen at start, and is stopped and
//! removed on drop. TCP connections authenticate with a password (scram-sha-256), so the
//! client's password path is the one tested; the harness itself uses the Unix socket.
//!
//! `initdb` refuses to run as root: as root, every server program runs as the unprivileged
//! `postgres` account (which Debian's package creates), owning the directory.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::peer::{PEER_PATIENCE, free_loopback_ports, require_peer};
use crate::tls::TestCertificates;

/// The cluster's superuser, who the stores log in as.
pub const POSTGRES_USER: &str = "ferrymail";
/// Its password.
pub const POSTGRES_PASSWORD: &str = "ferrymail-test-password";

/// Where Debian installs PostgreSQL's server programs, one directory per major version.
const DEBIAN_VERSIONS: &str = "/usr/lib/postgresql";

/// How many times a start is retried when the chosen port was taken meanwhile.
const START_ATTEMPTS: u32 = 5;

/// A running private PostgreSQL cluster; stopped and removed on drop.
pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    /// The account the server runs as, when the tests run as root.
    account: Option<(u32, u32)>,
    running: bool,
    /// Stops the server and removes its directory if this process ends without dropping
    /// it (a cluster kept in a `static`, a test killed).
    watcher: Option<std::process::Child>,
}

impl Postgres {
    /// Creates a cluster and starts it; fails the test, saying how to install them, when
    /// PostgreSQL's programs are missing.
    pub fn start() -> Postgres {
        let bin = server_programs();
        let account = if rustix::process::geteuid().is_root() {
            Some(postgres_account())
        } else {
            None
        };
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut postgres = Postgres {
            dir,
            bin,
            port: 0,
            account,
            running: false,
            watcher: None,
        };
        postgres.init();
        postgres.watch();
        for attempt in 1..=START_ATTEMPTS {
            let [port] = free_loopback_ports();
            postgres.port = port;
            match postgres.try_start() {
                Ok(()) => return postgres,
                Err(log) if attempt < START_ATTEMPTS && log.contains("already in use") => {}
                Err(log) => panic!("PostgreSQL did not start on port {port}:\n{log}"),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    /// The loopback port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Creates database `name`.
    pub fn create_database(&self, name: &str) {
        self.sql("postgres", &format!("CREATE DATABASE \"{name}\""));
    }

    /// Runs `sql` in `database` as the superuser, over the Unix socket; returns what `psql`
    /// printed (unaligned, tuples only). Panics if it fails.
    pub fn sql(&self, database: &str, sql: &str) -> String {
        let output = self
            .command("psql")
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .arg("-h")
            .arg(self.dir.path())
            .arg("-p")
            .arg(self.port.to_string())
            .args(["-U", POSTGRES_USER, "-d", database, "-c", sql])
            .output()
            .expect("run psql");
        assert!(
            output.status.success(),
            "psql failed on {sql:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// A configuration fragment: `store.<id>`, a PostgreSQL store of `database` reached at
    /// 127.0.0.1:`port` (this cluster's port, or a relay's in front of it), made
    /// `storage.data`.
    pub fn store_config(&self, id: &str, database: &str, port: u16) -> String {
        format!(
            "[store.{id}]\ntype = \"postgresql\"\nhost = \"127.0.0.1\"\nport = {port}\n\
             database = \"{database}\"\nuser = \"{POSTGRES_USER}\"\n\
             password = \"{POSTGRES_PASSWORD}\"\n[storage]\ndata = \"{id}\"\n"
        )
    }

    /// The process id of the server (the postmaster), whose children are the backends of
    /// connections and its background workers: its tree is all the CPU the server spends.
    pub fn pid(&self) -> u32 {
        let text = std::fs::read_to_string(self.data().join("postmaster.pid"))
            .expect("read postmaster.pid of a running server");
        text.lines()
            .next()
            .and_then(|line| line.trim().parse().ok())
            .unwrap_or_else(|| panic!("no process id in postmaster.pid: {text:?}"))
    }

    /// Appends `settings` (lines of `postgresql.conf`) to the configuration and restarts the
    /// server, for settings read only at start (`shared_preload_libraries`).
    pub fn configure(&mut self, settings: &str) {
        let conf = self.data().join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf).expect("read postgresql.conf");
        text.push('\n');
        text.push_str(settings);
        text.push('\n');
        std::fs::write(&conf, text).expect("write postgresql.conf");
        self.restart();
    }

    /// The user stores log in as.
    pub fn user(&self) -> &'static str {
        POSTGRES_USER
    }

    /// That user's password.
    pub fn password(&self) -> &'static str {
        POSTGRES_PASSWORD
    }

    /// Turns TLS on (`ssl = on`) with a certificate for `localhost` and 127.0.0.1 issued by
    /// a private CA, and restarts the server; plain connections are still accepted. Returns
    /// the certificates, for a client to trust the CA.
    pub fn enable_tls(&mut self) -> TestCertificates {
        let dir = self.dir.path().join("tls");
        std::fs::create_dir(&dir).expect("create the TLS directory");
        let certificates = TestCertificates::generate(&dir);
        if let Some((uid, gid)) = self.account {
            for path in [&dir, &certificates.cert_pem, &certificates.key_pem] {
                std::os::unix::fs::chown(path, Some(uid), Some(gid))
                    .expect("give the certificate to the postgres account");
            }
        }
        // The server refuses a key that others may read.
        std::fs::set_permissions(
            &certificates.key_pem,
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .expect("restrict the key");
        let conf = self.data().join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf).expect("read postgresql.conf");
        text.push_str(&format!(
            "ssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\n",
            certificates.cert_pem.display(),
            certificates.key_pem.display()
        ));
        std::fs::write(&conf, text).expect("write postgresql.conf");
        self.restart();
        certificates
    }

    /// Stops the server at once, cutting its connections (`pg_ctl stop -m fast`).
    pub fn stop(&mut self) {
        if self.running {
            self.pg_ctl(&["stop", "-m", "fast", "-w"])
                .unwrap_or_else(|log| panic!("PostgreSQL did not stop:\n{log}"));
            self.running = false;
        }
    }

    /// Starts the server again on the same port, with the same data.
    pub fn restart(&mut self) {
        self.stop();
        self.try_start()
            .unwrap_or_else(|log| panic!("PostgreSQL did not start again:\n{log}"));
    }

    fn init(&self) {
        let dir = self.dir.path();
        let password_file = dir.join("password");
        std::fs::write(&password_file, POSTGRES_PASSWORD).expect("write the password file");
        if let Some((uid, gid)) = self.account {
            for path in [dir, &password_file] {
                std::os::unix::fs::chown(path, Some(uid), Some(gid))
                    .expect("give the cluster directory to the postgres account");
            }
        }
        let output = self
            .command("initdb")
            .arg("-D")
            .arg(self.data())
            .args(["-U", POSTGRES_USER, "-E", "UTF8", "--no-instructions"])
            .args(["--auth-local=trust", "--auth-host=scram-sha-256"])
            .arg(format!("--pwfile={}", password_file.display()))
            .output()
            .expect("run initdb");
        assert!(
            output.status.success(),
            "initdb failed:\n{}",
            describe(&output)
        );
        // Durability is what the tests check: fsync stays on. Several test processes, each
        // with a pool, share one cluster.
        let settings = format!(
            "\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n\
             shared_buffers = 16MB\nfsync = on\nmax_connections = 200\n\
             password_encryption = 'scram-sha-256'\n",
            dir.display()
        );
        let conf = self.data().join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf).expect("read postgresql.conf");
        text.push_str(&settings);
        std::fs::write(&conf, text).expect("write postgresql.conf");
    }

    fn watch(&mut self) {
        let pg_ctl = self.bin.join("pg_ctl");
        let script = format!(
            "while [ -d /proc/{pid} ]; do sleep 1; done; \
             '{pg_ctl}' -D '{data}' stop -m immediate -w >/dev/null 2>&1; rm -rf '{dir}'",
            pid = std::process::id(),
            pg_ctl = pg_ctl.display(),
            data = self.data().display(),
            dir = self.dir.path().display(),
        );
        let mut command = Command::new("sh");
        command
            .args(["-c", &script])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        if let Some((uid, gid)) = self.account {
            command.uid(uid).gid(gid);
        }
        self.watcher = Some(command.spawn().expect("start the cluster's watcher"));
    }

    fn try_start(&mut self) -> Result<(), String> {
        let timeout = PEER_PATIENCE.as_secs().to_string();
        let options = format!("-p {}", self.port);
        let log = self.dir.path().join("server.log");
        let log = log.to_str().expect("a UTF-8 temporary path").to_owned();
        let result = self.pg_ctl(&["start", "-w", "-t", &timeout, "-l", &log, "-o", &options]);
        if result.is_ok() {
            self.running = true;
        }
        result.map_err(|out| {
            let server_log = std::fs::read_to_string(&log).unwrap_or_default();
            format!("{out}\n{server_log}")
        })
    }

    fn pg_ctl(&self, args: &[&str]) -> Result<(), String> {
        let output = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(args)
            .output()
            .expect("run pg_ctl");
        if output.status.success() {
            Ok(())
        } else {
            Err(describe(&output))
        }
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Runs PostgreSQL program `name` as the account that owns the cluster.
    fn command(&self, name: &str) -> Command {
        let mut command = Command::new(self.bin.join(name));
        command.current_dir(self.dir.path());
        if let Some((uid, gid)) = self.account {
            command.uid(uid).gid(gid);
        }
        command
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if self.running {
            let _ = self.pg_ctl(&["stop", "-m", "immediate", "-w"]);
        }
        if let Some(mut watcher) = self.watcher.take() {
            let _ = watcher.kill();
            let _ = watcher.wait();
        }
    }
}

/// The directory of PostgreSQL's server programs: Debian's newest version, else the one of
/// `initdb` on `PATH`.
fn server_programs() -> PathBuf {
    let newest = std::fs::read_dir(DEBIAN_VERSIONS)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .max_by_key(|(version, _)| *version);
    if let Some((_, bin)) = newest {
        return bin;
    }
    let initdb = require_peer("initdb");
    let bin = initdb.parent().map(Path::to_path_buf).unwrap_or_default();
    assert!(
        bin.join("pg_ctl").exists(),
        "PostgreSQL's pg_ctl is not beside {}: run `make test-deps` (it installs PostgreSQL \
         from Debian), then run the tests again.",
        initdb.display()
    );
    bin
}

/// The uid and gid of the `postgres` account.
fn postgres_account() -> (u32, u32) {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            match fields.as_slice() {
                ["postgres", _, uid, gid, ..] => Some((uid.parse().ok()?, gid.parse().ok()?)),
                _ => None,
            }
        })
        .unwrap_or_else(|| {
            panic!(
                "PostgreSQL's initdb refuses to run as root, and there is no `postgres` account \
                 to run it as: run `make test-deps` (Debian's postgresql package creates it), \
                 or run the tests as another user."
            )
        })
}

fn describe(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}
