//! Dead destinations, after Postfix's: a destination (a `remote.<id>`) whose connections
//! failed `failed-cohort-limit` times in a row is dead for a backoff that doubles with each
//! failed probe, from `min-backoff` up to `max-backoff`. While dead, its recipients are
//! deferred without a connection; once the backoff ends, one delivery probes it, and the
//! others wait while the probe runs. A connection that succeeds clears it all.
//!
//! The state is one key per destination, so every scheduler sharing the store skips the same
//! dead destinations and lets one probe through. Each transaction reads what it changes, so
//! two schedulers reporting at once conflict and one retries on the other's result.

use std::sync::Arc;
use std::time::Duration;

use ferrymail_config::model::dead_destinations::DeadDestinations;
use ferrymail_store::{RangeOptions, Store, StoreError, Transaction, tuple};

use crate::model::keys::Keys;

/// How long a delivery held back by another's probe waits before it asks again: the probe
/// may succeed long before its hold ends.
pub const PROBE_WAIT: Duration = Duration::from_secs(2);

/// What is known of a destination's connections.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Health {
    /// Connections failed in a row since the last success.
    pub failures: u64,
    /// While dead, until when (Unix milliseconds); 0 when not dead.
    pub dead_until_ms: u64,
    /// The backoff of the current death; 0 when never dead since the last success.
    pub backoff_ms: u64,
    /// While a probe runs, until when other deliveries wait for it.
    pub probe_until_ms: u64,
    /// The last connection failure.
    pub reason: String,
}

impl Health {
    fn decode(value: &[u8]) -> Option<Self> {
        let (failures, dead_until_ms, backoff_ms, probe_until_ms, reason) =
            tuple::unpack::<(u64, u64, u64, u64, String)>(value).ok()?;
        Some(Self {
            failures,
            dead_until_ms,
            backoff_ms,
            probe_until_ms,
            reason,
        })
    }

    fn encode(&self) -> Vec<u8> {
        tuple::pack(&(
            self.failures,
            self.dead_until_ms,
            self.backoff_ms,
            self.probe_until_ms,
            self.reason.as_str(),
        ))
    }

    /// Whether the destination is suspended at `now_ms`: dead, or being probed.
    pub fn suspended_at(&self, now_ms: u64) -> bool {
        self.dead_until_ms > now_ms || self.probe_until_ms > now_ms
    }
}

/// Whether a delivery may connect to a destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Connect; `probe` when this delivery is the one probing a dead destination.
    Go {
        /// This delivery probes the destination.
        probe: bool,
    },
    /// Do not connect before `until_ms`: the destination is dead (or probed) for `reason`.
    Suspended {
        /// When to ask again.
        until_ms: u64,
        /// Its last connection failure.
        reason: String,
    },
}

/// What became of a delivery's connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Report {
    /// It connected.
    Reached,
    /// It could not connect, for this reason.
    Failed(String),
}

/// Asks whether a delivery may connect to `destination` at `now_ms`; a probe, when granted,
/// holds the others back for `probe_ms`.
pub(crate) async fn admit(
    store: &Store,
    keys: &Arc<Keys>,
    destination: &str,
    now_ms: u64,
    probe_ms: u64,
) -> Result<Admission, StoreError> {
    let (keys, destination) = (keys.clone(), Arc::new(destination.to_owned()));
    store
        .transact(move |tx| {
            let (keys, destination) = (keys.clone(), destination.clone());
            Box::pin(async move {
                let key = keys.dead(&destination);
                let Some(mut health) = read(tx, &key).await? else {
                    return Ok(Admission::Go { probe: false });
                };
                if health.dead_until_ms > now_ms {
                    return Ok(Admission::Suspended {
                        until_ms: health.dead_until_ms,
                        reason: health.reason,
                    });
                }
                if health.probe_until_ms > now_ms {
                    let wait = now_ms.saturating_add(millis(PROBE_WAIT));
                    return Ok(Admission::Suspended {
                        until_ms: wait.min(health.probe_until_ms),
                        reason: health.reason,
                    });
                }
                if health.dead_until_ms == 0 {
                    return Ok(Admission::Go { probe: false });
                }
                // The backoff ended: this delivery probes, the others wait for it.
                health.probe_until_ms = now_ms.saturating_add(probe_ms);
                tx.set(&key, &health.encode())?;
                Ok(Admission::Go { probe: true })
            })
        })
        .await
}

/// Records what became of a connection to `destination` at `now_ms`; the health after it.
pub(crate) async fn report(
    store: &Store,
    keys: &Arc<Keys>,
    destination: &str,
    outcome: Report,
    (now_ms, limits): (u64, DeadDestinations),
) -> Result<Health, StoreError> {
    let (keys, destination) = (keys.clone(), Arc::new(destination.to_owned()));
    let outcome = Arc::new(outcome);
    store
        .transact(move |tx| {
            let (keys, destination, outcome) = (keys.clone(), destination.clone(), outcome.clone());
            Box::pin(async move {
                let key = keys.dead(&destination);
                let reason = match &*outcome {
                    Report::Reached => {
                        tx.clear(&key)?;
                        return Ok(Health::default());
                    }
                    Report::Failed(reason) => reason,
                };
                let before = read(tx, &key).await?.unwrap_or_default();
                let after = failed(before, reason, now_ms, &limits);
                tx.set(&key, &after.encode())?;
                Ok(after)
            })
        })
        .await
}

/// The health after one more failed connection at `now_ms`.
fn failed(mut health: Health, reason: &str, now_ms: u64, limits: &DeadDestinations) -> Health {
    health.failures = health.failures.saturating_add(1);
    health.reason = reason.to_owned();
    health.probe_until_ms = 0;
    if health.failures < u64::from(limits.failed_cohort_limit) {
        return health;
    }
    let (min, max) = (millis(limits.min_backoff), millis(limits.max_backoff));
    health.backoff_ms = if health.backoff_ms == 0 {
        min
    } else {
        health.backoff_ms.saturating_mul(2).clamp(min, max)
    };
    health.dead_until_ms = now_ms.saturating_add(health.backoff_ms);
    health
}

/// Every destination with failed connections, with its health.
pub(crate) async fn list(
    store: &Store,
    keys: &Arc<Keys>,
) -> Result<Vec<(String, Health)>, StoreError> {
    let keys = keys.clone();
    store
        .transact(move |tx| {
            let keys = keys.clone();
            Box::pin(async move {
                let page = tx
                    .get_range(&keys.all_dead(), RangeOptions::default())
                    .await?;
                Ok(page
                    .pairs
                    .iter()
                    .filter_map(|pair| {
                        Some((keys.parse_dead(&pair.key)?, Health::decode(&pair.value)?))
                    })
                    .collect())
            })
        })
        .await
}

async fn read(tx: &Transaction, key: &[u8]) -> Result<Option<Health>, StoreError> {
    Ok(tx.get(key).await?.and_then(|v| Health::decode(&v)))
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const LIMITS: DeadDestinations = DeadDestinations {
        failed_cohort_limit: 2,
        min_backoff: Duration::from_secs(10),
        max_backoff: Duration::from_secs(25),
    };

    #[test]
    fn a_cohort_marks_it_dead_and_failed_probes_double_the_backoff_up_to_the_max() {
        let one = failed(Health::default(), "refused", 1_000, &LIMITS);
        assert_eq!(
            (one.failures, one.dead_until_ms),
            (1, 0),
            "below the cohort"
        );
        let dead = failed(one, "refused", 2_000, &LIMITS);
        assert_eq!((dead.backoff_ms, dead.dead_until_ms), (10_000, 12_000));
        let again = failed(dead, "timeout", 13_000, &LIMITS);
        assert_eq!((again.backoff_ms, again.dead_until_ms), (20_000, 33_000));
        assert_eq!(again.reason, "timeout");
        let capped = failed(again, "timeout", 40_000, &LIMITS);
        assert_eq!((capped.backoff_ms, capped.dead_until_ms), (25_000, 65_000));
    }
}
