//! What the TLS of one MX session came to, for SMTP TLS reports (RFC 8460): the policy that
//! applied (MTA-STS, DANE or none) and success or the kind of failure. Delivery reports each
//! session to the caller's [`TlsResults`]; what it keeps of them is the caller's business.

use std::net::IpAddr;

use crate::DeliveryError;
use crate::mta_sts::{Mode, Policy};

/// The policy a session was held to (RFC 8460 §4.3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TlsPolicyApplied {
    /// The domain's MTA-STS policy (`sts`).
    Sts {
        /// The policy file, a line per entry.
        policy: Vec<String>,
        /// Its `mx` patterns.
        mx: Vec<String>,
    },
    /// The host's DANE TLSA records (`tlsa`).
    Tlsa,
    /// Neither (`no-policy-found`).
    None,
}

/// The failure kinds of RFC 8460 §4.3.2.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsFailureKind {
    /// `starttls-not-supported`.
    StartTlsNotSupported,
    /// `certificate-host-mismatch`.
    CertificateHostMismatch,
    /// `certificate-expired`.
    CertificateExpired,
    /// `certificate-not-trusted`.
    CertificateNotTrusted,
    /// `validation-failure`.
    ValidationFailure,
    /// `tlsa-invalid`.
    TlsaInvalid,
    /// `dnssec-invalid`.
    DnssecInvalid,
    /// `dane-required`.
    DaneRequired,
    /// `sts-policy-fetch-error`.
    StsPolicyFetchError,
    /// `sts-policy-invalid`.
    StsPolicyInvalid,
    /// `sts-webpki-invalid`.
    StsWebpkiInvalid,
}

/// One session's TLS failure: its kind and what happened, for `additional-information`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFailure {
    /// The kind.
    pub kind: TlsFailureKind,
    /// The error, as logged.
    pub detail: String,
}

/// What the TLS of one session (or a policy lookup for a domain) came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsSessionResult {
    /// The recipient domain whose policy applied: where the report goes.
    pub policy_domain: String,
    /// The policy.
    pub policy: TlsPolicyApplied,
    /// The MX host, when a host was tried.
    pub mx_host: Option<String>,
    /// Its address, when one was connected to.
    pub ip: Option<IpAddr>,
    /// `None` for a successful session.
    pub failure: Option<TlsFailure>,
}

/// Where delivery reports the TLS of each session.
pub trait TlsResults: Send + Sync {
    /// Takes the result of one session.
    fn record(&self, result: TlsSessionResult);
}

/// Reports the sessions of one recipient domain under its MTA-STS policy.
pub(crate) struct DomainReporter<'a> {
    /// Where results go; `None` keeps nothing.
    pub(crate) sink: Option<&'a dyn TlsResults>,
    /// The recipient domain.
    pub(crate) domain: &'a str,
    /// Its MTA-STS policy, if any.
    pub(crate) sts: Option<&'a Policy>,
}

impl DomainReporter<'_> {
    /// Reports one session to `host` at `ip` (`dane`: held to its TLSA records).
    pub(crate) fn session(
        &self,
        host: &str,
        ip: Option<IpAddr>,
        dane: bool,
        failure: Option<TlsFailure>,
    ) {
        let Some(sink) = self.sink else {
            return;
        };
        let policy = if dane {
            TlsPolicyApplied::Tlsa
        } else {
            self.sts_policy()
        };
        sink.record(TlsSessionResult {
            policy_domain: self.domain.to_owned(),
            policy,
            mx_host: Some(host.to_owned()),
            ip,
            failure,
        });
    }

    /// Reports that the domain's MTA-STS policy could not be had, for `reason` (`kind`).
    pub(crate) fn sts_unavailable(&self, reason: &str, kind: TlsFailureKind) {
        if let Some(sink) = self.sink {
            sink.record(TlsSessionResult {
                policy_domain: self.domain.to_owned(),
                policy: TlsPolicyApplied::Sts {
                    policy: Vec::new(),
                    mx: Vec::new(),
                },
                mx_host: None,
                ip: None,
                failure: Some(TlsFailure {
                    kind,
                    detail: reason.to_owned(),
                }),
            });
        }
    }

    /// The MTA-STS policy as reported: `None` when there is none or it was withdrawn.
    fn sts_policy(&self) -> TlsPolicyApplied {
        match self.sts {
            Some(policy) if policy.mode != Mode::None => TlsPolicyApplied::Sts {
                policy: policy.to_text().lines().map(str::to_owned).collect(),
                mx: policy.mx.iter().map(ToString::to_string).collect(),
            },
            _ => TlsPolicyApplied::None,
        }
    }
}

/// The TLS failure a session error is, if it is one: failures to connect or of the SMTP
/// dialogue are not about TLS and are not reported.
pub(crate) fn session_failure(error: &DeliveryError, dane: bool) -> Option<TlsFailure> {
    let kind = match error {
        DeliveryError::StartTlsNotOffered | DeliveryError::DaneWithoutStartTls => {
            TlsFailureKind::StartTlsNotSupported
        }
        DeliveryError::Tls(reason) => handshake_failure(reason, dane),
        _ => return None,
    };
    Some(TlsFailure {
        kind,
        detail: error.to_string(),
    })
}

/// The failure kind of a TLS handshake error, from the certificate verifier's words; any
/// other handshake failure is a `validation-failure`. Under DANE every certificate failure
/// is one (RFC 8460 §4.3.2.2).
pub(crate) fn handshake_failure(error: &str, dane: bool) -> TlsFailureKind {
    if dane {
        return TlsFailureKind::ValidationFailure;
    }
    let error = error.to_ascii_lowercase();
    if error.contains("expired") {
        TlsFailureKind::CertificateExpired
    } else if error.contains("notvalidforname") || error.contains("not valid for name") {
        TlsFailureKind::CertificateHostMismatch
    } else if error.contains("unknownissuer")
        || error.contains("unknown issuer")
        || error.contains("badsignature")
    {
        TlsFailureKind::CertificateNotTrusted
    } else {
        TlsFailureKind::ValidationFailure
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_errors_map_to_their_result_types() {
        let cases = [
            (
                "invalid peer certificate: Expired",
                TlsFailureKind::CertificateExpired,
            ),
            (
                "invalid peer certificate: certificate not valid for name \"mx.example.org\"",
                TlsFailureKind::CertificateHostMismatch,
            ),
            (
                "invalid peer certificate: NotValidForName",
                TlsFailureKind::CertificateHostMismatch,
            ),
            (
                "invalid peer certificate: UnknownIssuer",
                TlsFailureKind::CertificateNotTrusted,
            ),
            (
                "received fatal alert: HandshakeFailure",
                TlsFailureKind::ValidationFailure,
            ),
        ];
        for (error, kind) in cases {
            assert_eq!(handshake_failure(error, false), kind, "{error}");
        }
        assert_eq!(
            handshake_failure("invalid peer certificate: UnknownIssuer", true),
            TlsFailureKind::ValidationFailure
        );
    }

    #[test]
    fn only_tls_errors_are_tls_failures() {
        let kind = |error: DeliveryError, dane: bool| session_failure(&error, dane).map(|f| f.kind);
        assert_eq!(
            kind(DeliveryError::StartTlsNotOffered, false),
            Some(TlsFailureKind::StartTlsNotSupported)
        );
        assert_eq!(
            kind(DeliveryError::DaneWithoutStartTls, true),
            Some(TlsFailureKind::StartTlsNotSupported)
        );
        assert_eq!(
            kind(
                DeliveryError::Tls("invalid peer certificate: Expired".into()),
                false
            ),
            Some(TlsFailureKind::CertificateExpired)
        );
        assert_eq!(
            kind(DeliveryError::Greeting("554 go away".into()), false),
            None
        );
        assert_eq!(kind(std::io::Error::other("refused").into(), false), None);
    }
}
