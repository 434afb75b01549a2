//! directory-proxy: authentication and recipient validation delegated to remote IMAP, SMTP
//! and LMTP servers (`remote.<id>` and `directory.<name>`), with pooled connections, a
//! two-level cache (in-process and shared in the store) and single-flight lookups; and a
//! prober that checks every `remote.<id>` each `probe.interval` and reports what it found
//! (the `directory_remote_up` gauge, the `RemoteStates` RPC the operator reads).

mod auth_failures;
mod cache;
mod cache_keys;
mod connection;
mod error;
mod inbound_limits;
mod lists;
mod metrics;
mod pool;
mod prober;
mod remote_states;
mod service;
mod single_flight;
mod sliding_window;
pub mod target;

pub use error::ConnectionError;
pub use metrics::DirectoryMetrics;
pub use service::{DirectoryProxy, ProxyError};
