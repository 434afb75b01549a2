//! Server-side TLS: the acceptor built from `certificate.<id>`, and a stream that may have
//! been upgraded by STARTTLS.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use ferrymail_config::Config;
use ferrymail_config::model::certificate::Certificate;
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::ServerName;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::error::IngressError;

/// One configured certificate, ready to serve.
#[derive(Debug)]
struct Served {
    id: String,
    key: Arc<CertifiedKey>,
}

/// Chooses the certificate by the name the client asks for (SNI): the first certificate
/// valid for that name, else `server.tls.certificate`.
#[derive(Debug)]
struct BySni {
    certificates: Vec<Served>,
    default: Option<Arc<CertifiedKey>>,
}

impl BySni {
    fn matching(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        let name = ServerName::try_from(name).ok()?;
        self.certificates.iter().find_map(|served| {
            let end_entity = served.key.end_entity_cert().ok()?;
            let parsed = webpki::EndEntityCert::try_from(end_entity).ok()?;
            parsed.verify_is_valid_for_subject_name(&name).ok()?;
            tracing::trace!(certificate = %served.id, "certificate chosen by SNI");
            Some(served.key.clone())
        })
    }
}

impl ResolvesServerCert for BySni {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        hello
            .server_name()
            .and_then(|name| self.matching(name))
            .or_else(|| self.default.clone())
    }
}

fn load(
    id: &str,
    certificate: &Certificate,
    provider: &CryptoProvider,
) -> Result<Served, IngressError> {
    let chain = CertificateDer::pem_slice_iter(certificate.cert.0.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| IngressError::Tls(format!("certificate.{id}.cert: {e}")))?;
    let key = PrivateKeyDer::from_pem_slice(certificate.private_key.0.expose().as_bytes())
        .map_err(|e| IngressError::Tls(format!("certificate.{id}.private-key: {e}")))?;
    let key = CertifiedKey::from_der(chain, key, provider)
        .map_err(|e| IngressError::Tls(format!("certificate.{id}: {e}")))?;
    Ok(Served {
        id: id.to_string(),
        key: Arc::new(key),
    })
}

/// The acceptor for the configured certificates, if there is any.
pub fn acceptor(config: &Config) -> Result<Option<TlsAcceptor>, IngressError> {
    if config.certificates.is_empty() {
        return Ok(None);
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let certificates = config
        .certificates
        .iter()
        .map(|(id, certificate)| load(id, certificate, &provider))
        .collect::<Result<Vec<_>, _>>()?;
    let default = config
        .server
        .tls_certificate
        .as_ref()
        .and_then(|id| certificates.iter().find(|c| &c.id == id))
        .map(|c| c.key.clone());
    let server = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| IngressError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(BySni {
            certificates,
            default,
        }));
    Ok(Some(TlsAcceptor::from(Arc::new(server))))
}

/// A client connection before or after TLS.
pub enum ServerStream {
    /// Clear text.
    Plain(TcpStream),
    /// Encrypted.
    Tls(Box<TlsStream<TcpStream>>),
    /// Moved out for the TLS handshake; never used in this state.
    Detached,
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
        Some(format!("version={version} cipher={cipher}"))
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
            ServerStream::Detached => Poll::Ready(Err(detached())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ServerStream::Plain(s) => Pin::new(s).poll_flush(cx),
            ServerStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            ServerStream::Detached => Poll::Ready(Err(detached())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ServerStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            ServerStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            ServerStream::Detached => Poll::Ready(Ok(())),
        }
    }
}
