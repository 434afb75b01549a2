//! `auth.*`: SPF, DKIM, ARC and DMARC verification of inbound mail, and DKIM signing of
//! authenticated submissions, with Stalwart's keys (`auth.spf.verify.ehlo`,
//! `auth.spf.verify.mail-from`, `auth.dkim.verify`, `auth.dkim.strict`, `auth.dkim.sign`,
//! `auth.arc.verify`, `auth.arc.seal`, `auth.dmarc.verify`); and ARC sealing of forwarded mail.

use std::collections::BTreeMap;

use super::references::{Known, check_stage_rule};
use super::signature::Signature;
use crate::key::Key;
use crate::keys;
use crate::reader::TableReader;
use crate::value::stage_rules::Stage;

// The values of this section's keys, where other crates have always found them.
pub use crate::value::{SealRule, SealSignature, SignRule, SignatureList, VerifyMode, VerifyRule};

/// `auth.*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageAuth {
    /// `auth.spf.verify.ehlo`.
    pub spf_ehlo: VerifyRule,
    /// `auth.spf.verify.mail-from`.
    pub spf_mail_from: VerifyRule,
    /// `auth.dkim.verify`.
    pub dkim_verify: VerifyRule,
    /// `auth.dkim.strict`: ignore signatures that cover only part of the body (`l=`).
    pub dkim_strict: bool,
    /// `auth.dkim.sign`; `None`: the signatures whose domain is the sender's.
    pub dkim_sign: Option<SignRule>,
    /// `auth.arc.verify`.
    pub arc_verify: VerifyRule,
    /// `auth.arc.seal`: the signature sealing forwarded mail; `false` (the default) seals none.
    pub arc_seal: SealRule,
    /// `auth.dmarc.verify`.
    pub dmarc_verify: VerifyRule,
}

/// Reads a verification setting checked against the variables known at `stage`.
fn verify(
    t: &TableReader<'_>,
    key: &Key<VerifyRule>,
    stage: Stage,
    known: &Known<'_>,
) -> Option<VerifyRule> {
    let rule = t.get(key)?;
    for problem in check_stage_rule(known, stage, &rule.0) {
        t.report(key.name(), problem);
    }
    Some(rule)
}

/// Reports signature ids (of the key `key`) that name no `signature.<id>`.
pub(crate) fn check_signatures<'r>(
    t: &TableReader<'_>,
    key: &str,
    ids: impl Iterator<Item = &'r String>,
    signatures: &BTreeMap<String, Signature>,
) {
    for id in ids {
        if !signatures.contains_key(id) {
            let configured: Vec<&str> = signatures.keys().map(String::as_str).collect();
            t.report(
                key,
                format!(
                    "no signature named {id:?} (configured: {})",
                    if configured.is_empty() {
                        "none".to_string()
                    } else {
                        configured.join(", ")
                    }
                ),
            );
        }
    }
}

pub(crate) fn read(
    root: &TableReader<'_>,
    known: &Known<'_>,
    signatures: &BTreeMap<String, Signature>,
) -> Option<MessageAuth> {
    let t = root.table("auth");
    let spf = t.table("spf");
    let spf_verify = spf.table("verify");
    let spf_ehlo = verify(&spf_verify, &keys::AUTH_SPF_VERIFY_EHLO, Stage::Ehlo, known);
    let spf_mail_from = verify(
        &spf_verify,
        &keys::AUTH_SPF_VERIFY_MAIL_FROM,
        Stage::Mail,
        known,
    );
    let dkim = t.table("dkim");
    let dkim_verify = verify(&dkim, &keys::AUTH_DKIM_VERIFY, Stage::Data, known);
    let dkim_strict = dkim.get(&keys::AUTH_DKIM_STRICT);
    let dkim_sign = dkim.get(&keys::AUTH_DKIM_SIGN);
    if let Some(rule) = &dkim_sign {
        for problem in check_stage_rule(known, Stage::Data, &rule.0) {
            dkim.report("sign", problem);
        }
        let ids = rule.0.outcomes().flat_map(|list| &list.0);
        check_signatures(&dkim, "sign", ids, signatures);
    }
    let arc = t.table("arc");
    let arc_verify = verify(&arc, &keys::AUTH_ARC_VERIFY, Stage::Data, known);
    let arc_seal = arc.get(&keys::AUTH_ARC_SEAL);
    if let Some(rule) = &arc_seal {
        for problem in check_stage_rule(known, Stage::Data, &rule.0) {
            arc.report("seal", problem);
        }
        let ids = rule.0.outcomes().filter_map(|seal| seal.0.as_ref());
        check_signatures(&arc, "seal", ids, signatures);
    }
    let dmarc_verify = verify(
        &t.table("dmarc"),
        &keys::AUTH_DMARC_VERIFY,
        Stage::Data,
        known,
    );
    Some(MessageAuth {
        spf_ehlo: spf_ehlo?,
        spf_mail_from: spf_mail_from?,
        dkim_verify: dkim_verify?,
        dkim_strict: dkim_strict?,
        dkim_sign,
        arc_verify: arc_verify?,
        arc_seal: arc_seal?,
        dmarc_verify: dmarc_verify?,
    })
}
