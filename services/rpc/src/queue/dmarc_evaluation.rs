//! [`DmarcEvaluation`]: what one DMARC check of an inbound message adds to the aggregate
//! report of its author domain, and its wire form (checked: a peer's malformed evaluation is
//! refused with the field it got wrong, never recorded).

use std::net::IpAddr;

use crate::malformed::Malformed;
use crate::proto;

/// Longest domain name (RFC 1035) — and of the other short texts an evaluation carries.
const MAX_NAME: usize = 255;
/// Most DKIM signatures one evaluation reports (the ingress checks at most ten).
pub const MAX_DKIM_RESULTS: usize = 10;
/// Most `rua` URIs kept of a record (RFC 7489 §6.2 lets receivers limit them; two are usual).
pub const MAX_RUA: usize = 8;

/// Dispositions a report row may name.
pub const DISPOSITIONS: &[&str] = &["none", "quarantine", "reject"];
/// DKIM results a report may name (RFC 7489 Appendix C `DKIMResultType`).
pub const DKIM_RESULTS: &[&str] = &[
    "none",
    "pass",
    "fail",
    "policy",
    "neutral",
    "temperror",
    "permerror",
];
/// SPF results a report may name (`SPFResultType`).
pub const SPF_RESULTS: &[&str] = &[
    "none",
    "neutral",
    "pass",
    "fail",
    "softfail",
    "temperror",
    "permerror",
];

/// One DMARC evaluation of an inbound message, as the aggregate report counts it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DmarcEvaluation {
    /// The RFC5322.From domain (lower case): whose policy applied, who is reported to.
    pub policy_domain: String,
    /// The MAIL FROM domain (the HELO name for the null sender).
    pub envelope_from: String,
    /// The SMTP client's address.
    pub source_ip: Option<IpAddr>,
    /// The disposition applied: one of [`DISPOSITIONS`].
    pub disposition: String,
    /// An aligned DKIM signature passed.
    pub dkim_aligned: bool,
    /// An aligned SPF identity passed.
    pub spf_aligned: bool,
    /// Each DKIM signature checked.
    pub dkim: Vec<DkimEvaluation>,
    /// The domain SPF checked (MAIL FROM's).
    pub spf_domain: String,
    /// Its result: one of [`SPF_RESULTS`].
    pub spf_result: String,
    /// The record the domain published.
    pub policy: DmarcPolicy,
}

/// One DKIM signature's result.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DkimEvaluation {
    /// `d=`.
    pub domain: String,
    /// `s=`.
    pub selector: String,
    /// One of [`DKIM_RESULTS`].
    pub result: String,
}

/// A published DMARC record.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DmarcPolicy {
    /// `p=`: one of [`DISPOSITIONS`].
    pub p: String,
    /// `sp=`, empty when not published.
    pub sp: String,
    /// `np=`, empty when not published.
    pub np: String,
    /// `adkim=s`.
    pub adkim_strict: bool,
    /// `aspf=s`.
    pub aspf_strict: bool,
    /// `t=y`.
    pub testing: bool,
    /// `fo=` as published.
    pub fo: String,
    /// `rua=` URIs with their size suffixes.
    pub rua: Vec<String>,
}

/// The wire form of `evaluation`.
pub(crate) fn to_wire(evaluation: DmarcEvaluation) -> proto::DmarcEvaluation {
    let policy = evaluation.policy;
    proto::DmarcEvaluation {
        policy_domain: evaluation.policy_domain,
        envelope_from: evaluation.envelope_from,
        source_ip: evaluation
            .source_ip
            .map(|ip| ip.to_string())
            .unwrap_or_default(),
        disposition: evaluation.disposition,
        dkim_aligned: evaluation.dkim_aligned,
        spf_aligned: evaluation.spf_aligned,
        dkim: evaluation
            .dkim
            .into_iter()
            .map(|d| proto::DkimEvaluation {
                domain: d.domain,
                selector: d.selector,
                result: d.result,
            })
            .collect(),
        spf_domain: evaluation.spf_domain,
        spf_result: evaluation.spf_result,
        policy: Some(proto::DmarcPolicy {
            p: policy.p,
            sp: policy.sp,
            np: policy.np,
            adkim_strict: policy.adkim_strict,
            aspf_strict: policy.aspf_strict,
            testing: policy.testing,
            fo: policy.fo,
            rua: policy.rua,
        }),
    }
}

/// The evaluation a peer sent, or the field it got wrong.
pub(crate) fn from_wire(wire: proto::DmarcEvaluation) -> Result<DmarcEvaluation, Malformed> {
    let policy = wire
        .policy
        .ok_or_else(|| Malformed::missing("dmarc.policy"))?;
    if wire.dkim.len() > MAX_DKIM_RESULTS {
        return Err(Malformed(format!(
            "dmarc.dkim: {} results, more than {MAX_DKIM_RESULTS}",
            wire.dkim.len()
        )));
    }
    if policy.rua.len() > MAX_RUA {
        return Err(Malformed(format!(
            "dmarc.policy.rua: {} URIs, more than {MAX_RUA}",
            policy.rua.len()
        )));
    }
    let evaluation =
        DmarcEvaluation {
            policy_domain: name("dmarc.policy_domain", wire.policy_domain, false)?,
            envelope_from: name("dmarc.envelope_from", wire.envelope_from, true)?,
            source_ip: match wire.source_ip.as_str() {
                "" => None,
                ip => Some(ip.parse().map_err(|_| {
                    Malformed(format!("dmarc.source_ip: {ip:?} is not an IP address"))
                })?),
            },
            disposition: keyword("dmarc.disposition", wire.disposition, DISPOSITIONS)?,
            dkim_aligned: wire.dkim_aligned,
            spf_aligned: wire.spf_aligned,
            dkim: wire
                .dkim
                .into_iter()
                .map(|d| {
                    Ok(DkimEvaluation {
                        domain: name("dmarc.dkim.domain", d.domain, true)?,
                        selector: name("dmarc.dkim.selector", d.selector, true)?,
                        result: keyword("dmarc.dkim.result", d.result, DKIM_RESULTS)?,
                    })
                })
                .collect::<Result<_, Malformed>>()?,
            spf_domain: name("dmarc.spf_domain", wire.spf_domain, true)?,
            spf_result: keyword("dmarc.spf_result", wire.spf_result, SPF_RESULTS)?,
            policy: DmarcPolicy {
                p: keyword("dmarc.policy.p", policy.p, DISPOSITIONS)?,
                sp: optional_keyword("dmarc.policy.sp", policy.sp)?,
                np: optional_keyword("dmarc.policy.np", policy.np)?,
                adkim_strict: policy.adkim_strict,
                aspf_strict: policy.aspf_strict,
                testing: policy.testing,
                fo: name("dmarc.policy.fo", policy.fo, true)?,
                rua: policy
                    .rua
                    .into_iter()
                    .map(|uri| name("dmarc.policy.rua", uri, false))
                    .collect::<Result<_, _>>()?,
            },
        };
    Ok(evaluation)
}

/// A short text: at most [`MAX_NAME`] bytes, printable ASCII, empty only when `may_be_empty`.
fn name(field: &str, value: String, may_be_empty: bool) -> Result<String, Malformed> {
    if value.is_empty() && !may_be_empty {
        return Err(Malformed::missing(field));
    }
    if value.len() > MAX_NAME || !value.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Malformed(format!(
            "{field}: not a name of at most {MAX_NAME} printable characters"
        )));
    }
    Ok(value)
}

fn keyword(field: &str, value: String, allowed: &[&str]) -> Result<String, Malformed> {
    if allowed.contains(&value.as_str()) {
        Ok(value)
    } else {
        Err(Malformed(format!(
            "{field}: {value:?} is not one of {}",
            allowed.join(", ")
        )))
    }
}

fn optional_keyword(field: &str, value: String) -> Result<String, Malformed> {
    if value.is_empty() {
        return Ok(value);
    }
    keyword(field, value, DISPOSITIONS)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn evaluation() -> DmarcEvaluation {
        DmarcEvaluation {
            policy_domain: "example.org".into(),
            envelope_from: "example.org".into(),
            source_ip: Some("192.0.2.1".parse().unwrap()),
            disposition: "none".into(),
            dkim_aligned: true,
            spf_aligned: false,
            dkim: vec![DkimEvaluation {
                domain: "example.org".into(),
                selector: "s1".into(),
                result: "pass".into(),
            }],
            spf_domain: "example.org".into(),
            spf_result: "softfail".into(),
            policy: DmarcPolicy {
                p: "reject".into(),
                rua: vec!["mailto:dmarc@example.org!10m".into()],
                ..DmarcPolicy::default()
            },
        }
    }

    #[test]
    fn an_evaluation_survives_the_wire() {
        let sent = evaluation();
        assert_eq!(from_wire(to_wire(sent.clone())).unwrap(), sent);
    }

    #[test]
    fn malformed_evaluations_name_their_field() {
        let mut wire = to_wire(evaluation());
        wire.disposition = "discard".into();
        assert!(from_wire(wire).unwrap_err().0.contains("dmarc.disposition"));
        let mut wire = to_wire(evaluation());
        wire.policy_domain = String::new();
        assert!(
            from_wire(wire)
                .unwrap_err()
                .0
                .contains("dmarc.policy_domain")
        );
        let mut wire = to_wire(evaluation());
        wire.source_ip = "nowhere".into();
        assert!(from_wire(wire).unwrap_err().0.contains("dmarc.source_ip"));
        let mut wire = to_wire(evaluation());
        wire.policy = None;
        assert!(from_wire(wire).unwrap_err().0.contains("dmarc.policy"));
        let mut wire = to_wire(evaluation());
        wire.dkim[0].result = "great".into();
        assert!(from_wire(wire).unwrap_err().0.contains("dmarc.dkim.result"));
        let mut wire = to_wire(evaluation());
        wire.spf_domain = "a b".into();
        assert!(from_wire(wire).unwrap_err().0.contains("dmarc.spf_domain"));
        let mut wire = to_wire(evaluation());
        wire.policy.as_mut().unwrap().rua = vec!["x".into(); MAX_RUA + 1];
        assert!(from_wire(wire).unwrap_err().0.contains("dmarc.policy.rua"));
    }
}
