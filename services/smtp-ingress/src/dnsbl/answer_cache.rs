//! Blocklist answers kept in the process for their TTL, so that a client that connects again
//! does not cost its zones another query. Bounded; failures are never kept.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferrymail_dns::{LookupError, MessageAuthenticator};
use moka::Expiry;
use moka::future::Cache;

/// Most answers kept.
const CAPACITY: u64 = 100_000;
/// How long "no such name" is kept: the negative TTL of the zone's SOA is not passed on by
/// the resolver, so Postfix's `postscreen_dnsbl_min_ttl` stands in for it.
const NOT_FOUND_TTL: Duration = Duration::from_secs(60);

/// A zone's answer about one name.
#[derive(Debug, Clone)]
pub(crate) struct Cached {
    /// The A records; empty when the name does not exist.
    pub(crate) addresses: Arc<[Ipv4Addr]>,
    valid_until: Instant,
}

/// Each entry lives until its answer's TTL runs out.
struct UntilValid;

impl Expiry<String, Cached> for UntilValid {
    fn expire_after_create(
        &self,
        _name: &String,
        value: &Cached,
        created_at: Instant,
    ) -> Option<Duration> {
        Some(value.valid_until.saturating_duration_since(created_at))
    }
}

/// The answers, by the name asked (`<reversed address or domain>.<zone>`, which names the
/// zone and the subject together).
pub(crate) struct AnswerCache {
    answers: Cache<String, Cached>,
}

impl Default for AnswerCache {
    fn default() -> Self {
        Self {
            answers: Cache::builder()
                .max_capacity(CAPACITY)
                .expire_after(UntilValid)
                .build(),
        }
    }
}

impl AnswerCache {
    /// The answer about `name`, from the cache or from DNS. Concurrent lookups of one name
    /// share one query; a failed one is not kept.
    pub(crate) async fn lookup(
        &self,
        dns: &MessageAuthenticator,
        name: &str,
    ) -> Result<Cached, Arc<LookupError>> {
        self.answers
            .try_get_with(name.to_owned(), fetch(dns, name))
            .await
    }
}

/// Asks DNS about `name`.
async fn fetch(dns: &MessageAuthenticator, name: &str) -> Result<Cached, LookupError> {
    match ferrymail_dns::address_records(dns, name).await {
        Ok(records) => Ok(Cached {
            addresses: records.addresses.into(),
            valid_until: records.valid_until,
        }),
        Err(LookupError::NotFound { .. }) => Ok(Cached {
            addresses: Arc::from([]),
            valid_until: Instant::now() + NOT_FOUND_TTL,
        }),
        Err(error) => Err(error),
    }
}
