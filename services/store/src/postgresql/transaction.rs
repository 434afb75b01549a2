//! A transaction of the PostgreSQL backend: reads in one REPEATABLE READ snapshot of a
//! pooled connection, writes buffered until the commit applies them all in one statement.

use std::sync::Arc;

use async_trait::async_trait;
use deadpool_postgres::Object;

use super::Shared;
use super::error::{commit_error, query_error};
use super::schema::{COMMIT, GET, GET_MANY, RANGE, RANGE_REVERSE, kind};
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

    /// The arguments of the `commit` function for `mutations`, in its parameters' order.
    fn commit_arguments(mutations: &[Mutation]) -> CommitArguments {
        let mut arguments = CommitArguments::default();
        for mutation in mutations {
            let (kind, key, value, delta) = match mutation {
                Mutation::Set(key, value) => (kind::SET, key, Some(value), 0),
                Mutation::Clear(key) => (kind::CLEAR, key, None, 0),
                Mutation::ClearRange(range) => {
                    (kind::CLEAR_RANGE, &range.begin, Some(&range.end), 0)
                }
                Mutation::Add(key, delta) => (kind::ADD, key, None, *delta),
                Mutation::CompareAndClear(key, expected) => {
                    (kind::COMPARE_AND_CLEAR, key, Some(expected), 0)
                }
            };
            arguments.kinds.push(kind);
            arguments.keys.push(key.clone());
            arguments.values.push(value.cloned());
            arguments.deltas.push(delta);
            let written = mutation.write_range();
            arguments.write_begins.push(written.begin);
            arguments.write_ends.push(written.end);
        }
        arguments
    }
}

/// The mutations as the `commit` function takes them: one array per field.
#[derive(Default)]
struct CommitArguments {
    kinds: Vec<i16>,
    keys: Vec<Vec<u8>>,
    values: Vec<Option<Vec<u8>>>,
    deltas: Vec<i64>,
    write_begins: Vec<Vec<u8>>,
    write_ends: Vec<Vec<u8>>,
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
        let Some(buffered) = self.buffer.commit_batch()? else {
            // A read-only transaction has nothing to write: only its snapshot ends.
            let client = self.client()?;
            client.batch_execute("COMMIT").await.map_err(query_error)?;
            self.client.take();
            return Ok(());
        };
        let arguments = Self::commit_arguments(&buffered.mutations);
        let (read_begins, read_ends): (Vec<Vec<u8>>, Vec<Vec<u8>>) = buffered
            .read_conflicts
            .into_iter()
            .map(|r| (r.begin, r.end))
            .unzip();
        let client = self.client()?;
        let statement = self.seen(client.prepare_cached(COMMIT).await.map_err(query_error))?;
        // The read snapshot ends and the commit runs in a transaction of its own, at READ
        // COMMITTED whatever the server's default, so that it applies its writes to the
        // latest values (the conflict check having said nothing it read has changed).
        // The three are sent together: one round trip.
        let end_reads = client.batch_execute("COMMIT; BEGIN ISOLATION LEVEL READ COMMITTED");
        let parameters: [&(dyn tokio_postgres::types::ToSql + Sync); 10] = [
            &self.read_version,
            &read_begins,
            &read_ends,
            &arguments.kinds,
            &arguments.keys,
            &arguments.values,
            &arguments.deltas,
            &arguments.write_begins,
            &arguments.write_ends,
            &buffered.relaxed,
        ];
        let apply = client.query_one(&statement, &parameters);
        let finish = client.batch_execute("COMMIT");
        let outcome = futures::try_join!(end_reads, apply, finish).map_err(commit_error);
        match outcome {
            Ok(_) => {
                self.client.take();
                Ok(())
            }
            Err(StoreError::CommitUnknownResult) => {
                self.shared
                    .unavailable("lost the connection to PostgreSQL during a commit");
                Err(StoreError::CommitUnknownResult)
            }
            Err(error) => Err(error),
        }
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
