//! How store and blob failures reach the queue's callers.
//!
//! A store that cannot be reached, conflicts past every retry or times out is `Unavailable`
//! (the ingress answers 451 and the client tries again later); data that does not decode is a
//! bug or a foreign writer, `Internal`.

use std::time::Duration;

use ferrymail_rpc::queue::QueueError;
use ferrymail_store::StoreError;
use ferrymail_store::blob::BlobError;
use ferrymail_telemetry::LogLimit;

use crate::model::record::CorruptRecord;

/// Store failures repeat while the store is down: one line per 10 s says so.
static STORE_FAILURES: LogLimit = LogLimit::new(Duration::from_secs(10));

/// The queue error for a store failure during `operation`, logged (at a bounded rate).
pub(crate) fn from_store(operation: &str, error: StoreError) -> QueueError {
    if matches!(error, StoreError::Corrupt(_)) {
        tracing::error!(operation, %error, "queue data is corrupt");
        QueueError::Internal(format!("{operation}: {error}"))
    } else {
        if let Some(left_out) = STORE_FAILURES.admit() {
            tracing::warn!(operation, %error, left_out, "queue store failure");
        }
        QueueError::Unavailable(format!("{operation}: {error}"))
    }
}

/// The queue error for a blob failure during `operation`, logged.
pub(crate) fn from_blob(operation: &str, error: BlobError) -> QueueError {
    match error {
        BlobError::Store(store) => from_store(operation, store),
        BlobError::Corrupt { .. } => {
            tracing::error!(operation, %error, "queued body is corrupt");
            QueueError::Internal(format!("{operation}: {error}"))
        }
        other => {
            tracing::warn!(operation, error = %other, "queue blob failure");
            QueueError::Unavailable(format!("{operation}: {other}"))
        }
    }
}

impl From<CorruptRecord> for StoreError {
    /// Lets `?` end a transaction closure on a record that does not decode.
    fn from(error: CorruptRecord) -> Self {
        StoreError::Corrupt(error.0)
    }
}

#[cfg(test)]
mod tests {
    use ferrymail_store::blob::BlobId;

    use super::*;

    #[test]
    fn store_trouble_is_unavailable_and_bad_data_internal() {
        let exhausted = StoreError::RetriesExhausted {
            attempts: 100,
            last: Box::new(StoreError::Conflict),
        };
        for error in [
            exhausted,
            StoreError::Closed,
            StoreError::Storage("disk".into()),
        ] {
            assert!(matches!(
                from_store("enqueue", error),
                QueueError::Unavailable(_)
            ));
        }
        let corrupt = StoreError::from(CorruptRecord("bad".into()));
        assert!(matches!(
            from_store("get", corrupt),
            QueueError::Internal(_)
        ));
        let collected = BlobError::Collected(BlobId::from_bytes([1; 16]));
        assert!(matches!(
            from_blob("enqueue", collected),
            QueueError::Unavailable(_)
        ));
        let wrapped = BlobError::Store(StoreError::Closed);
        assert!(matches!(
            from_blob("enqueue", wrapped),
            QueueError::Unavailable(_)
        ));
    }
}
