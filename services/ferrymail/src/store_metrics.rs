//! The store's metrics: commit latency, retries and failures of transactions, whatever the
//! backend, and the embedded store's group commits and checkpoints. They show a slow disk or
//! cluster (every 250 waits for a commit) and contention between pods before either shows
//! as deferred mail.

use std::time::Duration;

use ferrymail_store::{StoreError, StoreObserver};
use ferrymail_telemetry::Metrics;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    /// [`StoreError::kind`]: a short fixed set.
    reason: &'static str,
}

/// Records what the store reports into the process's registry.
#[derive(Debug)]
pub struct StoreMetrics {
    commit_time: Histogram,
    retries: Family<ReasonLabel, Counter>,
    failures: Family<ReasonLabel, Counter>,
    log_syncs: Counter,
    group_size: Histogram,
    checkpoint_time: Histogram,
}

impl StoreMetrics {
    /// Creates and registers the metrics.
    pub fn register(metrics: &Metrics) -> Self {
        let this = Self {
            // 100 µs (a log sync on a fast disk) to about 6.5 s (a struggling cluster).
            commit_time: Histogram::new(exponential_buckets(0.0001, 4.0, 9)),
            retries: Family::default(),
            failures: Family::default(),
            log_syncs: Counter::default(),
            // 1 to 256 transactions per group commit.
            group_size: Histogram::new(exponential_buckets(1.0, 2.0, 9)),
            // 1 ms to about 65 s.
            checkpoint_time: Histogram::new(exponential_buckets(0.001, 4.0, 9)),
        };
        metrics.register(
            "store_commit_duration_seconds",
            "Time to commit a transaction with writes, until it is durable (commits that do not wait for the disk are not timed)",
            this.commit_time.clone(),
        );
        metrics.register(
            "store_transaction_retries_total",
            "Transaction attempts run again, by reason (conflict, too_old, unknown_result, disconnected, foundationdb)",
            this.retries.clone(),
        );
        metrics.register(
            "store_transaction_failures_total",
            "Transactions that failed for good, by reason (retries_exhausted, storage, corrupt, closed, limits exceeded)",
            this.failures.clone(),
        );
        metrics.register(
            "store_log_syncs_total",
            "Syncs of the embedded store's write-ahead log (each makes a group of commits durable; FoundationDB reports none)",
            this.log_syncs.clone(),
        );
        metrics.register(
            "store_commit_group_transactions",
            "Transactions the embedded store committed together in one write-ahead log record (FoundationDB reports none)",
            this.group_size.clone(),
        );
        metrics.register(
            "store_checkpoint_duration_seconds",
            "Time the embedded store took to make its write-ahead log durable in its database file; commits wait meanwhile (FoundationDB reports none)",
            this.checkpoint_time.clone(),
        );
        // The reasons worth an alert are served from the start, at 0, so that rates see them:
        // conflicts (pods contending), and transactions lost to contention or to the disk.
        drop(
            this.retries
                .get_or_create(&ReasonLabel { reason: "conflict" }),
        );
        for reason in ["retries_exhausted", "storage"] {
            drop(this.failures.get_or_create(&ReasonLabel { reason }));
        }
        this
    }
}

impl StoreObserver for StoreMetrics {
    fn committed(&self, took: Duration) {
        self.commit_time.observe(took.as_secs_f64());
    }

    fn retried(&self, error: &StoreError) {
        self.retries
            .get_or_create(&ReasonLabel {
                reason: error.kind(),
            })
            .inc();
    }

    fn failed(&self, error: &StoreError) {
        self.failures
            .get_or_create(&ReasonLabel {
                reason: error.kind(),
            })
            .inc();
    }

    fn log_synced(&self) {
        self.log_syncs.inc();
    }

    fn group_committed(&self, transactions: usize) {
        self.group_size.observe(transactions as f64);
    }

    fn checkpointed(&self, took: Duration) {
        self.checkpoint_time.observe(took.as_secs_f64());
    }
}
