//! The transaction handed to `Store::transact` closures.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::backend::BackendTransaction;
use crate::error::Result;
use crate::limits::{check_key, check_value};
use crate::mutation::Mutation;
use crate::range::{KeyRange, KeyValue, RangeOptions, RangePage};

/// A transaction: reads see its own writes, and it commits whole or not at all.
///
/// Mutations check FoundationDB's key and value limits at once; the limit on the whole
/// transaction and the 5 s lifetime are checked as FoundationDB does, on reads and commit.
pub struct Transaction {
    inner: Box<dyn BackendTransaction>,
    /// Whether a mutation was made: only then does the commit write anything.
    wrote: AtomicBool,
    /// Whether the commit may answer before it is durable.
    relaxed: AtomicBool,
}

impl Transaction {
    pub(crate) fn new(inner: Box<dyn BackendTransaction>) -> Self {
        Self {
            inner,
            wrote: AtomicBool::new(false),
            relaxed: AtomicBool::new(false),
        }
    }

    /// Whether the transaction has mutations to commit and waits until they are durable.
    pub(crate) fn writes_durably(&self) -> bool {
        self.wrote.load(Ordering::Relaxed) && !self.relaxed.load(Ordering::Relaxed)
    }

    fn writing(&self) {
        self.wrote.store(true, Ordering::Relaxed);
    }

    pub(crate) async fn commit(self) -> Result<()> {
        self.inner.commit().await
    }

    /// The value of `key`, if any.
    pub async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        check_key(key)?;
        self.inner.get(key).await
    }

    /// Up to `options.limit` pairs of `range`, in order (or reverse order).
    pub async fn get_range(&self, range: &KeyRange, options: RangeOptions) -> Result<RangePage> {
        range.validate()?;
        self.inner.get_range(range, options).await
    }

    /// Every pair of `range`, read page by page within this transaction.
    pub async fn get_all(&self, range: &KeyRange, page: usize) -> Result<Vec<KeyValue>> {
        let mut rest = range.clone();
        let mut all = Vec::new();
        loop {
            let got = self
                .get_range(
                    &rest,
                    RangeOptions {
                        limit: page,
                        reverse: false,
                    },
                )
                .await?;
            let Some(last) = got.pairs.last() else {
                return Ok(all);
            };
            rest.begin = crate::range::key_after(&last.key);
            let more = got.more;
            all.extend(got.pairs);
            if !more {
                return Ok(all);
            }
        }
    }

    /// Sets `key` to `value`.
    pub fn set(&self, key: &[u8], value: &[u8]) -> Result<()> {
        check_key(key)?;
        check_value(value)?;
        self.writing();
        self.inner
            .mutate(Mutation::Set(key.to_vec(), value.to_vec()));
        Ok(())
    }

    /// Removes `key`.
    pub fn clear(&self, key: &[u8]) -> Result<()> {
        check_key(key)?;
        self.writing();
        self.inner.mutate(Mutation::Clear(key.to_vec()));
        Ok(())
    }

    /// Removes every key of `range`.
    pub fn clear_range(&self, range: &KeyRange) -> Result<()> {
        range.validate()?;
        check_key(&range.begin)?;
        check_key(&range.end)?;
        self.writing();
        self.inner.mutate(Mutation::ClearRange(range.clone()));
        Ok(())
    }

    /// Adds `delta` to the little-endian 64-bit integer at `key` (absent counts as 0),
    /// without a read conflict: concurrent adds never conflict with each other.
    pub fn atomic_add(&self, key: &[u8], delta: i64) -> Result<()> {
        check_key(key)?;
        self.writing();
        self.inner.mutate(Mutation::Add(key.to_vec(), delta));
        Ok(())
    }

    /// Lets the commit answer before its writes are durable, for writes whose loss in a crash
    /// only repeats work (a delivery result: the delivery is tried again).
    ///
    /// The embedded store then appends the commit to its log without waiting for the disk;
    /// the next durable commit or checkpoint (within a second) syncs it. Its log is written in
    /// order, so a durable commit that saw these writes makes them durable too: a crash can
    /// only lose a suffix of relaxed commits. FoundationDB commits durably anyway.
    pub fn relax_durability(&self) {
        self.relaxed.store(true, Ordering::Relaxed);
        self.inner.relax_durability();
    }

    /// Removes `key` at commit time if its value is then `expected`, without a read conflict.
    pub fn compare_and_clear(&self, key: &[u8], expected: &[u8]) -> Result<()> {
        check_key(key)?;
        check_value(expected)?;
        self.writing();
        self.inner
            .mutate(Mutation::CompareAndClear(key.to_vec(), expected.to_vec()));
        Ok(())
    }
}
