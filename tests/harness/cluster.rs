//! A ferrymail cluster of separate processes on one shared store, as on Kubernetes: smtp
//! ingresses, queue-schedulers and directory-proxies (or several `ferrymail all`), mutual
//! TLS between the roles, Dovecot's LMTP validating recipients, and an smtp-sink receiving
//! what the schedulers deliver.
//!
//! The shared store is PostgreSQL, or FoundationDB when `FDB_CLUSTER_FILE` names a cluster
//! (a binary built with `--features fdb`). Each store-using process reaches PostgreSQL
//! through its own [`TcpRelay`], so a test can cut one process off the store. The ingresses
//! reach the schedulers and the proxies through one relay per role that spreads connections
//! over its members, as a Kubernetes Service does.
//!
//! Each scheduler (or `all`) has its own `server.hostname`, `<role>-<index>.cluster.test`,
//! which it gives in EHLO: the sink records it, so a test knows who delivered each message.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use rustix::process::Signal;

use crate::{
    ClusterCertificates, Dovecot, DovecotOptions, Ferrymail, Postgres, SmtpSink, SmtpSinkOptions,
    TcpRelay, mailboxes_directory,
};

/// The roles a cluster member runs.
pub const INGRESS: &str = "smtp-ingress";
/// See [`INGRESS`].
pub const SCHEDULER: &str = "queue-scheduler";
/// See [`INGRESS`].
pub const PROXY: &str = "directory-proxy";
/// See [`INGRESS`].
pub const ALL: &str = "all";

/// The shared lookup cache's key: the same in every proxy, or they would not share entries.
const CACHE_KEY: &str = "the cluster test's cache key, thirty-two bytes or more";

/// The store every member shares.
pub enum SharedStore {
    /// A private PostgreSQL server and the database of this cluster.
    Postgres {
        /// The server.
        server: Postgres,
        /// The database.
        database: String,
    },
    /// The embedded store, which one process alone can open: for a cluster with one queue
    /// (one scheduler or one `all`; proxies then cache in their own process), which checks
    /// the harness and the roles' failover where no shared store is at hand.
    Embedded,
    /// The FoundationDB cluster of `FDB_CLUSTER_FILE`, under a prefix of this cluster's own.
    FoundationDb {
        /// The cluster file.
        cluster_file: String,
        /// The key prefix.
        prefix: String,
    },
}

impl SharedStore {
    /// FoundationDB when `FDB_CLUSTER_FILE` is set, otherwise a new PostgreSQL server.
    pub fn from_environment(name: &str) -> SharedStore {
        let unique = format!(
            "{name}_{}_{}",
            std::process::id(),
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis())
        );
        match std::env::var("FDB_CLUSTER_FILE") {
            Ok(cluster_file) if !cluster_file.is_empty() => SharedStore::FoundationDb {
                cluster_file,
                prefix: unique,
            },
            _ => {
                let server = Postgres::start();
                server.create_database(&unique);
                SharedStore::Postgres {
                    server,
                    database: unique,
                }
            }
        }
    }

    /// The backend's name, for messages.
    pub fn name(&self) -> &'static str {
        match self {
            SharedStore::Postgres { .. } => "PostgreSQL",
            SharedStore::Embedded => "embedded",
            SharedStore::FoundationDb { .. } => "FoundationDB",
        }
    }

    /// Why a process cannot be cut off this store through a relay, if it cannot: a
    /// FoundationDB client reaches the coordinators its cluster file names and then the
    /// addresses they give it, which no single relay stands in for.
    pub fn cut_unsupported(&self) -> Option<&'static str> {
        match self {
            SharedStore::Postgres { .. } => None,
            SharedStore::Embedded => Some("the embedded store is a file inside the process"),
            SharedStore::FoundationDb { .. } => Some(
                "a FoundationDB client connects to every address its coordinators name; one relay cannot cut it off",
            ),
        }
    }

    /// The relay a process reaches the store through, when the backend allows one.
    fn relay(&self) -> Option<TcpRelay> {
        match self {
            SharedStore::Postgres { server, .. } => Some(TcpRelay::start(SocketAddr::from((
                [127, 0, 0, 1],
                server.port(),
            )))),
            SharedStore::Embedded | SharedStore::FoundationDb { .. } => None,
        }
    }

    /// The `[store.shared]` and `[storage]` tables of a process reaching it through `relay`.
    fn config(&self, relay: Option<&TcpRelay>) -> String {
        match self {
            SharedStore::Postgres { server, database } => {
                let port = relay.map_or_else(|| server.port(), TcpRelay::port);
                server.store_config("shared", database, port)
            }
            SharedStore::Embedded => crate::EMBEDDED_STORE.to_owned(),
            SharedStore::FoundationDb {
                cluster_file,
                prefix,
            } => format!(
                "[store.shared]\ntype = \"foundationdb\"\ncluster-file = \"{cluster_file}\"\nprefix = \"{prefix}\"\n[storage]\ndata = \"shared\"\n"
            ),
        }
    }
}

/// How many members of each role, and how they work.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// `smtp-ingress` processes.
    pub ingresses: usize,
    /// `queue-scheduler` processes.
    pub schedulers: usize,
    /// `directory-proxy` processes.
    pub proxies: usize,
    /// `ferrymail all` processes (each its own ingress, proxy and scheduler).
    pub alls: usize,
    /// `queue.lease.duration`: short, so that a test outlasts it quickly.
    pub lease: Duration,
    /// The sink remote's `concurrency`: the most deliveries one scheduler has under way at
    /// once.
    pub deliveries_per_scheduler: u32,
    /// Seconds the sink waits before answering DATA (smtp-sink's `-w`), as a distant server
    /// does: deliveries then last long enough that a fault strikes some mid-way.
    pub sink_data_delay: Option<u32>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        Self {
            ingresses: 2,
            schedulers: 3,
            proxies: 2,
            alls: 0,
            lease: Duration::from_secs(3),
            deliveries_per_scheduler: 8,
            sink_data_delay: Some(1),
        }
    }
}

impl ClusterOptions {
    /// The most deliveries a scheduler has under way at once: all that a kill or a stop can
    /// leave delivered and unrecorded.
    pub fn under_way(&self) -> usize {
        self.deliveries_per_scheduler as usize
    }

    /// The most deliveries a scheduler cut off the store can complete before its lease ends:
    /// [`ClusterOptions::under_way`] for each time the sink's delay fits in a lease, and
    /// those under way at the cut. Unbounded without a delay.
    pub fn within_a_lease(&self) -> usize {
        match self.sink_data_delay {
            Some(delay) if delay > 0 => {
                let rounds = self.lease.as_secs() / u64::from(delay) + 1;
                self.under_way() * usize::try_from(rounds).unwrap_or(usize::MAX)
            }
            _ => usize::MAX,
        }
    }
}

/// One process of the cluster.
pub struct Member {
    /// Its role.
    pub role: &'static str,
    /// Its number among the members of its role.
    pub index: usize,
    /// Its `server.hostname`, which a scheduler gives in EHLO.
    pub hostname: String,
    /// The process (its log stays readable once it is killed).
    pub process: Ferrymail,
    /// Whether it has not been killed.
    pub alive: bool,
    /// The relay it reaches the store through, when it uses one.
    pub store_relay: Option<TcpRelay>,
    /// Its SMTP listener (ingress, all).
    pub smtp: Option<SocketAddr>,
    /// Its gRPC listener (scheduler, proxy, all).
    pub grpc: Option<SocketAddr>,
}

/// A running cluster; every process stops when it is dropped.
pub struct Cluster {
    /// The options it was started with.
    pub options: ClusterOptions,
    /// Every process, by role and index.
    pub members: Vec<Member>,
    /// Where the schedulers deliver.
    pub sink: SmtpSink,
    /// The ingresses' way to the schedulers.
    pub queue_service: Option<TcpRelay>,
    /// The ingresses' way to the proxies.
    pub directory_service: Option<TcpRelay>,
    /// The remote directory.
    pub dovecot: Dovecot,
    _certificates_dir: tempfile::TempDir,
    // Dropped last: the processes go first (their fields come earlier).
    /// The shared store.
    pub store: SharedStore,
}

impl Cluster {
    /// Starts `options`' members on `store` and waits until each listens.
    pub fn start(store: SharedStore, options: ClusterOptions) -> Cluster {
        let queues = options.schedulers + options.alls;
        assert!(
            !matches!(store, SharedStore::Embedded) || queues <= 1,
            "the embedded store is opened by one process only; {queues} queues would share it"
        );
        let dovecot = Dovecot::start_with(DovecotOptions {
            auth_penalty: false,
            ..DovecotOptions::default()
        });
        let sink = SmtpSink::start(SmtpSinkOptions {
            hostname: Some("sink.cluster.test".into()),
            data_delay: options.sink_data_delay,
            ..SmtpSinkOptions::default()
        });
        let certificates_dir = tempfile::tempdir().expect("a directory for the certificates");
        let certificates = ClusterCertificates::generate(certificates_dir.path(), "cluster");
        let tls = |role: &str| certificates.config(&certificates.role(&[role]));
        let (scheduler_tls, proxy_tls, ingress_tls) = (tls(SCHEDULER), tls(PROXY), tls(INGRESS));
        let directory = format!(
            "{}[session.rcpt]\ndirectory = \"mailboxes\"\n",
            mailboxes_directory(&dovecot)
        );
        let delivery = format!(
            "[remote.sink]\naddress = \"127.0.0.1\"\nport = {}\nprotocol = \"smtp\"\ntls.implicit = false\ntimeout = \"10s\"\nconcurrency = {}\n[queue.outbound]\nnext-hop = \"sink\"\n[queue.schedule]\nretry = [\"1s\"]\n[queue.lease]\nduration = \"{}s\"\nmax-clock-skew = \"200ms\"\n",
            sink.address().port(),
            options.deliveries_per_scheduler,
            options.lease.as_secs().max(1),
        );
        let cache = format!("[cluster]\ncache-key = \"{CACHE_KEY}\"\n");
        let mut members = Vec::new();
        let mut start = |role: &'static str, index: usize, rest: &str, relay: Option<TcpRelay>| {
            let hostname = format!("{role}-{index}.cluster.test");
            let config = format!(
                "[server]\nhostname = \"{hostname}\"\nshutdown-timeout = \"5s\"\n[server.listener.admin]\nbind = \"127.0.0.1:0\"\nprotocol = \"http\"\n{rest}"
            );
            let mut process = Ferrymail::start(role, &config);
            let smtp = matches!(role, INGRESS | ALL).then(|| process.address("smtp"));
            let grpc = matches!(role, SCHEDULER | PROXY | ALL).then(|| process.address("grpc"));
            members.push(Member {
                role,
                index,
                hostname,
                process,
                alive: true,
                store_relay: relay,
                smtp,
                grpc,
            });
        };
        const GRPC: &str = "[server.listener.grpc]\nbind = \"127.0.0.1:0\"\nprotocol = \"grpc\"\n";
        const SMTP: &str = "[server.listener.smtp]\nbind = \"127.0.0.1:0\"\nprotocol = \"smtp\"\n";
        for index in 0..options.schedulers {
            let relay = store.relay();
            let rest = format!(
                "{GRPC}{}{delivery}{scheduler_tls}",
                store.config(relay.as_ref())
            );
            start(SCHEDULER, index, &rest, relay);
        }
        for index in 0..options.proxies {
            let relay = store.relay();
            // Proxies over the embedded store cache in their own process only: the store is
            // the queue's.
            let shared_cache = match store {
                SharedStore::Embedded => String::new(),
                _ => store.config(relay.as_ref()),
            };
            let rest = format!("{GRPC}{shared_cache}{directory}{cache}{proxy_tls}");
            start(PROXY, index, &rest, relay);
        }
        for index in 0..options.alls {
            let relay = store.relay();
            let rest = format!(
                "{SMTP}{GRPC}{}{directory}{delivery}{cache}",
                store.config(relay.as_ref())
            );
            start(ALL, index, &rest, relay);
        }
        let service = |role: &str| {
            let targets: Vec<SocketAddr> = members
                .iter()
                .filter(|m| m.role == role)
                .filter_map(|m| m.grpc)
                .collect();
            (!targets.is_empty()).then(|| TcpRelay::balancing(targets))
        };
        let queue_service = service(SCHEDULER);
        let directory_service = service(PROXY);
        if options.ingresses > 0 {
            let (Some(queue), Some(proxies)) = (&queue_service, &directory_service) else {
                panic!("split ingresses need schedulers and proxies to talk to");
            };
            for index in 0..options.ingresses {
                let rest = format!(
                    "{SMTP}[cluster.directory]\nendpoint = \"https://{}\"\n[cluster.queue]\nendpoint = \"https://{}\"\n{directory}{ingress_tls}",
                    proxies.address(),
                    queue.address()
                );
                let hostname = format!("{INGRESS}-{index}.cluster.test");
                let config = format!(
                    "[server]\nhostname = \"{hostname}\"\nshutdown-timeout = \"5s\"\n[server.listener.admin]\nbind = \"127.0.0.1:0\"\nprotocol = \"http\"\n{rest}"
                );
                let mut process = Ferrymail::start(INGRESS, &config);
                let smtp = Some(process.address("smtp"));
                members.push(Member {
                    role: INGRESS,
                    index,
                    hostname,
                    process,
                    alive: true,
                    store_relay: None,
                    smtp,
                    grpc: None,
                });
            }
        }
        Cluster {
            options,
            members,
            sink,
            queue_service,
            directory_service,
            dovecot,
            _certificates_dir: certificates_dir,
            store,
        }
    }

    /// The SMTP addresses clients use: every ingress and `all`.
    pub fn smtp_addresses(&self) -> Vec<SocketAddr> {
        self.members.iter().filter_map(|m| m.smtp).collect()
    }

    /// Member `index` of `role`.
    pub fn member(&mut self, role: &str, index: usize) -> &mut Member {
        self.members
            .iter_mut()
            .find(|m| m.role == role && m.index == index)
            .unwrap_or_else(|| panic!("the cluster has no {role} number {index}"))
    }

    /// The `server.hostname` of member `index` of `role`: its EHLO name at the sink.
    pub fn hostname(&self, role: &str, index: usize) -> String {
        format!("{role}-{index}.cluster.test")
    }

    fn process(&mut self, role: &str, index: usize) -> &mut Ferrymail {
        let member = self.member(role, index);
        assert!(member.alive, "{role} number {index} was killed");
        &mut member.process
    }

    /// SIGKILL: the member dies at once, as in a crash, with whatever it had under way.
    pub fn kill(&mut self, role: &str, index: usize) {
        self.process(role, index).kill();
        self.member(role, index).alive = false;
    }

    /// SIGSTOP: the member freezes, its connections open and silent, its timers stopped.
    pub fn pause(&mut self, role: &str, index: usize) {
        self.process(role, index).signal(Signal::STOP);
    }

    /// SIGCONT after [`Cluster::pause`].
    pub fn resume(&mut self, role: &str, index: usize) {
        self.process(role, index).signal(Signal::CONT);
    }

    /// Cuts the member off the store (see [`TcpRelay::cut`]).
    pub fn cut_store(&mut self, role: &str, index: usize) {
        self.store_relay(role, index).cut();
    }

    /// Gives the member its store back.
    pub fn restore_store(&mut self, role: &str, index: usize) {
        self.store_relay(role, index).restore();
    }

    fn store_relay(&mut self, role: &str, index: usize) -> &TcpRelay {
        self.member(role, index)
            .store_relay
            .as_ref()
            .unwrap_or_else(|| panic!("{role} number {index} reaches the store directly"))
    }

    /// The log of every member read so far, for failure messages.
    pub fn logs(&mut self) -> String {
        let mut text = String::new();
        for member in &mut self.members {
            member.process.read_log();
            text.push_str(&format!(
                "--- {} {} ---\n{}\n",
                member.role,
                member.index,
                member.process.dump()
            ));
        }
        text
    }

    /// The log lines of every member that say `message`, for failure messages.
    pub fn log_lines(&mut self, message: &str) -> Vec<String> {
        let mut lines = Vec::new();
        for member in &mut self.members {
            for line in member.process.read_log() {
                if line.message().contains(message) {
                    lines.push(format!("{} {}: {}", member.role, member.index, line.0));
                }
            }
        }
        lines
    }
}
