//! Paused destinations: an administrator stops delivery to a recipient domain, a
//! `remote.<id>`, or the whole queue, for every scheduler sharing the store, until resumed.
//!
//! A pause is one key per destination; schedulers read them all (a handful) before each
//! delivery. A paused recipient is deferred without an attempt, like a throttle's deferral.

use std::sync::Arc;

use ferrymail_store::{RangeOptions, Store, StoreError, tuple};

use crate::model::keys::Keys;

/// What a pause applies to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum PauseScope {
    /// Every delivery.
    All,
    /// Recipients of one domain (lower case, no trailing dot).
    Domain(String),
    /// Deliveries through `remote.<id>`.
    Remote(String),
}

impl PauseScope {
    /// The scope and name in the key.
    fn parts(&self) -> (&'static str, &str) {
        match self {
            PauseScope::All => ("all", ""),
            PauseScope::Domain(domain) => ("domain", domain),
            PauseScope::Remote(id) => ("remote", id),
        }
    }

    fn from_parts(scope: &str, name: String) -> Option<Self> {
        match scope {
            "all" => Some(PauseScope::All),
            "domain" => Some(PauseScope::Domain(name)),
            "remote" => Some(PauseScope::Remote(name)),
            _ => None,
        }
    }

    /// The scope as people write it: `all`, `domain example.org`, `remote.relay`.
    pub fn describe(&self) -> String {
        match self {
            PauseScope::All => "the whole queue".to_owned(),
            PauseScope::Domain(domain) => format!("domain {domain}"),
            PauseScope::Remote(id) => format!("remote.{id}"),
        }
    }
}

/// One pause in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pause {
    /// What it applies to.
    pub scope: PauseScope,
    /// Since when (Unix milliseconds).
    pub since_ms: u64,
}

/// The pauses in force, as one scheduler read them before a delivery.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Pauses(Vec<PauseScope>);

impl From<Vec<PauseScope>> for Pauses {
    fn from(scopes: Vec<PauseScope>) -> Self {
        Self(scopes)
    }
}

impl Pauses {
    /// The pause holding back a delivery to `domain` through `remote` (`None` for MX), if any.
    pub(crate) fn holding(&self, domain: &str, remote: Option<&str>) -> Option<&PauseScope> {
        self.0.iter().find(|scope| match scope {
            PauseScope::All => true,
            PauseScope::Domain(d) => d == domain,
            PauseScope::Remote(id) => remote == Some(id.as_str()),
        })
    }
}

/// Pauses delivery to `scope` from `now_ms`; `false` when it already was.
pub(crate) async fn pause(
    store: &Store,
    keys: &Arc<Keys>,
    scope: PauseScope,
    now_ms: u64,
) -> Result<bool, StoreError> {
    let (keys, scope) = (keys.clone(), Arc::new(scope));
    store
        .transact(move |tx| {
            let (keys, scope) = (keys.clone(), scope.clone());
            Box::pin(async move {
                let (kind, name) = scope.parts();
                let key = keys.paused(kind, name);
                if tx.get(&key).await?.is_some() {
                    return Ok(false);
                }
                tx.set(&key, &tuple::pack(&(now_ms,)))?;
                Ok(true)
            })
        })
        .await
}

/// Resumes delivery to `scope`; `false` when it was not paused.
pub(crate) async fn resume(
    store: &Store,
    keys: &Arc<Keys>,
    scope: PauseScope,
) -> Result<bool, StoreError> {
    let (keys, scope) = (keys.clone(), Arc::new(scope));
    store
        .transact(move |tx| {
            let (keys, scope) = (keys.clone(), scope.clone());
            Box::pin(async move {
                let (kind, name) = scope.parts();
                let key = keys.paused(kind, name);
                let was = tx.get(&key).await?.is_some();
                tx.clear(&key)?;
                Ok(was)
            })
        })
        .await
}

/// Every pause in force, in scope order.
pub(crate) async fn list(store: &Store, keys: &Arc<Keys>) -> Result<Vec<Pause>, StoreError> {
    let keys = keys.clone();
    store
        .transact(move |tx| {
            let keys = keys.clone();
            Box::pin(async move {
                let page = tx
                    .get_range(&keys.all_paused(), RangeOptions::default())
                    .await?;
                let mut pauses: Vec<Pause> = page
                    .pairs
                    .iter()
                    .filter_map(|pair| {
                        let (scope, name) = keys.parse_paused(&pair.key)?;
                        let scope = PauseScope::from_parts(&scope, name)?;
                        let (since_ms,) = tuple::unpack::<(u64,)>(&pair.value).ok()?;
                        Some(Pause { scope, since_ms })
                    })
                    .collect();
                pauses.sort_by(|a, b| a.scope.cmp(&b.scope));
                Ok(pauses)
            })
        })
        .await
}

/// The pauses in force, for deciding deliveries.
pub(crate) async fn in_force(store: &Store, keys: &Arc<Keys>) -> Result<Pauses, StoreError> {
    let pauses = list(store, keys).await?;
    Ok(Pauses(pauses.into_iter().map(|p| p.scope).collect()))
}
