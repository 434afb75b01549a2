//! The store as a component of readiness: not ready, saying why, while it cannot commit (the
//! embedded store after a failed write, until it recovers), so that traffic goes to pods
//! whose store works and `/readyz` names the cause.

use ferrymail_store::Store;
use ferrymail_telemetry::{ComponentHealth, Health};

/// The readiness component's name.
pub const COMPONENT: &str = "store";

/// Returns once `store` can commit, its component not ready meanwhile, saying why.
pub async fn available(store: &Store, health: &Health) {
    let mut availability = store.availability();
    let component = health.component(COMPONENT);
    loop {
        match availability.borrow_and_update().as_deref() {
            None => return,
            Some(reason) => component.set_not_ready(reason),
        }
        if availability.changed().await.is_err() {
            return;
        }
    }
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
