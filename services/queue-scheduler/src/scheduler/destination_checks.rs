//! Before a delivery connects: the pauses in force and, for a relay, whether it is dead
//! (`queue.outbound.dead.*`); after it, what became of its connection, which marks the
//! relay dead or alive for every scheduler.

use std::time::SystemTime;

use ferrymail_config::model::dead_destinations::DeadDestinations;
use ferrymail_outbound::Outcome;
use ferrymail_outbound::host_health::Connection;
use ferrymail_rpc::queue::Recipient;

use crate::destination_gate::{Admitted, PAUSE_RECHECK, split_paused, suspended_reason};
use crate::model::dead_destination::{self, Admission, Report};
use crate::model::paused::{self, Pauses};
use crate::model::queue_id::unix_millis;
use crate::route::Route;

use super::{Scheduler, Settings, millis};

/// The store key's name of relay `id` as a destination.
fn relay_destination(id: &str) -> String {
    format!("remote.{id}")
}

impl Scheduler {
    /// The pauses in force, or why they could not be read.
    pub(super) async fn pauses(&self) -> Result<Pauses, String> {
        paused::in_force(&self.queue.store, &self.queue.keys)
            .await
            .map_err(|error| format!("cannot check the paused destinations: {error}"))
    }

    /// Splits `recipients` of `route` at `now_ms` into those that may be delivered and the
    /// outcomes of those held back: paused, or whose relay is dead.
    pub(super) async fn admitted(
        &self,
        settings: &Settings,
        (route, pauses): (&Route, &Result<Pauses, String>),
        recipients: Vec<(u32, Recipient)>,
        now_ms: u64,
    ) -> Admitted {
        let pauses = match pauses {
            Ok(pauses) => pauses,
            Err(reason) => {
                let failed = recipients
                    .into_iter()
                    .map(|(index, _)| (index, Outcome::TempFailed(reason.clone())))
                    .collect();
                return (Vec::new(), failed);
            }
        };
        let remote = match route {
            Route::Remote(id) => Some(id.as_str()),
            Route::Mx => None,
        };
        let until_ms = now_ms.saturating_add(millis(PAUSE_RECHECK));
        let (through, held) = split_paused(pauses, remote, recipients, until_ms);
        self.queue.metrics.deferred("paused", held.len());
        let (Some(id), false) = (remote, through.is_empty()) else {
            return (through, held);
        };
        if !settings.dead.enabled() {
            return (through, held);
        }
        match self.admission(&relay_destination(id), now_ms).await {
            Some((until_ms, reason)) => {
                tracing::debug!(remote = %id, %reason, "relay is dead: recipients deferred");
                self.queue.metrics.deferred("suspended", through.len());
                let reason = suspended_reason(&reason);
                let suspended = through.into_iter().map(|(index, _)| {
                    let reason = reason.clone();
                    (index, Outcome::Deferred { until_ms, reason })
                });
                (Vec::new(), held.into_iter().chain(suspended).collect())
            }
            None => (through, held),
        }
    }

    /// When `destination` is dead at `now_ms`: until when, and its last failure. A store that
    /// cannot tell lets the delivery through: a failed connection costs less than mail held
    /// back by a fault of our own.
    pub(super) async fn admission(&self, destination: &str, now_ms: u64) -> Option<(u64, String)> {
        let probe_ms = millis(self.options.lease);
        let store = &self.queue.store;
        match dead_destination::admit(store, &self.queue.keys, destination, now_ms, probe_ms).await
        {
            Ok(Admission::Go { probe }) => {
                if probe {
                    tracing::info!(%destination, "backoff ended: one delivery probes the destination");
                }
                None
            }
            Ok(Admission::Suspended { until_ms, reason }) => Some((until_ms, reason)),
            Err(error) => {
                tracing::warn!(%destination, %error, "cannot read whether the destination is dead");
                None
            }
        }
    }

    /// Records what became of the connection to relay `id`.
    pub(super) async fn note_connection(
        &self,
        settings: &Settings,
        id: &str,
        connection: &Connection,
    ) {
        if settings.dead.enabled() {
            let destination = relay_destination(id);
            self.note_destination(settings.dead, &destination, connection)
                .await;
        }
    }

    /// Records what became of a connection to `destination`: a failure counts towards
    /// marking it dead, a success clears its failures.
    pub(super) async fn note_destination(
        &self,
        dead: DeadDestinations,
        destination: &str,
        connection: &Connection,
    ) {
        let report = match connection {
            Connection::Reached => Report::Reached,
            Connection::Failed(reason) => Report::Failed(reason.clone()),
            Connection::Unknown => return,
        };
        let now_ms = unix_millis(SystemTime::now());
        let keys = &self.queue.keys;
        let limits = (now_ms, dead);
        match dead_destination::report(&self.queue.store, keys, destination, report, limits).await {
            Ok(health) if health.dead_until_ms > now_ms => tracing::warn!(
                %destination,
                failures = health.failures,
                backoff_ms = health.backoff_ms,
                reason = %health.reason,
                "destination marked dead: deliveries suspended until its backoff ends"
            ),
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(%destination, %error, "cannot record the destination's connection");
            }
        }
    }
}
