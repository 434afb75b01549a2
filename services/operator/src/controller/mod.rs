//! The controller: watches RemoteHost, Directory and Secret objects in one namespace and
//! keeps the rendered ConfigMap and Secret projection in step with them.
//!
//! Every pod of an installation reads one configuration, so reconciling is done for the whole
//! namespace at once ([`reconcile::reconcile_all`]) rather than per object: any watch event
//! triggers one pass that renders every resource. Passes are debounced, retried with
//! exponential backoff after errors, and repeated periodically to correct drift.
//!
//! Between passes, when a directory-proxy is known ([`Context::with_directory`]), the
//! `Reachable` condition of RemoteHosts is refreshed from its probes
//! ([`report_reachability`]), in the same task, so the two never write a
//! status at the same time.

mod metrics;
mod reachability;
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

use ferrymail_rpc::directory::DirectoryService;
pub use metrics::ReconcileMetrics;
pub use reachability::{REACHABLE, report_reachability};
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
    /// The directory-proxy asked which remote hosts are reachable; without one, the
    /// `Reachable` condition is not written.
    pub directory: Option<Arc<dyn DirectoryService>>,
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
            directory: None,
        }
    }

    /// The same context, asking `directory` which remote hosts are reachable.
    #[must_use]
    pub fn with_directory(mut self, directory: Arc<dyn DirectoryService>) -> Self {
        self.directory = Some(directory);
        self
    }
}

/// Quiet time after a watch event before a pass: `kubectl apply -f dir/` is a burst.
const DEBOUNCE: Duration = Duration::from_millis(500);
/// A pass even without events, to repair changes made behind the operator's back.
const RESYNC: Duration = Duration::from_secs(300);
/// First and longest wait before retrying a failed pass.
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// How often the `Reachable` conditions are refreshed (the directory-proxy probes each
/// host every `probe.interval`, one minute by default).
const REACHABILITY_EVERY: Duration = Duration::from_secs(30);

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
    let mut next_pass = tokio::time::Instant::now();
    let mut reachability = tokio::time::interval(REACHABILITY_EVERY);
    reachability.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            event = events.next() => if event.is_none() { return },
            () = tokio::time::sleep_until(next_pass) => {}
            _ = reachability.tick(), if ctx.directory.is_some() => {
                refresh_reachability(&ctx).await;
                continue;
            }
        }
        // Debounce: let a burst of events settle into one pass.
        while let Ok(Some(())) = tokio::time::timeout(DEBOUNCE, events.next()).await {}
        let wait = match reconcile_all(&ctx).await {
            Ok(summary) => {
                tracing::debug!(?summary, "reconciled");
                backoff = BACKOFF_MIN;
                RESYNC
            }
            Err(error) => {
                tracing::warn!(%error, retry_in = ?backoff, "reconcile failed");
                let wait = backoff;
                backoff = (backoff * 2).min(BACKOFF_MAX);
                wait
            }
        };
        next_pass = tokio::time::Instant::now() + wait;
    }
}

/// One refresh of the `Reachable` conditions; a failure waits for the next one.
async fn refresh_reachability(ctx: &Context) {
    let Some(directory) = &ctx.directory else {
        return;
    };
    match report_reachability(ctx, directory.as_ref()).await {
        Ok(patched) => tracing::debug!(patched, "reachability reported"),
        Err(error) => tracing::warn!(%error, "cannot report reachability"),
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
