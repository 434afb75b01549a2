//! The admin API's metrics: requests by route and status, and refusals by reason.

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use ferrymail_telemetry::Metrics;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusalLabels {
    reason: &'static str,
}

/// `http_api_requests_total` and `http_api_requests_refused_total`.
#[derive(Clone, Debug, Default)]
pub struct ApiMetrics {
    requests: Family<RequestLabels, Counter>,
    refused: Family<RefusalLabels, Counter>,
}

impl ApiMetrics {
    /// Registers the metrics in `metrics`.
    pub fn register(metrics: &Metrics) -> Self {
        let this = Self::default();
        metrics.register(
            "http_api_requests_total",
            "Admin API requests answered, by method, route (the path pattern, `other` for no \
             route) and HTTP status code.",
            this.requests.clone(),
        );
        metrics.register(
            "http_api_requests_refused_total",
            "Admin API requests refused before reaching the queue, by reason (missing, \
             malformed, invalid, plain_text, not_configured).",
            this.refused.clone(),
        );
        this
    }

    /// Counts one refusal.
    pub fn refused(&self, reason: &'static str) {
        self.refused.get_or_create(&RefusalLabels { reason }).inc();
    }
}

/// The middleware counting every answer of the API's routes.
pub async fn count(State(metrics): State<ApiMetrics>, request: Request, next: Next) -> Response {
    // Patterns only: a client cannot grow the metric with made-up paths or methods.
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "other".to_owned(), |p| p.as_str().to_owned());
    let method = match request.method().as_str() {
        m @ ("GET" | "PATCH" | "DELETE" | "POST") => m.to_owned(),
        _ => "other".to_owned(),
    };
    let response = next.run(request).await;
    metrics
        .requests
        .get_or_create(&RequestLabels {
            method,
            route,
            code: response.status().as_u16(),
        })
        .inc();
    response
}
