//! Opening the store named by `storage.data`.

use std::sync::Arc;

use anyhow::Context as _;
use ferrymail_config::Config;
use ferrymail_config::model::store::StoreBackend;
use ferrymail_store::{PostgresSettings, Store, StoreOptions};
use ferrymail_telemetry::Metrics;

use crate::store_metrics::StoreMetrics;

/// The data store, its metrics registered in `metrics`, or `None` when `storage.data` is not
/// set.
///
/// A PostgreSQL server that cannot be reached does not stop the start: the store is opened
/// unavailable (one error line says why; `/readyz` answers 503 through the store's
/// availability) and connects once the server answers. A refused login, a failed TLS
/// handshake or a schema of another version is an error.
pub async fn open(config: &Config, metrics: &Metrics) -> anyhow::Result<Option<Store>> {
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
        StoreBackend::PostgreSql {
            host,
            port,
            database,
            user,
            password,
            timeout,
            tls,
            allow_invalid_certs,
            max_connections,
        } => {
            let tls =
                tls.then(|| ferrymail_tls::TlsSettings::new().client_config(*allow_invalid_certs));
            let settings = PostgresSettings {
                host: host.clone(),
                port: *port,
                database: database.clone(),
                user: user.clone(),
                password: password.as_ref().map(|p| p.expose().to_owned()),
                timeout: *timeout,
                tls,
                max_connections: usize::try_from(*max_connections).unwrap_or(usize::MAX),
            };
            Store::open_postgresql(&settings, options).await
        }
        StoreBackend::FoundationDb { cluster_file } => {
            foundationdb(id, cluster_file.as_deref(), options)?
        }
    };
    let store = opened.with_context(|| format!("store.{id}: cannot open"))?;
    let unavailable = store.availability().borrow().clone();
    match unavailable {
        Some(reason) => tracing::error!(
            store = id,
            backend = store.backend_name(),
            reason,
            "store unreachable; not ready until it answers, retrying"
        ),
        None => tracing::info!(store = id, backend = store.backend_name(), "store opened"),
    }
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
