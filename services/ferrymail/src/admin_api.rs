//! The HTTP admin API on the `http` listeners: mounted where the queue lives, with the
//! configured credentials, over HTTPS where the listener says `tls.implicit`.

use anyhow::Context as _;
use axum::Router;
use ferrymail_admin_api::{ApiMetrics, Gate, PasswordCheck, QueueSlot};
use ferrymail_config::Config;
use ferrymail_telemetry::{AdminListener, Metrics};
use tokio::net::TcpListener;

use crate::role::Role;

/// The API's routes for `role`: none when the role does not host the queue.
pub fn router(role: Role, config: &Config, metrics: &Metrics, slot: &QueueSlot) -> Router {
    if !role.hosts_queue() {
        return Router::new();
    }
    let authentication = &config.authentication;
    if !authentication.any() {
        tracing::info!(
            "the admin API at /api/queue answers 401 to everyone: no authentication.api-key.<id> \
             or authentication.fallback-admin is configured"
        );
    }
    let clear = authentication
        .fallback_admin
        .iter()
        .map(|admin| {
            (
                "authentication.fallback-admin.secret".to_owned(),
                &admin.secret,
            )
        })
        .chain(
            authentication
                .api_keys
                .iter()
                .map(|(id, secret)| (format!("authentication.api-key.{id}.secret"), secret)),
        )
        .filter(|(_, secret)| secret.is_clear());
    for (key, _) in clear {
        tracing::warn!(
            key,
            "the admin API's secret is stored in clear text: store its argon2 hash"
        );
    }
    let api_metrics = ApiMetrics::register(metrics);
    let gate = Gate::new(
        PasswordCheck::new(authentication.clone()),
        config.server.http_allow_plain_text,
        api_metrics.clone(),
    );
    ferrymail_admin_api::router(slot.clone(), gate, api_metrics)
}

/// The admin server's socket for listener `id`: HTTPS when it says `tls.implicit`.
pub fn listener(config: &Config, id: &str, socket: TcpListener) -> anyhow::Result<AdminListener> {
    let tls = config
        .server
        .listeners
        .get(id)
        .is_some_and(|listener| listener.tls_implicit);
    if !tls {
        return Ok(AdminListener::plain(socket)?);
    }
    let acceptor = ferrymail_smtp_ingress::server_tls_acceptor(config)
        .with_context(|| format!("server.listener.{id}: TLS"))?
        .with_context(|| format!("server.listener.{id}: implicit TLS needs a certificate"))?;
    Ok(AdminListener::tls(socket, acceptor)?)
}
