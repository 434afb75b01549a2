//! The conformance suite: one body of tests run against every backend.
//!
//! The embedded and PostgreSQL backends always run: PostgreSQL as a private cluster of this
//! test binary, a fresh database per test. The FoundationDB backend runs when the crate is
//! built with `--features fdb` and `FDB_CLUSTER_FILE` points at a cluster; each test then
//! works under its own random prefix and clears it afterwards.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod backends;

mod atomic;
mod blobs;
mod conflicts;
mod limits;
mod observer;
mod ordering;
mod postgresql;
mod retry;
