//! DANE for MX delivery (RFC 7672, `queue.outbound.tls.dane`): which MX hosts must present
//! a certificate matching their DNSSEC-secure TLSA records, as Postfix and Stalwart decide.
//!
//! DNSSEC status comes from the AD bit of the configured resolver's replies (Postfix's
//! `smtp_dns_support_level = dnssec`, see [`ferrymail_dns::DnssecResolver`]): `resolver.*`
//! must name a validating resolver the operator trusts, or DANE never applies.
//!
//! For each MX host, when the domain's MX records and the host's address records are secure,
//! the TLSA records at `_<mx-port>._tcp.<host>` are looked up; for a host name that is an
//! alias, at the name its secure CNAME chain ends at first, then at the host name itself
//! (RFC 7672 §2.2.2; a DANE-TA certificate may then name either). What was found decides:
//! - secure and usable (DANE-TA or DANE-EE): the host must offer STARTTLS and its
//!   certificate must match; otherwise the next host is tried, and when none works the
//!   recipients fail temporarily. This overrides `tls.starttls` and `allow-invalid-certs`.
//! - none (NXDOMAIN or NODATA), insecure, or only unusable records (PKIX usages 0/1,
//!   RFC 7672 §3.1.3): no DANE; `tls.starttls` applies.
//! - a failed lookup (SERVFAIL, timeout): the host is skipped for this attempt, never tried in
//!   clear text.
//!
//! `require` delivers only to hosts with usable DANE records; `disable` looks nothing up.

use ferrymail_config::model::outbound::TlsPolicy;
use ferrymail_dns::{DnssecResolver, LookupError};
use ferrymail_tls::TlsSettings;
use ferrymail_tls::dane::{DanePolicy, Tlsa};

use super::DeliveryError;
use super::session::Session;
use crate::metrics::{DaneResult, OutboundMetrics};
use crate::tls_report::TlsFailureKind;

/// Why a host cannot be used in this attempt: the reason, and its TLS report failure kind.
#[derive(Debug)]
pub(crate) struct HostDaneError {
    /// The reason, as the recipients' reply.
    pub(crate) reason: String,
    /// The failure as SMTP TLS reports name it.
    pub(crate) kind: TlsFailureKind,
}

/// What DANE needs to decide for the hosts of one domain.
pub struct Dane<'a> {
    /// `queue.outbound.tls.dane`.
    pub mode: TlsPolicy,
    /// The DNSSEC-aware resolver, or why it could not be built.
    pub dns: Result<&'a DnssecResolver, &'a str>,
    /// The MX port: TLSA records are at `_<port>._tcp.<host>`.
    pub port: u16,
    /// Where DANE results are counted.
    pub metrics: &'a OutboundMetrics,
}

/// How one MX host must be connected to.
#[derive(Debug)]
pub(crate) enum HostDane {
    /// No usable DANE records: the STARTTLS policy applies.
    NotApplicable,
    /// STARTTLS with a certificate satisfying the policy, or no delivery to this host.
    Required(DanePolicy),
}

impl Dane<'_> {
    /// Whether the domain's MX records (or, for an implicit MX, its address records) are
    /// DNSSEC-secure; `Ok(false)` without asking when DANE is disabled. `Err` is the reason of
    /// a temporary failure for the whole domain.
    pub(crate) async fn domain_is_secure(
        &self,
        domain: &str,
        implicit: bool,
    ) -> Result<bool, String> {
        if self.mode == TlsPolicy::Disable {
            return Ok(false);
        }
        let Ok(dns) = self.dns else {
            return Ok(false);
        };
        let answer = if implicit {
            dns.addresses_are_secure(domain).await
        } else {
            dns.mx_is_secure(domain).await
        };
        match answer {
            Ok(secure) => Ok(secure),
            // The ordinary lookup found the records a moment ago: a failure now is transient.
            Err(error @ LookupError::Temporary { .. }) => Err(format!("451 4.4.3 {error}")),
            Err(LookupError::NotFound { .. }) => Ok(false),
        }
    }

    /// How `host` must be connected to, given whether its domain's MX records were secure;
    /// `Err` is the reason the host cannot be used in this attempt.
    pub(crate) async fn host(
        &self,
        domain_secure: bool,
        host: &str,
    ) -> Result<HostDane, HostDaneError> {
        if self.mode == TlsPolicy::Disable {
            return Ok(HostDane::NotApplicable);
        }
        let lookup = match self.dns {
            Ok(dns) if domain_secure => self.lookup(dns, host).await,
            Ok(_) => Lookup::Insecure,
            Err(reason) => {
                Lookup::Failed(format!("451 4.4.3 no DNSSEC resolver for DANE: {reason}"))
            }
        };
        if let Some(result) = lookup.result() {
            self.metrics.dane(result);
        }
        match lookup {
            Lookup::Usable(policy) => Ok(HostDane::Required(policy)),
            // A validating resolver fails a lookup whose signatures do not verify.
            Lookup::Failed(reason) => Err(HostDaneError {
                reason,
                kind: TlsFailureKind::DnssecInvalid,
            }),
            other if self.mode == TlsPolicy::Require => Err(HostDaneError {
                reason: format!(
                    "451 4.7.5 {host}: DANE is required (queue.outbound.tls.dane = \"require\") \
                     and the host has no usable DNSSEC-secure TLSA record ({})",
                    other.describe()
                ),
                kind: match other {
                    Lookup::Unusable => TlsFailureKind::TlsaInvalid,
                    _ => TlsFailureKind::DaneRequired,
                },
            }),
            _ => Ok(HostDane::NotApplicable),
        }
    }

    /// The TLSA records of `host`, when its addresses are secure too: those of the name an
    /// alias expands to, else those of the host name.
    async fn lookup(&self, dns: &DnssecResolver, host: &str) -> Lookup {
        let canonical = match dns.addresses(host).await {
            Ok(found) if found.secure => found.canonical,
            Ok(_) | Err(LookupError::NotFound { .. }) => return Lookup::Insecure,
            Err(error) => return Lookup::Failed(format!("451 4.4.3 {error}")),
        };
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        if canonical == host {
            return self.lookup_at(dns, &host, vec![host.clone()]).await;
        }
        // A certificate may name either; the base domain comes first, as the SNI.
        match self
            .lookup_at(dns, &canonical, vec![canonical.clone(), host.clone()])
            .await
        {
            Lookup::NoRecords => {
                self.lookup_at(dns, &host, vec![host.clone(), canonical])
                    .await
            }
            found => found,
        }
    }

    /// The TLSA records at TLSA base domain `base` (the first of `names`, the names a DANE-TA
    /// certificate may be issued for).
    async fn lookup_at(&self, dns: &DnssecResolver, base: &str, names: Vec<String>) -> Lookup {
        let name = format!("_{}._tcp.{base}", self.port);
        let answer = match dns.tlsa(&name).await {
            Ok(answer) => answer,
            Err(LookupError::NotFound { .. }) => return Lookup::NoRecords,
            // The parent zone is signed: the records may exist, and a downgrade to clear text
            // is what an attacker blocking the lookup would want (RFC 7672 §2.2).
            Err(error) => {
                return Lookup::Failed(format!("451 4.4.3 TLSA lookup for DANE: {error}"));
            }
        };
        if !answer.secure {
            return Lookup::Insecure;
        }
        let usable: Vec<Tlsa> = answer
            .records
            .into_iter()
            .filter_map(|r| Tlsa::usable(r.usage, r.selector, r.matching, r.data))
            .collect();
        match DanePolicy::new(usable, names) {
            Some(policy) => Lookup::Usable(policy),
            None => Lookup::Unusable,
        }
    }
}

/// Secures `session` with STARTTLS and DANE verification by `policy`, counting the result;
/// a host that does not offer STARTTLS fails (RFC 7672 §2.2: no clear text with DANE).
pub(crate) async fn secure(
    session: Session,
    policy: &DanePolicy,
    tls: &TlsSettings,
    metrics: &OutboundMetrics,
) -> Result<Session, DeliveryError> {
    if !session.offers_starttls() {
        session.quit().await;
        metrics.dane(DaneResult::Failed);
        return Err(DeliveryError::DaneWithoutStartTls);
    }
    let secured = session.starttls_dane(policy, tls).await;
    metrics.dane(match secured {
        Ok(_) => DaneResult::Verified,
        Err(_) => DaneResult::Failed,
    });
    secured
}

/// What the DNS said about one host's DANE records.
enum Lookup {
    /// Secure, usable records.
    Usable(DanePolicy),
    /// No TLSA record (NXDOMAIN or NODATA).
    NoRecords,
    /// Secure records, none usable for SMTP.
    Unusable,
    /// Some answer on the way was not DNSSEC-secure.
    Insecure,
    /// A lookup failed: the reason.
    Failed(String),
}

impl Lookup {
    /// The result counted now; usable records are counted once the session shows whether
    /// the host satisfied them.
    fn result(&self) -> Option<DaneResult> {
        match self {
            Lookup::Usable(_) => None,
            Lookup::NoRecords => Some(DaneResult::NoRecords),
            Lookup::Unusable => Some(DaneResult::Unusable),
            Lookup::Insecure => Some(DaneResult::Insecure),
            Lookup::Failed(_) => Some(DaneResult::LookupFailed),
        }
    }

    fn describe(&self) -> &'static str {
        match self {
            Lookup::Usable(_) => "usable records",
            Lookup::NoRecords => "no TLSA record",
            Lookup::Unusable => "only TLSA records unusable for SMTP",
            Lookup::Insecure => "its DNS records are not DNSSEC-secure",
            Lookup::Failed(_) => "the lookup failed",
        }
    }
}
