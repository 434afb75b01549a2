//! Where a domain's SMTP TLS reports go: the `rua` of its `_smtp._tls` TXT record
//! (RFC 8460 §3), parsed by mail-auth.

use mail_auth::common::cache::NoCache;
use mail_auth::mta_sts::{ReportUri, TlsRpt};
use mail_auth::{MessageAuthenticator, Txt};

use crate::LookupError;

/// The destinations a domain's TLS record names, in its order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsReportDestinations {
    /// `mailto:` addresses.
    pub mail: Vec<String>,
    /// `https:` URLs.
    pub https: Vec<String>,
}

/// The destinations of `domain`'s TLS reports; `NotFound` when it has no `v=TLSRPTv1`
/// record with a usable `rua` (none at all, or only malformed ones), `Temporary` when DNS
/// could not say.
pub async fn tls_report_destinations(
    dns: &MessageAuthenticator,
    domain: &str,
) -> Result<TlsReportDestinations, LookupError> {
    let name = format!("_smtp._tls.{}", domain.trim_end_matches('.'));
    let record = match dns
        .txt_lookup::<TlsRpt>(name.as_str(), None::<&NoCache<Box<str>, Txt>>)
        .await
    {
        Ok(record) => record,
        Err(mail_auth::Error::Dns(mail_auth::DnsError::InvalidRecordType)) => {
            return Err(LookupError::NotFound {
                kind: "TLSRPT TXT with a valid rua",
                name,
            });
        }
        Err(error) => return Err(LookupError::from_mail_auth(error, "TLSRPT TXT", &name)),
    };
    let mut destinations = TlsReportDestinations::default();
    for uri in &record.rua {
        match uri {
            ReportUri::Mail(address) => destinations.mail.push(address.clone()),
            ReportUri::Http(url) => destinations.https.push(url.clone()),
        }
    }
    Ok(destinations)
}
