//! Warnings about a zone that would otherwise be logged for every client: at most one per
//! zone and kind a minute, so that a refused resolver does not flood the log.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The shortest time between two warnings of one kind about one zone.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// When each (zone, kind) was last warned about.
#[derive(Default)]
pub(crate) struct RateLimitedWarnings {
    last: Mutex<HashMap<(String, &'static str), Instant>>,
}

impl RateLimitedWarnings {
    /// Whether a warning of `kind` about `zone` may be logged now; records it if so.
    pub(crate) fn due(&self, zone: &str, kind: &'static str) -> bool {
        let now = Instant::now();
        let mut last = self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = (zone.to_owned(), kind);
        if last
            .get(&key)
            .is_some_and(|&at| now.duration_since(at) < WARN_EVERY)
        {
            return false;
        }
        last.insert(key, now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_warning_per_zone_and_kind_a_minute() {
        let warnings = RateLimitedWarnings::default();
        assert!(warnings.due("bl.example", "error_answer"));
        assert!(!warnings.due("bl.example", "error_answer"));
        assert!(warnings.due("bl.example", "failed"));
        assert!(warnings.due("other.example", "error_answer"));
    }
}
