//! One session's TLS result as the report row it is counted in: the policy (mail-auth's
//! `policy` object) and, for a failure, its details without the count.

use ferrymail_outbound::tls_report::{TlsFailureKind, TlsPolicyApplied, TlsSessionResult};
use mail_auth::report::tlsrpt::{FailureDetails, PolicyDetails, PolicyType, ResultType};
use serde::{Deserialize, Serialize};

/// A report row: sessions under one policy that succeeded, or failed the same way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TlsRow {
    /// The policy applied.
    pub(crate) policy: PolicyDetails,
    /// `None` for successful sessions.
    pub(crate) failure: Option<FailureDetails>,
}

/// The row `result` is counted in.
pub(crate) fn row(result: &TlsSessionResult) -> TlsRow {
    let mut policy = PolicyDetails::new(policy_type(&result.policy), &result.policy_domain);
    if let TlsPolicyApplied::Sts { policy: text, mx } = &result.policy {
        policy.policy_string = text.clone();
        policy.mx_host = mx.clone();
    }
    let failure = result.failure.as_ref().map(|failure| {
        let mut details = FailureDetails::new(result_type(failure.kind));
        details.receiving_mx_hostname = result.mx_host.clone();
        details.receiving_ip = result.ip;
        // RFC 8460 §4.3: `failure-reason-code` is the free text; `additional-information`
        // is a URI.
        details.failure_reason_code = Some(stable(&failure.detail).to_owned());
        details
    });
    TlsRow { policy, failure }
}

/// `detail` without the verification time some certificate errors end with, which would
/// make every failing session a row of its own.
fn stable(detail: &str) -> &str {
    match detail.find(": verification time") {
        Some(at) => &detail[..at],
        None => detail,
    }
}

fn policy_type(policy: &TlsPolicyApplied) -> PolicyType {
    match policy {
        TlsPolicyApplied::Sts { .. } => PolicyType::Sts,
        TlsPolicyApplied::Tlsa => PolicyType::Tlsa,
        TlsPolicyApplied::None => PolicyType::NoPolicyFound,
    }
}

fn result_type(kind: TlsFailureKind) -> ResultType {
    match kind {
        TlsFailureKind::StartTlsNotSupported => ResultType::StartTlsNotSupported,
        TlsFailureKind::CertificateHostMismatch => ResultType::CertificateHostMismatch,
        TlsFailureKind::CertificateExpired => ResultType::CertificateExpired,
        TlsFailureKind::CertificateNotTrusted => ResultType::CertificateNotTrusted,
        TlsFailureKind::ValidationFailure => ResultType::ValidationFailure,
        TlsFailureKind::TlsaInvalid => ResultType::TlsaInvalid,
        TlsFailureKind::DnssecInvalid => ResultType::DnssecInvalid,
        TlsFailureKind::DaneRequired => ResultType::DaneRequired,
        TlsFailureKind::StsPolicyFetchError => ResultType::StsPolicyFetchError,
        TlsFailureKind::StsPolicyInvalid => ResultType::StsPolicyInvalid,
        TlsFailureKind::StsWebpkiInvalid => ResultType::StsWebpkiInvalid,
    }
}
