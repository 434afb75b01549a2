//! The embedded store's two files, the redb database and its write-ahead log, and opening
//! them: at start, and again after a failed write once the cause is gone. Opening replays
//! into redb what the log holds beyond it, in bounded steps, so that a nearly full disk can
//! take the replay; when it cannot, the error says how much room the replay needs.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{Database, Durability, ReadableTable};

use super::tables::{APPLIED, KV, META, apply};
use super::wal::{Unapplied, WalError, WriteAheadLog};
use crate::mutation::Mutation;

/// File name of the database inside the store's directory.
pub(crate) const DATABASE_NAME: &str = "ferrymail.redb";
/// File name of the write-ahead log beside it.
pub(crate) const LOG_NAME: &str = "ferrymail.wal";

/// Memory redb may keep of the database's pages, written ones waiting for a checkpoint
/// included.
///
/// redb's default is 1 GiB, and every page written goes through it: each message body
/// stored made the process grow by its size until a gigabyte was reached, and it never
/// shrank. The pages that are read again (the queue's records and due index, lookup-cache
/// entries) are few; message bodies are written once and read once, and the kernel's page
/// cache serves those reads as well.
const CACHE_BYTES: usize = 32 * 1024 * 1024;

/// Mutation bytes replayed per synced redb commit: a replay cut short by a full disk keeps
/// the steps it made, and holds one step in memory at a time.
const REPLAY_STEP_BYTES: usize = 4 << 20;

/// Room redb needs beside the pages of the data itself (its header, allocator state and the
/// B-tree's branch pages), rounded up generously.
const REDB_OVERHEAD_BYTES: u64 = 4 << 20;

/// Where the store's files are.
#[derive(Debug, Clone)]
pub(crate) struct StoreFiles {
    dir: PathBuf,
}

impl StoreFiles {
    /// The files in directory `dir`.
    pub(crate) fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
        }
    }

    /// The redb file.
    pub(crate) fn database(&self) -> PathBuf {
        self.dir.join(DATABASE_NAME)
    }

    /// The write-ahead log.
    pub(crate) fn log(&self) -> PathBuf {
        self.dir.join(LOG_NAME)
    }

    /// The directory holding both.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }
}

/// The database and its log, open and ready to commit.
pub(crate) struct OpenFiles {
    pub(crate) db: Arc<Database>,
    pub(crate) wal: WriteAheadLog,
}

/// Why the store's files could not be opened.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OpenError {
    /// The directory could not be created.
    #[error("cannot create {path}: {source}")]
    Directory {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// redb failed.
    #[error("{0}")]
    Database(#[from] redb::Error),
    /// The log failed.
    #[error("{0}")]
    Log(#[from] WalError),
    /// The filesystem is full: opening needs `needed` bytes free, and has `free`.
    #[error(
        "no room left on the filesystem of {dir} ({error}): opening the store needs about \
         {needed_mib} MiB free there to replay its write-ahead log, and {free_mib} MiB are free; \
         free that much and start again (nothing is lost meanwhile)",
        dir = dir.display(),
        needed_mib = needed.div_ceil(1 << 20),
        free_mib = free / (1 << 20),
    )]
    NoRoom {
        /// The store's directory.
        dir: PathBuf,
        /// What failed.
        error: String,
        /// Bytes the open needs free.
        needed: u64,
        /// Bytes free now.
        free: u64,
    },
}

impl OpenError {
    /// Whether another handle still holds the database file: the readers of a failed one,
    /// which let go within a transaction's lifetime.
    pub(crate) fn file_in_use(&self) -> bool {
        matches!(self, OpenError::Database(redb::Error::DatabaseAlreadyOpen))
    }
}

/// Opens the files (creating them if needed) and replays into redb what the log holds beyond
/// it (commits since the last checkpoint before a crash or a failed write).
pub(crate) fn open(files: &StoreFiles) -> Result<OpenFiles, OpenError> {
    std::fs::create_dir_all(files.dir()).map_err(|source| OpenError::Directory {
        path: files.dir().to_path_buf(),
        source,
    })?;
    let db = redb::Builder::new()
        .set_cache_size(CACHE_BYTES)
        .create(files.database())
        .map_err(|e| diagnose(redb::Error::from(e).into(), files, REDB_OVERHEAD_BYTES))?;
    let applied =
        applied_sequence(&db).map_err(|e| diagnose(e.into(), files, REDB_OVERHEAD_BYTES))?;
    let (wal, unapplied) = WriteAheadLog::open(&files.log(), applied)?;
    let steps = replay_steps(&unapplied);
    replay(&db, &steps).map_err(|e| diagnose(e.into(), files, room_for_replay(&steps)))?;
    Ok(OpenFiles {
        db: Arc::new(db),
        wal,
    })
}

/// The last log record redb holds, creating the tables of a new file (so that read
/// transactions can always open them).
fn applied_sequence(db: &Database) -> Result<u64, redb::Error> {
    let write = db.begin_write()?;
    write.open_table(KV)?;
    let applied = write
        .open_table(META)?
        .get(APPLIED)?
        .map_or(0, |v| v.value());
    write.commit()?;
    Ok(applied)
}

/// Records replayed in one synced redb commit.
struct ReplayStep<'a> {
    records: Vec<&'a [Mutation]>,
    /// The sequence of the last one.
    last: u64,
    /// Their mutation bytes.
    bytes: usize,
}

/// The log's records that redb does not hold, in steps of about [`REPLAY_STEP_BYTES`] (a
/// record larger than that is a step of its own).
fn replay_steps(unapplied: &Unapplied) -> Vec<ReplayStep<'_>> {
    let first = unapplied.last + 1 - unapplied.batches.len() as u64;
    let mut steps: Vec<ReplayStep<'_>> = Vec::new();
    for (index, batch) in unapplied.batches.iter().enumerate() {
        let bytes = batch.iter().map(Mutation::size).sum::<usize>();
        match steps.last_mut() {
            Some(step) if step.bytes < REPLAY_STEP_BYTES => {
                step.records.push(batch);
                step.bytes += bytes;
                step.last = first + index as u64;
            }
            _ => steps.push(ReplayStep {
                records: vec![batch],
                last: first + index as u64,
                bytes,
            }),
        }
    }
    steps
}

/// Applies `steps`, one synced redb commit each; each commit records the last record it
/// holds, so a replay cut short (a full disk) goes on where it stopped.
fn replay(db: &Database, steps: &[ReplayStep<'_>]) -> Result<(), redb::Error> {
    if steps.is_empty() {
        return Ok(());
    }
    let mut mutations = 0;
    for step in steps {
        mutations += replay_step(db, &step.records, step.last)?;
    }
    tracing::info!(
        commits = steps.iter().map(|s| s.records.len()).sum::<usize>(),
        mutations,
        "the embedded store replayed its write-ahead log"
    );
    Ok(())
}

/// Applies `records`, the last of which has sequence `last`, in one synced redb commit.
fn replay_step(db: &Database, records: &[&[Mutation]], last: u64) -> Result<usize, redb::Error> {
    let mut write = db.begin_write()?;
    write.set_durability(Durability::Immediate)?;
    let mut mutations = 0;
    {
        let mut table = write.open_table(KV)?;
        for mutation in records.iter().flat_map(|record| record.iter()) {
            apply(&mut table, mutation).map_err(|e| redb::Error::Corrupted(e.to_string()))?;
            mutations += 1;
        }
        write.open_table(META)?.insert(APPLIED, last)?;
    }
    write.commit()?;
    Ok(mutations)
}

/// `error`, or for a full filesystem the room the open needs (`needed`) and the room there is.
fn diagnose(error: OpenError, files: &StoreFiles, needed: u64) -> OpenError {
    let io = match &error {
        OpenError::Database(redb::Error::Io(io))
        | OpenError::Log(WalError::Io { source: io, .. }) => io,
        _ => return error,
    };
    if !out_of_room(io) {
        return error;
    }
    OpenError::NoRoom {
        dir: files.dir().to_path_buf(),
        error: io.to_string(),
        needed,
        free: free_bytes(files.dir()).unwrap_or(0),
    }
}

/// Whether `error` says the filesystem (or the user's quota) is full.
pub(crate) fn out_of_room(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    )
}

/// Bytes a replay of `steps` may need free: room for everything it writes (the log's
/// records may all be new data; redb pages round values up by an eighth at most), plus its
/// largest step again (the pages a step rewrites are freed only once the next is durable),
/// plus redb's own overhead.
fn room_for_replay(steps: &[ReplayStep<'_>]) -> u64 {
    let total: u64 = steps.iter().map(|s| s.bytes as u64).sum();
    let largest = steps.iter().map(|s| s.bytes as u64).max().unwrap_or(0);
    total + total / 8 + largest + REDB_OVERHEAD_BYTES
}

/// Bytes available to this process on the filesystem of `dir`.
fn free_bytes(dir: &Path) -> Option<u64> {
    let stat = rustix::fs::statvfs(dir).ok()?;
    Some(stat.f_bavail.saturating_mul(stat.f_frsize))
}
