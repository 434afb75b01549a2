//! DKIM signing of reports with the keys of `signature.<id>` that
//! `report.<kind>.aggregate.sign` names. The ingress signs submissions with the same keys;
//! roles share no code but through `rpc`, so the few lines that turn a configured key into
//! mail-auth's signer are here too.

use std::collections::BTreeMap;

use ferrymail_config::model::signature::{
    CanonicalizationMode, Signature as SignatureConfig, SignatureAlgorithm,
};
use mail_auth::common::crypto::{DkimKey, Ed25519Key, RsaKey, Sha256};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::{Canonicalization, DkimSigner, Done};
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;

/// One signature reports are signed with.
pub(crate) struct ReportSigner {
    /// The `signature.<id>` id.
    pub(crate) id: String,
    signer: DkimSigner<DkimKey, Done>,
}

impl std::fmt::Debug for ReportSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReportSigner")
            .field("id", &self.id)
            .finish()
    }
}

impl PartialEq for ReportSigner {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

impl Eq for ReportSigner {}

impl ReportSigner {
    /// The `DKIM-Signature` field for `message`, ending in CRLF.
    pub(crate) fn sign(&self, message: &[u8]) -> Result<String, mail_auth::Error> {
        self.signer.sign(message).map(|s| s.to_header())
    }
}

/// The signers of `ids` among `signatures`; a key mail-auth cannot use is logged and left
/// out (the report then goes without that signature).
pub(crate) fn signers(
    ids: &[String],
    signatures: &BTreeMap<String, SignatureConfig>,
) -> Vec<ReportSigner> {
    ids.iter()
        .filter_map(|id| {
            let config = signatures.get(id)?;
            match signer(config) {
                Ok(signer) => Some(ReportSigner {
                    id: id.clone(),
                    signer,
                }),
                Err(reason) => {
                    tracing::warn!(signature = %id, %reason, "report.*.aggregate.sign: this key cannot sign; reports go without it");
                    None
                }
            }
        })
        .collect()
}

fn signer(config: &SignatureConfig) -> Result<DkimSigner<DkimKey, Done>, String> {
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

fn canonicalization(mode: CanonicalizationMode) -> Canonicalization {
    match mode {
        CanonicalizationMode::Relaxed => Canonicalization::Relaxed,
        CanonicalizationMode::Simple => Canonicalization::Simple,
    }
}

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
        (SignatureAlgorithm::Ed25519Sha256, _) => {
            Err("an Ed25519 key must be PKCS#8 (\"BEGIN PRIVATE KEY\")".to_string())
        }
    }
}
