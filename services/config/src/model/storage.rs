//! `storage.data`: which of the `store.<id>` holds the queue and the shared lookup cache.

use super::references::{Known, check_store};
use crate::keys;
use crate::reader::TableReader;

/// `storage.data`.
pub(crate) fn read(root: &TableReader<'_>, known: &Known<'_>) -> Option<String> {
    let t = root.table("storage");
    let id = t.get(&keys::STORAGE_DATA)?;
    if let Some(problem) = check_store(known, &id) {
        t.report("data", problem);
    }
    Some(id)
}
