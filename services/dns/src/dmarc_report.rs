//! Where a domain's DMARC aggregate reports go: the `rua` of its DMARC record (found by
//! walking up from the domain, RFC 9989 §4.10), each destination outside the record's domain
//! kept only when it authorizes the reports (`<domain>._report._dmarc.<destination>` TXT,
//! RFC 7489 §7.1), both checked with mail-auth.

use hickory_resolver::proto::op::ResponseCode;
use mail_auth::common::cache::NoCache;
use mail_auth::dmarc::Dmarc;
use mail_auth::{MessageAuthenticator, Txt};

use crate::LookupError;

/// Where a domain's aggregate reports go.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReportDestinations {
    /// The domain whose record was found (the domain itself, or a parent).
    pub record_domain: String,
    /// Destinations that may receive the reports: address and size limit in bytes (0: none).
    pub authorized: Vec<(String, u64)>,
    /// Destinations outside the record's domain that did not authorize them.
    pub unauthorized: Vec<String>,
}

/// The destinations of `domain`'s aggregate reports; `NotFound` when it has no DMARC record
/// (or one without a `rua`), `Temporary` when DNS could not say.
pub async fn dmarc_report_destinations(
    dns: &MessageAuthenticator,
    domain: &str,
) -> Result<ReportDestinations, LookupError> {
    let (record_domain, record) = find_record(dns, domain).await?;
    let addresses: Vec<String> = record
        .rua()
        .iter()
        .map(|uri| uri.uri().to_owned())
        .collect();
    if addresses.is_empty() {
        return Err(LookupError::NotFound {
            kind: "DMARC rua",
            name: format!("_dmarc.{record_domain}"),
        });
    }
    let allowed = dns
        .verify_dmarc_report_address(&record_domain, &addresses, None::<&NoCache<Box<str>, Txt>>)
        .await
        .ok_or_else(|| LookupError::Temporary {
            name: format!("{record_domain}._report._dmarc"),
            reason: "the authorization of a report destination could not be looked up".into(),
        })?;
    let allowed: Vec<&str> = allowed.iter().map(|a| a.as_str()).collect();
    let mut destinations = ReportDestinations {
        record_domain: record_domain.clone(),
        ..ReportDestinations::default()
    };
    for uri in record.rua() {
        if allowed.contains(&uri.uri()) {
            destinations
                .authorized
                .push((uri.uri().to_owned(), uri.max_size() as u64));
        } else {
            destinations.unauthorized.push(uri.uri().to_owned());
        }
    }
    Ok(destinations)
}

/// The DMARC record that applies to `domain`: its own, or the closest parent's.
async fn find_record(
    dns: &MessageAuthenticator,
    domain: &str,
) -> Result<(String, std::sync::Arc<Dmarc>), LookupError> {
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    let mut name = domain.as_str();
    loop {
        let query = format!("_dmarc.{name}");
        match dns
            .txt_lookup::<Dmarc>(query.as_str(), None::<&NoCache<Box<str>, Txt>>)
            .await
        {
            Ok(record) => return Ok((name.to_owned(), record)),
            Err(mail_auth::Error::Dns(mail_auth::DnsError::Resolver(reason))) => {
                return Err(LookupError::Temporary {
                    name: query,
                    reason,
                });
            }
            // A server failure is no answer: the record may exist.
            Err(mail_auth::Error::Dns(mail_auth::DnsError::RecordNotFound(code)))
                if !matches!(code, ResponseCode::NXDomain | ResponseCode::NoError) =>
            {
                return Err(LookupError::Temporary {
                    name: query,
                    reason: code.to_string(),
                });
            }
            // No record, or none that parses: look further up.
            Err(_) => {}
        }
        match name.split_once('.') {
            Some((_, parent)) if parent.contains('.') => name = parent,
            _ => {
                return Err(LookupError::NotFound {
                    kind: "DMARC TXT",
                    name: format!("_dmarc.{domain}"),
                });
            }
        }
    }
}
