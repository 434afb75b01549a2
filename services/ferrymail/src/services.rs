//! The role services a process hosts, built from the configuration and kept current when
//! it is reloaded.

use std::sync::Arc;

use ferrymail_config::LoadedConfig;
use ferrymail_directory_proxy::{DirectoryMetrics, DirectoryProxy};
use ferrymail_telemetry::Metrics;
use tokio::sync::watch;

use crate::role::Role;

/// The services of this process (each `None` when the role does not host it).
#[derive(Clone, Default)]
pub struct Services {
    /// The directory-proxy, serving the `Directory` service.
    pub directory: Option<Arc<DirectoryProxy>>,
}

impl Services {
    /// Builds the services `role` hosts.
    pub async fn start(
        role: Role,
        loaded: &LoadedConfig,
        metrics: &Metrics,
    ) -> anyhow::Result<Self> {
        let mut services = Services::default();
        if role.hosts_directory() {
            let store = crate::store_open::open(&loaded.config)?;
            if store.is_none() {
                tracing::warn!(
                    "storage.data is not set: lookup results are cached in this process only"
                );
            }
            let proxy =
                DirectoryProxy::new(&loaded.config, store, DirectoryMetrics::register(metrics))
                    .await?;
            services.directory = Some(Arc::new(proxy));
        }
        Ok(services)
    }

    /// Applies every new configuration to the services until the sender goes away.
    pub async fn follow(self, mut updates: watch::Receiver<Arc<LoadedConfig>>) {
        while updates.changed().await.is_ok() {
            let loaded = updates.borrow_and_update().clone();
            if let Some(directory) = &self.directory {
                directory.apply(&loaded.config).await;
            }
        }
    }
}
