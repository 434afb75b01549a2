//! The A lookup a DNS blocklist answers (RFC 5782 §2.1), with how long the answer may be kept.

use std::net::Ipv4Addr;
use std::time::Instant;

use mail_auth::MessageAuthenticator;

use crate::LookupError;

/// The A records of a name, and until when they may be cached (their TTL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressRecords {
    /// The addresses, in the order received.
    pub addresses: Vec<Ipv4Addr>,
    /// When the shortest TTL of the answer runs out.
    pub valid_until: Instant,
}

/// The A records of `name`: `NotFound` when the name does not exist (not listed),
/// `Temporary` when the zone could not be asked (SERVFAIL, timeout, refused).
pub async fn address_records(
    dns: &MessageAuthenticator,
    name: &str,
) -> Result<AddressRecords, LookupError> {
    let entry = dns
        .ipv4_lookup_raw(name)
        .await
        .map_err(|e| LookupError::from_mail_auth(e, "A", name))?;
    Ok(AddressRecords {
        addresses: entry.entry.to_vec(),
        valid_until: entry.expires,
    })
}
