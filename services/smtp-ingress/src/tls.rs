//! Server-side TLS: the acceptor built from `certificate.<id>`, and a stream that may have
//! been upgraded by STARTTLS.

use std::sync::Arc;

use ferrymail_config::Config;
use ferrymail_config::model::certificate::Certificate;
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::ServerName;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

pub use ferrymail_tls::ServerStream;

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
