//! FoundationDB's errors as [`StoreError`]s: the kinds both backends share get their own
//! variants, so callers handle a conflict or an oversize transaction the same way on each.

use ::foundationdb::FdbError;

use crate::error::StoreError;
use crate::limits::MAX_AGE;

/// `transaction_too_old`: the read version is older than the 5 s window.
const TRANSACTION_TOO_OLD: i32 = 1007;
/// `not_committed`: another transaction wrote what this one read.
const NOT_COMMITTED: i32 = 1020;
/// `commit_unknown_result`: the commit may or may not have happened.
const COMMIT_UNKNOWN_RESULT: i32 = 1021;
/// `transaction_too_large`: over 10,000,000 bytes of mutations and conflict ranges.
const TRANSACTION_TOO_LARGE: i32 = 2101;
/// `key_too_large`: a key over 10,000 bytes.
const KEY_TOO_LARGE: i32 = 2102;
/// `value_too_large`: a value over 100,000 bytes.
const VALUE_TOO_LARGE: i32 = 2103;

/// What a transaction had written when it failed, to say how large the thing refused was:
/// FoundationDB's error codes carry no size.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Written {
    /// Bytes of keys and values written (FoundationDB also counts conflict ranges).
    pub(super) bytes: usize,
    /// Longest key written.
    pub(super) largest_key: usize,
    /// Longest value written.
    pub(super) largest_value: usize,
}

/// The store error for a FoundationDB error of a transaction that had written `written`.
pub(super) fn store_error(error: FdbError, written: Written) -> StoreError {
    match error.code() {
        NOT_COMMITTED => StoreError::Conflict,
        TRANSACTION_TOO_OLD => StoreError::TransactionTooOld(MAX_AGE),
        COMMIT_UNKNOWN_RESULT => StoreError::CommitUnknownResult,
        TRANSACTION_TOO_LARGE => StoreError::TransactionTooLarge(written.bytes),
        KEY_TOO_LARGE => StoreError::KeyTooLarge(written.largest_key),
        VALUE_TOO_LARGE => StoreError::ValueTooLarge(written.largest_value),
        _ => fdb_error(error, None),
    }
}

/// The store error for a FoundationDB error met while opening the store, saying what was
/// being done: the kinds above cannot happen there, and the code alone would not tell the
/// operator which cluster file was at fault.
pub(super) fn opening_error(error: FdbError, doing: &str) -> StoreError {
    fdb_error(error, Some(doing))
}

fn fdb_error(error: FdbError, doing: Option<&str>) -> StoreError {
    let message = match doing {
        Some(doing) => format!("{doing}: {}", error.message()),
        None => error.message().to_owned(),
    };
    StoreError::Fdb {
        code: error.code(),
        message,
        retryable: error.is_retryable(),
    }
}
