//! Running a session's filters in order at each stage.

use super::Filter;
use crate::Shared;
use crate::settings::Settings;

/// The filters of one session, in the order they are asked: milters by id, then MTA hooks
/// by id.
pub(crate) fn session_filters(shared: &Shared, settings: &Settings) -> Vec<Box<dyn Filter>> {
    let mut filters = Vec::new();
    filters.extend(crate::hook::session_hooks(shared, settings));
    filters
}
