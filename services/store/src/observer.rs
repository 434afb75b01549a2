//! What a store tells its owner about transactions, for metrics: the store itself knows
//! nothing of Prometheus.

use std::fmt::Debug;
use std::time::Duration;

use crate::error::StoreError;

/// Receives the outcome of every transaction [`crate::Store::transact`] runs. Called on the
/// transaction's task, or on the embedded store's committer thread for what concerns its log:
/// implementations only record (atomics), never block.
pub trait StoreObserver: Debug + Send + Sync {
    /// A transaction with writes committed durably; its commit took `took`. Read-only and
    /// relaxed transactions are not timed.
    fn committed(&self, took: Duration);
    /// An attempt failed with the retryable `error` and runs again.
    fn retried(&self, error: &StoreError);
    /// A transaction failed for good with `error` (its closure's own aborts are not reported).
    fn failed(&self, error: &StoreError);
    /// The embedded store synced its write-ahead log: once per group commit that held a
    /// transaction whose durability was not relaxed. FoundationDB does not report this.
    fn log_synced(&self) {}
    /// The embedded store committed `transactions` together: one log record, synced when any
    /// of them was durable. FoundationDB does not report this.
    fn group_committed(&self, _transactions: usize) {}
    /// The embedded store made its log durable in its database file and started the log
    /// over, which took `took`; commits wait meanwhile. FoundationDB does not report this.
    fn checkpointed(&self, _took: Duration) {}
}
