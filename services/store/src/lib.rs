//! store: an ordered, transactional key-value layer shaped after FoundationDB.
//!
//! The queue and the lookup cache live here. Transactions are serializable: a transaction
//! that read something another one changed before it committed fails with
//! [`StoreError::Conflict`] and is run again by [`Store::transact`]. Three backends share one
//! interface: **embedded** (redb, durable on one machine, the default), **PostgreSQL** (one
//! database that several processes share) and **FoundationDB** (cargo feature `fdb`). Each
//! enforces FoundationDB's limits with the same errors, so code that passes on one passes on
//! the others.
//!
//! Keys are built with FoundationDB's tuple encoding under one prefix per installation
//! ([`Store::root`]), so several installations can share a cluster. This crate knows nothing
//! of mail, configuration or services.

mod backend;
pub mod blob;
mod embedded;
mod error;
#[cfg(feature = "fdb")]
mod foundationdb;
pub mod limits;
mod mutation;
mod observer;
mod postgresql;
mod range;
mod retry;
mod transaction;
mod write_buffer;

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use futures::future::BoxFuture;
use futures::{Stream, StreamExt, TryStreamExt};
use tokio::sync::watch;

pub use error::{Result, StoreError};
pub use foundationdb_tuple::{self as tuple, Subspace, TuplePack, TupleUnpack};
pub use mutation::decode_counter;
pub use observer::StoreObserver;
pub use postgresql::PostgresSettings;
pub use range::{KeyRange, KeyValue, RangeOptions, RangePage, key_after};
pub use retry::RetryPolicy;
pub use transaction::Transaction;

use backend::Backend;

/// Default key prefix of an installation.
pub const DEFAULT_PREFIX: &str = "ferrymail";

/// How a store behaves, whatever its backend.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Key prefix of this installation.
    pub prefix: String,
    /// Retries of conflicting transactions.
    pub retry: RetryPolicy,
    /// Test mode: run every transaction closure twice, discarding the first run, to expose
    /// closures that are not idempotent under retry.
    pub run_closures_twice: bool,
    /// Told of every transaction's outcome (metrics), if set.
    pub observer: Option<Arc<dyn StoreObserver>>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            prefix: DEFAULT_PREFIX.into(),
            retry: RetryPolicy::default(),
            run_closures_twice: false,
            observer: None,
        }
    }
}

/// A handle to a store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    backend: Arc<dyn Backend>,
    root: Subspace,
    options: StoreOptions,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend.name())
            .field("prefix", &self.options.prefix)
            .finish()
    }
}

impl Store {
    /// Opens the embedded store in directory `path`, durable (each group commit synced to its
    /// write-ahead log, relaxed ones with the next).
    pub fn open_embedded(path: &Path, options: StoreOptions) -> Result<Self> {
        let backend = embedded::EmbeddedBackend::open(path, options.observer.clone())?;
        Ok(Self::new(Arc::new(backend), options))
    }

    /// Opens the FoundationDB store of the cluster named by `cluster_file`, else by
    /// `FDB_CLUSTER_FILE`, else by the client's default cluster file; blocks until the
    /// cluster answers (up to 5 s) and fails with a `StoreError` if it does not.
    #[cfg(feature = "fdb")]
    pub fn open_foundationdb(cluster_file: Option<&Path>, options: StoreOptions) -> Result<Self> {
        let backend = crate::foundationdb::FoundationDbBackend::open(cluster_file)?;
        Ok(Self::new(Arc::new(backend), options))
    }

    /// Opens the PostgreSQL store of `settings`, creating its schema on first use. A refused
    /// login, a failed TLS handshake or a schema of another version is an error; a server that
    /// cannot be reached is not: the store then reports itself unavailable
    /// ([`Store::availability`]), its transactions fail with the retryable
    /// [`StoreError::Disconnected`], and it connects once the server answers.
    pub async fn open_postgresql(
        settings: &PostgresSettings,
        options: StoreOptions,
    ) -> Result<Self> {
        let backend = postgresql::PostgresBackend::open(settings).await?;
        Ok(Self::new(Arc::new(backend), options))
    }

    fn new(backend: Arc<dyn Backend>, options: StoreOptions) -> Self {
        let root = Subspace::from(&options.prefix.as_str());
        Self {
            backend,
            root,
            options,
        }
    }

    /// The installation's key space: build every key from it.
    pub fn root(&self) -> &Subspace {
        &self.root
    }

    /// The backend's name (`embedded`, `postgresql`, `foundationdb`).
    pub fn backend_name(&self) -> &'static str {
        self.backend.name()
    }

    /// Why the store cannot commit now, as it changes: `Some(reason)` from a failed write
    /// until the store has recovered (the embedded store, after a full disk) or while its
    /// server cannot be reached (PostgreSQL), `None` while it can. A backend that does not
    /// report it is always `None`.
    pub fn availability(&self) -> watch::Receiver<Option<String>> {
        self.backend
            .availability()
            .unwrap_or_else(|| watch::Sender::new(None).subscribe())
    }

    /// Runs `f` in a transaction and commits it, running it again on conflicts and other
    /// retryable errors (bounded by [`RetryPolicy`]). `f` may run several times: it must
    /// not have effects outside the transaction.
    pub async fn transact<T, F>(&self, mut f: F) -> Result<T>
    where
        F: for<'t> FnMut(&'t Transaction) -> BoxFuture<'t, Result<T>> + Send,
        T: Send,
    {
        let policy = self.options.retry;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let outcome = self.attempt(&mut f).await;
            match outcome {
                Ok(value) => return Ok(value),
                Err(error) if error.is_retryable() && attempt < policy.max_attempts => {
                    tracing::debug!(%error, attempt, "retrying transaction");
                    self.observe(|o| o.retried(&error));
                    tokio::time::sleep(policy.backoff(attempt)).await;
                }
                Err(error) if error.is_retryable() => {
                    let error = StoreError::RetriesExhausted {
                        attempts: attempt,
                        last: Box::new(error),
                    };
                    self.observe(|o| o.failed(&error));
                    return Err(error);
                }
                Err(error) => {
                    // An abort is the closure's answer, not a failure of the store.
                    if !matches!(error, StoreError::Aborted(_)) {
                        self.observe(|o| o.failed(&error));
                    }
                    return Err(error);
                }
            }
        }
    }

    /// One run of `f` in a new transaction, committed if it succeeds. A transaction that
    /// cannot begin (the database unreachable) fails the attempt like any other error, so
    /// that a retryable one is retried.
    async fn attempt<T, F>(&self, f: &mut F) -> Result<T>
    where
        F: for<'t> FnMut(&'t Transaction) -> BoxFuture<'t, Result<T>> + Send,
        T: Send,
    {
        if self.options.run_closures_twice {
            let discarded = Transaction::new(self.backend.begin().await?);
            // Whatever the first run did is dropped uncommitted, before the second run
            // begins: a backend with a bounded pool of connections needs it back.
            let _ = f(&discarded).await;
            drop(discarded);
        }
        let tx = Transaction::new(self.backend.begin().await?);
        let value = f(&tx).await?;
        self.commit(tx).await.map(|()| value)
    }

    /// Commits `tx`, telling the observer how long a commit that waited for its writes to be
    /// durable took.
    async fn commit(&self, tx: Transaction) -> Result<()> {
        let timed = self.options.observer.is_some() && tx.writes_durably();
        let started = Instant::now();
        tx.commit().await?;
        if timed {
            self.observe(|o| o.committed(started.elapsed()));
        }
        Ok(())
    }

    fn observe(&self, report: impl FnOnce(&dyn StoreObserver)) {
        if let Some(observer) = &self.options.observer {
            report(observer.as_ref());
        }
    }

    /// Streams every pair of `range`, `page` pairs per transaction. Not one snapshot: each
    /// page is read in its own transaction, resuming after the last key read, so a scan of
    /// any length never outlives FoundationDB's 5 s transaction limit.
    pub fn scan(
        &self,
        range: KeyRange,
        page: usize,
    ) -> impl Stream<Item = Result<KeyValue>> + Send + '_ {
        let page = page.max(1);
        futures::stream::try_unfold(Some(range), move |next| async move {
            let Some(range) = next else {
                return Ok::<_, StoreError>(None);
            };
            let read = range.clone();
            let got = self
                .transact(move |tx| {
                    let read = read.clone();
                    Box::pin(async move {
                        tx.get_range(
                            &read,
                            RangeOptions {
                                limit: page,
                                reverse: false,
                            },
                        )
                        .await
                    })
                })
                .await?;
            let next = match (got.more, got.pairs.last()) {
                (true, Some(last)) => Some(KeyRange::new(key_after(&last.key), range.end.clone())),
                _ => None,
            };
            Ok(Some((
                futures::stream::iter(got.pairs.into_iter().map(Ok)),
                next,
            )))
        })
        .try_flatten()
        .boxed()
    }
}
