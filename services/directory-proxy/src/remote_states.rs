//! What the directory-proxy last found about each `remote.<id>`: reachable or not, when, and
//! why not. Probes and lookups write it; the `RemoteStates` RPC and the
//! `directory_remote_up` gauge read it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::SystemTime;

use ferrymail_rpc::directory::{Reachability, RemoteState};

use crate::metrics::DirectoryMetrics;

/// The last finding per remote id.
pub(crate) struct RemoteStates {
    states: Mutex<BTreeMap<String, RemoteState>>,
    metrics: DirectoryMetrics,
}

impl RemoteStates {
    pub(crate) fn new(metrics: DirectoryMetrics) -> Self {
        Self {
            states: Mutex::default(),
            metrics,
        }
    }

    fn states(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, RemoteState>> {
        self.states
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records that `remote` answered (`Ok`) or why it did not, as of now.
    pub(crate) fn record(&self, remote: &str, outcome: Result<(), String>) {
        let reachability = match outcome {
            Ok(()) => Reachability::Reachable,
            Err(reason) => Reachability::Unreachable { reason },
        };
        let up = reachability == Reachability::Reachable;
        let changed = self
            .states()
            .get(remote)
            .is_none_or(|p| p.reachability != reachability);
        if changed {
            match &reachability {
                Reachability::Reachable => tracing::info!(remote, "remote host is reachable"),
                Reachability::Unreachable { reason } => {
                    tracing::warn!(remote, %reason, "remote host is unreachable");
                }
            }
        }
        self.states().insert(
            remote.to_string(),
            RemoteState {
                remote: remote.to_string(),
                reachability,
                checked_at: SystemTime::now(),
            },
        );
        self.metrics.remote_up(remote, up);
    }

    /// Forgets the remotes not in `keep` (removed from the configuration) and those in
    /// `changed` (an older finding says nothing about a new address).
    pub(crate) fn forget(&self, keep: &BTreeSet<String>, changed: &BTreeSet<String>) {
        let mut states = self.states();
        let gone: Vec<String> = states
            .keys()
            .filter(|id| !keep.contains(*id) || changed.contains(*id))
            .cloned()
            .collect();
        for id in gone {
            states.remove(&id);
            self.metrics.forget_remote(&id);
        }
    }

    /// Every finding, in id order.
    pub(crate) fn snapshot(&self) -> Vec<RemoteState> {
        self.states().values().cloned().collect()
    }
}
