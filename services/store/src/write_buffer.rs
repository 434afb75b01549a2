//! What a transaction of a backend that buffers its writes keeps until commit (its writes,
//! the ranges it read, its age), and how its reads see those writes over committed data.
//! Such a backend supplies only how it reads committed data and how it commits.

use std::collections::BTreeSet;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use crate::error::{Result, StoreError};
use crate::limits::{MAX_AGE, MAX_TRANSACTION};
use crate::mutation::{Mutation, merge, resolve};
use crate::range::{KeyRange, KeyValue, RangeOptions, RangePage, key_after};

/// What a transaction hands its commit.
#[derive(Default)]
pub(crate) struct Buffered {
    /// Its writes, in the order they were made.
    pub(crate) mutations: Vec<Mutation>,
    /// The ranges it read: it conflicts with a commit that wrote any of them since it began.
    pub(crate) read_conflicts: Vec<KeyRange>,
    /// Whether the commit may answer before its writes are durable.
    pub(crate) relaxed: bool,
}

impl Buffered {
    /// Bytes counted against the transaction limit: its writes and the ranges it read.
    fn size(&self) -> usize {
        let written = self.mutations.iter().map(Mutation::size).sum::<usize>();
        let read = self
            .read_conflicts
            .iter()
            .map(|r| r.begin.len() + r.end.len())
            .sum::<usize>();
        written + read
    }
}

/// A transaction's buffered state, shared by the tasks that call it at once.
pub(crate) struct WriteBuffer {
    started: Instant,
    buffered: Mutex<Buffered>,
}

impl WriteBuffer {
    /// An empty buffer for a transaction that starts now.
    pub(crate) fn new() -> Self {
        Self {
            started: Instant::now(),
            buffered: Mutex::default(),
        }
    }

    /// When the transaction started.
    pub(crate) fn started(&self) -> Instant {
        self.started
    }

    /// Refuses a transaction that has lived longer than FoundationDB lets one.
    pub(crate) fn check_age(&self) -> Result<()> {
        if self.started.elapsed() > MAX_AGE {
            Err(StoreError::TransactionTooOld(MAX_AGE))
        } else {
            Ok(())
        }
    }

    fn lock(&self) -> MutexGuard<'_, Buffered> {
        // Nothing panics while holding the lock; recover the data if something ever did.
        self.buffered.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Buffers one write until the commit.
    pub(crate) fn push(&self, mutation: Mutation) {
        self.lock().mutations.push(mutation);
    }

    /// Lets the commit answer before its writes are durable.
    pub(crate) fn relax(&self) {
        self.lock().relaxed = true;
    }

    /// The value of `key` as the transaction sees it, over its `committed` value; the read
    /// is recorded as a conflict range.
    pub(crate) fn get(&self, key: &[u8], committed: Option<Vec<u8>>) -> Option<Vec<u8>> {
        let mut buffered = self.lock();
        buffered.read_conflicts.push(KeyRange::single(key));
        resolve(key, committed, &buffered.mutations)
    }

    /// Begins a read of `range` through the writes buffered so far.
    pub(crate) fn range_read<'a>(
        &'a self,
        range: &'a KeyRange,
        options: RangeOptions,
    ) -> RangeRead<'a> {
        let mutations = self.lock().mutations.clone();
        RangeRead::new(self, range, options, mutations)
    }

    /// What the commit writes, taken out of the buffer: `None` when the transaction wrote
    /// nothing; an error when it is too old or too large to commit.
    pub(crate) fn commit_batch(&self) -> Result<Option<Buffered>> {
        self.check_age()?;
        let buffered = std::mem::take(&mut *self.lock());
        if buffered.mutations.is_empty() {
            // A read-only transaction cannot conflict, whatever it read.
            return Ok(None);
        }
        let size = buffered.size();
        if size > MAX_TRANSACTION {
            return Err(StoreError::TransactionTooLarge(size));
        }
        Ok(Some(buffered))
    }
}

/// A read of one range through the buffered writes: which committed pairs they replace,
/// and the page committed pairs and buffered writes make together.
pub(crate) struct RangeRead<'a> {
    buffer: &'a WriteBuffer,
    range: &'a KeyRange,
    options: RangeOptions,
    /// The buffered writes as the read began.
    mutations: Vec<Mutation>,
    /// Keys of the range the transaction wrote, sorted: their values come from the overlay.
    touched: Vec<Vec<u8>>,
    /// Ranges the transaction cleared that meet the range: committed keys there are gone.
    cleared: Vec<KeyRange>,
}

impl<'a> RangeRead<'a> {
    fn new(
        buffer: &'a WriteBuffer,
        range: &'a KeyRange,
        options: RangeOptions,
        mutations: Vec<Mutation>,
    ) -> Self {
        let touched: BTreeSet<&[u8]> = mutations
            .iter()
            .filter_map(Mutation::key)
            .filter(|k| range.contains(k))
            .collect();
        let touched = touched.into_iter().map(<[u8]>::to_vec).collect();
        let cleared = mutations
            .iter()
            .filter_map(|m| match m {
                Mutation::ClearRange(r) if r.intersects(range) => Some(r.clone()),
                _ => None,
            })
            .collect();
        Self {
            buffer,
            range,
            options,
            mutations,
            touched,
            cleared,
        }
    }

    /// How many committed pairs to read at most (0: all): one more than the limit, to know
    /// whether there is more.
    pub(crate) fn wanted(&self) -> usize {
        match self.options.limit {
            0 => 0,
            limit => limit + 1,
        }
    }

    /// Whether a buffered write replaces or removes the committed pair of `key`.
    pub(crate) fn hides(&self, key: &[u8]) -> bool {
        self.touched
            .binary_search_by(|k| k.as_slice().cmp(key))
            .is_ok()
            || self.cleared.iter().any(|r| r.contains(key))
    }

    /// Keys of the range the transaction wrote, sorted: the page needs their committed values.
    pub(crate) fn touched(&self) -> &[Vec<u8>] {
        &self.touched
    }

    /// The page, from the `committed` pairs of the range that [`Self::hides`] does not hide
    /// (in read order, at most [`Self::wanted`]) and `bases`, the committed pairs of
    /// [`Self::touched`] keys (in any order); records what it covers as a read conflict.
    pub(crate) fn page(self, committed: Vec<KeyValue>, bases: &[KeyValue]) -> RangePage {
        let overlay = self.overlay(bases);
        let mut pairs = merge(committed, overlay, self.options.reverse);
        let more = self.options.limit != 0 && pairs.len() > self.options.limit;
        if more {
            pairs.truncate(self.options.limit);
        }
        let read = self.covered(&pairs, more);
        self.buffer.lock().read_conflicts.push(read);
        RangePage { pairs, more }
    }

    /// The values the transaction's writes give the touched keys, in read order.
    fn overlay(&self, bases: &[KeyValue]) -> Vec<KeyValue> {
        let mut overlay = Vec::new();
        for key in &self.touched {
            let base = bases
                .iter()
                .find(|kv| &kv.key == key)
                .map(|kv| kv.value.clone());
            if let Some(value) = resolve(key, base, &self.mutations) {
                overlay.push(KeyValue {
                    key: key.clone(),
                    value,
                });
            }
        }
        if self.options.reverse {
            overlay.reverse();
        }
        overlay
    }

    /// The part of the range a page covers: up to its last pair when the limit cut it short,
    /// so that writes past the page do not conflict with this read.
    fn covered(&self, pairs: &[KeyValue], more: bool) -> KeyRange {
        match (more, pairs.last()) {
            (true, Some(last)) if self.options.reverse => {
                KeyRange::new(last.key.clone(), self.range.end.clone())
            }
            (true, Some(last)) => KeyRange::new(self.range.begin.clone(), key_after(&last.key)),
            _ => self.range.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn pair(key: &[u8], value: &[u8]) -> KeyValue {
        KeyValue {
            key: key.to_vec(),
            value: value.to_vec(),
        }
    }

    fn limited(limit: usize, reverse: bool) -> RangeOptions {
        RangeOptions { limit, reverse }
    }

    /// A buffer that set `b`, cleared `c`..`e` and added 1 to `d`.
    fn written() -> WriteBuffer {
        let buffer = WriteBuffer::new();
        buffer.push(Mutation::Set(b"b".to_vec(), b"new".to_vec()));
        buffer.push(Mutation::ClearRange(KeyRange::new(
            b"c".to_vec(),
            b"e".to_vec(),
        )));
        buffer.push(Mutation::Add(b"d".to_vec(), 1));
        buffer
    }

    #[test]
    fn a_page_lays_the_writes_over_committed_pairs_and_reads_only_up_to_its_end() {
        let buffer = written();
        let range = KeyRange::new(b"a".to_vec(), b"z".to_vec());
        let read = buffer.range_read(&range, limited(3, false));
        assert_eq!(read.wanted(), 4);
        assert_eq!(read.touched(), [b"b".to_vec(), b"d".to_vec()]);
        assert!(read.hides(b"b") && read.hides(b"c") && !read.hides(b"a"));
        let committed = vec![pair(b"a", b"1"), pair(b"f", b"2"), pair(b"g", b"3")];
        let page = read.page(committed, &[pair(b"b", b"old"), pair(b"d", b"x")]);
        let one = 1i64.to_le_bytes();
        assert_eq!(
            page.pairs,
            [pair(b"a", b"1"), pair(b"b", b"new"), pair(b"d", &one)]
        );
        assert!(page.more);
        let batch = buffer.commit_batch().unwrap().unwrap();
        assert_eq!(
            batch.read_conflicts,
            [KeyRange::new(b"a".to_vec(), b"d\0".to_vec())]
        );
    }

    #[test]
    fn a_reverse_page_that_holds_the_whole_range_reads_all_of_it() {
        let buffer = written();
        let range = KeyRange::new(b"a".to_vec(), b"c".to_vec());
        let read = buffer.range_read(&range, limited(5, true));
        let page = read.page(vec![pair(b"a", b"1")], &[]);
        assert_eq!(page.pairs, [pair(b"b", b"new"), pair(b"a", b"1")]);
        assert!(!page.more);
        let batch = buffer.commit_batch().unwrap().unwrap();
        assert_eq!(batch.read_conflicts, [range]);
    }

    #[test]
    fn a_transaction_that_wrote_nothing_has_nothing_to_commit() {
        let buffer = WriteBuffer::new();
        assert_eq!(buffer.get(b"k", Some(b"v".to_vec())), Some(b"v".to_vec()));
        assert!(buffer.commit_batch().unwrap().is_none());
    }

    #[test]
    fn a_transaction_over_the_size_limit_is_refused() {
        let buffer = WriteBuffer::new();
        buffer.push(Mutation::Set(vec![0; MAX_TRANSACTION], Vec::new()));
        buffer.get(b"k", None);
        assert!(matches!(
            buffer.commit_batch(),
            Err(StoreError::TransactionTooLarge(size)) if size == MAX_TRANSACTION + 3
        ));
    }
}
