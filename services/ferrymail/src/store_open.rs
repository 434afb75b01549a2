//! Opening the store named by `storage.data`.

use std::sync::Arc;

use anyhow::Context as _;
use ferrymail_config::Config;
use ferrymail_config::model::store::StoreBackend;
use ferrymail_store::{Store, StoreOptions};
use ferrymail_telemetry::Metrics;

use crate::store_metrics::StoreMetrics;

/// The data store, its metrics registered in `metrics`, or `None` when `storage.data` is not
/// set.
pub fn open(config: &Config, metrics: &Metrics) -> anyhow::Result<Option<Store>> {
    let Some((id, store)) = config.data_store() else {
        return Ok(None);
    };
    let options = StoreOptions {
        prefix: store.prefix.clone(),
        observer: Some(Arc::new(StoreMetrics::register(metrics))),
        ..StoreOptions::default()
    };
    let opened = match &store.backend {
        StoreBackend::Embedded { path } => Store::open_embedded(path, options),
        StoreBackend::FoundationDb { cluster_file } => {
            foundationdb(id, cluster_file.as_deref(), options)?
        }
    };
    let store = opened.with_context(|| format!("store.{id}: cannot open"))?;
    tracing::info!(store = id, backend = store.backend_name(), "store opened");
    Ok(Some(store))
}

#[cfg(feature = "fdb")]
fn foundationdb(
    _id: &str,
    cluster_file: Option<&std::path::Path>,
    options: StoreOptions,
) -> anyhow::Result<ferrymail_store::Result<Store>> {
    Ok(Store::open_foundationdb(cluster_file, options))
}

#[cfg(not(feature = "fdb"))]
fn foundationdb(
    id: &str,
    _cluster_file: Option<&std::path::Path>,
    _options: StoreOptions,
) -> anyhow::Result<ferrymail_store::Result<Store>> {
    anyhow::bail!(
        "store.{id}: this ferrymail was built without FoundationDB support (cargo feature `fdb`)"
    )
}
