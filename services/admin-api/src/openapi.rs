//! The API's OpenAPI document, served to anyone: it describes the paths, not the queue.

use axum::http::header;
use axum::response::IntoResponse;

/// Where the document is served.
pub const PATH: &str = "/api/openapi.json";

/// The document itself, written by hand next to this file (`openapi.json`) and checked
/// against the running server by the end-to-end tests.
pub const DOCUMENT: &str = include_str!("openapi.json");

/// `GET /api/openapi.json`.
pub async fn document() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], DOCUMENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_is_json_with_every_path() {
        let document: serde_json::Value = serde_json::from_str(DOCUMENT).unwrap_or_default();
        let paths = document["paths"].as_object().cloned().unwrap_or_default();
        for path in [
            "/api/queue/messages",
            "/api/queue/messages/{id}",
            "/api/queue/messages/{id}/hold",
            "/api/queue/messages/{id}/release",
            "/api/queue/status",
            "/api/queue/status/{action}",
            "/api/queue/stats",
            "/api/queue/destinations",
            "/api/queue/destinations/{kind}/{name}/pause",
            "/api/queue/destinations/{kind}/{name}/resume",
            "/api/queue/find",
            "/api/queue/bulk",
        ] {
            assert!(paths.contains_key(path), "{path} is not documented");
        }
        assert_eq!(document["openapi"], "3.0.3");
    }
}
