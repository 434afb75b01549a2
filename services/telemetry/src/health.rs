//! Readiness of a role, made of named components, and the draining switch used at shutdown.
//!
//! Liveness is not tracked here: a process whose admin server answers is alive.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// The reason a new component reports until it says otherwise.
const STARTING_REASON: &str = "starting";

/// The reason readiness reports, under the name `draining`, once draining has begun.
pub const DRAINING_REASON: &str = "shutting down";

/// The readiness of a role: ready only when every component is ready and it is not draining.
///
/// Cloning is cheap; every clone sees the same components.
#[derive(Debug, Clone, Default)]
pub struct Health {
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    /// Component name to `None` when ready, or `Some(reason)` when not. Sorted, so reports are
    /// stable from one probe to the next.
    components: Mutex<BTreeMap<String, Option<String>>>,
    draining: AtomicBool,
}

impl Shared {
    fn components(&self) -> MutexGuard<'_, BTreeMap<String, Option<String>>> {
        // Every update is a single insert, so a panic while the lock was held cannot have left
        // the map inconsistent.
        self.components
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl Health {
    /// An empty health state: ready, with no components, not draining.
    pub fn new() -> Self {
        Self::default()
    }

    /// A handle through which the component `name` reports its readiness.
    ///
    /// A new component starts not ready, with reason `starting`. Asking again for a name
    /// already known returns a handle to the same component and leaves its state as it is.
    /// Dropping a handle does not remove the component: it keeps its last state.
    pub fn component(&self, name: impl Into<String>) -> ComponentHealth {
        let name = name.into();
        self.shared
            .components()
            .entry(name.clone())
            .or_insert_with(|| Some(STARTING_REASON.to_owned()));
        ComponentHealth {
            name,
            shared: Arc::clone(&self.shared),
        }
    }

    /// Marks the process as shutting down: from now on readiness is false, whatever the
    /// components say, so that traffic is routed elsewhere before the process exits.
    pub fn start_draining(&self) {
        if !self.shared.draining.swap(true, Ordering::SeqCst) {
            tracing::info!("draining: readiness now reports {DRAINING_REASON:?}");
        }
    }

    /// Whether [`Health::start_draining`] has been called.
    pub fn is_draining(&self) -> bool {
        self.shared.draining.load(Ordering::SeqCst)
    }

    /// The current readiness, with every reason it is not ready.
    pub fn readiness(&self) -> Readiness {
        let mut not_ready = Vec::new();
        if self.is_draining() {
            not_ready.push(NotReady {
                component: "draining".to_owned(),
                reason: DRAINING_REASON.to_owned(),
            });
        }
        not_ready.extend(
            self.shared
                .components()
                .iter()
                .filter_map(|(name, reason)| {
                    reason.as_ref().map(|reason| NotReady {
                        component: name.clone(),
                        reason: reason.clone(),
                    })
                }),
        );
        Readiness { not_ready }
    }
}

/// One component's handle on its readiness. Cloning gives another handle on the same component.
#[derive(Debug, Clone)]
pub struct ComponentHealth {
    name: String,
    shared: Arc<Shared>,
}

impl ComponentHealth {
    /// The component's name, as shown in readiness reports.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Reports the component ready.
    pub fn set_ready(&self) {
        self.set(None);
    }

    /// Reports the component not ready, for `reason` (shown by `/readyz`).
    pub fn set_not_ready(&self, reason: impl Into<String>) {
        self.set(Some(reason.into()));
    }

    fn set(&self, state: Option<String>) {
        let previous = self
            .shared
            .components()
            .insert(self.name.clone(), state.clone());
        // Log transitions only, so a component re-reporting its state each loop stays quiet.
        if previous == Some(state.clone()) {
            return;
        }
        match state {
            None => tracing::info!(component = %self.name, "component ready"),
            Some(reason) => tracing::warn!(component = %self.name, %reason, "component not ready"),
        }
    }
}

/// A snapshot of readiness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    not_ready: Vec<NotReady>,
}

impl Readiness {
    /// Whether the role should receive traffic.
    pub fn is_ready(&self) -> bool {
        self.not_ready.is_empty()
    }

    /// Why it should not: draining first, then components by name.
    pub fn not_ready(&self) -> &[NotReady] {
        &self.not_ready
    }
}

/// A component that is not ready, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotReady {
    /// The component's name (`draining` for the shutdown switch).
    pub component: String,
    /// Why it is not ready.
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reasons(health: &Health) -> Vec<(String, String)> {
        health
            .readiness()
            .not_ready()
            .iter()
            .map(|n| (n.component.clone(), n.reason.clone()))
            .collect()
    }

    fn pair(component: &str, reason: &str) -> (String, String) {
        (component.to_owned(), reason.to_owned())
    }

    #[test]
    fn empty_health_is_ready() {
        assert!(Health::new().readiness().is_ready());
    }

    #[test]
    fn new_component_is_starting() {
        let health = Health::new();
        let component = health.component("queue-scheduler");
        assert_eq!(component.name(), "queue-scheduler");
        assert!(!health.readiness().is_ready());
        assert_eq!(reasons(&health), [pair("queue-scheduler", "starting")]);
    }

    #[test]
    fn ready_only_when_every_component_is_ready() {
        let health = Health::new();
        let store = health.component("store");
        let listener = health.component("smtp-listener");
        store.set_ready();
        assert_eq!(reasons(&health), [pair("smtp-listener", "starting")]);
        listener.set_ready();
        assert!(health.readiness().is_ready());
        store.set_not_ready("FoundationDB unreachable");
        assert_eq!(
            reasons(&health),
            [pair("store", "FoundationDB unreachable")]
        );
    }

    #[test]
    fn asking_again_shares_state() {
        let health = Health::new();
        health.component("config").set_ready();
        let again = health.component("config");
        assert!(health.readiness().is_ready());
        again.set_not_ready("reload failed");
        assert_eq!(reasons(&health), [pair("config", "reload failed")]);
    }

    #[test]
    fn dropped_handle_keeps_last_state() {
        let health = Health::new();
        health.component("once").set_ready();
        assert!(health.readiness().is_ready());
    }

    #[test]
    fn draining_overrides_ready_components_and_comes_first() {
        let health = Health::new();
        health.component("a").set_ready();
        let b = health.component("b");
        b.set_ready();
        assert!(!health.is_draining());
        health.clone().start_draining();
        assert!(health.is_draining());
        assert_eq!(reasons(&health), [pair("draining", DRAINING_REASON)]);
        b.set_not_ready("closing");
        assert_eq!(
            reasons(&health),
            [pair("draining", DRAINING_REASON), pair("b", "closing")]
        );
    }
}
