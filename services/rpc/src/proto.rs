//! Types and tonic stubs generated from `proto/ferrymail/v1/*.proto` (package `ferrymail.v1`).
//!
//! Roles use the domain types in [`crate::directory`] and [`crate::queue`]; these are for the
//! adapters, and for tests that need to speak the raw protocol.

// Generated code: its doc comments are the proto comments, not written for rustdoc.
#![allow(
    missing_docs,
    rustdoc::all,
    clippy::all,
    clippy::unwrap_used,
    clippy::expect_used
)]

use std::fmt;

tonic::include_proto!("ferrymail.v1");

// Written by hand (generation skips it) so the password never reaches a log.
impl fmt::Debug for AuthenticateRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthenticateRequest")
            .field("directory", &self.directory)
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .field("secret", &"[REDACTED]")
            .field("authzid", &self.authzid)
            .finish()
    }
}
