//! DKIM signing of reports with the keys of `signature.<id>` that
//! `report.<kind>.aggregate.sign` names, made signers as everywhere by
//! `ferrymail_signature`.

use std::collections::BTreeMap;

use ferrymail_config::model::signature::Signature as SignatureConfig;
use mail_auth::common::crypto::DkimKey;
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::{DkimSigner, Done};

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
            match ferrymail_signature::dkim_signer(config) {
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
