//! `queue.outbound.dead.*`: when a destination whose connections keep failing is marked
//! dead, and for how long, after Postfix's dead-destination detection
//! (`destination_concurrency_failed_cohort_limit`, `minimal_backoff_time`,
//! `maximal_backoff_time`).

use std::time::Duration;

use super::bounds::require_nonzero;
use crate::keys;
use crate::reader::TableReader;

/// `queue.outbound.dead.*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeadDestinations {
    /// `failed-cohort-limit`: failed connections in a row that mark a destination dead; `0`
    /// for never.
    pub failed_cohort_limit: u32,
    /// `min-backoff`: how long a destination first stays dead.
    pub min_backoff: Duration,
    /// `max-backoff`: the longest it stays dead, each failed probe doubling the backoff.
    pub max_backoff: Duration,
}

impl Default for DeadDestinations {
    /// Postfix's defaults.
    fn default() -> Self {
        Self {
            failed_cohort_limit: 1,
            min_backoff: Duration::from_secs(300),
            max_backoff: Duration::from_secs(4000),
        }
    }
}

impl DeadDestinations {
    /// Whether destinations are ever marked dead.
    pub fn enabled(&self) -> bool {
        self.failed_cohort_limit > 0
    }
}

pub(crate) fn read(outbound: &TableReader<'_>) -> Option<DeadDestinations> {
    let t = outbound.table("dead");
    let failed_cohort_limit = t.get(&keys::QUEUE_OUTBOUND_DEAD_FAILED_COHORT_LIMIT);
    let min_backoff = t.get(&keys::QUEUE_OUTBOUND_DEAD_MIN_BACKOFF);
    let max_backoff = t.get(&keys::QUEUE_OUTBOUND_DEAD_MAX_BACKOFF);
    require_nonzero(&t, "min-backoff", min_backoff);
    require_nonzero(&t, "max-backoff", max_backoff);
    if let (Some(min), Some(max)) = (min_backoff, max_backoff)
        && max < min
    {
        t.report(
            "max-backoff",
            format!("must be at least min-backoff ({min:?})"),
        );
        return None;
    }
    Some(DeadDestinations {
        failed_cohort_limit: failed_cohort_limit?,
        min_backoff: min_backoff?,
        max_backoff: max_backoff?,
    })
}
