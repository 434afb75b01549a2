//! The single writer: checks conflicts and commits many transactions with one fsync.
//!
//! Transactions queue their commit requests; the committer thread takes every request that
//! arrived while the previous batch was being written and commits them in one redb write
//! transaction with one fsync (group commit). Durable throughput therefore grows with the
//! number of concurrent writers instead of being capped at one fsync per commit.
//!
//! Conflicts are detected the way FoundationDB's resolvers do it: a transaction that read
//! a key written by any transaction committed after its read version fails with
//! `Conflict`. The write ranges of recent commits are kept for the 5 s a transaction
//! may live.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::time::Instant;

use redb::{Database, Durability, ReadableTable, TableDefinition};
use tokio::sync::oneshot;

use super::mutation::{Mutation, add};
use crate::error::{Result, StoreError};
use crate::limits::MAX_AGE;
use crate::range::KeyRange;

/// The one table every key lives in.
pub(crate) const KV: TableDefinition<&[u8], &[u8]> = TableDefinition::new("kv");

/// A transaction asking to commit.
pub(crate) struct CommitRequest {
    pub(crate) read_version: u64,
    pub(crate) started: Instant,
    pub(crate) read_conflicts: Vec<KeyRange>,
    pub(crate) mutations: Vec<Mutation>,
    pub(crate) reply: oneshot::Sender<Result<()>>,
}

/// Write ranges of one committed transaction.
struct Committed {
    version: u64,
    at: Instant,
    writes: Vec<KeyRange>,
}

pub(crate) struct Committer {
    db: Arc<Database>,
    version: Arc<AtomicU64>,
    log: VecDeque<Committed>,
    durable: bool,
}

impl Committer {
    /// Starts the committer thread; it ends when every sender is dropped.
    pub(crate) fn spawn(
        db: Arc<Database>,
        version: Arc<AtomicU64>,
        durable: bool,
    ) -> std::io::Result<Sender<CommitRequest>> {
        let (sender, receiver) = std::sync::mpsc::channel();
        let committer = Committer {
            db,
            version,
            log: VecDeque::new(),
            durable,
        };
        std::thread::Builder::new()
            .name("store-committer".into())
            .spawn(move || committer.run(receiver))?;
        Ok(sender)
    }

    fn run(mut self, requests: Receiver<CommitRequest>) {
        while let Ok(first) = requests.recv() {
            let mut batch = vec![first];
            batch.extend(requests.try_iter());
            self.commit_batch(batch);
        }
    }

    fn conflicts(&self, pending: &[Committed], request: &CommitRequest) -> bool {
        // Newest first: only commits after the read version matter, and they are at the end.
        let newer = self
            .log
            .iter()
            .rev()
            .take_while(|c| c.version > request.read_version)
            .chain(pending.iter());
        let reads = ReadSet::new(&request.read_conflicts);
        newer
            .flat_map(|committed| committed.writes.iter())
            .any(|write| reads.intersects(write))
    }

    fn commit_batch(&mut self, batch: Vec<CommitRequest>) {
        let now = Instant::now();
        while self
            .log
            .front()
            .is_some_and(|c| now.duration_since(c.at) > MAX_AGE * 2)
        {
            self.log.pop_front();
        }
        let mut version = self.version.load(Ordering::Acquire);
        let mut pending = Vec::new();
        let mut accepted = Vec::new();
        let result = (|| -> Result<()> {
            let mut write = self.db.begin_write()?;
            let durability = if self.durable {
                Durability::Immediate
            } else {
                Durability::None
            };
            write
                .set_durability(durability)
                .map_err(|e| StoreError::Storage(e.to_string()))?;
            {
                let mut table = write.open_table(KV)?;
                for request in batch {
                    if request.started.elapsed() > MAX_AGE {
                        let _ = request
                            .reply
                            .send(Err(StoreError::TransactionTooOld(MAX_AGE)));
                        continue;
                    }
                    if self.conflicts(&pending, &request) {
                        let _ = request.reply.send(Err(StoreError::Conflict));
                        continue;
                    }
                    for mutation in &request.mutations {
                        apply(&mut table, mutation)?;
                    }
                    version += 1;
                    let writes = request
                        .mutations
                        .iter()
                        .map(Mutation::write_range)
                        .collect();
                    pending.push(Committed {
                        version,
                        at: now,
                        writes,
                    });
                    accepted.push(request.reply);
                }
            }
            write.commit()?;
            Ok(())
        })();
        match result {
            Ok(()) => {
                self.version.store(version, Ordering::Release);
                self.log.extend(pending);
                for reply in accepted {
                    let _ = reply.send(Ok(()));
                }
            }
            Err(error) => {
                tracing::error!(%error, "store commit failed; the batch was not committed");
                for reply in accepted {
                    let _ = reply.send(Err(StoreError::Storage(error.to_string())));
                }
            }
        }
    }
}

/// A transaction's read ranges, ordered so that each write is checked against all of them
/// in a binary search instead of one comparison each.
struct ReadSet<'a> {
    /// The ranges by their first key.
    ranges: Vec<&'a KeyRange>,
    /// For each position, the largest end among the ranges up to it.
    max_end: Vec<&'a [u8]>,
}

impl<'a> ReadSet<'a> {
    fn new(reads: &'a [KeyRange]) -> Self {
        let mut ranges: Vec<&KeyRange> = reads.iter().collect();
        ranges.sort_unstable_by(|a, b| a.begin.cmp(&b.begin));
        let mut max_end: Vec<&[u8]> = Vec::with_capacity(ranges.len());
        for range in &ranges {
            let end = range.end.as_slice();
            let largest = max_end.last().map_or(end, |&previous| previous.max(end));
            max_end.push(largest);
        }
        Self { ranges, max_end }
    }

    /// Whether any read range shares a key with `write` ([`KeyRange::intersects`]).
    fn intersects(&self, write: &KeyRange) -> bool {
        // The ranges that begin before the write ends; one of them intersects it when it also
        // ends after the write begins.
        let before_end = self.ranges.partition_point(|r| r.begin < write.end);
        before_end > 0 && self.max_end[before_end - 1] > write.begin.as_slice()
    }
}

fn apply(
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every range over the keys 0..6 (as one-byte keys), empty ones included.
    fn ranges() -> Vec<KeyRange> {
        let mut all = Vec::new();
        for begin in 0u8..6 {
            for end in 0u8..6 {
                all.push(KeyRange::new(vec![begin], vec![end]));
            }
        }
        all
    }

    #[test]
    fn a_read_set_finds_exactly_the_writes_some_read_intersects() {
        let all = ranges();
        // Every set of up to three read ranges, against every write range.
        for (i, a) in all.iter().enumerate() {
            for (j, b) in all.iter().enumerate().skip(i) {
                for c in all.iter().skip(j).step_by(5) {
                    let reads = vec![a.clone(), b.clone(), c.clone()];
                    let set = ReadSet::new(&reads);
                    for write in &all {
                        let expected = reads.iter().any(|read| read.intersects(write));
                        assert_eq!(set.intersects(write), expected, "{reads:?} {write:?}");
                    }
                }
            }
        }
        assert!(!ReadSet::new(&[]).intersects(&all[1]), "no reads");
    }
}
