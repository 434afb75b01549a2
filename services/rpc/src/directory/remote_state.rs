//! [`RemoteState`]: whether a `remote.<id>` host answered the directory-proxy's last probe.

use std::time::SystemTime;

/// Reachable, or not and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reachability {
    /// Connected, greeted, TLS as configured, EHLO/LHLO or CAPABILITY answered.
    Reachable,
    /// A step failed.
    Unreachable {
        /// What failed, for a person to read (e.g. "connection refused").
        reason: String,
    },
}

/// What the directory-proxy last found about one remote host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteState {
    /// The `<id>` of `remote.<id>`.
    pub remote: String,
    /// Reachable or not.
    pub reachability: Reachability,
    /// When it was found.
    pub checked_at: SystemTime,
}

impl RemoteState {
    /// Whether the host was reachable.
    pub fn is_reachable(&self) -> bool {
        self.reachability == Reachability::Reachable
    }
}
