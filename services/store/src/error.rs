//! Store errors, with FoundationDB's kinds so code behaves the same on both backends.

use std::time::Duration;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another transaction changed what this one read (FoundationDB `not_committed`, 1020).
    #[error("transaction conflict: another transaction changed what this one read")]
    Conflict,
    /// The transaction outlived the 5 s limit (FoundationDB `transaction_too_old`, 1007).
    #[error("transaction is older than {0:?}")]
    TransactionTooOld(Duration),
    /// A key over 10,000 bytes (FoundationDB `key_too_large`, 2102).
    #[error("key of {0} bytes exceeds the 10,000-byte limit")]
    KeyTooLarge(usize),
    /// A value over 100,000 bytes (FoundationDB `value_too_large`, 2103).
    #[error("value of {0} bytes exceeds the 100,000-byte limit")]
    ValueTooLarge(usize),
    /// Mutations over 10,000,000 bytes (FoundationDB `transaction_too_large`, 2101).
    #[error("transaction of {0} bytes exceeds the 10,000,000-byte limit")]
    TransactionTooLarge(usize),
    /// A key outside the range a read may cover (begin after end, say).
    #[error("invalid range: {0}")]
    InvalidRange(String),
    /// The commit may or may not have happened (FoundationDB `commit_unknown_result`, 1021).
    #[error("commit result unknown")]
    CommitUnknownResult,
    /// The connection to the database was lost or could not be opened; nothing was
    /// committed. Retryable: the database may answer again.
    #[error("database unreachable: {0}")]
    Disconnected(String),
    /// The database holds the store's tables in a layout this version does not know.
    #[error(
        "the database holds store schema version {found}; this ferrymail uses version {expected}"
    )]
    IncompatibleSchema {
        /// The version found in the database.
        found: i64,
        /// The version this build creates and uses.
        expected: i64,
    },
    /// A retryable error ended every attempt.
    #[error("gave up after {attempts} attempts: {last}")]
    RetriesExhausted {
        /// Attempts made.
        attempts: u32,
        /// The last attempt's error.
        last: Box<StoreError>,
    },
    /// The transaction's closure chose to abort; nothing was committed.
    #[error("transaction aborted: {0}")]
    Aborted(Box<dyn std::error::Error + Send + Sync>),
    /// A stored value does not decode (a bug or a foreign writer).
    #[error("corrupt data: {0}")]
    Corrupt(String),
    /// The disk or the database failed.
    #[error("storage failure: {0}")]
    Storage(String),
    /// A FoundationDB error, with its code and whether a retry may succeed.
    #[error("FoundationDB error {code}: {message}")]
    Fdb {
        /// FoundationDB's error code.
        code: i32,
        /// Its description.
        message: String,
        /// Whether FoundationDB says a retry may succeed.
        retryable: bool,
    },
    /// The store cannot commit now: its disk failed or is full. It recovers by itself once
    /// the cause is gone; retry later, not at once.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The store has been closed.
    #[error("store is closed")]
    Closed,
}

impl StoreError {
    /// Whether running the transaction again may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::Conflict
            | StoreError::TransactionTooOld(_)
            | StoreError::CommitUnknownResult
            | StoreError::Disconnected(_) => true,
            StoreError::Fdb { retryable, .. } => *retryable,
            _ => false,
        }
    }

    /// A short, stable name of the kind of error, for metric labels and log fields.
    pub fn kind(&self) -> &'static str {
        match self {
            StoreError::Conflict => "conflict",
            StoreError::TransactionTooOld(_) => "too_old",
            StoreError::KeyTooLarge(_) => "key_too_large",
            StoreError::ValueTooLarge(_) => "value_too_large",
            StoreError::TransactionTooLarge(_) => "transaction_too_large",
            StoreError::InvalidRange(_) => "invalid_range",
            StoreError::CommitUnknownResult => "unknown_result",
            StoreError::Disconnected(_) => "disconnected",
            StoreError::IncompatibleSchema { .. } => "incompatible_schema",
            StoreError::RetriesExhausted { .. } => "retries_exhausted",
            StoreError::Aborted(_) => "aborted",
            StoreError::Corrupt(_) => "corrupt",
            StoreError::Storage(_) => "storage",
            StoreError::Fdb { .. } => "foundationdb",
            StoreError::Unavailable(_) => "unavailable",
            StoreError::Closed => "closed",
        }
    }

    /// Wraps a caller's error to abort a transaction without committing it.
    pub fn abort(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        StoreError::Aborted(error.into())
    }
}

impl From<redb::Error> for StoreError {
    fn from(e: redb::Error) -> Self {
        StoreError::Storage(e.to_string())
    }
}

macro_rules! from_redb {
    ($($ty:ty),*) => {$(
        impl From<$ty> for StoreError {
            fn from(e: $ty) -> Self {
                StoreError::Storage(e.to_string())
            }
        }
    )*};
}
from_redb!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);

/// Result of store operations.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
