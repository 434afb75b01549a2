//! `signature.<id>`: DKIM signing keys, as in Stalwart (`private-key`, `domain`, `selector`,
//! `headers`, `algorithm`, `canonicalization`, `expire`).

use std::time::Duration;

use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;

use crate::keys;
use crate::reader::TableReader;
use crate::value::PrivateKey;

// The values of this section's keys, where other crates have always found them.
pub use crate::value::{Canonicalization, CanonicalizationMode, SignatureAlgorithm};

/// `signature.<id>`.
#[derive(Debug, Clone)]
pub struct Signature {
    /// The PEM private key (PKCS#8, or PKCS#1 for RSA).
    pub private_key: PrivateKey,
    /// The signing domain (`d=`).
    pub domain: String,
    /// The selector (`s=`): the key is published at `<selector>._domainkey.<domain>`.
    pub selector: String,
    /// Header fields signed (`h=`); always includes `From`.
    pub headers: Vec<String>,
    /// The algorithm (`a=`), matching the key.
    pub algorithm: SignatureAlgorithm,
    /// Header and body canonicalization (`c=`).
    pub canonicalization: Canonicalization,
    /// How long a signature stays valid (`x=`), if limited.
    pub expire: Option<Duration>,
}

/// DER of the Ed25519 algorithm identifier (OID 1.3.101.112), found in a PKCS#8 key.
const ED25519_OID: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];
/// DER of the rsaEncryption algorithm identifier (OID 1.2.840.113549.1.1.1).
const RSA_OID: &[u8] = &[
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01,
];

/// The algorithm a PEM key is for, as far as its encoding tells.
fn key_algorithm(pem: &str) -> Option<SignatureAlgorithm> {
    let contains = |der: &[u8], oid: &[u8]| der.windows(oid.len()).any(|w| w == oid);
    match PrivateKeyDer::from_pem_slice(pem.as_bytes()).ok()? {
        PrivateKeyDer::Pkcs1(_) => Some(SignatureAlgorithm::RsaSha256),
        PrivateKeyDer::Pkcs8(der) if contains(der.secret_pkcs8_der(), ED25519_OID) => {
            Some(SignatureAlgorithm::Ed25519Sha256)
        }
        PrivateKeyDer::Pkcs8(der) if contains(der.secret_pkcs8_der(), RSA_OID) => {
            Some(SignatureAlgorithm::RsaSha256)
        }
        _ => None,
    }
}

/// Reports a key that cannot sign with the declared algorithm.
fn check_key(t: &TableReader<'_>, key: &PrivateKey, algorithm: SignatureAlgorithm) {
    match key_algorithm(key.0.expose()) {
        Some(found) if found == algorithm => {}
        Some(found) => t.report(
            "private-key",
            format!("the key is for {found} but algorithm is \"{algorithm}\""),
        ),
        None => t.report(
            "private-key",
            "not an RSA or Ed25519 private key (expected PKCS#8 or PKCS#1 PEM)",
        ),
    }
}

pub(crate) fn read(t: &TableReader<'_>) -> Option<Signature> {
    let private_key = t.get(&keys::SIGNATURE_PRIVATE_KEY);
    let domain = t.get(&keys::SIGNATURE_DOMAIN);
    let selector = t.get(&keys::SIGNATURE_SELECTOR);
    let headers = t.get(&keys::SIGNATURE_HEADERS);
    let algorithm = t.get(&keys::SIGNATURE_ALGORITHM);
    let canonicalization = t.get(&keys::SIGNATURE_CANONICALIZATION);
    let expire = t.get(&keys::SIGNATURE_EXPIRE);
    if let (Some(key), Some(algorithm)) = (&private_key, algorithm) {
        check_key(t, key, algorithm);
    }
    if let Some(headers) = &headers
        && !headers.iter().any(|h| h.eq_ignore_ascii_case("from"))
    {
        t.report("headers", "must include \"From\" (RFC 6376 §5.4)");
    }
    for (name, value) in [("domain", &domain), ("selector", &selector)] {
        if value
            .as_deref()
            .is_some_and(|v| v.is_empty() || v.contains(|c: char| c.is_whitespace() || c == ';'))
        {
            t.report(name, "must be a non-empty DNS label without spaces or ';'");
        }
    }
    if expire.is_some_and(|d| d.is_zero()) {
        t.report("expire", "must be longer than zero");
    }
    Some(Signature {
        private_key: private_key?,
        domain: domain?,
        selector: selector?,
        headers: headers?,
        algorithm: algorithm?,
        canonicalization: canonicalization?,
        expire,
    })
}
