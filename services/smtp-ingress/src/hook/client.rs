//! One hook request: `POST` of the JSON request over HTTP/1.1 (hyper), through TLS for
//! `https://` with the certificate checked unless `allow-invalid-certs`, with the configured
//! headers and HTTP Basic credentials, within `timeout`; the answer must be `2xx` and at
//! most `max-response-size` bytes. Credentials are sent, never logged.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use ferrymail_config::model::hook::Hook;
use ferrymail_tls::TlsSettings;
use http::{Request, Uri, header};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::rt::{Read, Write};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Why a hook could not be asked, or its answer not read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SendError {
    /// The URL cannot be requested (the configuration checks it; kept for safety).
    #[error("invalid hook URL: {0}")]
    Url(String),
    /// No connection could be opened.
    #[error("cannot connect to {authority}: {error}")]
    Connect {
        /// Host and port.
        authority: String,
        /// Why.
        error: std::io::Error,
    },
    /// The TLS handshake failed (certificate not trusted, name mismatch...).
    #[error("{0}")]
    Tls(String),
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
        let uri: Uri = hook
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
        // One request at a time on this connection: send it at once.
        let _ = tcp.set_nodelay(true);
        let request = build_request(hook, &uri, &authority, body)?;
        let limit = hook.max_response_size;
        if https {
            let stream = self
                .tls
                .handshake(tcp, &host, hook.allow_invalid_certs)
                .await
                .map_err(|e| SendError::Tls(e.to_string()))?;
            send(TokioIo::new(stream), request, limit).await
        } else {
            send(TokioIo::new(tcp), request, limit).await
        }
    }
}

/// The request: the configured headers first, then those ferrymail sets.
pub(crate) fn build_request(
    hook: &Hook,
    uri: &Uri,
    authority: &str,
    body: Vec<u8>,
) -> Result<Request<Full<Bytes>>, SendError> {
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut request = Request::post(path);
    for (name, value) in &hook.headers {
        request = request.header(name.as_str(), value.as_str());
    }
    request = request
        .header(header::HOST, authority)
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
