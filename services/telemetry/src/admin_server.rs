//! The admin HTTP server: `/healthz`, `/readyz` and `/metrics` on a role's admin port.

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::admin_listener::{AdminClient, AdminListener};
use crate::{Health, Metrics, TelemetryError};

/// The content type of `/metrics`: OpenMetrics text, which is what the encoder writes.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone)]
struct AdminState {
    health: Health,
    metrics: Metrics,
}

/// Serves the admin endpoints on `listener` until `shutdown` is cancelled, then finishes the
/// requests in flight and returns.
///
/// - `GET /healthz`: liveness, always `200 ok` while the process answers.
/// - `GET /readyz`: `200 ready`, or `503` with one `name: reason` line per component that is
///   not ready (`draining: shutting down` first once [`Health::start_draining`] was called).
/// - `GET /metrics`: every registered metric, in OpenMetrics text.
/// - anything else: `404`.
///
/// Cancel `shutdown` only after draining has had time to take effect, so probes keep getting
/// answers (and failing readiness) while traffic moves away.
pub async fn serve_admin(
    listener: TcpListener,
    health: Health,
    metrics: Metrics,
    shutdown: CancellationToken,
) -> Result<(), TelemetryError> {
    let listener = AdminListener::plain(listener).map_err(TelemetryError::AdminServer)?;
    serve_admin_with(listener, health, metrics, Router::new(), shutdown).await
}

/// As [`serve_admin`], on a plain or TLS `listener`, also serving the routes of `api` (the
/// admin API, which reads the [`AdminClient`] of each request from its `ConnectInfo`).
pub async fn serve_admin_with(
    listener: AdminListener,
    health: Health,
    metrics: Metrics,
    api: Router,
    shutdown: CancellationToken,
) -> Result<(), TelemetryError> {
    if let Ok(client) = axum::serve::Listener::local_addr(&listener) {
        tracing::info!(address = %client.address, tls = client.tls, "admin server listening");
    }
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_handler))
        .with_state(AdminState { health, metrics })
        .merge(api)
        .fallback(not_found);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<AdminClient>(),
    )
    .with_graceful_shutdown(shutdown.cancelled_owned())
    .await
    .map_err(TelemetryError::AdminServer)
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(state): State<AdminState>) -> Response {
    let readiness = state.health.readiness();
    if readiness.is_ready() {
        return "ready".into_response();
    }
    let mut body = String::new();
    for entry in readiness.not_ready() {
        body.push_str(&one_line(&entry.component));
        body.push_str(": ");
        body.push_str(&one_line(&entry.reason));
        body.push('\n');
    }
    (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
}

/// Keeps a report at one line per component even if a reason quotes a multi-line error.
fn one_line(text: &str) -> String {
    text.replace(|c: char| c.is_control(), " ")
}

async fn metrics_handler(State(state): State<AdminState>) -> Response {
    match state.metrics.encode() {
        Ok(body) => ([(header::CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE)], body).into_response(),
        Err(error) => {
            tracing::error!(
                error = &error as &dyn std::error::Error,
                "cannot encode metrics"
            );
            (StatusCode::INTERNAL_SERVER_ERROR, "cannot encode metrics\n").into_response()
        }
    }
}

async fn not_found() -> (StatusCode, &'static str) {
    (StatusCode::NOT_FOUND, "not found\n")
}
