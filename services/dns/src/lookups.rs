//! The lookups MX delivery needs (RFC 5321 §5.1), over mail-auth's resolver.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ferrymail_config::model::outbound::IpStrategy;
use hickory_resolver::proto::op::ResponseCode;
use mail_auth::common::cache::NoCache;
use mail_auth::{MX, MessageAuthenticator, RecordSet};

/// A lookup that gave no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    /// The name does not exist or has no record of that type: a permanent answer.
    #[error("no {kind} record for {name}")]
    NotFound {
        /// The record type asked for.
        kind: &'static str,
        /// The name asked about.
        name: String,
    },
    /// DNS could not be asked or did not answer: try again later.
    #[error("DNS lookup of {name} failed temporarily: {reason}")]
    Temporary {
        /// The name asked about.
        name: String,
        /// What went wrong.
        reason: String,
    },
}

impl LookupError {
    /// Whether trying again later may succeed.
    pub fn is_temporary(&self) -> bool {
        matches!(self, LookupError::Temporary { .. })
    }

    pub(crate) fn from_mail_auth(error: mail_auth::Error, kind: &'static str, name: &str) -> Self {
        match error {
            // Only "no such name" and "no such record" are answers; a SERVFAIL or REFUSED
            // carried the same way is the server failing, and must not bounce mail.
            mail_auth::Error::Dns(mail_auth::DnsError::RecordNotFound(
                ResponseCode::NXDomain | ResponseCode::NoError,
            )) => LookupError::NotFound {
                kind,
                name: name.to_string(),
            },
            other => LookupError::Temporary {
                name: name.to_string(),
                reason: other.to_string(),
            },
        }
    }
}

/// One mail exchanger of a domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MxHost {
    /// Lower is tried first.
    pub preference: u16,
    /// The exchanger's host name, lower case, without the trailing dot.
    pub host: String,
}

/// The MX hosts of `domain`, most preferred first. A domain without MX records answers
/// `NotFound`; RFC 5321 §5.1 then says to try the domain's own address ([`ip_addresses`]).
pub async fn mx_hosts(
    dns: &MessageAuthenticator,
    domain: &str,
) -> Result<Vec<MxHost>, LookupError> {
    let records = dns
        .mx_lookup(domain, None::<&NoCache<Box<str>, RecordSet<MX>>>)
        .await
        .map_err(|e| LookupError::from_mail_auth(e, "MX", domain))?;
    Ok(records
        .rrset
        .iter()
        .flat_map(|mx| {
            mx.exchanges.iter().map(|host| MxHost {
                preference: mx.preference,
                host: host.trim_end_matches('.').to_string(),
            })
        })
        .collect())
}

/// The addresses of `host` in the order `strategy` says (`queue.outbound.ip-strategy`).
///
/// With both families, the addresses one family has are used even when the other's lookup
/// failed: a host that can be reached is not held back by a broken AAAA zone. When neither
/// family has an address, a temporary failure of either lookup wins over "not found", so
/// that mail is never bounced because DNS could not be asked.
pub async fn ip_addresses(
    dns: &MessageAuthenticator,
    host: &str,
    strategy: IpStrategy,
) -> Result<Vec<IpAddr>, LookupError> {
    let (first, second) = match strategy {
        IpStrategy::Ipv4Only => return ipv4(dns, host).await,
        IpStrategy::Ipv6Only => return ipv6(dns, host).await,
        IpStrategy::Ipv4ThenIpv6 => futures::join!(ipv4(dns, host), ipv6(dns, host)),
        IpStrategy::Ipv6ThenIpv4 => futures::join!(ipv6(dns, host), ipv4(dns, host)),
    };
    match (first, second) {
        (Ok(mut first), Ok(second)) => {
            first.extend(second);
            Ok(first)
        }
        (Ok(found), Err(_)) | (Err(_), Ok(found)) => Ok(found),
        (Err(first), Err(second)) if second.is_temporary() && !first.is_temporary() => Err(second),
        (Err(first), Err(_)) => Err(first),
    }
}

/// The A records of `host`.
async fn ipv4(dns: &MessageAuthenticator, host: &str) -> Result<Vec<IpAddr>, LookupError> {
    let records = dns
        .ipv4_lookup(host, None::<&NoCache<Box<str>, RecordSet<Ipv4Addr>>>)
        .await
        .map_err(|e| LookupError::from_mail_auth(e, "A", host))?;
    Ok(records.rrset.iter().copied().map(IpAddr::from).collect())
}

/// The AAAA records of `host`.
async fn ipv6(dns: &MessageAuthenticator, host: &str) -> Result<Vec<IpAddr>, LookupError> {
    let records = dns
        .ipv6_lookup(host, None::<&NoCache<Box<str>, RecordSet<Ipv6Addr>>>)
        .await
        .map_err(|e| LookupError::from_mail_auth(e, "AAAA", host))?;
    Ok(records.rrset.iter().copied().map(IpAddr::from).collect())
}
