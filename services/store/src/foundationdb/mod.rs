//! The FoundationDB backend (cargo feature `fdb`): every store transaction is one
//! FoundationDB transaction, on the cluster a cluster file names.
//!
//! Building needs libclang (the `foundationdb` crate generates its bindings from the headers
//! it ships); linking and running need FoundationDB's client library, `libfdb_c`, of 7.3 or
//! later.
//!
//! Long scans cannot meet `transaction_too_old` (1007): `Store::scan` reads each page in its
//! own transaction, resuming after the last key, so no transaction of a scan lives longer than
//! one page read. Only a closure that itself runs past 5 s meets it, and `Store::transact`
//! retries it as it does a conflict.

mod cluster;
mod error;
mod network;
mod transaction;

use std::path::Path;

use ::foundationdb::Database;
use async_trait::async_trait;

use crate::backend::{Backend, BackendTransaction};
use crate::error::Result;
use error::{Written, opening_error, store_error};
use transaction::FoundationDbTransaction;

pub(crate) struct FoundationDbBackend {
    database: Database,
}

impl FoundationDbBackend {
    /// Starts the client's network if this is the process's first store, then opens the
    /// database of `cluster_file` (see [`cluster::open`]) once the cluster answers.
    pub(crate) fn open(cluster_file: Option<&Path>) -> Result<Self> {
        network::ensure_started()
            .map_err(|e| opening_error(e, "cannot start the FoundationDB client"))?;
        let database = cluster::open(cluster_file)?;
        Ok(Self { database })
    }
}

#[async_trait]
impl Backend for FoundationDbBackend {
    async fn begin(&self) -> Result<Box<dyn BackendTransaction>> {
        let inner = self
            .database
            .create_trx()
            .map_err(|e| store_error(e, Written::default()))?;
        // Take the read version now rather than at the first read, as FoundationDB would: the
        // 5 s limit then counts from the start of the transaction, as on the embedded backend,
        // and a closure that waits before reading fails the same way on both. Every
        // transaction needs a read version anyway, so this adds no round trip.
        inner
            .get_read_version()
            .await
            .map_err(|e| store_error(e, Written::default()))?;
        Ok(Box::new(FoundationDbTransaction::new(inner)))
    }

    fn name(&self) -> &'static str {
        "foundationdb"
    }
}
