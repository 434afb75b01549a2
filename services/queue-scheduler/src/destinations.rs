//! The administrator's side of paused and dead destinations: pause, resume (which makes the
//! recipients the pause deferred due at once), and what is paused or suspended.

use std::time::SystemTime;

use ferrymail_rpc::queue::{
    DestinationScope, Destinations, ListRequest, PausedDestination, QueueError, Resumed,
    SuspendedDestination,
};

use crate::destination_gate::PAUSED;
use crate::list::MAX_PAGE_SIZE;
use crate::model::dead_destination;
use crate::model::paused::{self, PauseScope};
use crate::model::queue_id::{MessageId, unix_millis};
use crate::service::{Queue, parse_id};
use crate::store_failure::from_store;

impl Queue {
    /// Pauses delivery to `scope` at `now`; `false` when it already was.
    pub(crate) async fn pause_destination(
        &self,
        scope: DestinationScope,
        now: SystemTime,
    ) -> Result<bool, QueueError> {
        let scope = model_scope(scope);
        let paused = paused::pause(&self.store, &self.keys, scope.clone(), unix_millis(now))
            .await
            .map_err(|e| from_store("pause", e))?;
        tracing::info!(destination = %scope.describe(), paused, "delivery paused");
        Ok(paused)
    }

    /// Resumes delivery to `scope` at `now`, then makes every recipient deferred by a pause
    /// due at once: one still paused otherwise is deferred again at its next attempt.
    pub(crate) async fn resume_destination(
        &self,
        scope: DestinationScope,
        now: SystemTime,
    ) -> Result<Resumed, QueueError> {
        let scope = model_scope(scope);
        let resumed = paused::resume(&self.store, &self.keys, scope.clone())
            .await
            .map_err(|e| from_store("resume", e))?;
        tracing::info!(destination = %scope.describe(), resumed, "delivery resumed");
        let rescheduled = self.reschedule_paused(now).await?;
        Ok(Resumed {
            resumed,
            rescheduled,
        })
    }

    /// Makes the live recipients a pause deferred due at `now`, reading the whole queue a
    /// page at a time (a resume is rare; a pause index would cost every delivery a write).
    async fn reschedule_paused(&self, now: SystemTime) -> Result<u32, QueueError> {
        let now_ms = unix_millis(now);
        let mut request = ListRequest {
            page_size: MAX_PAGE_SIZE,
            ..ListRequest::default()
        };
        let mut rescheduled = 0u32;
        loop {
            let page = self.list_messages(request.clone()).await?;
            for summary in &page.messages {
                let id = parse_id(&summary.queue_id)?;
                rescheduled = rescheduled.saturating_add(self.reschedule(&id, now_ms, now).await?);
            }
            match page.next_page_token {
                Some(token) => request.page_token = Some(token),
                None => return Ok(rescheduled),
            }
        }
    }

    /// Makes the live recipients of message `id` that a pause deferred past `now_ms` due at
    /// `now`; how many.
    async fn reschedule(
        &self,
        id: &MessageId,
        now_ms: u64,
        now: SystemTime,
    ) -> Result<u32, QueueError> {
        let message = match self.load(id).await {
            Ok(message) => message,
            // Delivered or cancelled since it was listed.
            Err(QueueError::NotFound(_)) => return Ok(0),
            Err(error) => return Err(error),
        };
        let paused: Vec<String> = message
            .recipients
            .iter()
            .filter(|r| r.due_ms.is_some_and(|due| due > now_ms))
            .filter(|r| {
                r.last_reply
                    .as_deref()
                    .is_some_and(|r| r.starts_with(PAUSED))
            })
            .map(|r| r.recipient.address.clone())
            .collect();
        if paused.is_empty() {
            return Ok(0);
        }
        match self.retry_now(id, &paused, now).await {
            Err(QueueError::NotFound(_)) => Ok(0),
            result => result,
        }
    }

    /// What is paused, and the destinations with failed connections, at `now`.
    pub(crate) async fn destinations_at(
        &self,
        now: SystemTime,
    ) -> Result<Destinations, QueueError> {
        let now_ms = unix_millis(now);
        let pauses = paused::list(&self.store, &self.keys)
            .await
            .map_err(|e| from_store("destinations", e))?;
        let health = dead_destination::list(&self.store, &self.keys)
            .await
            .map_err(|e| from_store("destinations", e))?;
        let paused = pauses
            .into_iter()
            .map(|pause| PausedDestination {
                scope: wire_scope(pause.scope),
                since: pause.since_ms / 1000,
            })
            .collect();
        let suspended = health
            .into_iter()
            .map(|(destination, health)| SuspendedDestination {
                destination,
                failures: health.failures,
                until: health.suspended_at(now_ms).then(|| {
                    health
                        .dead_until_ms
                        .max(health.probe_until_ms)
                        .div_ceil(1000)
                }),
                reason: health.reason,
            })
            .collect();
        Ok(Destinations { paused, suspended })
    }
}

fn model_scope(scope: DestinationScope) -> PauseScope {
    match scope {
        DestinationScope::All => PauseScope::All,
        DestinationScope::Domain(domain) => {
            PauseScope::Domain(domain.trim_end_matches('.').to_ascii_lowercase())
        }
        DestinationScope::Remote(id) => PauseScope::Remote(id),
    }
}

fn wire_scope(scope: PauseScope) -> DestinationScope {
    match scope {
        PauseScope::All => DestinationScope::All,
        PauseScope::Domain(domain) => DestinationScope::Domain(domain),
        PauseScope::Remote(id) => DestinationScope::Remote(id),
    }
}
