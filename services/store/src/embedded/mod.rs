//! The embedded backend: a durable single-node store on redb, a pure-Rust embedded
//! database, with FoundationDB's isolation, limits and errors.

mod committer;
mod mutation;
mod transaction;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Sender;

use async_trait::async_trait;
use redb::{Database, ReadableDatabase};

use crate::backend::{Backend, BackendTransaction};
use crate::error::{Result, StoreError};
use committer::{CommitRequest, Committer, KV};
use transaction::EmbeddedTransaction;

/// File name of the database inside the store's directory.
const FILE_NAME: &str = "ferrymail.redb";

pub(crate) struct EmbeddedBackend {
    db: Arc<Database>,
    version: Arc<AtomicU64>,
    committer: Sender<CommitRequest>,
}

impl EmbeddedBackend {
    /// Opens (creating if needed) the store in directory `path`.
    pub(crate) fn open(path: &Path, durable: bool) -> Result<Self> {
        std::fs::create_dir_all(path)
            .map_err(|e| StoreError::Storage(format!("cannot create {}: {e}", path.display())))?;
        let db = Database::create(path.join(FILE_NAME))?;
        // Create the table once, so that read transactions can always open it.
        let write = db.begin_write()?;
        write.open_table(KV)?;
        write.commit()?;
        let db = Arc::new(db);
        let version = Arc::new(AtomicU64::new(0));
        let committer = Committer::spawn(db.clone(), version.clone(), durable)
            .map_err(|e| StoreError::Storage(format!("cannot start the committer: {e}")))?;
        Ok(Self {
            db,
            version,
            committer,
        })
    }
}

#[async_trait]
impl Backend for EmbeddedBackend {
    async fn begin(&self) -> Result<Box<dyn BackendTransaction>> {
        // Read the version before taking the snapshot: the snapshot then holds at least every
        // commit up to that version, and conflicts are checked against every later one.
        let read_version = self.version.load(Ordering::Acquire);
        let snapshot = self.db.begin_read()?.open_table(KV)?;
        Ok(Box::new(EmbeddedTransaction::new(
            snapshot,
            read_version,
            self.committer.clone(),
        )))
    }

    fn name(&self) -> &'static str {
        "embedded"
    }
}
