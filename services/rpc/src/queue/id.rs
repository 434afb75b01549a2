//! [`QueueId`]: names one queued message.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

/// Identifier of a queued message, as assigned by the queue.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueueId(String);

impl QueueId {
    /// Wraps an identifier.
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    /// A fresh id of the queue's form (a ULID: the time `now`, then 80 random bits), for a
    /// client that names its message before queueing it: the ingress writes it into the
    /// `Received` header it adds.
    pub fn generate(now: SystemTime) -> Self {
        let millis = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .min((1 << 48) - 1);
        let random = rand::random::<u128>() & ((1u128 << 80) - 1);
        Self(ulid::Ulid::from_parts(millis, random).to_string())
    }

    /// The identifier as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The identifier, unwrapped.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for QueueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
