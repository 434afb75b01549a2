//! directory-proxy: authentication and recipient validation delegated to remote IMAP, SMTP
//! and LMTP servers (`remote.<id>` and `directory.<name>`), with pooled connections, a
//! two-level cache (in-process and shared in the store) and single-flight lookups.

mod cache;
mod connection;
mod error;
mod lists;
mod metrics;
mod pool;
mod service;
mod single_flight;
pub mod target;

pub use error::ConnectionError;
pub use metrics::DirectoryMetrics;
pub use service::{DirectoryProxy, ProxyError};
