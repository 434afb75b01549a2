//! Posting a gzipped TLS report to an `https:` destination (RFC 8460 §5.2): one `POST` of
//! `application/tlsrpt+gzip`, the endpoint's certificate checked, a `2xx` answer required.

use std::time::Duration;

use bytes::Bytes;
use ferrymail_tls::{HttpEndpoint, TlsSettings};
use http::{Request, header};
use http_body_util::Full;
use hyper_util::rt::TokioIo;

use crate::events::webhook_client::{SendError, send};

/// How long one POST may take, connection included.
const POST_TIMEOUT: Duration = Duration::from_secs(60);

/// Posts `gz` to `endpoint`.
pub(crate) async fn post(
    tls: &TlsSettings,
    endpoint: &HttpEndpoint,
    gz: &[u8],
) -> Result<(), SendError> {
    let exchange = async {
        // RFC 8460 §5.2: the certificate must be valid; no configuration relaxes it.
        let stream = endpoint.connect(tls, false).await?;
        let request = Request::post(endpoint.path())
            .header(header::HOST, endpoint.authority())
            .header(header::CONTENT_TYPE, "application/tlsrpt+gzip")
            .header(header::USER_AGENT, "ferrymail")
            .header(header::CONTENT_LENGTH, gz.len())
            .body(Full::new(Bytes::copy_from_slice(gz)))
            .map_err(|e| SendError::Http(e.to_string()))?;
        send(TokioIo::new(stream), request).await
    };
    tokio::time::timeout(POST_TIMEOUT, exchange)
        .await
        .unwrap_or(Err(SendError::Timeout(POST_TIMEOUT)))
}

/// The endpoint `url` names, when it is an `https:` URL.
pub(crate) fn endpoint(url: &str) -> Option<HttpEndpoint> {
    if !url.starts_with("https:") {
        return None;
    }
    HttpEndpoint::parse(url).ok()
}
