//! PEM texts: certificate chains and private keys, checked to parse.

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::tree::Node;
use crate::value::{Context, FromNode, Invalid, Secret, ValueType};

/// A PEM certificate chain, checked to hold at least one certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateChain(pub String);

impl ValueType for CertificateChain {
    const TYPE: &'static str = "PEM text (\"%{file:/path}%\")";
}

impl FromNode for CertificateChain {
    fn from_node(node: &Node, cx: &Context<'_>) -> Result<Self, Invalid> {
        let pem = String::from_node(node, cx)?;
        let certificates = CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Invalid::at(node, format!("invalid PEM certificate: {e}")))?;
        if certificates.is_empty() {
            return Err(Invalid::at(
                node,
                "no CERTIFICATE block found in the PEM text",
            ));
        }
        Ok(CertificateChain(pem))
    }
}

/// A PEM private key (PKCS#8, PKCS#1 or SEC1), checked to parse; never printed.
#[derive(Debug, Clone)]
pub struct PrivateKey(pub Secret);

impl ValueType for PrivateKey {
    const TYPE: &'static str = "PEM text (\"%{file:/path}%\"; secret)";
}

impl FromNode for PrivateKey {
    fn from_node(node: &Node, cx: &Context<'_>) -> Result<Self, Invalid> {
        let pem = Secret::from_node(node, cx)?;
        // The parser's error text never contains key material.
        PrivateKeyDer::from_pem_slice(pem.expose().as_bytes())
            .map_err(|e| Invalid::at(node, format!("invalid PEM private key: {e}")))?;
        Ok(PrivateKey(pem))
    }
}
