//! Inbound limiters (`queue.limiter.inbound.<id>`): the counters the ingress takes from,
//! kept by the directory-proxy in the shared store.

use std::time::Duration;

/// Most values in a [`LimitKey`].
pub const MAX_KEY_VALUES: usize = 16;
/// Longest value of a [`LimitKey`], in bytes.
pub const MAX_KEY_VALUE_LEN: usize = 1024;

/// One counter of a limiter: its id and the values of its key, in the order of its `key`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LimitKey {
    /// The `<id>` of `queue.limiter.inbound.<id>`.
    pub limiter: String,
    /// The values of the limiter's key for this session or command.
    pub values: Vec<String>,
}

/// Take one event from a rate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateRequest {
    /// The counter.
    pub key: LimitKey,
    /// Events allowed per period.
    pub count: u64,
    /// The period.
    pub period: Duration,
}

/// Take, or renew, a concurrency slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotRequest {
    /// The counter.
    pub key: LimitKey,
    /// Slots allowed at once.
    pub max: u32,
    /// How long the slot lasts without a renewal.
    pub lease: Duration,
    /// The caller's unique name for the slot; taking it again renews it.
    pub slot: String,
}

/// What a limiter answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitAnswer {
    /// Granted and counted.
    Admitted,
    /// Over the limit.
    Refused {
        /// Time until the window or a slot frees, as far as known.
        retry_after: Duration,
    },
}

impl LimitKey {
    /// What is wrong with the key, if anything: the contract bounds it.
    pub fn problem(&self) -> Option<String> {
        if self.limiter.is_empty() {
            return Some("limiter: missing".into());
        }
        if self.values.len() > MAX_KEY_VALUES {
            return Some(format!("values: more than {MAX_KEY_VALUES}"));
        }
        self.values
            .iter()
            .any(|v| v.len() > MAX_KEY_VALUE_LEN)
            .then(|| format!("values: one is longer than {MAX_KEY_VALUE_LEN} bytes"))
    }
}
