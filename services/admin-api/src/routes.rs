//! The routes of the admin API.

use std::sync::Arc;

use axum::Router;
use axum::middleware::from_fn_with_state;
use axum::routing::{get, patch, post};

use crate::gate::{Gate, authenticate};
use crate::metrics::{ApiMetrics, count};
use crate::queue_slot::{Api, QueueSlot};
use crate::{messages, openapi, operations};

/// The admin API's routes: `/api/openapi.json` for anyone, `/api/queue/…` behind `gate`.
pub fn router(slot: QueueSlot, gate: Gate, metrics: ApiMetrics) -> Router {
    let queue_routes = Router::new()
        .route(
            "/api/queue/messages",
            get(messages::list)
                .patch(messages::retry_selected)
                .delete(messages::cancel_selected),
        )
        .route(
            "/api/queue/messages/{id}",
            get(messages::get)
                .patch(messages::retry)
                .delete(messages::cancel),
        )
        .route("/api/queue/messages/{id}/hold", patch(operations::hold))
        .route(
            "/api/queue/messages/{id}/release",
            patch(operations::release),
        )
        .route("/api/queue/status", get(messages::status))
        .route("/api/queue/status/{action}", patch(messages::set_status))
        .route("/api/queue/stats", get(operations::stats))
        .route("/api/queue/destinations", get(operations::destinations))
        .route(
            "/api/queue/destinations/{kind}/{name}/pause",
            patch(operations::pause),
        )
        .route(
            "/api/queue/destinations/{kind}/{name}/resume",
            patch(operations::resume),
        )
        .route("/api/queue/find", get(operations::find))
        .route("/api/queue/bulk", post(operations::bulk))
        .route_layer(from_fn_with_state(Arc::new(gate), authenticate))
        .with_state(Api::new(slot));
    Router::new()
        .route(openapi::PATH, get(openapi::document))
        .merge(queue_routes)
        .route_layer(from_fn_with_state(metrics, count))
}
