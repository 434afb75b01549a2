//! One webhook request: `POST` of a JSON body over HTTP/1.1 (hyper), through TLS for
//! `https://` with the certificate checked unless `allow-invalid-certs`, with the configured
//! headers, HTTP Basic credentials and `X-Signature`, within `timeout`. Only a `2xx` answer
//! counts as taken. Secrets are sent, never logged.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use ferrymail_config::model::webhook::Webhook;
use ferrymail_tls::{EndpointError, HttpEndpoint, TlsSettings};
use http::{Request, header};
use http_body_util::Full;
use hyper::rt::{Read, Write};
use hyper_util::rt::TokioIo;

use super::signature::{SIGNATURE_HEADER, sign};

/// Why a request did not deliver its events.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SendError {
    /// The endpoint could not be reached (URL, connection, TLS).
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    /// The HTTP exchange failed.
    #[error("HTTP: {0}")]
    Http(String),
    /// No answer within `timeout`.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The webhook answered, but not `2xx`.
    #[error("answered HTTP {0}")]
    Status(u16),
}

/// Every `reason` of [`SendError::reason`].
pub(crate) const REASONS: [&str; 8] = [
    "url",
    "connect",
    "tls",
    "http",
    "timeout",
    "status_3xx",
    "status_4xx",
    "status_5xx",
];

impl SendError {
    /// The `reason` label of the failure metric: a small fixed set.
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            SendError::Endpoint(EndpointError::Url(_)) => "url",
            SendError::Endpoint(EndpointError::Connect { .. }) => "connect",
            SendError::Endpoint(EndpointError::Tls(_)) => "tls",
            SendError::Http(_) => "http",
            SendError::Timeout(_) => "timeout",
            SendError::Status(300..=399) => "status_3xx",
            SendError::Status(400..=499) => "status_4xx",
            SendError::Status(_) => "status_5xx",
        }
    }
}

/// Sends webhook requests.
#[derive(Clone)]
pub(crate) struct WebhookClient {
    tls: TlsSettings,
}

impl WebhookClient {
    /// A client trusting what `tls` trusts.
    pub(crate) fn new(tls: TlsSettings) -> Self {
        Self { tls }
    }

    /// `POST`s `body` to `webhook` within its timeout.
    pub(crate) async fn post(&self, webhook: &Webhook, body: Vec<u8>) -> Result<(), SendError> {
        let timeout = webhook.timeout;
        tokio::time::timeout(timeout, self.exchange(webhook, body))
            .await
            .map_err(|_| SendError::Timeout(timeout))?
    }

    async fn exchange(&self, webhook: &Webhook, body: Vec<u8>) -> Result<(), SendError> {
        let endpoint = HttpEndpoint::parse(&webhook.url)?;
        let stream = endpoint
            .connect(&self.tls, webhook.allow_invalid_certs)
            .await?;
        let request = build_request(webhook, &endpoint, body)?;
        send(TokioIo::new(stream), request).await
    }
}

/// The request: the configured headers first, then those ferrymail sets.
fn build_request(
    webhook: &Webhook,
    endpoint: &HttpEndpoint,
    body: Vec<u8>,
) -> Result<Request<Full<Bytes>>, SendError> {
    let mut request = Request::post(endpoint.path());
    for (name, value) in &webhook.headers {
        request = request.header(name.as_str(), value.as_str());
    }
    request = request
        .header(header::HOST, endpoint.authority())
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::USER_AGENT, "ferrymail")
        .header(header::CONTENT_LENGTH, body.len());
    if let Some((user, secret)) = &webhook.auth {
        let credentials = STANDARD.encode(format!("{user}:{}", secret.expose()));
        request = request.header(header::AUTHORIZATION, format!("Basic {credentials}"));
    }
    if let Some(key) = &webhook.signature_key {
        request = request.header(SIGNATURE_HEADER, sign(key.expose().as_bytes(), &body));
    }
    // The error names the header, never its value (which may hold a secret).
    request
        .body(Full::new(Bytes::from(body)))
        .map_err(|_| SendError::Http("a configured header cannot be sent".to_owned()))
}

/// Sends `request` over `io` and checks the status (also for SMTP TLS reports' POSTs).
pub(crate) async fn send<T>(io: T, request: Request<Full<Bytes>>) -> Result<(), SendError>
where
    T: Read + Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| SendError::Http(e.to_string()))?;
    let exchange = async move {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| SendError::Http(e.to_string()))?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(SendError::Status(status.as_u16()))
        }
    };
    // The connection is driven alongside the exchange; once it ends, whatever the exchange
    // still waits for has arrived or never will.
    let mut exchange = std::pin::pin!(exchange);
    tokio::select! {
        result = &mut exchange => result,
        _ = connection => exchange.await,
    }
}
