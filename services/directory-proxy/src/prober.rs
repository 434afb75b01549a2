//! The prober: checks every `remote.<id>` each `probe.interval`, whether lookups use it or
//! not, so a host that went away is noticed before a lookup or a delivery needs it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::pool::Pool;
use crate::remote_states::RemoteStates;

/// The probe of one remote host.
pub(crate) struct Probe {
    /// The `<id>` of `remote.<id>`.
    remote: String,
    /// The lookup pool when the host serves lookups, else one only for probing.
    pool: Arc<Pool>,
    /// `probe.interval`.
    interval: Duration,
    /// Set while a probe runs: a slow host (up to `timeout`) is never probed twice at once.
    running: AtomicBool,
}

impl Probe {
    pub(crate) fn new(remote: &str, pool: Arc<Pool>, interval: Duration) -> Self {
        Self {
            remote: remote.to_string(),
            pool,
            interval,
            running: AtomicBool::new(false),
        }
    }

    /// The pool probed.
    pub(crate) fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }

    /// `probe.interval`.
    pub(crate) fn interval(&self) -> Duration {
        self.interval
    }

    /// Probes once, unless a probe is already running, and records the outcome.
    pub(crate) async fn run(&self, states: &RemoteStates) {
        if self.running.swap(true, Ordering::AcqRel) {
            return;
        }
        let outcome = self.pool.probe().await;
        self.running.store(false, Ordering::Release);
        let target = self.pool.target();
        match outcome {
            Some(Ok(())) => states.record(&self.remote, target, Ok(())),
            Some(Err(error)) => {
                states.record(&self.remote, target, Err(target.describe(&error)));
            }
            None => {
                tracing::debug!(remote = %self.remote, "every connection is busy with lookups; their outcomes stand for the probe");
            }
        }
    }
}

/// When each probe is due next.
#[derive(Default)]
pub(crate) struct Schedule {
    next: HashMap<String, (Arc<Probe>, Instant)>,
}

impl Schedule {
    /// The probes due at `now` (each then scheduled one interval later) and the earliest
    /// time another one is due. A probe new or replaced by a configuration change is due at
    /// once; removed ones are forgotten.
    pub(crate) fn due(
        &mut self,
        probes: &BTreeMap<String, Arc<Probe>>,
        now: Instant,
    ) -> (Vec<Arc<Probe>>, Option<Instant>) {
        self.next.retain(|id, (probe, _)| {
            probes
                .get(id)
                .is_some_and(|current| Arc::ptr_eq(current, probe))
        });
        let mut due = Vec::new();
        for (id, probe) in probes {
            let (_, at) = self
                .next
                .entry(id.clone())
                .or_insert_with(|| (probe.clone(), now));
            if *at <= now {
                due.push(probe.clone());
                *at = now + probe.interval;
            }
        }
        let earliest = self.next.values().map(|(_, at)| *at).min();
        (due, earliest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::TlsSettings;
    use crate::metrics::PoolMetrics;
    use crate::target::Target;

    fn probe(id: &str, interval: Duration) -> Arc<Probe> {
        let target = Target::loopback(id, 25);
        let pool = Arc::new(Pool::new(
            target,
            TlsSettings::new(),
            PoolMetrics::detached(),
        ));
        Arc::new(Probe::new(id, pool, interval))
    }

    fn ids(due: &[Arc<Probe>]) -> Vec<&str> {
        due.iter().map(|p| p.remote.as_str()).collect()
    }

    #[test]
    fn probes_are_due_at_once_then_each_interval() {
        let minute = Duration::from_secs(60);
        let probes = BTreeMap::from([
            ("a".to_string(), probe("a", minute)),
            ("b".to_string(), probe("b", 2 * minute)),
        ]);
        let mut schedule = Schedule::default();
        let start = Instant::now();
        let (due, next) = schedule.due(&probes, start);
        assert_eq!(ids(&due), ["a", "b"]);
        assert_eq!(next, Some(start + minute));
        let (due, _) = schedule.due(&probes, start + minute / 2);
        assert!(due.is_empty());
        let (due, next) = schedule.due(&probes, start + minute);
        assert_eq!(ids(&due), ["a"]);
        assert_eq!(next, Some(start + 2 * minute));
    }

    #[test]
    fn a_replaced_probe_is_due_at_once_and_a_removed_one_is_forgotten() {
        let minute = Duration::from_secs(60);
        let mut schedule = Schedule::default();
        let start = Instant::now();
        let first = BTreeMap::from([
            ("a".to_string(), probe("a", minute)),
            ("b".to_string(), probe("b", minute)),
        ]);
        schedule.due(&first, start);
        let second = BTreeMap::from([("a".to_string(), probe("a", minute))]);
        let (due, next) = schedule.due(&second, start + Duration::from_secs(1));
        assert_eq!(ids(&due), ["a"]);
        assert_eq!(next, Some(start + Duration::from_secs(1) + minute));
        let (_, next) = schedule.due(&BTreeMap::new(), start + Duration::from_secs(2));
        assert_eq!(next, None);
    }
}
