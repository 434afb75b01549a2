//! The signals that ask the process to stop.

use tokio::signal::unix::{Signal, SignalKind, signal};

/// Handlers for SIGTERM (Kubernetes, `kill`) and SIGINT (Ctrl-C), installed at start-up so
/// that a signal arriving while listeners are still being opened is not lost (or fatal).
pub struct StopSignals {
    term: Signal,
    int: Signal,
}

impl StopSignals {
    /// Installs the handlers.
    pub fn install() -> std::io::Result<Self> {
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// Resolves with the signal's name when one arrives.
    pub async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}
