//! Whether answers are DNSSEC-secure, the way Postfix decides with
//! `smtp_dns_support_level = dnssec`: queries go to the name servers of `resolver.*` with
//! the DO and AD bits set (RFC 6840 §5.7), and an answer is secure when the reply carries
//! the AD (authenticated data) bit.
//!
//! ferrymail does not validate signatures itself: it trusts the resolver's AD bit, so the
//! configured resolver must be a validating one the operator trusts, reached over a path
//! nobody can tamper with (typically one on the same host or pod network). A resolver that
//! does not validate never sets AD, and every answer is then "insecure": DANE is not used.
//!
//! The queries go through hickory's name-server pool (the resolver's own transport, UDP with
//! TCP fallback) rather than mail-auth's resolver, which neither sets the bits nor reports
//! the reply's header. Answers are cached for their time to live, at most [`MAX_TTL`];
//! "no such record" for the negative TTL of the zone's SOA (RFC 2308); failures never.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ferrymail_config::model::resolver::Resolver;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::xfer::{DnsHandle, FirstAnswer, RetryDnsHandle};
use hickory_resolver::net::{DnsError as NetDnsError, NetError, NoRecords};
use hickory_resolver::proto::op::{
    DnsRequest, DnsRequestOptions, DnsResponse, Query, ResponseCode,
};
use hickory_resolver::proto::rr::{Name, RData, RecordType};
use hickory_resolver::{NameServerPool, PoolContext, TlsConfig};

use crate::{DnsError, LookupError, resolver_parts};

/// Records of one answer and whether the resolver authenticated them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated<T> {
    /// The records of the asked type (may be empty only when the answer had none).
    pub records: Vec<T>,
    /// Whether the reply carried the AD bit: DNSSEC-secure per the trusted resolver.
    pub secure: bool,
}

/// A TLSA record (RFC 6698 §2.1) as published: its fields uninterpreted, so that the caller
/// decides what is usable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsaRecord {
    /// Certificate usage (0 PKIX-TA, 1 PKIX-EE, 2 DANE-TA, 3 DANE-EE).
    pub usage: u8,
    /// Selector (0 full certificate, 1 SubjectPublicKeyInfo).
    pub selector: u8,
    /// Matching type (0 exact, 1 SHA-256, 2 SHA-512).
    pub matching: u8,
    /// Certificate association data.
    pub data: Vec<u8>,
}

/// Longest an answer is kept, whatever its TTL.
const MAX_TTL: Duration = Duration::from_secs(3600);
/// Most answers kept.
const CACHE_ENTRIES: u64 = 10_000;

/// Asks the configured name servers with the DNSSEC bits set.
#[derive(Clone)]
pub struct DnssecResolver {
    handle: RetryDnsHandle<NameServerPool<TokioRuntimeProvider>>,
    cache: moka::future::Cache<(Name, RecordType), Cached>,
}

/// A kept answer: the records of the asked type, or "no such record".
#[derive(Debug, Clone)]
struct Cached {
    answer: Option<Answer>,
    ttl: Duration,
}

/// The records of the asked type in one reply.
#[derive(Debug, Clone)]
struct Answer {
    records: Arc<[RData]>,
    /// Whether the reply carried the AD bit.
    secure: bool,
    /// The name the records belong to: the one asked, or the end of the CNAME chain the
    /// reply followed from it.
    owner: Name,
}

/// Whether a host's address records are DNSSEC-secure, and whose they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecureAddresses {
    /// Whether the reply (the CNAME chain included) carried the AD bit.
    pub secure: bool,
    /// The host itself, or, for an alias, the name its CNAME chain ends at (lower case,
    /// without the trailing dot).
    pub canonical: String,
}

/// Expires each kept answer after its own TTL.
struct AnswerTtl;

impl moka::Expiry<(Name, RecordType), Cached> for AnswerTtl {
    fn expire_after_create(
        &self,
        _key: &(Name, RecordType),
        value: &Cached,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

impl std::fmt::Debug for DnssecResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnssecResolver").finish_non_exhaustive()
    }
}

/// Builds the DNSSEC-aware resolver for the name servers `settings` describes.
pub fn dnssec_resolver(settings: &Resolver) -> Result<DnssecResolver, DnsError> {
    let (config, options) = resolver_parts(settings)?;
    let attempts = options.attempts.max(1);
    let tls = TlsConfig::new().map_err(|e| DnsError::Build(e.to_string()))?;
    let (_, _, servers) = config.into_parts();
    let context = Arc::new(PoolContext::new(options, tls));
    let pool = NameServerPool::from_config(servers, context, TokioRuntimeProvider::default());
    Ok(DnssecResolver {
        handle: RetryDnsHandle::new(pool, attempts),
        cache: moka::future::Cache::builder()
            .max_capacity(CACHE_ENTRIES)
            .expire_after(AnswerTtl)
            .build(),
    })
}

impl DnssecResolver {
    /// Whether the MX records of `domain` are DNSSEC-secure. A domain without MX records
    /// answers `NotFound`.
    pub async fn mx_is_secure(&self, domain: &str) -> Result<bool, LookupError> {
        Ok(self.query(domain, RecordType::MX, "MX").await?.secure)
    }

    /// Whether the address records of `host` are DNSSEC-secure: its A records, or its AAAA
    /// records when it has no A record (the same order as [`crate::ip_addresses`]).
    pub async fn addresses_are_secure(&self, host: &str) -> Result<bool, LookupError> {
        Ok(self.addresses(host).await?.secure)
    }

    /// [`DnssecResolver::addresses_are_secure`], with the name the address records belong to:
    /// the TLSA base domain of an alias is where its CNAME chain ends (RFC 7672 §2.2.2).
    pub async fn addresses(&self, host: &str) -> Result<SecureAddresses, LookupError> {
        let answer = match self.query(host, RecordType::A, "A").await {
            Err(LookupError::NotFound { .. }) => {
                self.query(host, RecordType::AAAA, "A or AAAA").await?
            }
            other => other?,
        };
        let canonical = answer.owner.to_ascii();
        Ok(SecureAddresses {
            secure: answer.secure,
            canonical: canonical.trim_end_matches('.').to_ascii_lowercase(),
        })
    }

    /// The TLSA records at `name` (`_25._tcp.mx.example.org`), with their DNSSEC status.
    pub async fn tlsa(&self, name: &str) -> Result<Authenticated<TlsaRecord>, LookupError> {
        let answer = self.query(name, RecordType::TLSA, "TLSA").await?;
        let records = answer
            .records
            .iter()
            .filter_map(|data| match data {
                RData::TLSA(tlsa) => Some(TlsaRecord {
                    usage: tlsa.cert_usage.into(),
                    selector: tlsa.selector.into(),
                    matching: tlsa.matching.into(),
                    data: tlsa.cert_data.clone(),
                }),
                _ => None,
            })
            .collect();
        Ok(Authenticated {
            records,
            secure: answer.secure,
        })
    }

    /// The `kind` records of `name`, whether the answer carried AD and whose they are, from
    /// the cache or from one query with DO and AD set. No record of `kind` is `NotFound`.
    async fn query(
        &self,
        name: &str,
        kind: RecordType,
        label: &'static str,
    ) -> Result<Answer, LookupError> {
        let fqdn = Name::from_ascii(format!("{}.", name.trim_end_matches('.'))).map_err(|e| {
            LookupError::Temporary {
                name: name.to_owned(),
                reason: format!("not a DNS name: {e}"),
            }
        })?;
        let key = (fqdn, kind);
        let cached = match self.cache.get(&key).await {
            Some(cached) => cached,
            None => {
                let fetched =
                    self.fetch(&key.0, kind)
                        .await
                        .map_err(|reason| LookupError::Temporary {
                            name: name.to_owned(),
                            reason,
                        })?;
                if !fetched.ttl.is_zero() {
                    self.cache.insert(key, fetched.clone()).await;
                }
                fetched
            }
        };
        cached.answer.ok_or_else(|| LookupError::NotFound {
            kind: label,
            name: name.to_owned(),
        })
    }

    /// Sends one query for `kind` records of `fqdn` with DO and AD set: the answer and how
    /// long it may be kept, or why the lookup failed (temporarily).
    async fn fetch(&self, fqdn: &Name, kind: RecordType) -> Result<Cached, String> {
        let mut options = DnsRequestOptions::default();
        options.edns_set_dnssec_ok = true;
        let mut request = DnsRequest::from_query(Query::query(fqdn.clone(), kind), options);
        // RFC 6840 §5.7: AD in a query asks for AD in the reply, even without DO.
        request.metadata.authentic_data = true;
        match self.handle.send(request).first_answer().await {
            Ok(response) => Ok(answered(&response, kind)),
            Err(NetError::Dns(NetDnsError::NoRecordsFound(NoRecords {
                response_code: ResponseCode::NXDomain | ResponseCode::NoError,
                negative_ttl,
                ..
            }))) => Ok(Cached {
                answer: None,
                ttl: kept_for(negative_ttl.unwrap_or(0)),
            }),
            Err(error) => Err(error.to_string()),
        }
    }
}

/// What a reply says about `kind`: its records, with the AD bit, kept for their shortest
/// TTL; or "no such record", kept for the negative TTL of the SOA it carries (if any).
fn answered(response: &DnsResponse, kind: RecordType) -> Cached {
    let records: Vec<&hickory_resolver::proto::rr::Record> = response
        .answers
        .iter()
        .filter(|record| record.record_type() == kind)
        .collect();
    match (
        records.iter().map(|record| record.ttl).min(),
        records.first(),
    ) {
        (Some(ttl), Some(first)) => Cached {
            answer: Some(Answer {
                records: records.iter().map(|record| record.data.clone()).collect(),
                secure: response.metadata.authentic_data,
                owner: first.name.clone(),
            }),
            ttl: kept_for(ttl),
        },
        _ => Cached {
            answer: None,
            ttl: kept_for(response.negative_ttl().unwrap_or(0)),
        },
    }
}

/// How long to keep an answer of `ttl` seconds: that long, at most [`MAX_TTL`].
fn kept_for(ttl: u32) -> Duration {
    Duration::from_secs(u64::from(ttl)).min(MAX_TTL)
}
