//! What the directory-proxy last found about each `remote.<id>`: reachable or not, when, and
//! why not. Probes and lookups write it; the `RemoteStates` RPC and the
//! `directory_remote_up` gauge read it.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::SystemTime;

use ferrymail_rpc::directory::{Reachability, RemoteState};

use crate::metrics::DirectoryMetrics;
use crate::target::Target;

/// The configured remotes and the last finding of each.
#[derive(Default)]
struct Inner {
    /// The remotes of the configuration in force, by id.
    targets: BTreeMap<String, Target>,
    /// The last finding per id.
    states: BTreeMap<String, RemoteState>,
}

/// The last finding per remote id.
pub(crate) struct RemoteStates {
    inner: Mutex<Inner>,
    metrics: DirectoryMetrics,
}

impl RemoteStates {
    pub(crate) fn new(metrics: DirectoryMetrics) -> Self {
        Self {
            inner: Mutex::default(),
            metrics,
        }
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Takes the remotes of a new configuration: the findings of removed remotes, and of
    /// changed ones (an older finding says nothing about a new address), are forgotten.
    pub(crate) fn configure(&self, targets: BTreeMap<String, Target>) {
        let mut inner = self.inner();
        let stale: Vec<String> = inner
            .states
            .keys()
            .filter(|id| inner.targets.get(*id) != targets.get(*id))
            .cloned()
            .collect();
        for id in stale {
            inner.states.remove(&id);
            self.metrics.forget_remote(&id);
        }
        inner.targets = targets;
    }

    /// Records that `remote`, at `target`, answered (`Ok`) or why it did not, as of now. A
    /// probe or lookup that began before a reload changed or removed the remote is ignored.
    pub(crate) fn record(&self, remote: &str, target: &Target, outcome: Result<(), String>) {
        let reachability = match outcome {
            Ok(()) => Reachability::Reachable,
            Err(reason) => Reachability::Unreachable { reason },
        };
        let mut inner = self.inner();
        if inner.targets.get(remote) != Some(target) {
            return;
        }
        let changed = inner
            .states
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
        let up = reachability == Reachability::Reachable;
        inner.states.insert(
            remote.to_string(),
            RemoteState {
                remote: remote.to_string(),
                reachability,
                checked_at: SystemTime::now(),
            },
        );
        self.metrics.remote_up(remote, up);
    }

    /// Every finding, in id order.
    pub(crate) fn snapshot(&self) -> Vec<RemoteState> {
        self.inner().states.values().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(states: &RemoteStates) -> Vec<String> {
        states.snapshot().into_iter().map(|s| s.remote).collect()
    }

    #[test]
    fn findings_of_changed_removed_or_unknown_remotes_are_dropped() {
        let states = RemoteStates::new(DirectoryMetrics::unregistered());
        let (a, b) = (Target::loopback("a", 2525), Target::loopback("b", 2526));
        states.configure(BTreeMap::from([
            ("a".to_string(), a.clone()),
            ("b".to_string(), b.clone()),
        ]));
        states.record("a", &a, Ok(()));
        states.record("b", &b, Err("refused".into()));
        states.record("c", &b, Ok(()));
        assert_eq!(ids(&states), ["a", "b"]);

        // `a` moves to another port; `b` stays as it was.
        let moved = Target::loopback("a", 2600);
        states.configure(BTreeMap::from([
            ("a".to_string(), moved.clone()),
            ("b".to_string(), b.clone()),
        ]));
        assert_eq!(ids(&states), ["b"]);
        // A probe of the old address that ends now is not taken for the new one.
        states.record("a", &a, Ok(()));
        assert_eq!(ids(&states), ["b"]);
        states.record("a", &moved, Err("timed out".into()));
        assert_eq!(ids(&states), ["a", "b"]);

        states.configure(BTreeMap::from([("a".to_string(), moved)]));
        assert_eq!(ids(&states), ["a"]);
    }
}
