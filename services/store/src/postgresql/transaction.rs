//! A transaction of the PostgreSQL backend: reads in one REPEATABLE READ snapshot of a
//! pooled connection, writes buffered until the commit applies them all in one statement.

use std::sync::Arc;

use async_trait::async_trait;
use deadpool_postgres::Object;

use tokio::sync::oneshot;

use super::Shared;
use super::committer::CommitRequest;
use super::error::query_error;
use super::schema::{GET, GET_MANY, RANGE, RANGE_REVERSE};
use crate::backend::BackendTransaction;
use crate::error::{Result, StoreError};
use crate::mutation::Mutation;
use crate::range::{KeyRange, KeyValue, RangeOptions, RangePage, key_after};
use crate::write_buffer::WriteBuffer;

pub(super) struct PostgresTransaction {
    /// The connection, inside its read transaction until the commit; `None` once committed.
    client: Option<Object>,
    read_version: i64,
    buffer: WriteBuffer,
    shared: Arc<Shared>,
}

impl PostgresTransaction {
    pub(super) fn new(client: Object, read_version: i64, shared: Arc<Shared>) -> Self {
        Self {
            client: Some(client),
            read_version,
            buffer: WriteBuffer::new(),
            shared,
        }
    }

    fn client(&self) -> Result<&Object> {
        self.client.as_ref().ok_or(StoreError::Closed)
    }

    /// Notes a failure of the connection, for readiness.
    fn seen<T>(&self, result: Result<T>) -> Result<T> {
        if let Err(StoreError::Disconnected(reason)) = &result {
            self.shared.unavailable(reason);
        }
        result
    }

    async fn committed(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let client = self.client()?;
        let statement = client.prepare_cached(GET).await.map_err(query_error)?;
        let row = client
            .query_opt(&statement, &[&key])
            .await
            .map_err(query_error)?;
        row.map(|row| row.try_get::<_, Vec<u8>>(0))
            .transpose()
            .map_err(query_error)
    }

    async fn committed_many(&self, keys: &[Vec<u8>]) -> Result<Vec<KeyValue>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let client = self.client()?;
        let statement = client.prepare_cached(GET_MANY).await.map_err(query_error)?;
        let rows = client
            .query(&statement, &[&keys])
            .await
            .map_err(query_error)?;
        rows.into_iter()
            .map(|row| {
                Ok(KeyValue {
                    key: row.try_get(0).map_err(query_error)?,
                    value: row.try_get(1).map_err(query_error)?,
                })
            })
            .collect()
    }

    /// Committed pairs of `range` that `hidden` does not hide, in read order, at most
    /// `wanted` (0: all). Reads in pages, since hidden keys take room in a page.
    async fn committed_range(
        &self,
        range: &KeyRange,
        reverse: bool,
        wanted: usize,
        hidden: impl Fn(&[u8]) -> bool,
        hidden_points: usize,
    ) -> Result<Vec<KeyValue>> {
        let client = self.client()?;
        let sql = if reverse { RANGE_REVERSE } else { RANGE };
        let statement = client.prepare_cached(sql).await.map_err(query_error)?;
        let mut out = Vec::new();
        let mut rest = range.clone();
        loop {
            let page = (wanted != 0)
                .then(|| i64::try_from(wanted - out.len() + hidden_points).unwrap_or(i64::MAX));
            let rows = client
                .query(&statement, &[&rest.begin, &rest.end, &page])
                .await
                .map_err(query_error)?;
            let got = rows.len();
            let mut last = None;
            for row in rows {
                let key: Vec<u8> = row.try_get(0).map_err(query_error)?;
                if !hidden(&key) {
                    out.push(KeyValue {
                        key: key.clone(),
                        value: row.try_get(1).map_err(query_error)?,
                    });
                    if wanted != 0 && out.len() >= wanted {
                        return Ok(out);
                    }
                }
                last = Some(key);
            }
            let full = page.is_some_and(|page| i64::try_from(got).unwrap_or(i64::MAX) >= page);
            match last {
                Some(last) if full => {
                    if reverse {
                        rest.end = last;
                    } else {
                        rest.begin = key_after(&last);
                    }
                }
                _ => return Ok(out),
            }
        }
    }
}

#[async_trait]
impl BackendTransaction for PostgresTransaction {
    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.buffer.check_age()?;
        let committed = self.seen(self.committed(key).await)?;
        Ok(self.buffer.get(key, committed))
    }

    async fn get_range(&self, range: &KeyRange, options: RangeOptions) -> Result<RangePage> {
        self.buffer.check_age()?;
        let read = self.buffer.range_read(range, options);
        let hidden = |key: &[u8]| read.hides(key);
        let touched = read.touched();
        let committed =
            self.committed_range(range, options.reverse, read.wanted(), hidden, touched.len());
        let committed = self.seen(committed.await)?;
        let bases = self.seen(self.committed_many(touched).await)?;
        Ok(read.page(committed, &bases))
    }

    fn mutate(&self, mutation: Mutation) {
        self.buffer.push(mutation);
    }

    fn relax_durability(&self) {
        self.buffer.relax();
    }

    async fn commit(mut self: Box<Self>) -> Result<()> {
        let buffered = self.buffer.commit_batch()?;
        let client = self.client.take().ok_or(StoreError::Closed)?;
        // The snapshot ends on its own connection, which then serves others; the writes go
        // to the committer, which sends them with those of other transactions.
        let end_reads = async {
            if client.batch_execute("COMMIT").await.is_err() {
                // Maybe still inside the snapshot: not given back.
                drop(Object::take(client));
            }
        };
        let Some(buffered) = buffered else {
            // A read-only transaction has nothing to write: only its snapshot ends.
            end_reads.await;
            return Ok(());
        };
        let (reply, outcome) = oneshot::channel();
        let request = CommitRequest {
            read_version: self.read_version,
            reads: buffered.read_conflicts,
            mutations: buffered.mutations,
            relaxed: buffered.relaxed,
            reply,
        };
        if self.shared.committer.send(request).is_err() {
            end_reads.await;
            return Err(StoreError::Closed);
        }
        let ((), outcome) = futures::join!(end_reads, outcome);
        // A committer that ended before answering took the batch's outcome with it.
        outcome.unwrap_or(Err(StoreError::CommitUnknownResult))
    }
}

impl Drop for PostgresTransaction {
    fn drop(&mut self) {
        // Not committed: end its transaction before the connection serves another, or drop
        // the connection if that cannot be done here.
        let Some(client) = self.client.take() else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    if client.batch_execute("ROLLBACK").await.is_err() {
                        drop(Object::take(client));
                    }
                });
            }
            Err(_) => drop(Object::take(client)),
        }
    }
}
