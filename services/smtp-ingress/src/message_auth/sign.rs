//! DKIM signing of authenticated submissions with the keys of `signature.<id>`.

use std::collections::BTreeMap;

use ferrymail_config::model::signature::{
    CanonicalizationMode, Signature as SignatureConfig, SignatureAlgorithm,
};
use mail_auth::common::crypto::{DkimKey, Ed25519Key, RsaKey, Sha256};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::{Canonicalization, DkimSigner, Done};
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;

use crate::IngressError;

/// One configured signature, ready to sign.
pub(crate) struct Signer {
    /// The `signature.<id>` id.
    pub(crate) id: String,
    /// The signing domain (`d=`), lower case.
    pub(crate) domain: String,
    signer: DkimSigner<DkimKey, Done>,
}

/// Every configured signature, by id.
#[derive(Default)]
pub(crate) struct Signers(BTreeMap<String, Signer>);

/// mail-auth's canonicalization for a configured mode.
pub(super) fn canonicalization(mode: CanonicalizationMode) -> Canonicalization {
    match mode {
        CanonicalizationMode::Relaxed => Canonicalization::Relaxed,
        CanonicalizationMode::Simple => Canonicalization::Simple,
    }
}

/// The signing key of a PEM text, for `algorithm`.
pub(super) fn key(pem: &str, algorithm: SignatureAlgorithm) -> Result<DkimKey, String> {
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
        (SignatureAlgorithm::Ed25519Sha256, _) => {
            Err("an Ed25519 key must be PKCS#8 (\"BEGIN PRIVATE KEY\")".to_string())
        }
    }
}

impl Signer {
    fn new(id: &str, config: &SignatureConfig) -> Result<Self, IngressError> {
        let key = key(config.private_key.0.expose(), config.algorithm).map_err(|reason| {
            IngressError::Dkim(format!("signature.{id}.private-key cannot sign: {reason}"))
        })?;
        let mut signer = DkimSigner::from_key(key)
            .domain(config.domain.clone())
            .selector(config.selector.clone())
            .headers(config.headers.iter().cloned())
            .header_canonicalization(canonicalization(config.canonicalization.header))
            .body_canonicalization(canonicalization(config.canonicalization.body));
        if let Some(expire) = config.expire {
            signer = signer.expiration(expire.as_secs());
        }
        Ok(Self {
            id: id.to_string(),
            domain: config.domain.to_ascii_lowercase(),
            signer,
        })
    }

    /// The `DKIM-Signature` header field for `message`, ending in CRLF.
    pub(crate) fn sign(&self, message: &[u8]) -> Result<String, mail_auth::Error> {
        self.signer.sign(message).map(|s| s.to_header())
    }
}

impl Signers {
    /// Loads every `signature.<id>` key; a key mail-auth cannot use is a start-up error.
    pub(crate) fn new(config: &BTreeMap<String, SignatureConfig>) -> Result<Self, IngressError> {
        config
            .iter()
            .map(|(id, signature)| Ok((id.clone(), Signer::new(id, signature)?)))
            .collect::<Result<_, IngressError>>()
            .map(Signers)
    }

    /// The signatures with these ids (ids the configuration checked exist).
    pub(crate) fn named<'s>(&'s self, ids: &[String]) -> Vec<&'s Signer> {
        ids.iter().filter_map(|id| self.0.get(id)).collect()
    }

    /// Whether no signature is configured.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The signatures of `domain` (the default of `auth.dkim.sign`).
    pub(crate) fn for_domain(&self, domain: &str) -> Vec<&Signer> {
        self.0.values().filter(|s| s.domain == domain).collect()
    }
}
