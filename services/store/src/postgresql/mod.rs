//! The PostgreSQL backend: the store in one database that any number of processes share,
//! with FoundationDB's isolation, limits and errors.
//!
//! A transaction reads from one REPEATABLE READ snapshot of a pooled connection and buffers
//! its writes ([`crate::mutation`]), as the other backends do. Its commit checks, as
//! FoundationDB's resolvers do, that no commit since its snapshot wrote a key range it read,
//! and applies its mutations in the same statement (`schema`), batched with the other
//! commits of the process ready at the same time (`committer`). The transactions are
//! serializable — strictly: each commit is ordered by its version.
//!
//! Why not PostgreSQL's own SERIALIZABLE isolation: its predicate locks cover index pages,
//! not keys, so two transactions reading and writing distinct keys of one page conflict, and
//! two blind writes of one key conflict too; FoundationDB reports neither. Here, as there,
//! only a write into a range another transaction read is a conflict, so atomic adds and
//! compare-and-clears never conflict with each other: they are applied to the latest value
//! at commit. Commits are ordered by one row of the database, so batches take turns; each
//! is one round trip holding that turn.

mod committer;
mod connection;
mod error;
mod schema;
mod transaction;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Object, Pool};
use tokio::sync::watch;

use crate::backend::{Backend, BackendTransaction};
use crate::error::{Result, StoreError};
pub use connection::PostgresSettings;
use error::{pool_error, pool_exhausted, query_error};
use transaction::PostgresTransaction;

/// How often the server is probed, to report whether it can be reached.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// What the backend and its transactions share.
pub(super) struct Shared {
    pool: Pool,
    endpoint: String,
    /// Whether the schema has been created or checked since the start.
    ready: AtomicBool,
    /// Serializes the schema check of transactions that find it not done.
    preparing: tokio::sync::Mutex<()>,
    availability: watch::Sender<Option<String>>,
    /// Where transactions send their writes to be committed in batches.
    committer: tokio::sync::mpsc::UnboundedSender<committer::CommitRequest>,
}

impl Shared {
    /// Reports that the server cannot be used now, and why.
    fn unavailable(&self, reason: &str) {
        self.availability.send_if_modified(|current| {
            if current.as_deref() == Some(reason) {
                return false;
            }
            if current.is_none() {
                tracing::warn!(backend = "postgresql", reason, "store unavailable");
            }
            *current = Some(reason.to_owned());
            true
        });
    }

    /// Reports that the server answers again.
    fn available(&self) {
        self.availability.send_if_modified(|current| {
            if current.take().is_some() {
                tracing::info!(backend = "postgresql", "store available again");
                true
            } else {
                false
            }
        });
    }

    /// A pooled connection, with the schema checked once.
    async fn connection(&self) -> Result<Object> {
        let result = self.try_connection().await;
        match &result {
            Ok(_) => self.available(),
            Err((_, Busy::Yes)) => {}
            Err((StoreError::Disconnected(reason), Busy::No)) => self.unavailable(reason),
            Err((error, Busy::No)) => self.unavailable(&error.to_string()),
        }
        result.map_err(|(error, _)| error)
    }

    async fn try_connection(&self) -> Result<Object, (StoreError, Busy)> {
        let mut client = self.pool.get().await.map_err(|e| {
            let busy = if pool_exhausted(&e) {
                Busy::Yes
            } else {
                Busy::No
            };
            (pool_error(e, &self.endpoint), busy)
        })?;
        if !self.ready.load(Ordering::Acquire) {
            let _turn = self.preparing.lock().await;
            if !self.ready.load(Ordering::Acquire) {
                schema::ensure(&mut client)
                    .await
                    .map_err(|e| (e, Busy::No))?;
                self.ready.store(true, Ordering::Release);
            }
        }
        Ok(client)
    }
}

/// Whether a connection was refused only because every pooled one was in use.
enum Busy {
    Yes,
    No,
}

pub(crate) struct PostgresBackend {
    shared: Arc<Shared>,
}

impl PostgresBackend {
    /// Connects to the server of `settings` and creates or checks the schema. A refused
    /// login, a failed TLS handshake or a schema of another version fails the opening; a
    /// server that cannot be reached does not: the backend reports itself unavailable and
    /// connects once the server answers.
    pub(crate) async fn open(settings: &PostgresSettings) -> Result<Self> {
        let pool = settings.pool()?;
        let shared = Arc::new_cyclic(|shared| Shared {
            pool,
            endpoint: settings.endpoint(),
            ready: AtomicBool::new(false),
            preparing: tokio::sync::Mutex::new(()),
            availability: watch::Sender::new(None),
            committer: committer::spawn(shared.clone()),
        });
        // Not through `connection`, which logs: the caller says once why the store is not
        // ready at start.
        match shared.try_connection().await {
            Ok(_) => {}
            Err((StoreError::Disconnected(reason), _)) => {
                shared.availability.send_replace(Some(reason));
            }
            Err((error, _)) => return Err(error),
        }
        tokio::spawn(probe(Arc::downgrade(&shared)));
        Ok(Self { shared })
    }
}

/// Checks the server every [`PROBE_INTERVAL`] while the backend lives, so that readiness
/// follows it even when no transaction runs.
async fn probe(shared: std::sync::Weak<Shared>) {
    loop {
        tokio::time::sleep(PROBE_INTERVAL).await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        if let Ok(client) = shared.connection().await
            && let Err(error) = client.simple_query("").await.map_err(query_error)
        {
            shared.unavailable(&error.to_string());
        }
    }
}

#[async_trait]
impl Backend for PostgresBackend {
    async fn begin(&self) -> Result<Box<dyn BackendTransaction>> {
        let client = self.shared.connection().await?;
        // The version is read by the snapshot's first statement, so it is the snapshot's.
        let begin = client.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY");
        let version = client.query_one(schema::READ_VERSION, &[]);
        let started = futures::try_join!(begin, version).map_err(query_error);
        let read_version = match started.and_then(|(_, row)| row.try_get(0).map_err(query_error)) {
            Ok(version) => version,
            Err(error) => {
                if let StoreError::Disconnected(reason) = &error {
                    self.shared.unavailable(reason);
                }
                // The connection may be inside the transaction: it is not given back.
                drop(Object::take(client));
                return Err(error);
            }
        };
        Ok(Box::new(PostgresTransaction::new(
            client,
            read_version,
            self.shared.clone(),
        )))
    }

    fn name(&self) -> &'static str {
        "postgresql"
    }

    fn availability(&self) -> Option<watch::Receiver<Option<String>>> {
        Some(self.shared.availability.subscribe())
    }
}
