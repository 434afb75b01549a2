//! A transaction of the embedded backend: a redb snapshot plus buffered mutations.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::mpsc::Sender;
use std::time::Instant;

use async_trait::async_trait;
use redb::ReadOnlyTable;
use tokio::sync::oneshot;

use super::committer::{CommitRequest, Request};
use crate::backend::BackendTransaction;
use crate::error::{Result, StoreError};
use crate::limits::{MAX_AGE, MAX_TRANSACTION};
use crate::mutation::{Mutation, merge, resolve};
use crate::range::{KeyRange, KeyValue, RangeOptions, RangePage, key_after};

/// One entry of a redb range iterator.
type RangeEntry<'a> = std::result::Result<
    (
        redb::AccessGuard<'a, &'static [u8]>,
        redb::AccessGuard<'a, &'static [u8]>,
    ),
    redb::StorageError,
>;

#[derive(Default)]
struct Buffered {
    mutations: Vec<Mutation>,
    read_conflicts: Vec<KeyRange>,
    /// Whether the commit may answer before its log record is synced.
    relaxed: bool,
}

pub(crate) struct EmbeddedTransaction {
    snapshot: ReadOnlyTable<&'static [u8], &'static [u8]>,
    read_version: u64,
    started: Instant,
    buffered: Mutex<Buffered>,
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
            started: Instant::now(),
            buffered: Mutex::default(),
            committer,
        }
    }

    fn check_age(&self) -> Result<()> {
        if self.started.elapsed() > MAX_AGE {
            Err(StoreError::TransactionTooOld(MAX_AGE))
        } else {
            Ok(())
        }
    }

    fn buffered(&self) -> std::sync::MutexGuard<'_, Buffered> {
        // Nothing panics while holding the lock; recover the data if something ever did.
        self.buffered
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn snapshot_get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.snapshot.get(key)?.map(|v| v.value().to_vec()))
    }

    fn push(&self, mutation: Mutation) {
        self.buffered().mutations.push(mutation);
    }

    /// Committed pairs of `range` that no buffered mutation touches, in read order, at most
    /// `limit` (0: all) after skipping.
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
        self.check_age()?;
        let base = self.snapshot_get(key)?;
        let mut buffered = self.buffered();
        buffered.read_conflicts.push(KeyRange::single(key));
        Ok(resolve(key, base, &buffered.mutations))
    }

    async fn get_range(&self, range: &KeyRange, options: RangeOptions) -> Result<RangePage> {
        self.check_age()?;
        let mutations = self.buffered().mutations.clone();
        // Keys written by this transaction come from the overlay; committed keys inside a
        // range it cleared are gone.
        let touched: BTreeMap<Vec<u8>, ()> = mutations
            .iter()
            .filter_map(Mutation::key)
            .filter(|k| range.contains(k))
            .map(|k| (k.to_vec(), ()))
            .collect();
        let cleared: Vec<&KeyRange> = mutations
            .iter()
            .filter_map(|m| match m {
                Mutation::ClearRange(r) if r.intersects(range) => Some(r),
                _ => None,
            })
            .collect();
        let hidden =
            |key: &[u8]| touched.contains_key(key) || cleared.iter().any(|r| r.contains(key));
        // One more than asked, to know whether there is more.
        let wanted = if options.limit == 0 {
            0
        } else {
            options.limit + 1
        };
        let snapshot = self.snapshot_range(range, options.reverse, wanted, hidden)?;
        let mut overlay = Vec::new();
        for key in touched.keys() {
            if let Some(value) = resolve(key, self.snapshot_get(key)?, &mutations) {
                overlay.push(KeyValue {
                    key: key.clone(),
                    value,
                });
            }
        }
        if options.reverse {
            overlay.reverse();
        }
        let mut pairs = merge(snapshot, overlay, options.reverse);
        let more = options.limit != 0 && pairs.len() > options.limit;
        if more {
            pairs.truncate(options.limit);
        }
        let read = match (more, pairs.last()) {
            (true, Some(last)) if options.reverse => {
                KeyRange::new(last.key.clone(), range.end.clone())
            }
            (true, Some(last)) => KeyRange::new(range.begin.clone(), key_after(&last.key)),
            _ => range.clone(),
        };
        self.buffered().read_conflicts.push(read);
        Ok(RangePage { pairs, more })
    }

    fn set(&self, key: &[u8], value: &[u8]) {
        self.push(Mutation::Set(key.to_vec(), value.to_vec()));
    }

    fn clear(&self, key: &[u8]) {
        self.push(Mutation::Clear(key.to_vec()));
    }

    fn clear_range(&self, range: &KeyRange) {
        self.push(Mutation::ClearRange(range.clone()));
    }

    fn atomic_add(&self, key: &[u8], delta: i64) {
        self.push(Mutation::Add(key.to_vec(), delta));
    }

    fn compare_and_clear(&self, key: &[u8], expected: &[u8]) {
        self.push(Mutation::CompareAndClear(key.to_vec(), expected.to_vec()));
    }

    fn relax_durability(&self) {
        self.buffered().relaxed = true;
    }

    async fn commit(self: Box<Self>) -> Result<()> {
        self.check_age()?;
        let buffered = std::mem::take(&mut *self.buffered());
        if buffered.mutations.is_empty() {
            // A read-only transaction has nothing to make durable and cannot conflict.
            return Ok(());
        }
        let size = buffered.mutations.iter().map(Mutation::size).sum::<usize>()
            + buffered
                .read_conflicts
                .iter()
                .map(|r| r.begin.len() + r.end.len())
                .sum::<usize>();
        if size > MAX_TRANSACTION {
            return Err(StoreError::TransactionTooLarge(size));
        }
        let (reply, answer) = oneshot::channel();
        let request = CommitRequest {
            read_version: self.read_version,
            started: self.started,
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
