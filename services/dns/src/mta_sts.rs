//! The MTA-STS record of a domain (RFC 8461 §3.1), parsed by mail-auth.

use mail_auth::common::cache::NoCache;
use mail_auth::mta_sts::MtaSts;
use mail_auth::{MessageAuthenticator, Txt};

use crate::LookupError;

/// The policy id of `domain`'s `_mta-sts` TXT record. No valid `v=STSv1` record (none at
/// all, or only malformed ones) is [`LookupError::NotFound`]: the domain has no policy.
pub async fn mta_sts_id(dns: &MessageAuthenticator, domain: &str) -> Result<String, LookupError> {
    let name = format!("_mta-sts.{domain}");
    match dns
        .txt_lookup::<MtaSts>(name.as_str(), None::<&NoCache<Box<str>, Txt>>)
        .await
    {
        Ok(record) => Ok(record.id.clone()),
        Err(mail_auth::Error::Dns(mail_auth::DnsError::InvalidRecordType)) => {
            Err(LookupError::NotFound {
                kind: "MTA-STS TXT",
                name,
            })
        }
        Err(error) => Err(LookupError::from_mail_auth(error, "MTA-STS TXT", &name)),
    }
}
