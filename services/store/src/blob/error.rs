//! [`BlobError`], and its passage through transaction closures as a [`StoreError`].
//!
//! Causes are chained as `source()`, not repeated in the message.

use crate::StoreError;

use super::BlobId;

/// Why a blob operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// No such blob, or not readable: never referenced, released, collected, or still being
    /// written.
    #[error("blob {0} not found")]
    NotFound(BlobId),
    /// The stored blob does not match its metadata (a chunk missing or of the wrong size).
    #[error("blob {id} is corrupt: {reason}")]
    Corrupt {
        /// The blob.
        id: BlobId,
        /// What is wrong.
        reason: String,
    },
    /// The blob was overwritten or deleted while it was read in several transactions; the
    /// bytes already returned belong to a version that no longer exists.
    #[error("blob {0} changed while it was read")]
    ChangedDuringRead(BlobId),
    /// The write outlasted the grace period and collection deleted what it had written.
    #[error("blob {0} was collected while it was written: the write outlasted the grace period")]
    Collected(BlobId),
    /// The store failed.
    #[error(transparent)]
    Store(StoreError),
    /// The body stream failed before its end; nothing of the write remains readable.
    #[error("the blob's body stream failed")]
    Body(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl From<StoreError> for BlobError {
    /// Recovers a blob error that aborted a transaction; any other store error is `Store`.
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Aborted(inner) => match inner.downcast::<BlobError>() {
                Ok(blob) => *blob,
                Err(other) => BlobError::Store(StoreError::Aborted(other)),
            },
            other => BlobError::Store(other),
        }
    }
}

impl From<BlobError> for StoreError {
    /// Lets `?` abort a transaction closure with a blob error (a store error stays itself, so
    /// conflicts are still retried).
    fn from(error: BlobError) -> Self {
        match error {
            BlobError::Store(store) => store,
            other => StoreError::abort(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_errors_survive_a_trip_through_a_transaction() {
        let id = BlobId::from_bytes([7; 16]);
        let through = BlobError::from(StoreError::from(BlobError::NotFound(id)));
        assert!(matches!(through, BlobError::NotFound(got) if got == id));
        let conflict = StoreError::from(BlobError::Store(StoreError::Conflict));
        assert!(conflict.is_retryable());
        let foreign = BlobError::from(StoreError::abort("the caller's own reason"));
        assert!(matches!(foreign, BlobError::Store(StoreError::Aborted(_))));
    }
}
