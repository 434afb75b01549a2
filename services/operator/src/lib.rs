//! operator: turns `RemoteHost` and `Directory` custom resources into the `remote.<id>` and
//! `directory.<name>` TOML every pod reads.
//!
//! None of that is built yet: the role starts, serves its admin endpoints and says so.

/// What this role cannot do yet; shown at start-up and in `/readyz`.
pub const NOT_BUILT: &str = "reconciling RemoteHost and Directory resources is not implemented yet";
