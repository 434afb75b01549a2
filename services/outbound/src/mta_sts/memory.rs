//! What a process remembers of MTA-STS policies beyond its own memory: RFC 8461 §5.1 has a
//! sender remember a policy for its `max_age`, and that memory is what protects delivery
//! when an attacker blocks the policy fetch and strips STARTTLS. Kept only in a process, it
//! would be lost at every restart; the caller keeps it where every process finds it (the
//! queue's store).

use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;

use super::policy::Policy;

/// A policy as remembered: the record id it was fetched for, and when it expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remembered {
    /// The `id` of the `_mta-sts` record the policy was fetched for.
    pub id: String,
    /// The policy.
    pub policy: Policy,
    /// When its `max_age` runs out (Unix milliseconds).
    pub expires_ms: u64,
}

/// Where policies are remembered across processes and restarts.
#[async_trait]
pub trait PolicyMemory: Send + Sync {
    /// The policy remembered for `domain`, if it has not expired at `now_ms` (Unix
    /// milliseconds); `Err` says why the memory cannot answer.
    async fn get(&self, domain: &str, now_ms: u64) -> Result<Option<Remembered>, String>;
    /// Remembers `policy` for `domain`, replacing what was there.
    async fn put(&self, domain: &str, policy: &Remembered) -> Result<(), String>;
}

/// Milliseconds since the Unix epoch of `time` (0 before it).
pub(crate) fn unix_millis(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
