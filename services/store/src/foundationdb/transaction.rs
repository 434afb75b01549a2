//! A transaction of the FoundationDB backend: a `foundationdb::Transaction`, used as is.
//!
//! `Store` closures call a transaction through `&self` from several tasks at once. No lock is
//! needed for that: the C client forwards every call on a transaction to its network thread,
//! which runs them one at a time, and the `foundationdb` crate declares `Transaction` `Sync`
//! for that reason. Concurrent calls are ordered as they reach that thread, as the embedded
//! backend orders them by its lock.

use std::sync::atomic::{AtomicUsize, Ordering};

use ::foundationdb::options::{MutationType, StreamingMode};
use ::foundationdb::{FdbError, KeySelector, RangeOption, Transaction};
use async_trait::async_trait;

use super::error::{Written, store_error};
use crate::backend::BackendTransaction;
use crate::error::Result;
use crate::mutation::Mutation;
use crate::range::{KeyRange, KeyValue, RangeOptions, RangePage};

pub(crate) struct FoundationDbTransaction {
    inner: Transaction,
    written: WrittenSizes,
}

/// [`Written`], updated from several tasks.
#[derive(Default)]
struct WrittenSizes {
    bytes: AtomicUsize,
    largest_key: AtomicUsize,
    largest_value: AtomicUsize,
}

impl WrittenSizes {
    fn record(&self, key: &[u8], value: &[u8]) {
        // Only for error messages: no ordering with anything else is needed.
        self.bytes
            .fetch_add(key.len() + value.len(), Ordering::Relaxed);
        self.largest_key.fetch_max(key.len(), Ordering::Relaxed);
        self.largest_value.fetch_max(value.len(), Ordering::Relaxed);
    }

    fn snapshot(&self) -> Written {
        Written {
            bytes: self.bytes.load(Ordering::Relaxed),
            largest_key: self.largest_key.load(Ordering::Relaxed),
            largest_value: self.largest_value.load(Ordering::Relaxed),
        }
    }
}

impl FoundationDbTransaction {
    pub(super) fn new(inner: Transaction) -> Self {
        Self {
            inner,
            written: WrittenSizes::default(),
        }
    }

    fn error(&self, error: FdbError) -> crate::error::StoreError {
        store_error(error, self.written.snapshot())
    }
}

#[async_trait]
impl BackendTransaction for FoundationDbTransaction {
    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let value = self
            .inner
            .get(key, false)
            .await
            .map_err(|e| self.error(e))?;
        Ok(value.map(|v| v.to_vec()))
    }

    async fn get_range(&self, range: &KeyRange, options: RangeOptions) -> Result<RangePage> {
        // One pair more than asked, to tell a range cut short by the limit from one that held
        // exactly `limit` pairs: FoundationDB sets its own `more` whenever the limit is reached.
        // The read conflict range then reaches that one extra key, a little wider than the
        // embedded backend's: it may add a conflict, never lose one.
        let wanted = match options.limit {
            0 => None,
            limit => Some(limit.saturating_add(1)),
        };
        let mut next = Some(RangeOption {
            begin: KeySelector::first_greater_or_equal(range.begin.as_slice()),
            end: KeySelector::first_greater_or_equal(range.end.as_slice()),
            limit: wanted,
            mode: StreamingMode::WantAll,
            reverse: options.reverse,
            ..RangeOption::default()
        });
        let mut pairs = Vec::new();
        let mut iteration = 1;
        // FoundationDB may return fewer pairs than the limit (it caps the bytes of one batch):
        // read on after the last key until the limit is met or the range is exhausted, so a
        // page always holds `limit` pairs when the range has them.
        while let Some(option) = next {
            let batch = self
                .inner
                .get_range(&option, iteration, false)
                .await
                .map_err(|e| self.error(e))?;
            pairs.extend(batch.iter().map(|kv| KeyValue {
                key: kv.key().to_vec(),
                value: kv.value().to_vec(),
            }));
            next = option.next_range(&batch);
            iteration += 1;
        }
        let more = options.limit != 0 && pairs.len() > options.limit;
        if more {
            pairs.truncate(options.limit);
        }
        Ok(RangePage { pairs, more })
    }

    fn mutate(&self, mutation: Mutation) {
        match &mutation {
            Mutation::Set(key, value) => {
                self.written.record(key, value);
                self.inner.set(key, value);
            }
            Mutation::Clear(key) => {
                self.written.record(key, &[]);
                self.inner.clear(key);
            }
            Mutation::ClearRange(range) => {
                self.written.record(&range.begin, &[]);
                self.written.record(&range.end, &[]);
                self.inner.clear_range(&range.begin, &range.end);
            }
            Mutation::Add(key, delta) => {
                // FoundationDB's add is little-endian two's complement, as `decode_counter`
                // reads it.
                let operand = delta.to_le_bytes();
                self.written.record(key, &operand);
                self.inner.atomic_op(key, &operand, MutationType::Add);
            }
            Mutation::CompareAndClear(key, expected) => {
                self.written.record(key, expected);
                self.inner
                    .atomic_op(key, expected, MutationType::CompareAndClear);
            }
        }
    }

    async fn commit(self: Box<Self>) -> Result<()> {
        let Self { inner, written } = *self;
        match inner.commit().await {
            Ok(_) => Ok(()),
            Err(error) => Err(store_error(*error, written.snapshot())),
        }
    }
}
