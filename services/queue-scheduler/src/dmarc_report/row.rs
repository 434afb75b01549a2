//! An evaluation from the ingress as mail-auth's report types: the row it is counted in,
//! and the policy the domain published.

use ferrymail_rpc::queue::{DmarcEvaluation, DmarcPolicy};
use mail_auth::report::{
    ActionDisposition, Alignment, DKIMAuthResult, Discovery, Disposition, DkimResult, DmarcResult,
    PolicyPublished, Record, SPFAuthResult, SPFDomainScope, SpfResult,
};

/// The report row `evaluation` is counted in (its count left at 0).
pub(crate) fn record(evaluation: &DmarcEvaluation) -> Record {
    let mut record = Record::new()
        .with_action_disposition(disposition(&evaluation.disposition))
        .with_dmarc_dkim_result(aligned(evaluation.dkim_aligned))
        .with_dmarc_spf_result(aligned(evaluation.spf_aligned))
        .with_envelope_from(evaluation.envelope_from.as_str())
        .with_header_from(evaluation.policy_domain.as_str());
    if let Some(ip) = evaluation.source_ip {
        record = record.with_source_ip(ip);
    }
    for dkim in &evaluation.dkim {
        record = record.with_dkim_auth_result(
            DKIMAuthResult::new()
                .with_domain(dkim.domain.as_str())
                .with_selector(dkim.selector.as_str())
                .with_result(dkim_result(&dkim.result)),
        );
    }
    if !evaluation.spf_domain.is_empty() {
        record = record.with_spf_auth_result(
            SPFAuthResult::new()
                .with_domain(evaluation.spf_domain.as_str())
                .with_scope(SPFDomainScope::MailFrom)
                .with_result(spf_result(&evaluation.spf_result)),
        );
    }
    record
}

/// The policy `domain` published, as the report states it.
pub(crate) fn policy_published(domain: &str, policy: &DmarcPolicy) -> PolicyPublished {
    let alignment = |strict| {
        if strict {
            Alignment::Strict
        } else {
            Alignment::Relaxed
        }
    };
    let p = published(&policy.p).unwrap_or(Disposition::None);
    let sp = published(&policy.sp).unwrap_or(p);
    PolicyPublished {
        domain: domain.to_owned(),
        version_published: None,
        adkim: alignment(policy.adkim_strict),
        aspf: alignment(policy.aspf_strict),
        p,
        sp,
        np: published(&policy.np).unwrap_or(sp),
        testing: policy.testing,
        discovery_method: Discovery::Treewalk,
        fo: (!policy.fo.is_empty()).then(|| policy.fo.clone()),
    }
}

fn aligned(pass: bool) -> DmarcResult {
    if pass {
        DmarcResult::Pass
    } else {
        DmarcResult::Fail
    }
}

fn disposition(keyword: &str) -> ActionDisposition {
    match keyword {
        "quarantine" => ActionDisposition::Quarantine,
        "reject" => ActionDisposition::Reject,
        _ => ActionDisposition::None,
    }
}

fn published(keyword: &str) -> Option<Disposition> {
    match keyword {
        "none" => Some(Disposition::None),
        "quarantine" => Some(Disposition::Quarantine),
        "reject" => Some(Disposition::Reject),
        _ => None,
    }
}

fn dkim_result(keyword: &str) -> DkimResult {
    match keyword {
        "pass" => DkimResult::Pass,
        "fail" => DkimResult::Fail,
        "policy" => DkimResult::Policy,
        "neutral" => DkimResult::Neutral,
        "temperror" => DkimResult::TempError,
        "permerror" => DkimResult::PermError,
        _ => DkimResult::None,
    }
}

fn spf_result(keyword: &str) -> SpfResult {
    match keyword {
        "pass" => SpfResult::Pass,
        "fail" => SpfResult::Fail,
        "softfail" => SpfResult::SoftFail,
        "neutral" => SpfResult::Neutral,
        "temperror" => SpfResult::TempError,
        "permerror" => SpfResult::PermError,
        _ => SpfResult::None,
    }
}
