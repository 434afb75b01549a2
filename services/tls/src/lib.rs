//! tls: TLS for ferrymail's outgoing connections (lookups, delivery): a TCP stream that may
//! be upgraded by STARTTLS, and client settings that verify certificates (public roots and
//! the system trust store) or, for `allow-invalid-certs = true`, accept any; and DANE
//! verification against a host's TLSA records ([`dane`]); and the connection an `http(s)`
//! endpoint URL names ([`HttpEndpoint`]).

pub mod dane;
mod http_endpoint;

pub use http_endpoint::{EndpointError, HttpEndpoint, HttpStream};

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// Why a connection could not be opened or secured.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The network failed.
    #[error("network error: {0}")]
    Io(#[from] std::io::Error),
    /// The handshake failed (certificate not trusted, name mismatch, …).
    #[error("TLS error: {0}")]
    Handshake(String),
}

/// TLS client configurations: one that verifies certificates (public roots and the system's
/// trust store, which honours `SSL_CERT_FILE`), one for `allow-invalid-certs = true`.
#[derive(Clone)]
pub struct TlsSettings {
    verifying: TlsConnector,
    trusting: TlsConnector,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl TlsSettings {
    /// Builds both configurations once; they are shared by every connection.
    pub fn new() -> Self {
        Self::with_extra_roots(&[])
    }

    /// Like [`TlsSettings::new`], also trusting `extra_roots` (tests trust their own CA).
    pub fn with_extra_roots(extra_roots: &[CertificateDer<'static>]) -> Self {
        let mut roots = RootCertStore::empty();
        roots.add_parsable_certificates(extra_roots.iter().cloned());
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let native = rustls_native_certs::load_native_certs();
        for error in &native.errors {
            tracing::debug!(%error, "a system certificate could not be loaded");
        }
        let (added, ignored) = roots.add_parsable_certificates(native.certs);
        tracing::debug!(added, ignored, "system trust store loaded");
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let verifying = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map(|b| b.with_root_certificates(roots).with_no_client_auth());
        let trusting = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map(|b| {
                b.dangerous()
                    .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(
                        provider.clone(),
                    )))
                    .with_no_client_auth()
            });
        // The provider's default protocol versions are always valid; keep a plain fallback
        // rather than a panic path.
        let fallback = || {
            ClientConfig::builder()
                .with_root_certificates(RootCertStore::empty())
                .with_no_client_auth()
        };
        Self {
            verifying: TlsConnector::from(Arc::new(verifying.unwrap_or_else(|_| fallback()))),
            trusting: TlsConnector::from(Arc::new(trusting.unwrap_or_else(|_| fallback()))),
            provider,
        }
    }

    /// The client configuration of [`TlsSettings::handshake`], for a client library that
    /// makes its own TLS connections (the PostgreSQL store's).
    pub fn client_config(&self, allow_invalid_certs: bool) -> Arc<ClientConfig> {
        let connector = if allow_invalid_certs {
            &self.trusting
        } else {
            &self.verifying
        };
        connector.config().clone()
    }

    /// Performs the TLS handshake over `tcp` for host `name`.
    pub async fn handshake(
        &self,
        tcp: TcpStream,
        name: &str,
        allow_invalid_certs: bool,
    ) -> Result<TlsStream<TcpStream>, TlsError> {
        let server_name = ServerName::try_from(name.to_string())
            .map_err(|_| TlsError::Handshake(format!("{name:?} is not a valid TLS server name")))?;
        let connector = if allow_invalid_certs {
            &self.trusting
        } else {
            &self.verifying
        };
        connector
            .connect(server_name, tcp)
            .await
            .map_err(|e| TlsError::Handshake(e.to_string()))
    }

    /// Performs the TLS handshake over `tcp` accepting only a certificate that satisfies
    /// `policy` (RFC 7672); the host name of the policy is sent as SNI.
    pub async fn handshake_dane(
        &self,
        tcp: TcpStream,
        policy: &dane::DanePolicy,
    ) -> Result<TlsStream<TcpStream>, TlsError> {
        let name = policy.host();
        let server_name = ServerName::try_from(name.to_string())
            .map_err(|_| TlsError::Handshake(format!("{name:?} is not a valid TLS server name")))?;
        let verifier = dane::DaneVerifier::new(policy.clone(), self.provider.clone());
        // One configuration per connection: the verifier carries this host's records.
        let config = ClientConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Handshake(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        TlsConnector::from(Arc::new(config))
            .connect(server_name, tcp)
            .await
            .map_err(|e| TlsError::Handshake(e.to_string()))
    }
}

impl Default for TlsSettings {
    fn default() -> Self {
        Self::new()
    }
}

/// Certificate "verification" for `allow-invalid-certs = true`: accepts any certificate but
/// still checks handshake signatures, so the session is at least bound to the key offered.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A connection before or after TLS.
pub enum MaybeTls {
    /// Clear text.
    Plain(TcpStream),
    /// Encrypted.
    Tls(Box<TlsStream<TcpStream>>),
}

impl MaybeTls {
    /// Whether the connection is encrypted.
    pub fn is_tls(&self) -> bool {
        matches!(self, MaybeTls::Tls(_))
    }

    /// Connects, with TLS from the first byte when `implicit`.
    pub async fn connect(
        address: &str,
        port: u16,
        implicit: bool,
        allow_invalid_certs: bool,
        tls: &TlsSettings,
    ) -> Result<Self, TlsError> {
        let tcp = TcpStream::connect((address, port)).await?;
        tcp.set_nodelay(true)?;
        if implicit {
            Ok(MaybeTls::Tls(Box::new(
                tls.handshake(tcp, address, allow_invalid_certs).await?,
            )))
        } else {
            Ok(MaybeTls::Plain(tcp))
        }
    }

    /// Upgrades a clear-text connection after STARTTLS was accepted.
    pub async fn upgrade(
        self,
        address: &str,
        allow_invalid_certs: bool,
        tls: &TlsSettings,
    ) -> Result<Self, TlsError> {
        match self {
            MaybeTls::Plain(tcp) => Ok(MaybeTls::Tls(Box::new(
                tls.handshake(tcp, address, allow_invalid_certs).await?,
            ))),
            already => Ok(already),
        }
    }
}

impl MaybeTls {
    /// Upgrades a clear-text connection after STARTTLS was accepted, verifying the server
    /// by DANE (`policy`) instead of the public CAs.
    pub async fn upgrade_dane(
        self,
        policy: &dane::DanePolicy,
        tls: &TlsSettings,
    ) -> Result<Self, TlsError> {
        match self {
            MaybeTls::Plain(tcp) => Ok(MaybeTls::Tls(Box::new(
                tls.handshake_dane(tcp, policy).await?,
            ))),
            already => Ok(already),
        }
    }
}

impl AsyncRead for MaybeTls {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_read(cx, buf),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for MaybeTls {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_write(cx, buf),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_flush(cx),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_shutdown(cx),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// A connection accepted from a client, before or after TLS (server side).
pub enum ServerStream {
    /// Clear text.
    Plain(TcpStream),
    /// Encrypted.
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    /// Moved out for the TLS handshake; never used in this state.
    Detached,
    /// An in-process pipe: lets tests and fuzz targets drive a whole session without sockets.
    #[cfg(feature = "memory")]
    Memory(tokio::io::DuplexStream),
}

fn detached() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        "connection is in a TLS handshake",
    )
}

impl ServerStream {
    /// TLS version and cipher, for the `Received` header and logs.
    pub fn tls_details(&self) -> Option<String> {
        let (version, cipher) = self.tls_parameters()?;
        Some(format!("version={version} cipher={cipher}"))
    }

    /// The TLS protocol version and cipher suite, as rustls names them, when encrypted.
    pub fn tls_parameters(&self) -> Option<(String, String)> {
        let ServerStream::Tls(stream) = self else {
            return None;
        };
        let connection = stream.get_ref().1;
        let version = connection
            .protocol_version()
            .map(|v| format!("{v:?}"))
            .unwrap_or_default();
        let cipher = connection
            .negotiated_cipher_suite()
            .map(|c| format!("{:?}", c.suite()))
            .unwrap_or_default();
        Some((version, cipher))
    }

    /// The address the client connected to; `None` for a pipe or while detached.
    pub fn local_addr(&self) -> Option<std::net::SocketAddr> {
        match self {
            ServerStream::Plain(tcp) => tcp.local_addr().ok(),
            ServerStream::Tls(stream) => stream.get_ref().0.local_addr().ok(),
            _ => None,
        }
    }
}

impl AsyncRead for ServerStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ServerStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ServerStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            #[cfg(feature = "memory")]
            ServerStream::Memory(s) => Pin::new(s).poll_read(cx, buf),
            ServerStream::Detached => Poll::Ready(Err(detached())),
        }
    }
}

impl AsyncWrite for ServerStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ServerStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            ServerStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            #[cfg(feature = "memory")]
            ServerStream::Memory(s) => Pin::new(s).poll_write(cx, buf),
            ServerStream::Detached => Poll::Ready(Err(detached())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ServerStream::Plain(s) => Pin::new(s).poll_flush(cx),
            ServerStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            #[cfg(feature = "memory")]
            ServerStream::Memory(s) => Pin::new(s).poll_flush(cx),
            ServerStream::Detached => Poll::Ready(Err(detached())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ServerStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            ServerStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            #[cfg(feature = "memory")]
            ServerStream::Memory(s) => Pin::new(s).poll_shutdown(cx),
            ServerStream::Detached => Poll::Ready(Ok(())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_closed_port_is_a_network_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        let port = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("{e}"))
            .port();
        drop(listener);
        let result = MaybeTls::connect("127.0.0.1", port, false, false, &TlsSettings::new()).await;
        assert!(matches!(result, Err(TlsError::Io(_))));
    }

    #[tokio::test]
    async fn a_server_that_is_not_tls_fails_the_handshake() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let port = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("{e}"))
            .port();
        let server = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            if let Ok((mut socket, _)) = listener.accept().await {
                let _ = socket.write_all(b"220 plain text, not TLS\r\n").await;
            }
        });
        let result = MaybeTls::connect("127.0.0.1", port, true, false, &TlsSettings::new()).await;
        assert!(
            matches!(result, Err(TlsError::Handshake(_))),
            "{:?}",
            result.err()
        );
        server.abort();
    }
}
