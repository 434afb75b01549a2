//! The store as a component of readiness: not ready, saying why, while it cannot commit (the
//! embedded store after a failed write, until it recovers), so that traffic goes to pods
//! whose store works and `/readyz` names the cause.

use std::time::Duration;

use ferrymail_store::{Store, StoreError};
use ferrymail_telemetry::{ComponentHealth, Health};

/// The readiness component's name.
pub const COMPONENT: &str = "store";

/// Returns once `store` can commit, its component not ready meanwhile, saying why; fails if
/// the database answers but cannot be used (a schema of another version), so that the start
/// stops there as it would had the database answered at once.
pub async fn available(store: &Store, health: &Health) -> ferrymail_store::Result<()> {
    let mut availability = store.availability();
    let component = health.component(COMPONENT);
    loop {
        let reason = availability.borrow_and_update().clone();
        match reason {
            None => return Ok(()),
            Some(reason) => component.set_not_ready(reason),
        }
        // A transaction that begins meets what the backend found on connecting; one that
        // only waits for the server is cut short, to be tried again.
        let attempt = store.transact(|_| Box::pin(async { Ok(()) }));
        match tokio::time::timeout(PROBE_PATIENCE, attempt).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(error)) if !error.is_retryable() && !is_exhausted(&error) => return Err(error),
            _ => {}
        }
        if let Ok(Err(_)) = tokio::time::timeout(PROBE_PATIENCE, availability.changed()).await {
            return Ok(());
        }
    }
}

/// How long one check of a store that is not available may take.
const PROBE_PATIENCE: Duration = Duration::from_secs(1);

fn is_exhausted(error: &StoreError) -> bool {
    matches!(error, StoreError::RetriesExhausted { .. })
}

/// Follows `store`'s availability into `component` until the store stops reporting.
pub async fn follow(store: Store, component: ComponentHealth) {
    let mut availability = store.availability();
    loop {
        match availability.borrow_and_update().as_deref() {
            None => component.set_ready(),
            Some(reason) => component.set_not_ready(reason),
        }
        if availability.changed().await.is_err() {
            return;
        }
    }
}
