//! The role services a process hosts, built from the configuration and kept current when
//! it is reloaded.

use std::sync::Arc;

use anyhow::{Context as _, bail};
use ferrymail_config::{Config, LoadedConfig};
use ferrymail_directory_proxy::{DirectoryMetrics, DirectoryProxy};
use ferrymail_queue_scheduler::QueueMetrics;
use ferrymail_queue_scheduler::{Queue, Router, Scheduler, SchedulerOptions};
use ferrymail_rpc::directory::{DirectoryService, GrpcDirectory};
use ferrymail_rpc::queue::{GrpcQueue, QueueService};
use ferrymail_smtp_ingress::{Ingress, IngressMetrics};
use ferrymail_store::Store;
use ferrymail_telemetry::{Health, Metrics};
use tokio::sync::watch;

use crate::cluster_security::ClusterSecurity;
use crate::role::Role;

/// The services of this process (each `None` when the role does not host it).
#[derive(Clone)]
pub struct Services {
    /// How gRPC to and from the other roles is secured.
    pub cluster: ClusterSecurity,
    /// The directory-proxy, serving the `Directory` service.
    pub directory: Option<Arc<DirectoryProxy>>,
    /// The queue, serving the `Queue` service.
    pub queue: Option<Arc<Queue>>,
    /// The delivery worker of the queue: built here, started with the process's other tasks.
    pub scheduler: Option<Arc<Scheduler>>,
    /// The SMTP/LMTP front door.
    pub ingress: Option<Arc<Ingress>>,
    /// The data store the queue and the lookup cache share, when this role opens one.
    pub store: Option<Store>,
}

impl Services {
    /// Builds the services `role` hosts.
    pub async fn start(
        role: Role,
        loaded: &LoadedConfig,
        metrics: &Metrics,
        health: &Health,
    ) -> anyhow::Result<Self> {
        let mut services = Services {
            cluster: ClusterSecurity::start(&loaded.config, metrics)?,
            directory: None,
            queue: None,
            scheduler: None,
            ingress: None,
            store: None,
        };
        // Opened once: the embedded store is one database file that one process opens once,
        // whichever of its roles use it.
        let store = if role.hosts_directory() || role.hosts_queue() {
            crate::store_open::open(&loaded.config, metrics).await?
        } else {
            None
        };
        // The services read the store as they start: a database that does not answer yet is
        // waited for, the process unready meanwhile.
        if let Some(store) = &store {
            crate::store_readiness::available(store, health)
                .await
                .context("the store cannot be used")?;
        }
        if role.hosts_queue() {
            let Some(store) = store.clone() else {
                bail!(
                    "the {} role keeps the mail queue in the store: set storage.data to a \
                     store.<id> (e.g. an embedded store with a path)",
                    role.name()
                );
            };
            let queue_metrics = QueueMetrics::register(metrics);
            let queue = Arc::new(Queue::with_metrics(
                store,
                &loaded.config.queue,
                queue_metrics.clone(),
            ));
            queue.set_hostname(&loaded.config.server.hostname);
            queue.set_router(Router::new(&loaded.config));
            queue.set_webhooks(&loaded.config.webhooks);
            queue.set_dmarc_reports(&loaded.config);
            queue.set_tls_reports(&loaded.config);
            // Gauges are read from the store's counters; the task ends with the runtime.
            tokio::spawn(queue_metrics.refresh(queue.clone()));
            tokio::spawn(ferrymail_queue_scheduler::collect_bodies(queue.clone()));
            let options = SchedulerOptions::new(&loaded.config.server.hostname)
                .with_lease(loaded.config.queue.lease);
            services.scheduler = Some(Arc::new(Scheduler::new(
                queue.clone(),
                &loaded.config,
                options,
            )));
            services.queue = Some(queue);
        }
        if role.hosts_directory() {
            if store.is_none() {
                tracing::warn!(
                    "storage.data is not set: lookup results are cached in this process only"
                );
            }
            let proxy = DirectoryProxy::new(
                &loaded.config,
                store.clone(),
                DirectoryMetrics::register(metrics),
            )
            .await?;
            let proxy = Arc::new(proxy);
            // Probes every remote.<id>; the task ends with the runtime.
            tokio::spawn(proxy.clone().probe_remotes());
            services.directory = Some(proxy);
        }
        if role.hosts_ingress() {
            services.ingress = Some(Arc::new(ingress(&loaded.config, &services, metrics)?));
        }
        services.store = store;
        Ok(services)
    }

    /// Applies every new configuration to the services until the sender goes away.
    pub async fn follow(self, mut updates: watch::Receiver<Arc<LoadedConfig>>) {
        while updates.changed().await.is_ok() {
            let loaded = updates.borrow_and_update().clone();
            self.cluster.apply(&loaded.config);
            if let Some(directory) = &self.directory {
                directory.apply(&loaded.config).await;
            }
            if let Some(queue) = &self.queue {
                queue.apply(&loaded.config.queue);
                queue.set_hostname(&loaded.config.server.hostname);
                queue.set_router(Router::new(&loaded.config));
                queue.set_webhooks(&loaded.config.webhooks);
                queue.set_dmarc_reports(&loaded.config);
                queue.set_tls_reports(&loaded.config);
            }
            if let Some(scheduler) = &self.scheduler {
                scheduler.apply(&loaded.config);
            }
            if let Some(ingress) = &self.ingress {
                ingress.apply(&loaded.config);
            }
        }
    }
}

/// The ingress, asking this process's directory and queue when it hosts them (`all`), or
/// the split roles over gRPC (`cluster.directory.endpoint`, `cluster.queue.endpoint`).
fn ingress(config: &Config, services: &Services, metrics: &Metrics) -> anyhow::Result<Ingress> {
    let directory: Arc<dyn DirectoryService> =
        match (&services.directory, &config.cluster.directory_endpoint) {
            (Some(local), _) => local.clone(),
            (None, Some(endpoint)) => Arc::new(GrpcDirectory::connect_with(
                endpoint,
                services.cluster.channel(),
            )?),
            (None, None) => bail!(
                "smtp-ingress asks the directory-proxy over gRPC: set cluster.directory.endpoint"
            ),
        };
    let queue: Arc<dyn QueueService> = match (&services.queue, &config.cluster.queue_endpoint) {
        (Some(local), _) => local.clone(),
        (None, Some(endpoint)) => Arc::new(GrpcQueue::connect_with(
            endpoint,
            services.cluster.channel(),
        )?),
        (None, None) => {
            bail!("smtp-ingress hands messages to the queue over gRPC: set cluster.queue.endpoint")
        }
    };
    Ok(Ingress::new(
        config,
        directory,
        queue,
        IngressMetrics::register(metrics),
    )?)
}
