//! A transaction of the embedded backend: a redb snapshot plus buffered mutations.

use std::sync::mpsc::Sender;

use async_trait::async_trait;
use redb::ReadOnlyTable;
use tokio::sync::oneshot;

use super::committer::{CommitRequest, Request};
use crate::backend::BackendTransaction;
use crate::error::{Result, StoreError};
use crate::mutation::Mutation;
use crate::range::{KeyRange, KeyValue, RangeOptions, RangePage};
use crate::write_buffer::WriteBuffer;

/// One entry of a redb range iterator.
type RangeEntry<'a> = std::result::Result<
    (
        redb::AccessGuard<'a, &'static [u8]>,
        redb::AccessGuard<'a, &'static [u8]>,
    ),
    redb::StorageError,
>;

pub(crate) struct EmbeddedTransaction {
    snapshot: ReadOnlyTable<&'static [u8], &'static [u8]>,
    read_version: u64,
    buffer: WriteBuffer,
    committer: Sender<Request>,
}

impl EmbeddedTransaction {
    pub(crate) fn new(
        snapshot: ReadOnlyTable<&'static [u8], &'static [u8]>,
        read_version: u64,
        committer: Sender<Request>,
    ) -> Self {
        Self {
            snapshot,
            read_version,
            buffer: WriteBuffer::new(),
            committer,
        }
    }

    fn snapshot_get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.snapshot.get(key)?.map(|v| v.value().to_vec()))
    }

    /// The committed pairs of `keys` that have a value.
    fn snapshot_pairs(&self, keys: &[Vec<u8>]) -> Result<Vec<KeyValue>> {
        let mut pairs = Vec::new();
        for key in keys {
            if let Some(value) = self.snapshot_get(key)? {
                pairs.push(KeyValue {
                    key: key.clone(),
                    value,
                });
            }
        }
        Ok(pairs)
    }

    /// Committed pairs of `range` that `hidden` does not hide, in read order, at most
    /// `wanted` (0: all).
    fn snapshot_range(
        &self,
        range: &KeyRange,
        reverse: bool,
        wanted: usize,
        hidden: impl Fn(&[u8]) -> bool,
    ) -> Result<Vec<KeyValue>> {
        let iter = self
            .snapshot
            .range(range.begin.as_slice()..range.end.as_slice())?;
        let mut out = Vec::new();
        let mut push = |entry: RangeEntry<'_>| -> Result<bool> {
            let (k, v) = entry?;
            if !hidden(k.value()) {
                out.push(KeyValue {
                    key: k.value().to_vec(),
                    value: v.value().to_vec(),
                });
            }
            Ok(wanted != 0 && out.len() >= wanted)
        };
        if reverse {
            for entry in iter.rev() {
                if push(entry)? {
                    break;
                }
            }
        } else {
            for entry in iter {
                if push(entry)? {
                    break;
                }
            }
        }
        Ok(out)
    }
}

#[async_trait]
impl BackendTransaction for EmbeddedTransaction {
    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.buffer.check_age()?;
        let committed = self.snapshot_get(key)?;
        Ok(self.buffer.get(key, committed))
    }

    async fn get_range(&self, range: &KeyRange, options: RangeOptions) -> Result<RangePage> {
        self.buffer.check_age()?;
        let read = self.buffer.range_read(range, options);
        let hidden = |key: &[u8]| read.hides(key);
        let committed = self.snapshot_range(range, options.reverse, read.wanted(), hidden)?;
        let bases = self.snapshot_pairs(read.touched())?;
        Ok(read.page(committed, &bases))
    }

    fn mutate(&self, mutation: Mutation) {
        self.buffer.push(mutation);
    }

    fn relax_durability(&self) {
        self.buffer.relax();
    }

    async fn commit(self: Box<Self>) -> Result<()> {
        let Some(buffered) = self.buffer.commit_batch()? else {
            // A read-only transaction has nothing to make durable.
            return Ok(());
        };
        let (reply, answer) = oneshot::channel();
        let request = CommitRequest {
            read_version: self.read_version,
            started: self.buffer.started(),
            read_conflicts: buffered.read_conflicts,
            mutations: buffered.mutations,
            durable: !buffered.relaxed,
            reply,
        };
        self.committer
            .send(Request::Commit(request))
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }
}
