//! Dead MX host addresses: MX delivery asks before connecting to an address and tells what
//! became of each connection, kept in the store like a dead relay's
//! (`queue.outbound.dead.*`), so every scheduler passes over the same dead addresses.

use std::net::IpAddr;
use std::time::SystemTime;

use async_trait::async_trait;
use ferrymail_config::model::dead_destinations::DeadDestinations;
use ferrymail_outbound::host_health::{Connection, HostHealth, Suspension};

use crate::model::queue_id::unix_millis;

use super::Scheduler;

/// The store key's name of MX host address `ip` as a destination.
fn mx_destination(ip: IpAddr) -> String {
    format!("mx:[{ip}]")
}

/// The memory of dead MX host addresses, as one scheduler sees it.
pub(super) struct MxHosts<'a> {
    /// Whose store and metrics.
    pub(super) scheduler: &'a Scheduler,
    /// `queue.outbound.dead.*`.
    pub(super) dead: DeadDestinations,
}

#[async_trait]
impl HostHealth for MxHosts<'_> {
    async fn admit(&self, ip: IpAddr) -> Result<(), Suspension> {
        let now_ms = unix_millis(SystemTime::now());
        match self.scheduler.admission(&mx_destination(ip), now_ms).await {
            Some((until_ms, reason)) => Err(Suspension { until_ms, reason }),
            None => Ok(()),
        }
    }

    async fn report(&self, ip: IpAddr, connection: Connection) {
        let destination = mx_destination(ip);
        self.scheduler
            .note_destination(self.dead, &destination, &connection)
            .await;
    }
}
