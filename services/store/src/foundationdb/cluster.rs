//! Which cluster to use, and whether it answers, checked when the store opens so that a
//! wrong cluster file fails the service's start-up instead of its first transaction.

use std::path::{Path, PathBuf};

use ::foundationdb::Database;
use ::foundationdb::options::TransactionOption;

use super::error::opening_error;
use crate::error::{Result, StoreError};

/// Environment variable naming the cluster file, as FoundationDB's own tools read it.
const CLUSTER_FILE_VARIABLE: &str = "FDB_CLUSTER_FILE";

/// How long opening waits for the cluster to hand out a read version.
const PROBE_TIMEOUT_MS: i32 = 5_000;

/// Opens the database of `cluster_file`, else of `FDB_CLUSTER_FILE`, else of the client's
/// default cluster file, and waits (blocking) until the cluster answers.
pub(super) fn open(cluster_file: Option<&Path>) -> Result<Database> {
    let chosen: Option<PathBuf> = cluster_file
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os(CLUSTER_FILE_VARIABLE).map(PathBuf::from));
    let described = match &chosen {
        Some(path) => format!("cluster file {}", path.display()),
        None => "the default cluster file".to_owned(),
    };
    let path = chosen.as_deref().map(readable).transpose()?;
    let database = Database::new(path)
        .map_err(|e| opening_error(e, &format!("cannot open the database of {described}")))?;
    probe(&database).map_err(|e| {
        opening_error(
            e,
            &format!("the cluster of {described} did not answer within {PROBE_TIMEOUT_MS} ms"),
        )
    })?;
    Ok(database)
}

/// `path` as the client library takes it, once it is known to exist: the library would
/// otherwise report a missing file only as a code.
fn readable(path: &Path) -> Result<&str> {
    std::fs::metadata(path).map_err(|e| {
        StoreError::Storage(format!(
            "cannot read FoundationDB cluster file {}: {e}",
            path.display()
        ))
    })?;
    path.to_str().ok_or_else(|| {
        StoreError::Storage(format!(
            "FoundationDB cluster file {} is not a UTF-8 path",
            path.display()
        ))
    })
}

/// Asks the cluster for a read version, which only an available cluster gives. Creating a
/// database never contacts the cluster; without this, an unreachable one would make the
/// first transaction wait forever.
fn probe(database: &Database) -> std::result::Result<(), ::foundationdb::FdbError> {
    let transaction = database.create_trx()?;
    transaction.set_option(TransactionOption::Timeout(PROBE_TIMEOUT_MS))?;
    // Opening is synchronous, and the future is completed by FoundationDB's network thread,
    // so blocking on it needs no async runtime and cannot deadlock one.
    futures::executor::block_on(transaction.get_read_version())?;
    Ok(())
}
