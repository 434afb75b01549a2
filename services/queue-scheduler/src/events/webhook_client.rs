//! One webhook request: `POST` of a JSON body over HTTP/1.1 (hyper), through TLS for
//! `https://` with the certificate checked unless `allow-invalid-certs`, with the configured
//! headers, HTTP Basic credentials and `X-Signature`, within `timeout`. Only a `2xx` answer
//! counts as taken. Secrets are sent, never logged.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use ferrymail_config::model::webhook::Webhook;
use ferrymail_tls::TlsSettings;
use http::{Request, Uri, header};
use http_body_util::Full;
use hyper::rt::{Read, Write};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::signature::{SIGNATURE_HEADER, sign};

/// Why a request did not deliver its events.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SendError {
    /// The URL cannot be requested (the configuration checks it; kept for safety).
    #[error("invalid webhook URL: {0}")]
    Url(String),
    /// No connection could be opened.
    #[error("cannot connect to {authority}: {error}")]
    Connect {
        /// Host and port.
        authority: String,
        /// Why.
        error: std::io::Error,
    },
    /// The TLS handshake failed.
    #[error("{0}")]
    Tls(String),
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
            SendError::Url(_) => "url",
            SendError::Connect { .. } => "connect",
            SendError::Tls(_) => "tls",
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
        let uri: Uri = webhook
            .url
            .parse()
            .map_err(|e: http::uri::InvalidUri| SendError::Url(e.to_string()))?;
        let https = uri.scheme_str() == Some("https");
        let bracketed = uri
            .host()
            .ok_or_else(|| SendError::Url("no host".to_owned()))?;
        let host = bracketed
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        // Host and port only: credentials written in the URL are neither sent nor logged.
        let authority = match uri.port_u16() {
            Some(port) => format!("{bracketed}:{port}"),
            None => bracketed.to_owned(),
        };
        let tcp = TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|error| SendError::Connect {
                authority: authority.clone(),
                error,
            })?;
        // Small requests: send each at once rather than wait for more to fill a segment.
        let _ = tcp.set_nodelay(true);
        let request = build_request(webhook, &uri, &authority, body)?;
        if https {
            let stream = self
                .tls
                .handshake(tcp, &host, webhook.allow_invalid_certs)
                .await
                .map_err(|e| SendError::Tls(e.to_string()))?;
            send(TokioIo::new(stream), request).await
        } else {
            send(TokioIo::new(tcp), request).await
        }
    }
}

/// The request: the configured headers first, then those ferrymail sets.
fn build_request(
    webhook: &Webhook,
    uri: &Uri,
    authority: &str,
    body: Vec<u8>,
) -> Result<Request<Full<Bytes>>, SendError> {
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut request = Request::post(path);
    for (name, value) in &webhook.headers {
        request = request.header(name.as_str(), value.as_str());
    }
    request = request
        .header(header::HOST, authority)
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

/// Sends `request` over `io` and checks the status.
async fn send<T>(io: T, request: Request<Full<Bytes>>) -> Result<(), SendError>
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
