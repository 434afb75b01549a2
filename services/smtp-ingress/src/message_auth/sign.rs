//! DKIM signing of authenticated submissions with the keys of `signature.<id>`.

use std::collections::BTreeMap;

use ferrymail_config::model::signature::Signature as SignatureConfig;
use mail_auth::common::crypto::DkimKey;
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::{DkimSigner, Done};

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

impl Signer {
    fn new(id: &str, config: &SignatureConfig) -> Result<Self, IngressError> {
        let signer = ferrymail_signature::dkim_signer(config).map_err(|reason| {
            IngressError::Dkim(format!("signature.{id}.private-key cannot sign: {reason}"))
        })?;
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
