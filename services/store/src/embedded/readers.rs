//! The database that new transactions read, and whether the store can commit now.
//!
//! The committer withdraws the database when a write fails: redb refuses every operation
//! after an I/O error until the file is opened again, which needs every handle on it
//! dropped. It serves the reopened one once it has recovered. Owners follow the changes
//! through [`Readers::availability`].

use std::sync::{Arc, RwLock};

use redb::Database;
use tokio::sync::watch;

use crate::error::{Result, StoreError};

/// The database readers use, or why there is none now.
pub(crate) struct Readers {
    current: RwLock<std::result::Result<Arc<Database>, String>>,
    availability: watch::Sender<Option<String>>,
}

impl Readers {
    /// Readers of `db`, available.
    pub(crate) fn new(db: Arc<Database>) -> Self {
        Self {
            current: RwLock::new(Ok(db)),
            availability: watch::Sender::new(None),
        }
    }

    /// The database to read, or [`StoreError::Unavailable`] while the store recovers.
    pub(crate) fn database(&self) -> Result<Arc<Database>> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
            .map_err(StoreError::Unavailable)
    }

    /// Serves `db` from now on: the store recovered.
    pub(crate) fn serve(&self, db: Arc<Database>) {
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Ok(db);
        self.availability.send_replace(None);
    }

    /// Drops the database, answering `reason` instead until [`Readers::serve`].
    pub(crate) fn withdraw(&self, reason: &str) {
        let previous = std::mem::replace(
            &mut *self
                .current
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
            Err(reason.to_owned()),
        );
        // Dropped outside the lock.
        drop(previous);
        self.availability.send_replace(Some(reason.to_owned()));
    }

    /// Why the store cannot commit, as it changes; `None` while it can.
    pub(crate) fn availability(&self) -> watch::Receiver<Option<String>> {
        self.availability.subscribe()
    }
}
