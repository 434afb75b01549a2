//! directory-proxy: authentication and recipient validation delegated to remote IMAP, SMTP
//! and LMTP servers (`remote.<id>` and `directory.<name>`), with pooled connections and
//! shared caches.
//!
//! None of that is built yet: the role starts, serves its admin endpoints and says so.

/// What this role cannot do yet; shown at start-up and in `/readyz`.
pub const NOT_BUILT: &str =
    "directory lookups are not implemented yet; the Directory service answers UNIMPLEMENTED";
