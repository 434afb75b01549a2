//! The delivery worker: reads what is due from the shards it owns, claims each message under
//! a lease, delivers it to its next hops and commits the results under that lease.
//!
//! The schedulers sharing a queue divide the shards among themselves through heartbeats
//! (`membership`); a message enqueued through this process is claimed for this scheduler by
//! the enqueue and attempted at once, whoever owns its shard, so a fresh message never waits
//! for a poll (`handoff`). Message leases keep two schedulers from delivering one message at
//! once whatever they read.
//!
//! By job: the loop, its heartbeats and the start of attempts (`run_loop`); one attempt,
//! from its claim (`attempt`); the pauses and dead destinations that hold recipients back (`destination_checks`); the delivery of its recipients through the throttles to
//! outbound delivery (`delivery`); the renewal of its lease meanwhile, and the deadline it
//! sets the delivery (`lease_renewal`); and the recording of its outcomes under that lease
//! (`commit`).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use ferrymail_config::Config;
use ferrymail_config::model::dead_destinations::DeadDestinations;
use ferrymail_config::model::outbound::Outbound;
use ferrymail_config::model::queue_limits::Throttle;
use ferrymail_config::model::remote::Remote;
use ferrymail_dns::{DnssecResolver, MessageAuthenticator};
use rustls::pki_types::CertificateDer;
use tokio::sync::Semaphore;

use ferrymail_outbound::TlsSettings;
use ferrymail_outbound::mta_sts::{MtaSts, POLICY_PORT as MTA_STS_PORT};
use ferrymail_outbound::pool::SessionPool;

use crate::model::mta_sts_policies::SharedPolicies;
use crate::route::Router;
use crate::service::Queue;

mod attempt;
mod commit;
mod delivery;
mod destination_checks;
mod lease_renewal;
mod mx_hosts;
mod run_loop;

/// How a scheduler works.
#[derive(Debug, Clone)]
pub struct SchedulerOptions {
    /// This scheduler's name in leases: unique among the schedulers sharing a store.
    pub owner: String,
    /// How long a claim lasts; renewed every third of it while a delivery runs. It is also how
    /// long the messages a crashed scheduler held wait before another takes them over: short
    /// enough that a restart does not delay them much, long enough that renewals (one short
    /// transaction per delivery per third of a lease) cost little.
    pub lease: Duration,
    /// Longest a lease renewal may take before it counts as failed: a store that hangs must
    /// not hold a renewal past the lease it renews. A sixth of the lease by default.
    pub renewal_timeout: Duration,
    /// Wait between two reads of the due index when no enqueue wakes the scheduler.
    pub poll: Duration,
    /// The shards whose due messages it delivers: `None` to share them with the other live
    /// schedulers through heartbeats (the default), `Some` for exactly these.
    pub shards: Option<Vec<u16>>,
    /// Time between two heartbeats; a heartbeat lasts `lease`, so a scheduler that stops is
    /// replaced after at most `lease`.
    pub heartbeat: Duration,
    /// Most messages in delivery at once.
    pub max_in_flight: usize,
    /// Certificate authorities trusted besides the public ones, for MX hosts (STARTTLS) and
    /// MTA-STS policy hosts: empty but in tests, which trust their own CA this way.
    pub extra_roots: Vec<CertificateDer<'static>>,
    /// The port MTA-STS policies are fetched on: [`MTA_STS_PORT`] (443, RFC 8461 §3.3)
    /// but in tests, whose policy servers cannot bind it.
    pub mta_sts_port: u16,
}

impl SchedulerOptions {
    /// Defaults for a scheduler on host `hostname`, sharing the shards with the others.
    pub fn new(hostname: &str) -> Self {
        Self {
            owner: format!("{hostname}/{:016x}", rand::random::<u64>()),
            lease: Duration::from_secs(30),
            renewal_timeout: Duration::from_secs(5),
            poll: Duration::from_secs(1),
            shards: None,
            heartbeat: Duration::from_secs(10),
            max_in_flight: 256,
            extra_roots: Vec::new(),
            mta_sts_port: MTA_STS_PORT,
        }
    }

    /// The same with claims lasting `lease` (`queue.lease.duration`): renewals confirmed
    /// within a sixth of it, and heartbeats at least three times per lease, since one lasts
    /// a lease and a single late beat must not drop a live scheduler from the shards.
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self.renewal_timeout = lease / 6;
        self.heartbeat = self.heartbeat.min(lease / 3);
        self
    }
}

/// What the current configuration says about delivery.
struct Settings {
    router: Arc<Router>,
    remotes: BTreeMap<String, Remote>,
    retry: Vec<Duration>,
    notify: Vec<Duration>,
    throttles: BTreeMap<String, Throttle>,
    /// `queue.outbound.dead.*`.
    dead: DeadDestinations,
    hostname: String,
    /// `queue.lease.max-clock-skew`.
    max_clock_skew: Duration,
    /// `queue.outbound.*` for MX delivery.
    outbound: Outbound,
    /// The resolver of `resolver.*` for MX delivery, or why it could not be built.
    dns: Result<Arc<MessageAuthenticator>, String>,
    /// The same name servers asked with the DNSSEC bits, for DANE; or why it could not be
    /// built.
    dnssec: Result<Arc<DnssecResolver>, String>,
}

/// The delivery worker of one process.
pub struct Scheduler {
    queue: Arc<Queue>,
    options: SchedulerOptions,
    settings: ArcSwap<Settings>,
    /// Per remote: its `concurrency` and the semaphore enforcing it.
    limits: Mutex<HashMap<String, (u32, Arc<Semaphore>)>>,
    tls: TlsSettings,
    /// MTA-STS policies of recipient domains, cached.
    mta_sts: MtaSts,
    /// The policies remembered in the store, which the sweep goes through.
    policies: Arc<SharedPolicies>,
    /// Relay sessions kept open between messages.
    sessions: SessionPool,
    /// MX sessions kept open between messages.
    mx_sessions: SessionPool,
    /// The shards it reads now.
    owned: ArcSwap<Vec<u16>>,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("owner", &self.options.owner)
            .finish()
    }
}

impl Scheduler {
    /// A scheduler delivering from `queue` as `config` says.
    pub fn new(queue: Arc<Queue>, config: &Config, options: SchedulerOptions) -> Self {
        let owned = options.shards.clone().unwrap_or_default();
        let tls = TlsSettings::with_extra_roots(&options.extra_roots);
        let policies = Arc::new(SharedPolicies::new(queue.store.clone(), queue.keys.clone()));
        let mta_sts = MtaSts::new(
            &options.extra_roots,
            options.mta_sts_port,
            policies.clone(),
            queue.metrics.outbound().clone(),
        );
        Self {
            queue,
            options,
            settings: ArcSwap::from_pointee(settings(config)),
            limits: Mutex::new(HashMap::new()),
            tls,
            mta_sts,
            policies,
            sessions: SessionPool::default(),
            mx_sessions: SessionPool::default(),
            owned: ArcSwap::from_pointee(owned),
        }
    }

    /// Applies a reloaded configuration; deliveries under way finish with the old one.
    pub fn apply(&self, config: &Config) {
        self.settings.store(Arc::new(settings(config)));
        // Kept sessions carry the old remotes' settings (credentials, TLS): start afresh.
        self.sessions.clear();
        self.mx_sessions.clear();
        self.queue.handoff.wake.notify_one();
    }

    /// The queue it delivers from.
    pub fn queue(&self) -> &Arc<Queue> {
        &self.queue
    }

    /// This scheduler's name in leases.
    pub fn owner(&self) -> &str {
        &self.options.owner
    }

    /// The shards this scheduler reads now.
    pub fn shards(&self) -> Vec<u16> {
        self.owned.load().as_ref().clone()
    }
}

fn settings(config: &Config) -> Settings {
    Settings {
        router: Arc::new(Router::new(config)),
        remotes: config.remotes.clone(),
        retry: config.queue.retry.clone(),
        notify: config.queue.notify.clone(),
        throttles: config.queue.throttles.clone(),
        dead: config.queue.dead,
        hostname: config.server.hostname.clone(),
        max_clock_skew: config.queue.max_clock_skew,
        outbound: config.queue.outbound.clone(),
        dns: resolver(config),
        dnssec: ferrymail_dns::dnssec_resolver(&config.resolver)
            .map(Arc::new)
            .map_err(|error| error.to_string()),
    }
}

/// The resolver MX delivery asks; when it cannot be built, MX recipients fail temporarily
/// with the reason until a configuration that works is applied.
fn resolver(config: &Config) -> Result<Arc<MessageAuthenticator>, String> {
    ferrymail_dns::authenticator(&config.resolver)
        .map(Arc::new)
        .map_err(|error| {
            tracing::warn!(%error, "no DNS resolver: MX delivery fails temporarily until one can be built");
            error.to_string()
        })
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
