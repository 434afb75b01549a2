//! gRPC contracts between ferrymail roles.
//!
//! Each service is a trait with domain types ([`directory::DirectoryService`],
//! [`queue::QueueService`]). `ferrymail all` wires local implementations in-process; split roles
//! use the tonic clients ([`directory::GrpcDirectory`], [`queue::GrpcQueue`]) of the same trait,
//! and serve an implementation with [`directory::server`] / [`queue::server`]. Nothing here knows
//! about stores, configuration or SMTP sessions.

pub mod cluster_tls;
pub mod directory;
mod endpoint;
mod error;
mod malformed;
pub mod proto;
pub mod queue;
mod status;
mod trace_propagation;

pub use endpoint::CONNECT_TIMEOUT;
pub use error::RpcError;
pub use trace_propagation::{PropagateTrace, server_span};
