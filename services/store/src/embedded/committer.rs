//! The single writer: checks conflicts and commits many transactions with one fsync.
//!
//! Transactions queue their commit requests; the committer thread takes every request that
//! arrived while the previous batch was being written and commits them together (group
//! commit): one record appended to the write-ahead log and synced, then one redb write
//! transaction that is not synced itself. Durable throughput therefore grows with the
//! number of concurrent writers instead of being capped at one fsync per commit. A batch of
//! relaxed commits only ([`crate::Transaction::relax_durability`]) is appended without the
//! sync: the next synced record or checkpoint makes it durable with everything before it.
//!
//! A checkpoint (a synced redb commit) makes everything in the log durable in redb, after
//! which the log starts over; it runs once the log holds [`CHECKPOINT_BYTES`], once
//! [`CHECKPOINT_INTERVAL`] has passed since the last one, and when the store closes.
//!
//! A failed write (a full disk, an I/O error) leaves redb refusing everything until it is
//! opened again. The committer then refuses commits at once with
//! [`StoreError::Unavailable`], withdraws the database from readers and opens the files
//! again with exponential backoff, replaying the log, until the cause is gone: no restart,
//! and nothing acknowledged is lost, since the log holds it.
//!
//! Conflicts are detected the way FoundationDB's resolvers do it: a transaction that read
//! a key written by any transaction committed after its read version fails with
//! `Conflict`. The write ranges of recent commits are kept for the 5 s a transaction
//! may live.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use redb::{Durability, WriteTransaction};
use tokio::sync::oneshot;

use super::files::{self, OpenFiles, StoreFiles};
use super::readers::Readers;
use super::tables::{APPLIED, KV, META, apply};
use crate::error::{Result, StoreError};
use crate::limits::MAX_AGE;
use crate::mutation::Mutation;
use crate::observer::StoreObserver;
use crate::range::KeyRange;

/// Log bytes after which a checkpoint runs.
const CHECKPOINT_BYTES: u64 = 16 << 20;
/// The longest a commit stays in the log only (an hour in unit tests, which checkpoint when
/// they mean to).
const CHECKPOINT_INTERVAL: Duration = if cfg!(test) {
    Duration::from_secs(3600)
} else {
    Duration::from_secs(1)
};
/// Mutation bytes one group commit takes at most, so a record stays far below its 4 GiB
/// limit; a transaction holds at most 10 MB, so one always fits.
const MAX_BATCH_BYTES: usize = 64 << 20;
/// The wait before the first attempt to open the files again after a failed write; it
/// doubles with each failed attempt, up to [`MAX_RECOVERY_BACKOFF`].
const FIRST_RECOVERY_BACKOFF: Duration = Duration::from_millis(100);
/// The longest wait between two attempts to recover.
const MAX_RECOVERY_BACKOFF: Duration = Duration::from_secs(10);

/// What the committer thread is asked to do.
pub(crate) enum Request {
    /// Commit a transaction.
    Commit(CommitRequest),
    /// Make everything committed so far durable in redb, then answer.
    #[cfg_attr(not(test), expect(dead_code, reason = "only tests force a checkpoint"))]
    Checkpoint(oneshot::Sender<Result<()>>),
}

/// A transaction asking to commit.
pub(crate) struct CommitRequest {
    pub(crate) read_version: u64,
    pub(crate) started: Instant,
    pub(crate) read_conflicts: Vec<KeyRange>,
    pub(crate) mutations: Vec<Mutation>,
    /// Whether the answer waits until the commit is durable (false: relaxed).
    pub(crate) durable: bool,
    pub(crate) reply: oneshot::Sender<Result<()>>,
}

impl CommitRequest {
    fn size(&self) -> usize {
        self.mutations.iter().map(Mutation::size).sum()
    }
}

/// Write ranges of one committed transaction.
struct Committed {
    version: u64,
    at: Instant,
    writes: Vec<KeyRange>,
}

pub(crate) struct Committer {
    files: StoreFiles,
    /// The open files, or why they are not open.
    state: State,
    /// The database new transactions read.
    readers: Arc<Readers>,
    version: Arc<AtomicU64>,
    log: VecDeque<Committed>,
    /// Transactions that read at a version before this one conflict: the store recovered
    /// after they began, replaying writes the conflict log does not hold.
    recovered_at: u64,
    /// When a checkpoint was last tried.
    checkpointed: Instant,
    /// Told of each group commit, log sync and checkpoint.
    observer: Option<Arc<dyn StoreObserver>>,
}

/// Whether the committer can write.
enum State {
    Open(OpenFiles),
    Failed(Failure),
}

/// A failed write, and when to try opening the files again.
struct Failure {
    reason: String,
    since: Instant,
    retry_at: Instant,
    backoff: Duration,
    attempts: u32,
}

impl Committer {
    /// Starts the committer thread on the open `opened` files; it ends, after a last
    /// checkpoint, when every sender is dropped.
    pub(crate) fn spawn(
        files: StoreFiles,
        opened: OpenFiles,
        readers: Arc<Readers>,
        version: Arc<AtomicU64>,
        observer: Option<Arc<dyn StoreObserver>>,
    ) -> std::io::Result<Sender<Request>> {
        let (sender, receiver) = std::sync::mpsc::channel();
        let committer = Committer {
            files,
            state: State::Open(opened),
            readers,
            version,
            log: VecDeque::new(),
            recovered_at: 0,
            checkpointed: Instant::now(),
            observer,
        };
        std::thread::Builder::new()
            .name("store-committer".into())
            .spawn(move || committer.run(receiver))?;
        Ok(sender)
    }

    fn run(mut self, requests: Receiver<Request>) {
        let mut next = None;
        loop {
            self.recover_when_due();
            let request = match next.take() {
                Some(request) => request,
                None => match requests.recv_timeout(self.idle_wait()) {
                    Ok(request) => request,
                    Err(RecvTimeoutError::Timeout) => {
                        self.checkpoint_when_due();
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
                },
            };
            match request {
                Request::Checkpoint(reply) => {
                    let _ = reply.send(self.checkpoint_tried());
                }
                Request::Commit(first) => {
                    let (batch, rest) = gather(first, &requests);
                    next = rest;
                    self.commit_batch(batch);
                }
            }
            self.checkpoint_when_due();
        }
        // A failed store holds nothing the log lacks: the next open replays it.
        let _ = self.checkpoint();
    }

    /// How long to wait for a request: until the next checkpoint, or the next attempt to
    /// recover.
    fn idle_wait(&self) -> Duration {
        match &self.state {
            State::Open(_) => CHECKPOINT_INTERVAL,
            State::Failed(failure) => failure
                .retry_at
                .saturating_duration_since(Instant::now())
                .min(CHECKPOINT_INTERVAL),
        }
    }

    fn checkpoint_due(&self) -> bool {
        let State::Open(open) = &self.state else {
            return false;
        };
        let written = open.wal.written();
        written > 0
            && (self.checkpointed.elapsed() >= CHECKPOINT_INTERVAL || written >= CHECKPOINT_BYTES)
    }

    /// Syncs redb, which then holds every record of the log, and starts the log over.
    fn checkpoint(&mut self) -> Result<()> {
        let open = match &mut self.state {
            State::Open(open) => open,
            State::Failed(failure) => return Err(StoreError::Unavailable(failure.reason.clone())),
        };
        if open.wal.written() == 0 {
            return Ok(());
        }
        let started = Instant::now();
        let mut write = open.db.begin_write()?;
        write.set_durability(Durability::Immediate)?;
        write.commit()?;
        open.wal.start_over();
        if let Some(observer) = &self.observer {
            observer.checkpointed(started.elapsed());
        }
        Ok(())
    }

    /// [`Committer::checkpoint`]; a failure fails the store, the log still holding every
    /// commit.
    fn checkpoint_tried(&mut self) -> Result<()> {
        let was_open = matches!(self.state, State::Open(_));
        let result = self.checkpoint();
        self.checkpointed = Instant::now();
        if let (true, Err(error)) = (was_open, &result) {
            self.fail(format!("checkpoint failed: {error}"));
        }
        result
    }

    /// Checkpoints when [`Committer::checkpoint_due`]; a failure has failed the store.
    fn checkpoint_when_due(&mut self) {
        if self.checkpoint_due() {
            let _ = self.checkpoint_tried();
        }
    }

    /// Stops writing after a failed write: refuses commits, withdraws the database from
    /// readers and drops the files, to be opened again after a backoff.
    fn fail(&mut self, reason: String) {
        let reason = format!("the embedded store cannot write ({reason}); retrying");
        tracing::error!(%reason, "store failed; commits are refused until it recovers");
        self.readers.withdraw(&reason);
        let now = Instant::now();
        self.state = State::Failed(Failure {
            reason,
            since: now,
            retry_at: now + FIRST_RECOVERY_BACKOFF,
            backoff: FIRST_RECOVERY_BACKOFF,
            attempts: 0,
        });
    }

    /// Opens the files again, replaying the log, when the store failed and the backoff has
    /// passed; on success the store commits again.
    fn recover_when_due(&mut self) {
        let State::Failed(failure) = &mut self.state else {
            return;
        };
        let now = Instant::now();
        if now < failure.retry_at {
            return;
        }
        failure.attempts += 1;
        match files::open(&self.files) {
            Ok(opened) => {
                tracing::info!(
                    attempts = failure.attempts,
                    down_for = ?failure.since.elapsed(),
                    "store recovered; commits are accepted again"
                );
                let recovered_at = self.version.load(Ordering::Acquire) + 1;
                self.version.store(recovered_at, Ordering::Release);
                self.recovered_at = recovered_at;
                self.readers.serve(opened.db.clone());
                self.state = State::Open(opened);
                self.checkpointed = Instant::now();
            }
            Err(error) => {
                failure.backoff = (failure.backoff * 2).min(MAX_RECOVERY_BACKOFF);
                failure.retry_at = now + failure.backoff;
                // Attempts are paced by the backoff, so this logs a few lines a minute at most.
                if error.file_in_use() {
                    tracing::warn!(attempts = failure.attempts, retry_in = ?failure.backoff, "store recovery waits for transactions still reading the failed database");
                } else {
                    tracing::warn!(%error, attempts = failure.attempts, retry_in = ?failure.backoff, "store still cannot open its files");
                }
            }
        }
    }

    fn forget_old_commits(&mut self, now: Instant) {
        while self
            .log
            .front()
            .is_some_and(|c| now.duration_since(c.at) > MAX_AGE * 2)
        {
            self.log.pop_front();
        }
    }

    fn commit_batch(&mut self, batch: Vec<CommitRequest>) {
        let now = Instant::now();
        self.forget_old_commits(now);
        let open = match &mut self.state {
            State::Open(open) => open,
            State::Failed(failure) => {
                let reason = failure.reason.clone();
                return reply_all(batch, || Err(StoreError::Unavailable(reason.clone())));
            }
        };
        let mut version = self.version.load(Ordering::Acquire);
        let mut pending = Vec::new();
        let mut accepted = Vec::new();
        let next_sequence = open.wal.next_sequence();
        let applied = open
            .db
            .begin_write()
            .map_err(StoreError::from)
            .and_then(|mut write| {
                // The log makes the batch durable; redb is synced at checkpoints.
                write.set_durability(Durability::None)?;
                apply_batch(
                    &self.log,
                    self.recovered_at,
                    &write,
                    batch,
                    next_sequence,
                    &mut version,
                    &mut pending,
                    &mut accepted,
                )?;
                Ok(write)
            });
        let write = match applied {
            Ok(write) if !accepted.is_empty() => write,
            Ok(_) => return, // Every request conflicted or was too old.
            Err(error) => {
                let reason = error.to_string();
                reply_all(accepted, || Err(StoreError::Unavailable(reason.clone())));
                return self.fail(format!("commit failed: {error}"));
            }
        };
        let mutations = accepted.iter().flat_map(|request| request.mutations.iter());
        let sync = accepted.iter().any(|request| request.durable);
        if let Err(error) = open.wal.append(mutations, sync) {
            drop(write);
            // Part of the record may be on disk and replayed after a crash: say so.
            reply_all(accepted, || Err(StoreError::CommitUnknownResult));
            return self.fail(format!("log write failed: {error}"));
        }
        if let (true, Some(observer)) = (sync, &self.observer) {
            observer.log_synced();
        }
        if let Err(error) = write.commit() {
            // The log holds the batch: opening the files again replays it.
            reply_all(accepted, || Err(StoreError::CommitUnknownResult));
            return self.fail(format!(
                "database write failed after its log record: {error}"
            ));
        }
        self.version.store(version, Ordering::Release);
        self.log.extend(pending);
        if let Some(observer) = &self.observer {
            observer.group_committed(accepted.len());
        }
        reply_all(accepted, || Ok(()));
    }
}

/// Applies to `write` each request of `batch` that neither conflicts with `log` (or began
/// before the store recovered at `recovered_at`) nor is too old, answering the others, and
/// records `sequence`, the log record the batch will be.
#[allow(clippy::too_many_arguments)]
fn apply_batch(
    log: &VecDeque<Committed>,
    recovered_at: u64,
    write: &WriteTransaction,
    batch: Vec<CommitRequest>,
    sequence: u64,
    version: &mut u64,
    pending: &mut Vec<Committed>,
    accepted: &mut Vec<CommitRequest>,
) -> Result<()> {
    let mut table = write.open_table(KV)?;
    for request in batch {
        if request.started.elapsed() > MAX_AGE {
            let _ = request
                .reply
                .send(Err(StoreError::TransactionTooOld(MAX_AGE)));
            continue;
        }
        let read_before_recovery =
            request.read_version < recovered_at && !request.read_conflicts.is_empty();
        if read_before_recovery || conflicts(log, pending, &request) {
            let _ = request.reply.send(Err(StoreError::Conflict));
            continue;
        }
        for mutation in &request.mutations {
            apply(&mut table, mutation)?;
        }
        *version += 1;
        let writes = request
            .mutations
            .iter()
            .map(Mutation::write_range)
            .collect();
        pending.push(Committed {
            version: *version,
            at: Instant::now(),
            writes,
        });
        accepted.push(request);
    }
    write.open_table(META)?.insert(APPLIED, sequence)?;
    Ok(())
}

/// Whether `request` read a key that a transaction committed after its read version wrote:
/// one in `log`, or one before it in the batch being built (`pending`).
fn conflicts(log: &VecDeque<Committed>, pending: &[Committed], request: &CommitRequest) -> bool {
    // Newest first: only commits after the read version matter, and they are at the end.
    let newer = log
        .iter()
        .rev()
        .take_while(|c| c.version > request.read_version)
        .chain(pending.iter());
    let reads = ReadSet::new(&request.read_conflicts);
    newer
        .flat_map(|committed| committed.writes.iter())
        .any(|write| reads.intersects(write))
}

/// Answers every request in `requests` with `outcome()`.
fn reply_all(requests: Vec<CommitRequest>, outcome: impl Fn() -> Result<()>) {
    for request in requests {
        let _ = request.reply.send(outcome());
    }
}

/// `first` and the requests queued behind it, up to [`MAX_BATCH_BYTES`], and the request
/// that ended the batch without joining it (a checkpoint, or one more commit than fits).
fn gather(
    first: CommitRequest,
    requests: &Receiver<Request>,
) -> (Vec<CommitRequest>, Option<Request>) {
    let mut bytes = first.size();
    let mut batch = vec![first];
    while let Ok(request) = requests.try_recv() {
        let Request::Commit(commit) = request else {
            return (batch, Some(request));
        };
        let size = commit.size();
        if bytes + size > MAX_BATCH_BYTES {
            return (batch, Some(Request::Commit(commit)));
        }
        bytes += size;
        batch.push(commit);
    }
    (batch, None)
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
