//! `certificate.<id>`: PEM certificate chains and keys.

use crate::keys;
use crate::reader::TableReader;

// The values of this section's keys, where other crates have always found them.
pub use crate::value::{CertificateChain, PrivateKey};

/// `certificate.<id>`.
#[derive(Debug, Clone)]
pub struct Certificate {
    /// Certificate chain.
    pub cert: CertificateChain,
    /// Private key.
    pub private_key: PrivateKey,
}

pub(crate) fn read(t: &TableReader<'_>) -> Option<Certificate> {
    let cert = t.get(&keys::CERTIFICATE_CERT);
    let private_key = t.get(&keys::CERTIFICATE_PRIVATE_KEY);
    Some(Certificate {
        cert: cert?,
        private_key: private_key?,
    })
}
