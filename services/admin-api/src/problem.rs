//! Error answers: RFC 7807 problem documents, as Stalwart's API writes them
//! (`type`, `status`, `title`, `detail`).

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ferrymail_rpc::queue::QueueError;
use serde_json::json;

/// The media type of a problem document.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The HTTP status.
    pub status: StatusCode,
    /// What went wrong, for a person.
    pub detail: String,
}

impl Problem {
    /// A problem with `status` and `detail`.
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self {
            status,
            detail: detail.into(),
        }
    }

    /// `400 Bad Request`.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, detail)
    }

    /// `404 Not Found`.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, detail)
    }
}

impl From<QueueError> for Problem {
    fn from(error: QueueError) -> Self {
        let status = match &error {
            QueueError::NotFound(_) => StatusCode::NOT_FOUND,
            QueueError::InvalidArgument(_) | QueueError::Body(_) => StatusCode::BAD_REQUEST,
            // Temporary: the caller may try again, as the SMTP side answers 4xx.
            QueueError::QuotaExceeded(_) | QueueError::Unavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            QueueError::Transport(_) => StatusCode::BAD_GATEWAY,
            QueueError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status.is_server_error() {
            tracing::warn!(error = %error, "admin API: the queue failed");
        }
        Self::new(status, error.to_string())
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let title = self.status.canonical_reason().unwrap_or("Error");
        let body = json!({
            "type": "about:blank",
            "status": self.status.as_u16(),
            "title": title,
            "detail": self.detail,
        });
        let mut response = (self.status, Json(body)).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        response
    }
}
