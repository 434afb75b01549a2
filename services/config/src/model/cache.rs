//! `cache.entries` and `cache.ttl.{positive,negative}` of remotes and directories.

use std::time::Duration;

use crate::key::Key;
use crate::reader::TableReader;

/// Lookup cache settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheSettings {
    /// Most entries in the in-process LRU.
    pub entries: u64,
    /// Lifetime of a positive answer.
    pub ttl_positive: Duration,
    /// Lifetime of a negative answer.
    pub ttl_negative: Duration,
}

/// Reads a `cache` table; `ttl` may be a table or Stalwart's inline `{ positive, negative }`.
pub(crate) fn read_cache(
    t: &TableReader<'_>,
    entries: &Key<u64>,
    positive: &Key<Duration>,
    negative: &Key<Duration>,
) -> Option<CacheSettings> {
    let entries = t.get(entries);
    let ttl = t.table("ttl");
    let ttl_positive = ttl.get(positive);
    let ttl_negative = ttl.get(negative);
    Some(CacheSettings {
        entries: entries?,
        ttl_positive: ttl_positive?,
        ttl_negative: ttl_negative?,
    })
}
