//! Periodic collection of the queue's garbage: message bodies nothing references any more
//! (cancelled or delivered messages, enqueues whose commit failed, writers that died
//! mid-body), and the records of enqueues past their retention (`model::enqueued`).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ferrymail_store::StoreError;

use crate::Queue;
use crate::model::enqueued;
use crate::model::queue_id::unix_millis;

/// How often bodies are collected.
pub const COLLECT_EVERY: Duration = Duration::from_secs(600);
/// How old an unreferenced body must be: longer than any enqueue takes between writing a
/// body and committing the record that references it, with room for clock skew between pods.
pub const COLLECT_GRACE: Duration = Duration::from_secs(3600);

/// Collects unreferenced bodies and expired enqueue records every [`COLLECT_EVERY`] until
/// the task is dropped. Several processes may do this at once: each deletion re-checks the
/// body's references, and clearing expired records twice clears nothing more.
pub async fn collect_bodies(queue: Arc<Queue>) {
    loop {
        tokio::time::sleep(COLLECT_EVERY).await;
        if let Err(error) = queue.collect_enqueue_records(SystemTime::now()).await {
            tracing::warn!(%error, "collecting expired enqueue records failed; retried later");
        }
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

impl Queue {
    /// Clears the records of the enqueues that arrived a retention or more before `now`.
    pub(crate) async fn collect_enqueue_records(&self, now: SystemTime) -> Result<(), StoreError> {
        let (keys, now_ms) = (self.keys.clone(), unix_millis(now));
        self.store
            .transact(move |tx| {
                let keys = keys.clone();
                Box::pin(async move { enqueued::collect(tx, &keys, now_ms) })
            })
            .await
    }
}
