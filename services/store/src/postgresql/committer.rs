//! Group commit: the transactions of this process that are ready to commit together go to
//! the server in one call of `commit_many`, one round trip and one WAL flush for all.
//!
//! Commits are ordered on one row of the database (see `schema`), which each holds until
//! its flush; one transaction per flush would bound the store to the disk's flush rate.
//! As FoundationDB's proxies do, one task batches what arrives while the previous batch is
//! on its way, and the server checks each transaction of a batch against the commits before
//! it, earlier ones of the same batch included.

use std::sync::Weak;

use tokio::sync::{mpsc, oneshot};

use super::Shared;
use super::error::commit_error;
use super::schema::{COMMIT_MANY, kind};
use crate::error::{Result, StoreError};
use crate::mutation::Mutation;
use crate::range::KeyRange;

/// Most transactions in one batch.
const MAX_BATCH: usize = 128;

/// Most bytes of mutations in one batch, beyond its first transaction (at most 10 MB
/// itself): a batch is one statement the server holds in memory.
const MAX_BATCH_BYTES: usize = 8 << 20;

/// One transaction's commit, waiting for its batch.
pub(super) struct CommitRequest {
    /// The clock value its snapshot read.
    pub(super) read_version: i64,
    /// The key ranges it read.
    pub(super) reads: Vec<KeyRange>,
    /// Its writes, in order.
    pub(super) mutations: Vec<Mutation>,
    /// Whether its commit may answer before the flush.
    pub(super) relaxed: bool,
    /// Told how the commit went.
    pub(super) reply: oneshot::Sender<Result<()>>,
}

impl CommitRequest {
    fn size(&self) -> usize {
        self.mutations.iter().map(Mutation::size).sum()
    }
}

/// Starts the batching task of the backend `shared`; it ends with the backend.
pub(super) fn spawn(shared: Weak<Shared>) -> mpsc::UnboundedSender<CommitRequest> {
    let (sender, receiver) = mpsc::unbounded_channel();
    tokio::spawn(run(shared, receiver));
    sender
}

async fn run(shared: Weak<Shared>, mut receiver: mpsc::UnboundedReceiver<CommitRequest>) {
    while let Some(first) = receiver.recv().await {
        let batch = gather(first, &mut receiver);
        let Some(shared) = shared.upgrade() else {
            answer(batch, |_| Err(StoreError::Closed));
            return;
        };
        commit_batch(&shared, batch).await;
    }
}

/// `first` and whatever else is waiting, within the batch's limits.
fn gather(
    first: CommitRequest,
    receiver: &mut mpsc::UnboundedReceiver<CommitRequest>,
) -> Vec<CommitRequest> {
    let mut bytes = first.size();
    let mut batch = vec![first];
    while batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
        let Ok(next) = receiver.try_recv() else {
            break;
        };
        bytes += next.size();
        batch.push(next);
    }
    batch
}

/// Tells each request of `batch` its outcome.
fn answer(batch: Vec<CommitRequest>, outcome: impl Fn(usize) -> Result<()>) {
    for (index, request) in batch.into_iter().enumerate() {
        // The transaction may have been dropped meanwhile: nobody to tell.
        let _ = request.reply.send(outcome(index));
    }
}

/// Sends `batch` in one statement and answers each request.
async fn commit_batch(shared: &Shared, batch: Vec<CommitRequest>) {
    let client = match shared.connection().await {
        Ok(client) => client,
        Err(error) => {
            // Nothing was sent: not committed, and the caller may try again.
            let reason = error.to_string();
            answer(batch, |_| Err(retry_later(&error, &reason)));
            return;
        }
    };
    let arguments = Arguments::of(&batch);
    let statement = match client.prepare_cached(COMMIT_MANY).await {
        Ok(statement) => statement,
        Err(error) => {
            let error = super::error::query_error(error);
            let reason = error.to_string();
            answer(batch, |_| Err(retry_later(&error, &reason)));
            return;
        }
    };
    // At READ COMMITTED whatever the server's default, so that the writes apply to the
    // latest values (the conflict check having said nothing read has changed); the three
    // statements go together, one round trip.
    let begin = client.batch_execute("BEGIN ISOLATION LEVEL READ COMMITTED");
    let parameters = arguments.parameters();
    let apply = client.query_one(&statement, &parameters);
    let finish = client.batch_execute("COMMIT");
    match futures::try_join!(begin, apply, finish) {
        Ok((_, row, _)) => match row.try_get::<_, Vec<bool>>(0) {
            Ok(committed) if committed.len() == batch.len() => {
                answer(batch, |index| {
                    if committed[index] {
                        Ok(())
                    } else {
                        Err(StoreError::Conflict)
                    }
                });
            }
            // Committed, but the answer cannot be read: what was applied is unknown.
            _ => answer(batch, |_| Err(StoreError::CommitUnknownResult)),
        },
        Err(error) => {
            let error = commit_error(error);
            if matches!(error, StoreError::CommitUnknownResult) {
                shared.unavailable("lost the connection to PostgreSQL during a commit");
                // The connection may be inside the transaction: it is not given back.
                drop(deadpool_postgres::Object::take(client));
            }
            let reason = error.to_string();
            answer(batch, |_| Err(same_kind(&error, &reason)));
        }
    }
}

/// The error each request of a batch that could not be sent gets.
fn retry_later(error: &StoreError, reason: &str) -> StoreError {
    match error {
        StoreError::Closed => StoreError::Closed,
        _ => StoreError::Disconnected(reason.to_owned()),
    }
}

/// `error` again, for each request of its batch (store errors are not `Clone`: they may
/// carry sources).
fn same_kind(error: &StoreError, reason: &str) -> StoreError {
    match error {
        StoreError::Conflict => StoreError::Conflict,
        StoreError::CommitUnknownResult => StoreError::CommitUnknownResult,
        StoreError::Disconnected(_) => StoreError::Disconnected(reason.to_owned()),
        StoreError::Closed => StoreError::Closed,
        _ => StoreError::Storage(reason.to_owned()),
    }
}

/// The arguments of `commit_many` for a batch: one array per field, each transaction's
/// reads, mutations and written ranges one after the other, with their counts.
#[derive(Default)]
struct Arguments {
    read_versions: Vec<i64>,
    read_counts: Vec<i32>,
    read_begins: Vec<Vec<u8>>,
    read_ends: Vec<Vec<u8>>,
    mutation_counts: Vec<i32>,
    kinds: Vec<i16>,
    keys: Vec<Vec<u8>>,
    values: Vec<Option<Vec<u8>>>,
    deltas: Vec<i64>,
    write_begins: Vec<Vec<u8>>,
    write_ends: Vec<Vec<u8>>,
    relaxed: bool,
}

impl Arguments {
    fn of(batch: &[CommitRequest]) -> Self {
        let mut arguments = Arguments {
            relaxed: batch.iter().all(|request| request.relaxed),
            ..Arguments::default()
        };
        for request in batch {
            arguments.read_versions.push(request.read_version);
            arguments.read_counts.push(count(request.reads.len()));
            for read in &request.reads {
                arguments.read_begins.push(read.begin.clone());
                arguments.read_ends.push(read.end.clone());
            }
            arguments
                .mutation_counts
                .push(count(request.mutations.len()));
            for mutation in &request.mutations {
                arguments.push(mutation);
            }
        }
        arguments
    }

    fn push(&mut self, mutation: &Mutation) {
        let (kind, key, value, delta) = match mutation {
            Mutation::Set(key, value) => (kind::SET, key, Some(value), 0),
            Mutation::Clear(key) => (kind::CLEAR, key, None, 0),
            Mutation::ClearRange(range) => (kind::CLEAR_RANGE, &range.begin, Some(&range.end), 0),
            Mutation::Add(key, delta) => (kind::ADD, key, None, *delta),
            Mutation::CompareAndClear(key, expected) => {
                (kind::COMPARE_AND_CLEAR, key, Some(expected), 0)
            }
        };
        self.kinds.push(kind);
        self.keys.push(key.clone());
        self.values.push(value.cloned());
        self.deltas.push(delta);
        let written = mutation.write_range();
        self.write_begins.push(written.begin);
        self.write_ends.push(written.end);
    }

    /// In `commit_many`'s parameters' order.
    fn parameters(&self) -> [&(dyn tokio_postgres::types::ToSql + Sync); 12] {
        [
            &self.read_versions,
            &self.read_counts,
            &self.read_begins,
            &self.read_ends,
            &self.mutation_counts,
            &self.kinds,
            &self.keys,
            &self.values,
            &self.deltas,
            &self.write_begins,
            &self.write_ends,
            &self.relaxed,
        ]
    }
}

/// A count as PostgreSQL's `integer`; a transaction's limits keep it far below the bound.
fn count(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}
