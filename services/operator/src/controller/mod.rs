//! The controller: watches RemoteHost, Directory and Secret objects in one namespace and
//! keeps the rendered ConfigMap and Secret projection in step with them.
//!
//! Every pod of an installation reads one configuration, so reconciling is done for the whole
//! namespace at once ([`reconcile::reconcile_all`]) rather than per object: any watch event
//! triggers one pass that renders every resource. Passes are debounced, retried with
//! exponential backoff after errors, and repeated periodically to correct drift.

mod metrics;
mod reconcile;
mod status;

use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use tokio_util::sync::CancellationToken;

pub use metrics::ReconcileMetrics;
pub use reconcile::{FINALIZER, Summary, reconcile_all};

use crate::render::RenderSettings;
use crate::resources::{Directory, RemoteHost};

/// Where the controller works and what it writes.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Namespace watched and written.
    pub namespace: String,
    /// Name of the rendered ConfigMap.
    pub config_map: String,
    /// Name of the Secret projection.
    pub secret: String,
    /// Field manager for server-side apply.
    pub field_manager: String,
    /// Where pods mount the projection.
    pub render: RenderSettings,
}

/// What a reconcile pass needs.
pub struct Context {
    /// API client.
    pub client: Client,
    /// Settings.
    pub settings: Settings,
    /// Metrics.
    pub metrics: ReconcileMetrics,
    /// Event recorder.
    pub recorder: Recorder,
    /// The current time, RFC 3339 (tests fix it).
    pub now: fn() -> String,
}

impl Context {
    /// A context on `client` reporting events as `controller`.
    pub fn new(client: Client, settings: Settings, metrics: ReconcileMetrics) -> Self {
        let reporter = Reporter {
            controller: settings.field_manager.clone(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            settings,
            metrics,
            now: || k8s_openapi::jiff::Timestamp::now().to_string(),
        }
    }
}

/// Quiet time after a watch event before a pass: `kubectl apply -f dir/` is a burst.
const DEBOUNCE: Duration = Duration::from_millis(500);
/// A pass even without events, to repair changes made behind the operator's back.
const RESYNC: Duration = Duration::from_secs(300);
/// First and longest wait before retrying a failed pass.
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// Runs until `stop` is cancelled.
pub async fn run(ctx: Arc<Context>, stop: CancellationToken) {
    let ns = ctx.settings.namespace.clone();
    let events = futures::stream::select_all([
        triggers(Api::<RemoteHost>::namespaced(ctx.client.clone(), &ns)),
        triggers(Api::<Directory>::namespaced(ctx.client.clone(), &ns)),
        triggers(Api::<Secret>::namespaced(ctx.client.clone(), &ns)),
    ]);
    let mut events = pin!(events);
    let mut backoff = BACKOFF_MIN;
    let mut wait = Duration::ZERO;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            event = events.next() => if event.is_none() { return },
            () = tokio::time::sleep(wait) => {}
        }
        // Debounce: let a burst of events settle into one pass.
        while let Ok(Some(())) = tokio::time::timeout(DEBOUNCE, events.next()).await {}
        match reconcile_all(&ctx).await {
            Ok(summary) => {
                tracing::debug!(?summary, "reconciled");
                backoff = BACKOFF_MIN;
                wait = RESYNC;
            }
            Err(error) => {
                tracing::warn!(%error, retry_in = ?backoff, "reconcile failed");
                wait = backoff;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

/// One `()` per change of any object `api` lists; watch errors are logged and retried
/// with the watcher's own backoff.
fn triggers<K>(api: Api<K>) -> std::pin::Pin<Box<dyn Stream<Item = ()> + Send>>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    Box::pin(
        watcher(api, watcher::Config::default())
            .default_backoff()
            .filter_map(|event| async move {
                match event {
                    Ok(_) => Some(()),
                    Err(error) => {
                        tracing::warn!(%error, "watch failed; retrying");
                        None
                    }
                }
            }),
    )
}
