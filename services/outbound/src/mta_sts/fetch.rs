//! Fetching a domain's policy from `https://mta-sts.<domain>/.well-known/mta-sts.txt`
//! (RFC 8461 §3.3): the policy host is resolved with ferrymail's own resolver (`resolver.*`),
//! its certificate must verify against the public WebPKI roots, redirects are not followed,
//! and the answer is at most [`MAX_POLICY_SIZE`] bytes. HTTP/1.1 is `hyper`'s.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ferrymail_config::model::outbound::IpStrategy;
use ferrymail_dns::{LookupError, MessageAuthenticator};
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt, Empty, LengthLimitError, Limited};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::policy::{self, Policy, PolicyError};

/// The largest policy accepted (RFC 8461 §3.3 suggests 64 KiB).
pub(crate) const MAX_POLICY_SIZE: usize = 64 * 1024;

/// Where the policy lives on the policy host.
const POLICY_PATH: &str = "/.well-known/mta-sts.txt";

/// The port policies are fetched on: HTTPS, RFC 8461 §3.3.
pub const POLICY_PORT: u16 = 443;

/// Why a policy could not be fetched; every one leaves the domain without a fresh policy.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FetchError {
    /// The policy host has no address, or DNS failed.
    #[error("{0}")]
    Dns(#[from] LookupError),
    /// No connection could be opened.
    #[error("cannot connect to {host}[{ip}]: {error}")]
    Connect {
        host: String,
        ip: IpAddr,
        error: std::io::Error,
    },
    /// The TLS handshake failed (certificate not trusted or not valid for the host, …).
    #[error("TLS with {host}: {error}")]
    Tls { host: String, error: String },
    /// The HTTP exchange failed.
    #[error("HTTP: {0}")]
    Http(String),
    /// The answer was not `200 OK` (a redirect included: they are not followed).
    #[error("{host} answered HTTP {status} (a policy needs 200; redirects are not followed)")]
    Status { host: String, status: StatusCode },
    /// The policy is larger than [`MAX_POLICY_SIZE`].
    #[error("the policy is larger than {MAX_POLICY_SIZE} bytes")]
    TooLarge,
    /// The policy is not UTF-8 text.
    #[error("the policy is not UTF-8 text")]
    NotText,
    /// The policy file is malformed.
    #[error("malformed policy: {0}")]
    Malformed(#[from] PolicyError),
    /// The whole fetch took longer than `queue.outbound.timeouts.mta-sts`.
    #[error("no policy within {0:?}")]
    Timeout(Duration),
}

/// Fetches policies over HTTPS.
#[derive(Clone)]
pub(crate) struct Fetcher {
    tls: TlsConnector,
    port: u16,
}

impl Fetcher {
    /// A fetcher trusting the WebPKI roots and `extra_roots` (tests add their CA), connecting
    /// on `port` ([`POLICY_PORT`] but in tests).
    pub(crate) fn new(extra_roots: &[CertificateDer<'static>], port: u16) -> Self {
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let (added, ignored) = roots.add_parsable_certificates(extra_roots.iter().cloned());
        if !extra_roots.is_empty() {
            tracing::debug!(
                added,
                ignored,
                "extra trust anchors for MTA-STS policy hosts"
            );
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        // RFC 8461 §3.3 asks for TLS 1.2 or later: the safe defaults are exactly that.
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map(|builder| builder.with_root_certificates(roots).with_no_client_auth());
        let mut config = config.unwrap_or_else(|_| {
            ClientConfig::builder()
                .with_root_certificates(RootCertStore::empty())
                .with_no_client_auth()
        });
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Self {
            tls: TlsConnector::from(Arc::new(config)),
            port,
        }
    }

    /// Fetches and parses `domain`'s policy within `timeout`, trying the addresses
    /// `strategy` allows.
    pub(crate) async fn fetch(
        &self,
        dns: &MessageAuthenticator,
        domain: &str,
        strategy: IpStrategy,
        timeout: Duration,
    ) -> Result<Policy, FetchError> {
        let host = format!("mta-sts.{domain}");
        let text = tokio::time::timeout(timeout, self.fetch_text(dns, &host, strategy))
            .await
            .map_err(|_| FetchError::Timeout(timeout))??;
        Ok(policy::parse(&text)?)
    }

    /// The policy text from the first address of `host` that answers.
    async fn fetch_text(
        &self,
        dns: &MessageAuthenticator,
        host: &str,
        strategy: IpStrategy,
    ) -> Result<String, FetchError> {
        // The policy host is reached over the same network as the MX hosts.
        let addresses = ferrymail_dns::ip_addresses(dns, host, strategy).await?;
        let mut failure = FetchError::Dns(LookupError::NotFound {
            kind: "A or AAAA",
            name: host.to_owned(),
        });
        for ip in addresses {
            match self.get(host, ip).await {
                Err(error @ FetchError::Connect { .. }) => failure = error,
                answered => return answered,
            }
        }
        Err(failure)
    }

    /// One GET of the policy from `host` at `ip`.
    async fn get(&self, host: &str, ip: IpAddr) -> Result<String, FetchError> {
        let tcp =
            TcpStream::connect((ip, self.port))
                .await
                .map_err(|error| FetchError::Connect {
                    host: host.to_owned(),
                    ip,
                    error,
                })?;
        let tls_error = |error: String| FetchError::Tls {
            host: host.to_owned(),
            error,
        };
        let name = ServerName::try_from(host.to_owned()).map_err(|e| tls_error(e.to_string()))?;
        let stream = self
            .tls
            .connect(name, tcp)
            .await
            .map_err(|e| tls_error(e.to_string()))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| FetchError::Http(e.to_string()))?;
        let request = Request::get(POLICY_PATH)
            .header(header::HOST, host)
            .header(header::USER_AGENT, "ferrymail")
            .body(Empty::<Bytes>::new())
            .map_err(|e| FetchError::Http(e.to_string()))?;
        let exchange = async move {
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| FetchError::Http(e.to_string()))?;
            if response.status() != StatusCode::OK {
                return Err(FetchError::Status {
                    host: host.to_owned(),
                    status: response.status(),
                });
            }
            let body = Limited::new(response.into_body(), MAX_POLICY_SIZE)
                .collect()
                .await
                .map_err(|error| {
                    if error.is::<LengthLimitError>() {
                        FetchError::TooLarge
                    } else {
                        FetchError::Http(error.to_string())
                    }
                })?;
            String::from_utf8(body.to_bytes().to_vec()).map_err(|_| FetchError::NotText)
        };
        // The connection is driven alongside the exchange; once it ends, whatever the
        // exchange still waits for has arrived or never will.
        let mut exchange = std::pin::pin!(exchange);
        tokio::select! {
            result = &mut exchange => result,
            _ = connection => exchange.await,
        }
    }
}
