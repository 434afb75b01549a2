//! The DMARC evaluation a message adds to its author domain's aggregate report (RFC 7489
//! §7.2), taken from mail-auth's results: sent to the queue with the message, which counts it.

use std::net::IpAddr;

use ferrymail_rpc::queue::{
    DkimEvaluation, DmarcEvaluation, DmarcPolicy, MAX_DKIM_RESULTS, MAX_RUA,
};
use mail_auth::dmarc::{Alignment, Dmarc, Policy, Report};
use mail_auth::{DkimOutput, DkimResult, DmarcOutput, DmarcResult, SpfOutput, SpfResult};

/// What the evaluation is made of.
pub(crate) struct Checked<'a, 'x> {
    /// The DMARC result, with the record it applied.
    pub(crate) dmarc: &'a DmarcOutput,
    /// Each DKIM signature's result.
    pub(crate) dkim: &'a [DkimOutput<'x>],
    /// SPF of MAIL FROM.
    pub(crate) spf: &'a SpfOutput,
    /// The MAIL FROM domain (the HELO name for the null sender).
    pub(crate) mail_from_domain: &'a str,
    /// The SMTP client's address.
    pub(crate) client_ip: IpAddr,
    /// The disposition this server applied: `reject` when it refused the message.
    pub(crate) refused: bool,
}

/// The evaluation, or `None` when the domain asked for no aggregate report (no record, or
/// no `rua`).
pub(crate) fn evaluation(checked: &Checked<'_, '_>) -> Option<DmarcEvaluation> {
    let record = checked.dmarc.dmarc_record()?;
    if record.rua().is_empty() {
        return None;
    }
    let passed = checked.dmarc.dkim_result() == &DmarcResult::Pass
        || checked.dmarc.spf_result() == &DmarcResult::Pass;
    Some(DmarcEvaluation {
        policy_domain: checked.dmarc.domain().to_ascii_lowercase(),
        envelope_from: checked.mail_from_domain.to_ascii_lowercase(),
        source_ip: Some(checked.client_ip),
        disposition: disposition(passed, checked.dmarc.policy(), checked.refused).to_owned(),
        dkim_aligned: checked.dmarc.dkim_result() == &DmarcResult::Pass,
        spf_aligned: checked.dmarc.spf_result() == &DmarcResult::Pass,
        dkim: checked
            .dkim
            .iter()
            .filter_map(dkim_evaluation)
            .take(MAX_DKIM_RESULTS)
            .collect(),
        spf_domain: checked.spf.domain().to_ascii_lowercase(),
        spf_result: spf_result(checked.spf.result()).to_owned(),
        policy: policy(record),
    })
}

/// The disposition applied: ferrymail refuses only under `strict` with `p=reject`, and marks
/// `p=quarantine` failures for the mailbox server to file as junk.
fn disposition(passed: bool, policy: Policy, refused: bool) -> &'static str {
    if refused {
        return "reject";
    }
    match policy {
        Policy::Quarantine if !passed => "quarantine",
        _ => "none",
    }
}

fn dkim_evaluation(output: &DkimOutput<'_>) -> Option<DkimEvaluation> {
    let signature = output.signature()?;
    Some(DkimEvaluation {
        domain: signature.d.to_ascii_lowercase(),
        selector: signature.s.clone(),
        result: match output.result() {
            DkimResult::Pass => "pass",
            DkimResult::Neutral(_) => "neutral",
            DkimResult::Fail(_) => "fail",
            DkimResult::PermError(_) => "permerror",
            DkimResult::TempError(_) => "temperror",
            DkimResult::None => "none",
        }
        .to_owned(),
    })
}

fn spf_result(result: SpfResult) -> &'static str {
    match result {
        SpfResult::Pass => "pass",
        SpfResult::Fail => "fail",
        SpfResult::SoftFail => "softfail",
        SpfResult::Neutral => "neutral",
        SpfResult::TempError => "temperror",
        SpfResult::PermError => "permerror",
        SpfResult::None => "none",
    }
}

fn policy_keyword(policy: Policy) -> &'static str {
    match policy {
        Policy::Quarantine => "quarantine",
        Policy::Reject => "reject",
        Policy::None => "none",
        Policy::Unspecified => "",
    }
}

fn policy(record: &Dmarc) -> DmarcPolicy {
    DmarcPolicy {
        p: match record.p {
            // A record with a rua and no valid p= is p=none (RFC 9989 §4.10.1).
            Policy::Unspecified => "none",
            p => policy_keyword(p),
        }
        .to_owned(),
        sp: policy_keyword(record.sp).to_owned(),
        np: policy_keyword(record.np).to_owned(),
        adkim_strict: record.adkim == Alignment::Strict,
        aspf_strict: record.aspf == Alignment::Strict,
        testing: record.t,
        fo: match record.fo {
            Report::All => "0",
            Report::Any => "1",
            Report::Dkim => "d",
            Report::Spf => "s",
            Report::DkimSpf => "d:s",
        }
        .to_owned(),
        rua: record
            .rua()
            .iter()
            .take(MAX_RUA)
            .map(|uri| match uri.max_size() {
                0 => uri.uri().to_owned(),
                size => format!("{}!{size}", uri.uri()),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use ferrymail_e2e::FakeDns;
    use mail_auth::dmarc::verify::DmarcParameters;

    use super::super::hashed_message::HashedMessage;
    use super::super::verification_tests::resolver;
    use super::*;

    /// The evaluation of an unsigned message from `from`, sent by 127.0.0.1 as
    /// `sender`, with the records `dns` publishes.
    async fn evaluate(dns: &FakeDns, from: &str, sender: &str) -> Option<DmarcEvaluation> {
        let resolver = resolver(dns);
        let raw = format!("From: <{from}>\r\nSubject: x\r\n\r\nbody\r\n");
        let mut hashed = HashedMessage::new(true);
        hashed.push(raw.as_bytes());
        hashed.finish();
        let message = hashed.authenticated().unwrap();
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let domain = sender.rsplit_once('@').unwrap().1;
        let spf = resolver
            .verify_spf(mail_auth::spf::verify::SpfParameters::verify_mail_from(
                ip,
                "mail.test",
                "mx.test",
                sender,
            ))
            .await;
        let dmarc = resolver
            .verify_dmarc(DmarcParameters::new(&message, &[], domain, &spf))
            .await;
        evaluation(&Checked {
            dmarc: &dmarc,
            dkim: &[],
            spf: &spf,
            mail_from_domain: domain,
            client_ip: ip,
            refused: false,
        })
    }

    #[tokio::test]
    async fn a_record_with_a_mailto_rua_gives_an_evaluation() {
        let dns = FakeDns::start();
        dns.add_txt("example.org", "v=spf1 ip4:127.0.0.1 -all");
        dns.add_txt(
            "_dmarc.example.org",
            "v=DMARC1; p=reject; aspf=s; rua=mailto:dmarc@example.org!10m",
        );
        let evaluation = evaluate(&dns, "a@example.org", "a@example.org")
            .await
            .unwrap();
        assert_eq!(evaluation.policy_domain, "example.org");
        assert_eq!(evaluation.source_ip, Some("127.0.0.1".parse().unwrap()));
        assert_eq!(evaluation.disposition, "none", "SPF passes aligned");
        assert!(evaluation.spf_aligned && !evaluation.dkim_aligned);
        assert_eq!(evaluation.spf_result, "pass");
        assert_eq!(evaluation.policy.p, "reject");
        assert!(evaluation.policy.aspf_strict);
        assert_eq!(evaluation.policy.rua, vec!["dmarc@example.org!10485760"]);
    }

    #[tokio::test]
    async fn no_evaluation_without_a_usable_rua() {
        let dns = FakeDns::start();
        // Reports only over https, which RFC 7489 aggregate reports do not use: no mailto.
        dns.add_txt(
            "_dmarc.example.net",
            "v=DMARC1; p=none; rua=https://reports.example.net/",
        );
        dns.add_txt("_dmarc.example.com", "v=DMARC1; p=quarantine");
        assert_eq!(evaluate(&dns, "a@example.net", "a@example.net").await, None);
        assert_eq!(evaluate(&dns, "a@example.com", "a@example.com").await, None);
        assert_eq!(
            evaluate(&dns, "a@nowhere.test", "a@nowhere.test").await,
            None
        );
    }

    #[test]
    fn only_refused_mail_is_reported_rejected() {
        assert_eq!(disposition(false, Policy::Reject, true), "reject");
        assert_eq!(disposition(false, Policy::Reject, false), "none");
        assert_eq!(disposition(false, Policy::Quarantine, false), "quarantine");
        assert_eq!(disposition(true, Policy::Quarantine, false), "none");
        assert_eq!(disposition(false, Policy::None, false), "none");
    }
}
