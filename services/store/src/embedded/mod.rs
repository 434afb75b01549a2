//! The embedded backend: a durable single-node store on redb, a pure-Rust embedded
//! database, with FoundationDB's isolation, limits and errors. Commits are made durable by
//! a write-ahead log beside the database file (`wal`), redb being synced at checkpoints.

mod committer;
mod files;
mod readers;
mod tables;
mod transaction;
mod wal;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Sender;

use async_trait::async_trait;
use redb::ReadableDatabase;
use tokio::sync::watch;

use crate::backend::{Backend, BackendTransaction};
use crate::error::{Result, StoreError};
use crate::observer::StoreObserver;
use committer::{Committer, Request};
use files::StoreFiles;
use readers::Readers;
use tables::KV;
use transaction::EmbeddedTransaction;

pub(crate) struct EmbeddedBackend {
    readers: Arc<Readers>,
    version: Arc<AtomicU64>,
    committer: Sender<Request>,
}

impl EmbeddedBackend {
    /// Opens (creating if needed) the store in directory `path`, first replaying into redb
    /// what the write-ahead log holds beyond it (commits since the last checkpoint before a
    /// crash). `observer` hears of each log sync.
    pub(crate) fn open(path: &Path, observer: Option<Arc<dyn StoreObserver>>) -> Result<Self> {
        let files = StoreFiles::new(path);
        let opened = files::open(&files).map_err(|e| StoreError::Storage(e.to_string()))?;
        let readers = Arc::new(Readers::new(opened.db.clone()));
        let version = Arc::new(AtomicU64::new(0));
        let committer = Committer::spawn(files, opened, readers.clone(), version.clone(), observer)
            .map_err(|e| StoreError::Storage(format!("cannot start the committer: {e}")))?;
        Ok(Self {
            readers,
            version,
            committer,
        })
    }

    /// Syncs redb so that it holds every commit so far without the log.
    #[cfg(test)]
    async fn checkpoint(&self) -> Result<()> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.committer
            .send(Request::Checkpoint(reply))
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }
}

#[async_trait]
impl Backend for EmbeddedBackend {
    async fn begin(&self) -> Result<Box<dyn BackendTransaction>> {
        // Read the version before taking the snapshot: the snapshot then holds at least every
        // commit up to that version, and conflicts are checked against every later one.
        let read_version = self.version.load(Ordering::Acquire);
        let snapshot = self.readers.database()?.begin_read()?.open_table(KV)?;
        Ok(Box::new(EmbeddedTransaction::new(
            snapshot,
            read_version,
            self.committer.clone(),
        )))
    }

    fn name(&self) -> &'static str {
        "embedded"
    }

    fn availability(&self) -> Option<watch::Receiver<Option<String>>> {
        Some(self.readers.availability())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::decode_counter;
    use crate::mutation::Mutation;
    use files::{DATABASE_NAME, LOG_NAME};

    /// Commits `set` and one increment of the counter `b"n"` in one transaction.
    async fn commit(backend: &EmbeddedBackend, set: &[(&[u8], &[u8])]) {
        let transaction = backend.begin().await.unwrap();
        for (key, value) in set {
            transaction.mutate(Mutation::Set(key.to_vec(), value.to_vec()));
        }
        transaction.mutate(Mutation::Add(b"n".to_vec(), 1));
        transaction.commit().await.unwrap();
    }

    async fn read(backend: &EmbeddedBackend, key: &[u8]) -> Option<Vec<u8>> {
        backend.begin().await.unwrap().get(key).await.unwrap()
    }

    async fn counter(backend: &EmbeddedBackend) -> i64 {
        read(backend, b"n").await.map_or(0, |v| decode_counter(&v))
    }

    #[tokio::test]
    async fn a_relaxed_commit_survives_a_crash_of_the_process() {
        // Answered before any sync, its log record is already in the file: only a crash of
        // the machine, losing what the kernel had not written, can undo it.
        let dir = tempfile::tempdir().unwrap();
        let backend = EmbeddedBackend::open(dir.path(), None).unwrap();
        let transaction = backend.begin().await.unwrap();
        transaction.mutate(Mutation::Set(b"relaxed".to_vec(), b"1".to_vec()));
        transaction.relax_durability();
        transaction.commit().await.unwrap();
        let (crashed, _) = crash(backend, dir.path());
        let replayed = EmbeddedBackend::open(crashed.path(), None).unwrap();
        assert_eq!(
            read(&replayed, b"relaxed").await.as_deref(),
            Some(&b"1"[..])
        );
    }

    #[tokio::test]
    async fn a_blob_chunk_takes_one_page_of_its_size_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let backend = EmbeddedBackend::open(dir.path(), None).unwrap();
        let chunk = vec![7u8; crate::blob::CHUNK_SIZE];
        let chunks = 64;
        for index in 0..chunks {
            // Keys as long as a chunk's under a store prefix of a few hundred bytes.
            let mut key = vec![b'k'; 500];
            key.extend_from_slice(&u32::to_be_bytes(index));
            commit(&backend, &[(&key, &chunk)]).await;
        }
        backend.checkpoint().await.unwrap();
        let stats = backend
            .readers
            .database()
            .unwrap()
            .begin_write()
            .unwrap()
            .stats()
            .unwrap();
        let allocated = stats.allocated_pages() * u64::try_from(stats.page_size()).unwrap();
        let payload = u64::try_from(chunks as usize * chunk.len()).unwrap();
        // A chunk that overflowed its page would take a page twice its size.
        assert!(
            allocated < payload + payload / 10,
            "{allocated} bytes allocated for {payload} bytes of chunks"
        );
    }

    /// What a crash of the process would leave on disk: the files as they are now, without
    /// what redb holds in memory. `backend` is leaked, never closed, as a crash leaves it.
    /// Returns two copies, each in a directory of its own: with the log, and without it.
    fn crash(backend: EmbeddedBackend, from: &Path) -> (tempfile::TempDir, tempfile::TempDir) {
        std::mem::forget(backend);
        let copy = |names: &[&str]| {
            let to = tempfile::tempdir().unwrap();
            for name in names {
                std::fs::copy(from.join(name), to.path().join(name)).unwrap();
            }
            to
        };
        (copy(&[DATABASE_NAME, LOG_NAME]), copy(&[DATABASE_NAME]))
    }

    #[tokio::test]
    async fn commits_after_the_last_checkpoint_are_replayed_from_the_log_once() {
        let dir = tempfile::tempdir().unwrap();
        let backend = EmbeddedBackend::open(dir.path(), None).unwrap();
        commit(&backend, &[(b"a", b"1")]).await;
        commit(&backend, &[(b"b", b"2")]).await;
        let (crashed, without_log) = crash(backend, dir.path());

        // redb alone does not hold them: they are durable through the log only.
        let bare = EmbeddedBackend::open(without_log.path(), None).unwrap();
        assert_eq!((read(&bare, b"a").await, counter(&bare).await), (None, 0));

        let replayed = EmbeddedBackend::open(crashed.path(), None).unwrap();
        assert_eq!(read(&replayed, b"b").await.as_deref(), Some(&b"2"[..]));
        assert_eq!(counter(&replayed).await, 2);
        // The replay is synced into redb with its last record: a second crash neither needs
        // the log nor applies it again (the counter would then be 4).
        let (again, again_without_log) = crash(replayed, crashed.path());
        for dir in [again, again_without_log] {
            let reopened = EmbeddedBackend::open(dir.path(), None).unwrap();
            assert_eq!(read(&reopened, b"a").await.as_deref(), Some(&b"1"[..]));
            assert_eq!(counter(&reopened).await, 2);
        }
    }

    #[tokio::test]
    async fn a_checkpoint_leaves_redb_holding_every_commit_and_the_log_starts_over() {
        let dir = tempfile::tempdir().unwrap();
        let backend = EmbeddedBackend::open(dir.path(), None).unwrap();
        for key in [b"a", b"b", b"c"] {
            commit(&backend, &[(key, b"before")]).await;
        }
        backend.checkpoint().await.unwrap();
        // Written over the start of the log; the older records after it are not replayed.
        commit(&backend, &[(b"d", b"after")]).await;
        let (crashed, without_log) = crash(backend, dir.path());

        let bare = EmbeddedBackend::open(without_log.path(), None).unwrap();
        assert_eq!(read(&bare, b"c").await.as_deref(), Some(&b"before"[..]));
        assert_eq!((read(&bare, b"d").await, counter(&bare).await), (None, 3));

        let replayed = EmbeddedBackend::open(crashed.path(), None).unwrap();
        assert_eq!(read(&replayed, b"d").await.as_deref(), Some(&b"after"[..]));
        assert_eq!(counter(&replayed).await, 4);
    }

    #[tokio::test]
    async fn a_full_log_is_checkpointed_without_being_asked() {
        let dir = tempfile::tempdir().unwrap();
        let backend = EmbeddedBackend::open(dir.path(), None).unwrap();
        let value = vec![7u8; 90_000];
        // 20 transactions of 900 kB: the log passes its 16 MiB during the 19th.
        for n in 0u8..20 {
            let keys: Vec<[u8; 2]> = (0..10).map(|i| [n, i]).collect();
            let set: Vec<(&[u8], &[u8])> = keys.iter().map(|k| (&k[..], &value[..])).collect();
            commit(&backend, &set).await;
        }
        let (_, without_log) = crash(backend, dir.path());
        let bare = EmbeddedBackend::open(without_log.path(), None).unwrap();
        assert!(counter(&bare).await >= 19, "{}", counter(&bare).await);
        assert_eq!(read(&bare, &[18, 9]).await.as_deref(), Some(&value[..]));
    }
}
