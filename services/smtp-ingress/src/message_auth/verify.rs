//! SPF, DKIM, ARC and DMARC checks with mail-auth, and the refusals `strict` mode calls for.
//!
//! A temporary DNS failure never leads to a 5xx: it is a 4xx under `strict`, and only
//! recorded otherwise.

use std::net::IpAddr;

use ferrymail_config::model::message_auth::VerifyMode;
use mail_auth::dmarc::Policy;
use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{
    ArcOutput, AuthenticatedMessage, DkimOutput, DkimResult, DmarcOutput, DmarcResult,
    MessageAuthenticator, SpfOutput, SpfResult,
};

use crate::session::Reply;

/// The modes of the checks made at the end of DATA.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Modes {
    pub(crate) dkim: VerifyMode,
    pub(crate) arc: VerifyMode,
    pub(crate) dmarc: VerifyMode,
}

/// Whether a HELO name can have an SPF record: a domain, not an address literal.
fn is_domain(helo: &str) -> bool {
    helo.contains('.') && !helo.starts_with('[') && helo.parse::<IpAddr>().is_err()
}

/// SPF of the HELO identity (RFC 7208 §2.3); `None` when the name is not a domain.
pub(crate) async fn spf_helo(
    dns: &MessageAuthenticator,
    ip: IpAddr,
    helo: &str,
    hostname: &str,
) -> Option<SpfOutput> {
    if !is_domain(helo) {
        return None;
    }
    Some(
        dns.verify_spf(SpfParameters::verify_ehlo(ip, helo, hostname))
            .await,
    )
}

/// SPF of the MAIL FROM identity; the null sender is checked as `postmaster@<helo>`.
pub(crate) async fn spf_mail_from(
    dns: &MessageAuthenticator,
    ip: IpAddr,
    helo: &str,
    hostname: &str,
    sender: &str,
) -> SpfOutput {
    dns.verify_spf(SpfParameters::verify_mail_from(ip, helo, hostname, sender))
        .await
}

/// What the end-of-DATA checks found.
pub(crate) struct Outcome<'x> {
    /// One result per signature; empty when the message has none (or DKIM was not checked).
    pub(crate) dkim: Vec<DkimOutput<'x>>,
    pub(crate) arc: Option<ArcOutput<'x>>,
    pub(crate) dmarc: Option<DmarcOutput>,
}

/// Runs the DKIM, ARC and DMARC checks `modes` asks for. DKIM is verified for DMARC even when
/// DKIM's own result is not wanted, as DMARC is built on it.
pub(crate) async fn verify_message<'x>(
    dns: &MessageAuthenticator,
    message: &'x AuthenticatedMessage<'x>,
    modes: Modes,
    spf_mail_from: &'x SpfOutput,
    mail_from_domain: &'x str,
) -> Outcome<'x> {
    let dkim = if modes.dkim.verifies() || modes.dmarc.verifies() {
        dns.verify_dkim(message).await
    } else {
        Vec::new()
    };
    let arc = if modes.arc.verifies() {
        Some(dns.verify_arc(message).await)
    } else {
        None
    };
    let dmarc = if modes.dmarc.verifies() {
        let params = DmarcParameters::new(message, &dkim, mail_from_domain, spf_mail_from);
        Some(dns.verify_dmarc(params).await)
    } else {
        None
    };
    Outcome { dkim, arc, dmarc }
}

/// The refusal of an SPF result under `strict` (RFC 7372 codes), if any.
pub(crate) fn spf_refusal(mode: VerifyMode, spf: &SpfOutput) -> Option<Reply> {
    if mode != VerifyMode::Strict {
        return None;
    }
    match spf.result() {
        SpfResult::Fail => Some(Reply::new(
            550,
            "5.7.23",
            format!("SPF validation failed for {}", spf.domain()),
        )),
        SpfResult::PermError => Some(Reply::new(
            550,
            "5.7.24",
            format!("SPF record of {} is invalid", spf.domain()),
        )),
        SpfResult::TempError => Some(Reply::new(
            451,
            "4.7.24",
            format!(
                "Temporary DNS failure checking SPF of {}, try again later",
                spf.domain()
            ),
        )),
        SpfResult::Pass | SpfResult::SoftFail | SpfResult::Neutral | SpfResult::None => None,
    }
}

/// The refusal `strict` DKIM asks for: no signature passed.
fn dkim_refusal(dkim: &[DkimOutput<'_>]) -> Option<Reply> {
    if dkim.iter().any(|d| d.result() == &DkimResult::Pass) {
        return None;
    }
    if dkim
        .iter()
        .any(|d| matches!(d.result(), DkimResult::TempError(_)))
    {
        return Some(Reply::new(
            451,
            "4.7.20",
            "Temporary DNS failure verifying DKIM, try again later",
        ));
    }
    Some(Reply::new(550, "5.7.20", "No passing DKIM signature found"))
}

/// The refusal `strict` ARC asks for: a chain that is present and broken.
fn arc_refusal(arc: &ArcOutput<'_>) -> Option<Reply> {
    match arc.result() {
        DkimResult::TempError(_) => Some(Reply::new(
            451,
            "4.7.29",
            "Temporary DNS failure verifying ARC, try again later",
        )),
        DkimResult::Fail(_) | DkimResult::PermError(_) => {
            Some(Reply::new(550, "5.7.29", "ARC validation failed"))
        }
        DkimResult::Pass | DkimResult::Neutral(_) | DkimResult::None => None,
    }
}

/// The refusal `strict` DMARC asks for: a failure under the domain's `p=reject`.
fn dmarc_refusal(dmarc: &DmarcOutput) -> Option<Reply> {
    match dmarc.result() {
        DmarcResult::TempError(_) => Some(Reply::new(
            451,
            "4.7.1",
            format!(
                "Temporary DNS failure checking the DMARC policy of {}, try again later",
                dmarc.domain()
            ),
        )),
        DmarcResult::Fail(_) if dmarc.policy() == Policy::Reject => Some(Reply::new(
            550,
            "5.7.1",
            format!(
                "Message rejected: it fails the DMARC policy of {} (p=reject)",
                dmarc.domain()
            ),
        )),
        _ => None,
    }
}

/// Whether DMARC itself refuses the message: strict, and a failure under `p=reject`.
pub(crate) fn dmarc_rejects(modes: Modes, outcome: &Outcome<'_>) -> bool {
    modes.dmarc == VerifyMode::Strict
        && outcome.dmarc.as_ref().is_some_and(|dmarc| {
            matches!(dmarc.result(), DmarcResult::Fail(_)) && dmarc.policy() == Policy::Reject
        })
}

/// The first refusal the strict checks call for, DMARC's first as it names the author.
pub(crate) fn message_refusal(modes: Modes, outcome: &Outcome<'_>) -> Option<Reply> {
    let strict = |mode: VerifyMode| mode == VerifyMode::Strict;
    let dmarc = outcome
        .dmarc
        .as_ref()
        .filter(|_| strict(modes.dmarc))
        .and_then(dmarc_refusal);
    let dkim = || {
        strict(modes.dkim)
            .then(|| dkim_refusal(&outcome.dkim))
            .flatten()
    };
    let arc = || {
        outcome
            .arc
            .as_ref()
            .filter(|_| strict(modes.arc))
            .and_then(arc_refusal)
    };
    dmarc.or_else(dkim).or_else(arc)
}
