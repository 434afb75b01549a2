//! What became of a connection to a next hop, and the caller's memory of next hops whose
//! connections keep failing (dead destinations): outbound delivery asks it before connecting
//! to an MX host address and tells it what came of each connection, without knowing where
//! it is kept.

use std::net::IpAddr;

use async_trait::async_trait;

/// The start of the reason of a recipient deferred because its next hop is dead.
pub const SUSPENDED: &str = "delivery temporarily suspended";

/// What became of the connection to a next hop: only a failure to open a session counts
/// against it, never a recipient's reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Connection {
    /// A session was opened, or a kept one carried the message: the next hop is reachable.
    Reached,
    /// Opening a session failed: the connection was refused or timed out, the greeting was
    /// not `220`, or EHLO or the TLS handshake failed.
    Failed(String),
    /// Nothing tells: no session was needed or tried (the deadline passed first), or what
    /// failed was ours (credentials, a TLS requirement the host does not offer).
    Unknown,
}

/// A next hop not to connect to now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Suspension {
    /// Until when (Unix milliseconds).
    pub until_ms: u64,
    /// Its last connection failure.
    pub reason: String,
}

/// The caller's memory of MX host addresses whose connections keep failing.
#[async_trait]
pub trait HostHealth: Send + Sync {
    /// `Err` when the address must not be connected to now.
    async fn admit(&self, ip: IpAddr) -> Result<(), Suspension>;

    /// Records what became of a connection to the address.
    async fn report(&self, ip: IpAddr, connection: Connection);
}

/// What the failure to open a session says of the next hop: the network, the greeting or
/// TLS failed; anything else was not the host being unreachable.
pub(crate) fn of_opening(error: &crate::DeliveryError) -> Connection {
    use crate::DeliveryError as E;
    match error {
        E::Io(_) | E::Tls(_) | E::Timeout(_) | E::Greeting(_) | E::Protocol(_) => {
            Connection::Failed(error.to_string())
        }
        _ => Connection::Unknown,
    }
}
