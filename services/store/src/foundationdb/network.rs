//! FoundationDB's client network thread: started once per process, stopped at exit.
//!
//! The C client allows selecting the API version and running the network exactly once per
//! process, and a stopped network can never be restarted (error 2025). So the network cannot
//! belong to a `Store`: opening a second store, or a store after another was dropped, would
//! fail. It belongs to the process instead, as in the official Go, Python, Java and Ruby
//! bindings: the first `Store::open_foundationdb` starts it, every later one reuses it.
//!
//! `foundationdb::boot` returns a guard whose drop stops the network and joins its thread, and
//! its contract is that the guard is dropped before the process exits (the C API leaves an
//! exit with the network still running undefined). Dropping it earlier is just as wrong: any
//! transaction still running would never complete, and a library cannot know when the last
//! one has ended. So the guard lives in a static and is dropped by an `atexit` hook, the way
//! the Python and Ruby bindings stop their network: when the process exits normally (`main`
//! returns, or `std::process::exit`), when no caller will use a transaction's result any
//! more. C runs `atexit` hooks last-registered first, so this one runs before the client
//! library's own exit-time teardown, registered when the library was loaded. A process killed
//! by a signal or aborted runs no hook, which the contract allows.

use std::sync::{Mutex, OnceLock, PoisonError};

use ::foundationdb::FdbError;
use ::foundationdb::api::{FdbApiBuilder, NetworkAutoStop};

/// Whether the network started, decided by the first store opened in the process.
static STARTED: OnceLock<Result<(), FdbError>> = OnceLock::new();

/// The guard that stops the network; taken and dropped at process exit.
static GUARD: Mutex<Option<NetworkAutoStop>> = Mutex::new(None);

/// Starts the network the first time it is called in the process; afterwards, reports how
/// that went (the API version cannot be selected again, so a failure is final).
pub(super) fn ensure_started() -> Result<(), FdbError> {
    *STARTED.get_or_init(start)
}

// The one place this crate needs `unsafe`: starting FoundationDB's network and registering
// the hook that stops it, the two halves of `boot`'s contract.
#[allow(unsafe_code)]
fn start() -> Result<(), FdbError> {
    // Selects API version 730 (the `fdb-7_3` feature); fails cleanly (2203) if the installed
    // client library is older. Panics only if called twice, which `STARTED` rules out as long
    // as nothing else in the process boots FoundationDB.
    let builder = FdbApiBuilder::default().build()?;
    // SAFETY: `boot` requires the returned guard to be dropped before the process exits. It
    // is stored in `GUARD` and dropped by `stop_at_exit`, registered just below; if that
    // registration fails, the process exits with the network running, as the Go binding
    // always does.
    let guard = unsafe { builder.boot() }?;
    *GUARD.lock().unwrap_or_else(PoisonError::into_inner) = Some(guard);
    // SAFETY: `stop_at_exit` is a plain `extern "C" fn()` that touches only Rust statics.
    if unsafe { libc::atexit(stop_at_exit) } != 0 {
        tracing::warn!("cannot register the FoundationDB network stop at exit");
    }
    Ok(())
}

/// Stops the network and waits for its thread, at process exit.
extern "C" fn stop_at_exit() {
    let guard = GUARD.lock().unwrap_or_else(PoisonError::into_inner).take();
    drop(guard);
}
