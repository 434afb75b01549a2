//! Periodic collection of message bodies nothing references any more (cancelled or
//! delivered messages, enqueues whose commit failed, writers that died mid-body).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::Queue;

/// How often bodies are collected.
pub const COLLECT_EVERY: Duration = Duration::from_secs(600);
/// How old an unreferenced body must be: longer than any enqueue takes between writing a
/// body and committing the record that references it, with room for clock skew between pods.
pub const COLLECT_GRACE: Duration = Duration::from_secs(3600);

/// Collects unreferenced bodies every [`COLLECT_EVERY`] until the task is dropped. Several
/// processes may do this at once: each deletion re-checks the body's references.
pub async fn collect_bodies(queue: Arc<Queue>) {
    loop {
        tokio::time::sleep(COLLECT_EVERY).await;
        match queue
            .blobs()
            .collect_garbage(COLLECT_GRACE, SystemTime::now())
            .await
        {
            Ok(report) => tracing::info!(
                blobs_removed = report.blobs_removed,
                writes_removed = report.writes_removed,
                kept = report.pending_kept,
                "message bodies collected"
            ),
            Err(error) => tracing::warn!(%error, "collecting message bodies failed; retried later"),
        }
    }
}
