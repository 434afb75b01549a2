//! The directory-proxy's metrics. Labels are bounded: the target is a configured
//! `directory/<name>` or `remote/<id>`; never an address, a user or a domain.

use std::time::Duration;

use ferrymail_telemetry::Metrics;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LookupLabels {
    target: String,
    operation: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    target: String,
    operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CacheLabels {
    target: String,
    level: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TargetLabels {
    target: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BlockedLabels {
    target: String,
    by: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RemoteLabels {
    remote: String,
}

/// Every directory-proxy metric.
#[derive(Clone)]
pub struct DirectoryMetrics {
    lookups: Family<LookupLabels, Counter>,
    latency: Family<OperationLabels, Histogram>,
    cache: Family<CacheLabels, Counter>,
    pool_open: Family<TargetLabels, Gauge>,
    pool_waits: Family<TargetLabels, Counter>,
    connection_errors: Family<TargetLabels, Counter>,
    remote_up: Family<RemoteLabels, Gauge>,
    auth_blocked: Family<BlockedLabels, Counter>,
}

impl DirectoryMetrics {
    /// Creates and registers the metrics.
    pub fn register(metrics: &Metrics) -> Self {
        let this = Self {
            lookups: Family::default(),
            latency: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.0001, 4.0, 10))
            }),
            cache: Family::default(),
            pool_open: Family::default(),
            pool_waits: Family::default(),
            connection_errors: Family::default(),
            remote_up: Family::default(),
            auth_blocked: Family::default(),
        };
        metrics.register(
            "directory_lookups_total",
            "Directory lookups by target, operation and result (yes, no, refused, cannot_tell, temporary_failure)",
            this.lookups.clone(),
        );
        metrics.register(
            "directory_lookup_duration_seconds",
            "Time to answer a directory lookup, cache hits included",
            this.latency.clone(),
        );
        metrics.register(
            "directory_cache_requests_total",
            "Lookup cache requests by level (local, shared) and result (hit, miss)",
            this.cache.clone(),
        );
        metrics.register(
            "directory_pool_connections",
            "Connections open to a lookup target",
            this.pool_open.clone(),
        );
        metrics.register(
            "directory_pool_waits_total",
            "Lookups that waited because every allowed connection to the target was busy",
            this.pool_waits.clone(),
        );
        metrics.register(
            "directory_connection_errors_total",
            "Failed connections and failed exchanges with a lookup target",
            this.connection_errors.clone(),
        );
        metrics.register(
            "directory_remote_up",
            "Whether the last probe or lookup of a remote host succeeded (1) or failed (0)",
            this.remote_up.clone(),
        );
        metrics.register(
            "directory_auth_blocked_total",
            "Authentications refused without asking the server: the login name or the client address (by) had too many failures (server.auto-ban.auth.rate)",
            this.auth_blocked.clone(),
        );
        this
    }

    /// A metrics set that goes nowhere, for tests and tools.
    pub fn unregistered() -> Self {
        Self::register(&Metrics::new("test"))
    }

    pub(crate) fn lookup(
        &self,
        target: &str,
        operation: &'static str,
        result: &'static str,
        took: Duration,
    ) {
        self.lookups
            .get_or_create(&LookupLabels {
                target: target.to_string(),
                operation,
                result,
            })
            .inc();
        self.latency
            .get_or_create(&OperationLabels {
                target: target.to_string(),
                operation,
            })
            .observe(took.as_secs_f64());
    }

    pub(crate) fn auth_blocked(&self, target: &str, by: &'static str) {
        self.auth_blocked
            .get_or_create(&BlockedLabels {
                target: target.to_string(),
                by,
            })
            .inc();
    }

    pub(crate) fn cache(&self, target: &str, level: &'static str, hit: bool) {
        let result = if hit { "hit" } else { "miss" };
        self.cache
            .get_or_create(&CacheLabels {
                target: target.to_string(),
                level,
                result,
            })
            .inc();
    }

    pub(crate) fn pool(&self, target: &str) -> PoolMetrics {
        let labels = TargetLabels {
            target: target.to_string(),
        };
        PoolMetrics {
            open: self.pool_open.get_or_create(&labels).clone(),
            waits: self.pool_waits.get_or_create(&labels).clone(),
            errors: self.connection_errors.get_or_create(&labels).clone(),
        }
    }
}

impl DirectoryMetrics {
    pub(crate) fn remote_up(&self, remote: &str, up: bool) {
        self.remote_up
            .get_or_create(&RemoteLabels {
                remote: remote.to_string(),
            })
            .set(i64::from(up));
    }

    /// Drops the series of a remote that is no longer configured.
    pub(crate) fn forget_remote(&self, remote: &str) {
        self.remote_up.remove(&RemoteLabels {
            remote: remote.to_string(),
        });
    }
}

/// The metrics of one pool.
#[derive(Clone)]
pub(crate) struct PoolMetrics {
    open: Gauge,
    waits: Counter,
    errors: Counter,
}

impl PoolMetrics {
    /// Metrics that go nowhere: a host probed but not used for lookups has no pool series.
    pub(crate) fn detached() -> Self {
        Self {
            open: Gauge::default(),
            waits: Counter::default(),
            errors: Counter::default(),
        }
    }

    pub(crate) fn set_open(&self, open: usize) {
        self.open.set(i64::try_from(open).unwrap_or(i64::MAX));
    }
    pub(crate) fn wait(&self) {
        self.waits.inc();
    }
    pub(crate) fn connection_error(&self) {
        self.errors.inc();
    }
}
