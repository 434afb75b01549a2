//! One hook request: `POST` of the JSON request over HTTP/1.1 (hyper), through TLS for
//! `https://` with the certificate checked unless `allow-invalid-certs`, with the configured
//! headers and HTTP Basic credentials, within `timeout`; the answer must be `2xx` and at
//! most `max-response-size` bytes. Credentials are sent, never logged.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use ferrymail_config::model::hook::Hook;
use ferrymail_tls::{EndpointError, HttpEndpoint, TlsSettings};
use http::{Request, header};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::rt::{Read, Write};
use hyper_util::rt::TokioIo;

/// Why a hook could not be asked, or its answer not read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SendError {
    /// The endpoint could not be reached (URL, connection, TLS).
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    /// The HTTP exchange failed (connection closed, not HTTP, truncated answer...).
    #[error("HTTP: {0}")]
    Http(String),
    /// No whole answer within `timeout`.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The hook answered, but not `2xx`.
    #[error("answered HTTP {0}")]
    Status(u16),
    /// The answer is longer than `max-response-size`.
    #[error("answer longer than {0} bytes")]
    TooLarge(u64),
}

/// Sends hook requests; one per process, shared by every session.
#[derive(Clone)]
pub(crate) struct HookClient {
    tls: TlsSettings,
}

impl HookClient {
    /// A client trusting what `tls` trusts.
    pub(crate) fn new(tls: TlsSettings) -> Self {
        Self { tls }
    }

    /// `POST`s `body` to `hook` and returns the answer's body, all within its timeout.
    pub(crate) async fn post(&self, hook: &Hook, body: Vec<u8>) -> Result<Bytes, SendError> {
        let timeout = hook.timeout;
        tokio::time::timeout(timeout, self.exchange(hook, body))
            .await
            .map_err(|_| SendError::Timeout(timeout))?
    }

    async fn exchange(&self, hook: &Hook, body: Vec<u8>) -> Result<Bytes, SendError> {
        let endpoint = HttpEndpoint::parse(&hook.url)?;
        let stream = endpoint
            .connect(&self.tls, hook.allow_invalid_certs)
            .await?;
        let request = build_request(hook, &endpoint, body)?;
        send(TokioIo::new(stream), request, hook.max_response_size).await
    }
}

/// The request: the configured headers first, then those ferrymail sets.
pub(crate) fn build_request(
    hook: &Hook,
    endpoint: &HttpEndpoint,
    body: Vec<u8>,
) -> Result<Request<Full<Bytes>>, SendError> {
    let mut request = Request::post(endpoint.path());
    for (name, value) in &hook.headers {
        request = request.header(name.as_str(), value.as_str());
    }
    request = request
        .header(header::HOST, endpoint.authority())
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ACCEPT, "application/json")
        .header(header::USER_AGENT, "ferrymail")
        .header(header::CONTENT_LENGTH, body.len());
    if let Some((user, secret)) = &hook.auth {
        let credentials = STANDARD.encode(format!("{user}:{}", secret.expose()));
        request = request.header(header::AUTHORIZATION, format!("Basic {credentials}"));
    }
    // The error names no header value (one may hold a secret).
    request
        .body(Full::new(Bytes::from(body)))
        .map_err(|_| SendError::Http("a configured header cannot be sent".to_owned()))
}

/// Sends `request` over `io`, checks the status and reads at most `limit` bytes of answer.
async fn send<T>(io: T, request: Request<Full<Bytes>>, limit: u64) -> Result<Bytes, SendError>
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
        if !status.is_success() {
            return Err(SendError::Status(status.as_u16()));
        }
        let announced = response
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if announced.is_some_and(|length| length > limit) {
            return Err(SendError::TooLarge(limit));
        }
        let cap = usize::try_from(limit).unwrap_or(usize::MAX);
        Limited::new(response.into_body(), cap)
            .collect()
            .await
            .map(|body| body.to_bytes())
            .map_err(|error| {
                if error.is::<LengthLimitError>() {
                    SendError::TooLarge(limit)
                } else {
                    SendError::Http(error.to_string())
                }
            })
    };
    // The connection is driven alongside the exchange; once it ends, whatever the exchange
    // still waits for has arrived or never will.
    let mut exchange = std::pin::pin!(exchange);
    tokio::select! {
        result = &mut exchange => result,
        _ = connection => exchange.await,
    }
}
