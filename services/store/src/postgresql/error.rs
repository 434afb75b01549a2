//! PostgreSQL's errors as [`StoreError`]s: a serialization failure or deadlock is the
//! retryable conflict, a lost or refused connection the retryable `Disconnected` (or, during
//! a commit, `CommitUnknownResult`), anything else the server refuses a `Storage` error that
//! quotes it.

use deadpool_postgres::PoolError;
use deadpool_postgres::TimeoutType;
use tokio_postgres::error::SqlState;

use crate::error::StoreError;

/// The store error for a failed read or statement outside a commit.
pub(super) fn query_error(error: tokio_postgres::Error) -> StoreError {
    classify(&error).unwrap_or_else(|| StoreError::Storage(describe(&error)))
}

/// The store error for a failed commit: a connection lost while the commit was on its way
/// leaves its outcome unknown.
pub(super) fn commit_error(error: tokio_postgres::Error) -> StoreError {
    match query_error(error) {
        StoreError::Disconnected(_) => StoreError::CommitUnknownResult,
        other => other,
    }
}

/// The store error for a failure while creating or checking the schema.
pub(super) fn schema_error(error: tokio_postgres::Error) -> StoreError {
    classify(&error).unwrap_or_else(|| {
        StoreError::Storage(format!(
            "cannot create or check the store's schema: {}",
            describe(&error)
        ))
    })
}

/// Whether the pool failed to give a connection only because every one was in use: the
/// server may be fine, so it is not reported unavailable.
pub(super) fn pool_exhausted(error: &PoolError) -> bool {
    matches!(error, PoolError::Timeout(TimeoutType::Wait))
}

/// The store error for a connection the pool could not give, to the server at `endpoint`.
pub(super) fn pool_error(error: PoolError, endpoint: &str) -> StoreError {
    match error {
        PoolError::Timeout(TimeoutType::Wait) => StoreError::Disconnected(format!(
            "every connection to PostgreSQL at {endpoint} stayed in use for the whole timeout              (store.<id>.pool.max-connections)"
        )),
        PoolError::Timeout(_) => StoreError::Disconnected(format!(
            "no connection to PostgreSQL at {endpoint} within the timeout"
        )),
        PoolError::Backend(error) => connect_error(&error, endpoint),
        PoolError::Closed => StoreError::Closed,
        other => StoreError::Storage(format!("PostgreSQL at {endpoint}: {other}")),
    }
}

/// The store error for a connection that could not be opened: the server unreachable (or
/// not ready yet) is transient, a refused login or a failed TLS handshake is not.
fn connect_error(error: &tokio_postgres::Error, endpoint: &str) -> StoreError {
    if let Some(db) = error.as_db_error() {
        let code = db.code();
        let message = format!("{} (SQLSTATE {})", db.message(), code.code());
        return if *code == SqlState::CANNOT_CONNECT_NOW
            || *code == SqlState::TOO_MANY_CONNECTIONS
            || *code == SqlState::ADMIN_SHUTDOWN
        {
            StoreError::Disconnected(format!("PostgreSQL at {endpoint}: {message}"))
        } else if *code == SqlState::INVALID_PASSWORD
            || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
        {
            StoreError::Storage(format!(
                "PostgreSQL at {endpoint} refused the login: {message}"
            ))
        } else {
            StoreError::Storage(format!(
                "PostgreSQL at {endpoint} refused the connection: {message}"
            ))
        };
    }
    match io_error(error) {
        Some(io) if is_transient(io.kind()) => {
            StoreError::Disconnected(format!("cannot reach PostgreSQL at {endpoint}: {io}"))
        }
        _ => StoreError::Storage(format!(
            "cannot connect to PostgreSQL at {endpoint}: {}",
            chain(error)
        )),
    }
}

/// The kind of store error, if the failure is one of those shared with other backends.
fn classify(error: &tokio_postgres::Error) -> Option<StoreError> {
    if let Some(code) = error.code()
        && (*code == SqlState::T_R_SERIALIZATION_FAILURE
            || *code == SqlState::T_R_DEADLOCK_DETECTED)
    {
        return Some(StoreError::Conflict);
    }
    if let Some(db) = error.as_db_error()
        && (*db.code() == SqlState::ADMIN_SHUTDOWN || *db.code() == SqlState::CRASH_SHUTDOWN)
    {
        return Some(StoreError::Disconnected(describe(error)));
    }
    if error.is_closed() || io_error(error).is_some() {
        return Some(StoreError::Disconnected(format!(
            "lost the connection to PostgreSQL: {}",
            chain(error)
        )));
    }
    None
}

/// The server's message and SQLSTATE, or the client's description.
fn describe(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        None => chain(error),
    }
}

/// An error and its causes, on one line.
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// The I/O error at the root of `error`, if any.
fn io_error(error: &tokio_postgres::Error) -> Option<&std::io::Error> {
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            return Some(io);
        }
        source = cause.source();
    }
    None
}

/// Whether an I/O error of `kind` says the server is away rather than refusing us (a
/// certificate rustls rejects surfaces as `InvalidData`).
fn is_transient(kind: std::io::ErrorKind) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        kind,
        ConnectionRefused
            | ConnectionReset
            | ConnectionAborted
            | NotConnected
            | BrokenPipe
            | TimedOut
            | UnexpectedEof
            | AddrNotAvailable
            | HostUnreachable
            | NetworkUnreachable
            | NotFound
    )
}
