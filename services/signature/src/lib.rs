//! signature: the keys of `signature.<id>` as mail-auth's DKIM signers and ARC sealers, for
//! every role that signs (the ingress signs submissions and seals forwarded mail, the queue
//! signs the reports it sends), so a key is read one way everywhere.

use ferrymail_config::model::signature::{
    CanonicalizationMode, Signature as SignatureConfig, SignatureAlgorithm,
};
use mail_auth::arc::ArcSealer;
use mail_auth::common::crypto::{DkimKey, Ed25519Key, RsaKey, Sha256};
use mail_auth::dkim::{Canonicalization, DkimSigner, Done};
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;

/// A DKIM signer with the key, domain, selector, headers, canonicalization and expiry of
/// `config`; why not, when mail-auth cannot use its key.
pub fn dkim_signer(config: &SignatureConfig) -> Result<DkimSigner<DkimKey, Done>, String> {
    let key = key(config.private_key.0.expose(), config.algorithm)?;
    let mut signer = DkimSigner::from_key(key)
        .domain(config.domain.clone())
        .selector(config.selector.clone())
        .headers(config.headers.iter().cloned())
        .header_canonicalization(canonicalization(config.canonicalization.header))
        .body_canonicalization(canonicalization(config.canonicalization.body));
    if let Some(expire) = config.expire {
        signer = signer.expiration(expire.as_secs());
    }
    Ok(signer)
}

/// An ARC sealer with the key, domain, selector, headers, canonicalization and expiry of
/// `config`.
pub fn arc_sealer(config: &SignatureConfig) -> Result<ArcSealer<DkimKey, Done>, String> {
    let key = key(config.private_key.0.expose(), config.algorithm)?;
    let mut sealer = ArcSealer::from_key(key)
        .domain(config.domain.clone())
        .selector(config.selector.clone())
        .headers(config.headers.iter().cloned())
        .header_canonicalization(canonicalization(config.canonicalization.header))
        .body_canonicalization(canonicalization(config.canonicalization.body));
    if let Some(expire) = config.expire {
        sealer = sealer.expiration(expire.as_secs());
    }
    Ok(sealer)
}

fn canonicalization(mode: CanonicalizationMode) -> Canonicalization {
    match mode {
        CanonicalizationMode::Relaxed => Canonicalization::Relaxed,
        CanonicalizationMode::Simple => Canonicalization::Simple,
    }
}

/// The signing key of a PEM text, for `algorithm`.
fn key(pem: &str, algorithm: SignatureAlgorithm) -> Result<DkimKey, String> {
    let der = PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| e.to_string())?;
    match (algorithm, der) {
        (SignatureAlgorithm::RsaSha256, der) => RsaKey::<Sha256>::from_key_der(der)
            .map(DkimKey::from)
            .map_err(|e| e.to_string()),
        // PKCS#8 v1 keys (OpenSSL's) carry no public key: the unchecked form accepts them.
        (SignatureAlgorithm::Ed25519Sha256, PrivateKeyDer::Pkcs8(der)) => {
            Ed25519Key::from_pkcs8_maybe_unchecked_der(der.secret_pkcs8_der())
                .map(DkimKey::from)
                .map_err(|e| e.to_string())
        }
        (SignatureAlgorithm::Ed25519Sha256, _) => Err("an Ed25519 key must be PKCS#8".to_string()),
    }
}
