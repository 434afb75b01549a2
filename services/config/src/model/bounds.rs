//! Range checks shared by several sections.

use std::time::Duration;

use crate::reader::TableReader;

/// Refuses a zero where at least one is needed (a pool of no connections).
pub(crate) fn require_positive(t: &TableReader<'_>, name: &str, value: Option<u32>) {
    if value == Some(0) {
        t.report(name, "must be at least 1");
    }
}

/// Refuses a zero time limit, which would fail every operation at once.
pub(crate) fn require_nonzero(t: &TableReader<'_>, name: &str, value: Option<Duration>) {
    if value.is_some_and(|d| d.is_zero()) {
        t.report(name, "must be longer than zero");
    }
}
