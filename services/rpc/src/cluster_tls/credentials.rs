//! A process's identity (certificate and key) and the authorities it trusts, made into the
//! TLS configurations of both ends of a connection between the roles.

use std::collections::BTreeSet;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use super::role::Role;

/// gRPC over TLS, with no fallback to HTTP/1.
const ALPN_H2: &[u8] = b"h2";

/// Why mutual TLS cannot be set up from what was given.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    /// The certificate chain does not parse or is empty.
    #[error("certificate: {0}")]
    Certificate(String),
    /// The private key does not parse.
    #[error("private key: {0}")]
    PrivateKey(String),
    /// The CA bundle does not parse or holds no usable certificate.
    #[error("CA bundle: {0}")]
    Authorities(String),
    /// rustls refused the combination (a key that does not belong to the certificate, say).
    #[error("{0}")]
    Combination(String),
    /// A file could not be read.
    #[error("cannot read {path}")]
    File {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// The TLS configurations of a process, for serving and for calling.
#[derive(Debug)]
pub struct Credentials {
    pub(crate) server: Arc<ServerConfig>,
    pub(crate) client: Arc<ClientConfig>,
    pub(crate) domain: String,
}

impl Credentials {
    /// The configurations for the certificate chain `certificate` with `private_key`,
    /// trusting the authorities of `authorities` (all PEM), with role names under `domain`.
    pub fn from_pem(
        certificate: &str,
        private_key: &str,
        authorities: &str,
        domain: &str,
    ) -> Result<Self, TlsSetupError> {
        let chain = CertificateDer::pem_slice_iter(certificate.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TlsSetupError::Certificate(e.to_string()))?;
        if chain.is_empty() {
            return Err(TlsSetupError::Certificate(
                "no CERTIFICATE block in the PEM text".into(),
            ));
        }
        // The parser's errors never hold key material.
        let key = PrivateKeyDer::from_pem_slice(private_key.as_bytes())
            .map_err(|e| TlsSetupError::PrivateKey(e.to_string()))?;
        let roots = Arc::new(roots(authorities)?);
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let combination = |e: rustls::Error| TlsSetupError::Combination(e.to_string());

        // A caller without a certificate gets through the handshake, so that its calls can be
        // answered UNAUTHENTICATED rather than with a TLS alert it may not explain; one whose
        // certificate the authorities did not issue is refused at the handshake.
        let client_verifier =
            WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
                .allow_unauthenticated()
                .build()
                .map_err(|e| TlsSetupError::Authorities(e.to_string()))?;
        let mut server = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(combination)?
            .with_client_cert_verifier(client_verifier)
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(combination)?;
        server.alpn_protocols = vec![ALPN_H2.to_vec()];

        let server_verifier = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
            .build()
            .map_err(|e| TlsSetupError::Authorities(e.to_string()))?;
        let mut client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(combination)?
            .with_webpki_verifier(server_verifier)
            .with_client_auth_cert(chain, key)
            .map_err(combination)?;
        client.alpn_protocols = vec![ALPN_H2.to_vec()];

        Ok(Self {
            server: Arc::new(server),
            client: Arc::new(client),
            domain: domain.to_owned(),
        })
    }

    /// Like [`Credentials::from_pem`], reading the three PEM files.
    pub fn from_files(
        certificate: &str,
        private_key: &str,
        authorities: &str,
        domain: &str,
    ) -> Result<Self, TlsSetupError> {
        let read = |path: &str| {
            std::fs::read_to_string(path).map_err(|source| TlsSetupError::File {
                path: path.to_owned(),
                source,
            })
        };
        let certificate = read(certificate)?;
        let key = zeroize::Zeroizing::new(read(private_key)?);
        Self::from_pem(&certificate, &key, &read(authorities)?, domain)
    }

    /// The domain of role names.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The name a server of `role` must prove.
    pub(crate) fn server_name(&self, role: Role) -> Result<ServerName<'static>, TlsSetupError> {
        ServerName::try_from(role.dns_name(&self.domain)).map_err(|e| {
            TlsSetupError::Combination(format!("cluster.tls.domain {:?}: {e}", self.domain))
        })
    }

    /// The roles `certificate` names (already verified by the handshake).
    pub(crate) fn roles_of(&self, certificate: &CertificateDer<'_>) -> BTreeSet<Role> {
        let Ok(end_entity) = webpki::EndEntityCert::try_from(certificate) else {
            return BTreeSet::new();
        };
        Role::ALL
            .into_iter()
            .filter(|role| {
                ServerName::try_from(role.dns_name(&self.domain))
                    .is_ok_and(|name| end_entity.verify_is_valid_for_subject_name(&name).is_ok())
            })
            .collect()
    }
}

/// The authorities of the PEM bundle `pem`.
fn roots(pem: &str) -> Result<RootCertStore, TlsSetupError> {
    let certificates = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsSetupError::Authorities(e.to_string()))?;
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(certificates);
    if added == 0 {
        return Err(TlsSetupError::Authorities(
            "no usable CA certificate in the PEM text".into(),
        ));
    }
    Ok(roots)
}
