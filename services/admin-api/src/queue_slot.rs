//! The queue the handlers reach, once the process has started it.

use std::sync::{Arc, OnceLock};

use axum::http::StatusCode;
use ferrymail_rpc::queue::QueueService;

use crate::problem::Problem;

/// The queue the API manages, filled in once the process's services have started: the admin
/// server answers probes before that, and the API answers `503` meanwhile.
#[derive(Clone, Default)]
pub struct QueueSlot(Arc<OnceLock<Arc<dyn QueueService>>>);

impl QueueSlot {
    /// An empty slot.
    pub fn new() -> Self {
        Self::default()
    }

    /// Puts the queue in the slot; a second call changes nothing.
    pub fn fill(&self, queue: Arc<dyn QueueService>) {
        // Set once at start-up; a second fill would be the same queue.
        let _ = self.0.set(queue);
    }
}

/// What every handler reaches: the queue.
#[derive(Clone)]
pub struct Api {
    slot: QueueSlot,
}

impl Api {
    /// The queue, or `503` while the process is starting.
    pub fn queue(&self) -> Result<&Arc<dyn QueueService>, Problem> {
        self.slot.0.get().ok_or_else(|| {
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the queue is not started yet: try again shortly",
            )
        })
    }
}

impl Api {
    /// The handlers' state, reaching the queue in `slot`.
    pub fn new(slot: QueueSlot) -> Self {
        Self { slot }
    }
}
