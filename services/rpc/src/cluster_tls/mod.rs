//! Mutual TLS between the roles: each process proves its role with a certificate the
//! cluster's authorities issued (a DNS name `<role>.<domain>`), servers answer each RPC only
//! to the roles the permission table names, and clients check that the server is the role
//! they meant to call. A process's credentials can be replaced while it runs (a rotated
//! certificate); connections made afterwards use the new ones.

mod client_side;
mod credentials;
mod permissions;
mod role;
mod server_side;

use std::sync::Arc;

use arc_swap::ArcSwap;

pub(crate) use client_side::TlsConnector;
pub use credentials::{Credentials, TlsSetupError};
pub use permissions::{Permissions, RefusalMetrics, allowed_roles};
pub use role::{Caller, Role};
pub use server_side::{HandshakeMetrics, Peer, PeerStream, incoming};

/// The credentials a process uses now, shared by its gRPC servers and clients.
#[derive(Clone, Debug)]
pub struct ClusterTls {
    current: Arc<ArcSwap<Credentials>>,
}

impl ClusterTls {
    /// Starts with `credentials`.
    pub fn new(credentials: Credentials) -> Self {
        Self {
            current: Arc::new(ArcSwap::from_pointee(credentials)),
        }
    }

    /// Uses `credentials` for every connection made from now on.
    pub fn replace(&self, credentials: Credentials) {
        self.current.store(Arc::new(credentials));
    }

    /// The credentials in force.
    pub(crate) fn current(&self) -> Arc<Credentials> {
        self.current.load_full()
    }
}

/// How a process speaks gRPC to the other roles.
#[derive(Clone, Debug)]
pub enum ChannelSecurity {
    /// Plain text (`http://`): on loopback or in tests only.
    PlainText,
    /// Mutual TLS (`https://`) with these credentials.
    MutualTls(ClusterTls),
}
