//! The redb tables of the embedded store, and how a mutation is written into them: by a
//! commit, and by the replay of the write-ahead log when the files are opened.

use redb::{ReadableTable, TableDefinition};

use crate::error::Result;
use crate::mutation::{Mutation, add};

/// The one table every key lives in.
pub(crate) const KV: TableDefinition<&[u8], &[u8]> = TableDefinition::new("kv");
/// The store's own bookkeeping, apart from the keys users see.
pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// The key in [`META`] of the last write-ahead log record redb holds.
pub(crate) const APPLIED: &str = "wal-applied";

/// Writes one mutation into the table every key lives in.
pub(crate) fn apply(
    table: &mut redb::Table<'_, &'static [u8], &'static [u8]>,
    mutation: &Mutation,
) -> Result<()> {
    match mutation {
        Mutation::Set(key, value) => {
            table.insert(key.as_slice(), value.as_slice())?;
        }
        Mutation::Clear(key) => {
            table.remove(key.as_slice())?;
        }
        Mutation::ClearRange(range) => {
            if !range.is_empty() {
                table.retain_in(range.begin.as_slice()..range.end.as_slice(), |_, _| false)?;
            }
        }
        Mutation::Add(key, delta) => {
            let current = table.get(key.as_slice())?.map(|v| v.value().to_vec());
            table.insert(key.as_slice(), add(current.as_deref(), *delta).as_slice())?;
        }
        Mutation::CompareAndClear(key, expected) => {
            let matches = table
                .get(key.as_slice())?
                .is_some_and(|v| v.value() == expected.as_slice());
            if matches {
                table.remove(key.as_slice())?;
            }
        }
    }
    Ok(())
}
