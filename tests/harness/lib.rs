//! Starts the real `ferrymail` binary and talks to it over loopback.
//!
//! Every listener in a test configuration binds port 0; the harness learns the real ports
//! from the `listener bound` lines of the JSON log, so tests never race for ports.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod http;
mod process;

pub use http::{HttpResponse, http_get};
pub use process::{Ferrymail, LogLine, binary};
