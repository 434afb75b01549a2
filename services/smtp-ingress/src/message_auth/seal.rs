//! ARC sealing (RFC 8617 §5.1) of forwarded mail with the key of the `signature.<id>` that
//! `auth.arc.seal` names: the ARC set of this hop, from the `Authentication-Results` this
//! server wrote and the ARC chain it verified.

use std::collections::BTreeMap;

use ferrymail_config::model::signature::Signature as SignatureConfig;
use mail_auth::arc::{ArcSealer, ChainValidation};
use mail_auth::common::crypto::DkimKey;
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::Done;
use mail_auth::{ArcOutput, AuthenticatedMessage, AuthenticationResults, DkimResult};

use crate::IngressError;

/// The highest instance an ARC set may have (RFC 8617 §4.2.1).
const MAX_INSTANCE: u32 = 50;

/// Longest header line RFC 5322 §2.1.1 allows (without CRLF).
const MAX_LINE: usize = 998;

/// Why a forwarded message goes on without this server's seal.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Unsealed {
    /// The chain could not be verified for now: sealing `cv=fail` would break it for good.
    #[error("its ARC chain could not be verified (temporary DNS failure)")]
    TemporaryFailure,
    /// RFC 8617 §5.1.1: a chain whose last seal says `cv=fail` is not extended.
    #[error("its ARC chain already ends in cv=fail")]
    ChainEnded,
    /// ARC header fields that do not form sets give no instance to follow.
    #[error("its ARC header fields are malformed or incomplete sets")]
    Malformed,
    /// RFC 8617 §4.2.1: there is no instance after 50.
    #[error("its ARC chain already has {MAX_INSTANCE} sets")]
    TooLong,
    /// Nothing to sign: no header section, or no header field the signature covers.
    #[error("it has no header field to sign")]
    NoHeader,
    /// The results do not fit one header line unfolded (see [`Sealer::seal`]).
    #[error("its Authentication-Results are longer than a header line")]
    ResultsTooLong,
    /// mail-auth refused to seal.
    #[error("sealing failed: {0}")]
    Sealing(mail_auth::Error),
}

/// One configured signature, ready to seal.
pub(crate) struct Sealer {
    /// The `signature.<id>` id.
    pub(crate) id: String,
    sealer: ArcSealer<DkimKey, Done>,
}

/// Every configured signature as a sealer, by id.
#[derive(Default)]
pub(crate) struct Sealers(BTreeMap<String, Sealer>);

impl Sealers {
    /// Loads every `signature.<id>` key; a key mail-auth cannot use is a start-up error.
    pub(crate) fn new(config: &BTreeMap<String, SignatureConfig>) -> Result<Self, IngressError> {
        config
            .iter()
            .map(|(id, signature)| Ok((id.clone(), Sealer::new(id, signature)?)))
            .collect::<Result<_, IngressError>>()
            .map(Sealers)
    }

    /// The sealer of `signature.<id>` (an id the configuration checked exists).
    pub(crate) fn named(&self, id: &str) -> Option<&Sealer> {
        self.0.get(id)
    }
}

/// Whether the chain `arc` found in `message` may be extended, and if not why.
fn check_chain(message: &AuthenticatedMessage<'_>, arc: &ArcOutput<'_>) -> Result<(), Unsealed> {
    if matches!(arc.result(), DkimResult::TempError(_)) {
        return Err(Unsealed::TemporaryFailure);
    }
    let has_arc_fields = !message.as_headers.is_empty()
        || !message.ams_headers.is_empty()
        || !message.aar_headers.is_empty();
    let Some(last) = arc.sets().last() else {
        // mail-auth gives no sets for a chain it could not even group (or of more than 50
        // sets); sealing would then start a new chain at i=1 over the old one.
        return if has_arc_fields {
            Err(Unsealed::Malformed)
        } else {
            Ok(())
        };
    };
    if last.seal.header.cv == ChainValidation::Fail {
        return Err(Unsealed::ChainEnded);
    }
    if last.seal.header.i >= MAX_INSTANCE {
        return Err(Unsealed::TooLong);
    }
    Ok(())
}

/// `value` with each run of white space (folding included) made one space, as relaxed
/// canonicalization reads it.
fn unfolded(value: &str) -> String {
    value.split_ascii_whitespace().collect::<Vec<_>>().join(" ")
}

impl Sealer {
    fn new(id: &str, config: &SignatureConfig) -> Result<Self, IngressError> {
        let sealer = ferrymail_signature::arc_sealer(config).map_err(|reason| {
            IngressError::Dkim(format!("signature.{id}.private-key cannot seal: {reason}"))
        })?;
        Ok(Self {
            id: id.to_string(),
            sealer,
        })
    }

    /// The `ARC-Seal`, `ARC-Message-Signature` and `ARC-Authentication-Results` fields (each
    /// ending in CRLF) sealing the whole message `raw`: `results` is the value of this
    /// server's `Authentication-Results`, `arc` the verification of the chain `raw` carries
    /// (instance = its last set's + 1; `cv=` none, pass or fail).
    pub(crate) fn seal(
        &self,
        raw: &[u8],
        results: &str,
        arc: &ArcOutput<'_>,
    ) -> Result<String, Unsealed> {
        let message = AuthenticatedMessage::parse(raw).ok_or(Unsealed::NoHeader)?;
        check_chain(&message, arc)?;
        // mail-auth signs the authserv-id as given and writes it unfolded, so the whole
        // value is given as the id, unfolded: the seal then covers exactly what a verifier
        // canonicalizes, and the ARC-Authentication-Results say what Authentication-Results say.
        let value = unfolded(results);
        if "ARC-Authentication-Results: i=NN; ".len() + value.len() > MAX_LINE {
            return Err(Unsealed::ResultsTooLong);
        }
        let results = AuthenticationResults::new(&value);
        match self.sealer.seal(&message, &results, arc) {
            Ok(set) => Ok(set.to_header()),
            Err(mail_auth::Error::NoHeadersFound) => Err(Unsealed::NoHeader),
            Err(error) => Err(Unsealed::Sealing(error)),
        }
    }
}
