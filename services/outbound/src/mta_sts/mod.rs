//! MTA-STS (RFC 8461) for MX delivery: whether a recipient domain publishes a policy, what it
//! says, and what `queue.outbound.tls.mta-sts` makes of it.
//!
//! Before delivering to a domain, its `_mta-sts` TXT record is looked up; when it names a
//! policy id that is not cached, the policy is fetched over HTTPS (`fetch`) and parsed
//! (`policy`). Policies are remembered by domain for their `max_age` (RFC 8461 §5.1), in
//! the store (`shared`: every scheduler of the installation, and one restarted, finds what
//! any fetched) and in this process's memory in front of it; they are fetched again when
//! the TXT id changes, and a remembered policy that has not expired stands in when the
//! lookup or the fetch fails.
//!
//! `optional` applies what domains publish, `require` delivers only to domains with an
//! `enforce` policy, `disable` never looks. A policy that cannot be had is never a reason to
//! bounce: `optional` then delivers as if there were none (RFC 8461 §5), `require` fails
//! the recipients temporarily.

mod fetch;
mod memory;
mod policy;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use ferrymail_config::model::outbound::{Outbound, TlsPolicy};
use ferrymail_dns::{LookupError, MessageAuthenticator};
use rustls::pki_types::CertificateDer;

use super::Outcome;
use crate::metrics::OutboundMetrics;
use crate::tls_report::TlsFailureKind;
pub use fetch::POLICY_PORT;
use fetch::{FetchError, Fetcher};
use memory::unix_millis;
pub use memory::{PolicyMemory, Remembered};
pub use policy::{Mode, Policy, PolicyError, parse};

/// Beyond this many cached domains, expired policies are dropped before another is added.
const CACHE_SWEEP: usize = 10_000;

/// A cached policy and the record id it was fetched for.
struct Cached {
    id: String,
    policy: Arc<Policy>,
    expires: Instant,
}

/// What was found for a domain.
enum Found {
    /// A policy, fetched now or cached.
    Policy(Arc<Policy>),
    /// The domain publishes none.
    Absent,
    /// A lookup or fetch failed and nothing is cached: why, as logged and as TLS reports
    /// name it.
    Unavailable(String, TlsFailureKind),
}

/// The policies of this process: the fetcher, the memory cache and the memory behind it.
pub struct MtaSts {
    fetcher: Fetcher,
    cache: Mutex<HashMap<String, Cached>>,
    shared: Arc<dyn PolicyMemory>,
    metrics: OutboundMetrics,
}

impl MtaSts {
    /// Policies fetched on `port` from hosts whose certificates verify against the public
    /// roots and `extra_roots`, remembered in `shared`; outcomes counted in `metrics`.
    pub fn new(
        extra_roots: &[CertificateDer<'static>],
        port: u16,
        shared: Arc<dyn PolicyMemory>,
        metrics: OutboundMetrics,
    ) -> Self {
        Self {
            fetcher: Fetcher::new(extra_roots, port),
            cache: Mutex::new(HashMap::new()),
            shared,
            metrics,
        }
    }

    /// The policy that applies to delivering to `domain` under `queue.outbound.tls.mta-sts`,
    /// `None` for none; or the temporary failure of every recipient when `require` cannot be
    /// met. `unavailable` hears why a published policy could not be had, and the failure
    /// type of SMTP TLS reports that is.
    pub(crate) async fn policy_for(
        &self,
        settings: &Outbound,
        dns: &MessageAuthenticator,
        domain: &str,
        unavailable: impl FnOnce(&str, TlsFailureKind),
    ) -> Result<Option<Arc<Policy>>, Outcome> {
        let setting = settings.mta_sts;
        if setting == TlsPolicy::Disable {
            return Ok(None);
        }
        let found = self.find(settings, dns, domain).await;
        if let Found::Unavailable(reason, kind) = &found {
            unavailable(reason, *kind);
        }
        self.metrics.mta_sts(match &found {
            Found::Policy(policy) => policy.mode.name(),
            Found::Absent => "absent",
            Found::Unavailable(..) => "unavailable",
        });
        let required = |why: String| {
            Outcome::TempFailed(format!(
                "451 4.7.5 MTA-STS is required (queue.outbound.tls.mta-sts) and {why}"
            ))
        };
        match (setting, found) {
            (TlsPolicy::Require, Found::Policy(policy)) if policy.mode != Mode::Enforce => {
                Err(required(format!(
                    "the policy of {domain} is in {} mode",
                    policy.mode.name()
                )))
            }
            (TlsPolicy::Require, Found::Absent) => {
                Err(required(format!("{domain} publishes no MTA-STS policy")))
            }
            (TlsPolicy::Require, Found::Unavailable(reason, _)) => Err(required(format!(
                "the MTA-STS policy of {domain} is unavailable: {reason}"
            ))),
            (_, Found::Policy(policy)) => Ok(Some(policy)),
            (_, Found::Absent) => Ok(None),
            (_, Found::Unavailable(reason, _)) => {
                tracing::info!(%domain, %reason, "no MTA-STS policy available; delivering as if the domain had none");
                Ok(None)
            }
        }
    }

    /// The exchangers of `items` that `policy` allows, as [`select`] says.
    pub(crate) fn select<T>(
        &self,
        policy: Option<&Policy>,
        domain: &str,
        items: Vec<T>,
        host: impl Fn(&T) -> &str,
    ) -> Result<Vec<T>, Outcome> {
        select(policy, domain, items, host, &self.metrics)
    }

    /// The domain's policy: the cached one while its record id is unchanged, a fresh one
    /// otherwise, the cached one again when a lookup or fetch fails.
    async fn find(&self, settings: &Outbound, dns: &MessageAuthenticator, domain: &str) -> Found {
        let cached = match self.cached(domain) {
            Some(cached) => Some(cached),
            None => self.remembered(domain).await,
        };
        let id = match ferrymail_dns::mta_sts_id(dns, domain).await {
            Ok(id) => id,
            // RFC 8461 §5.1: a cached policy still applies when the record is gone.
            Err(LookupError::NotFound { .. }) => {
                return cached.map_or(Found::Absent, |(_, policy)| Found::Policy(policy));
            }
            Err(error) => {
                let kind = TlsFailureKind::StsPolicyFetchError;
                return fallback(domain, cached, &error.to_string(), kind);
            }
        };
        if let Some((cached_id, policy)) = &cached
            && *cached_id == id
        {
            return Found::Policy(policy.clone());
        }
        let fetched = self
            .fetcher
            .fetch(dns, domain, settings.ip_strategy, settings.timeouts.mta_sts)
            .await;
        match fetched {
            Ok(policy) => {
                let policy = Arc::new(policy);
                tracing::debug!(%domain, %id, mode = policy.mode.name(), mx = %policy.patterns(), max_age = ?policy.max_age, "MTA-STS policy fetched");
                self.remember(domain, id, policy.clone()).await;
                Found::Policy(policy)
            }
            Err(error) => fallback(domain, cached, &error.to_string(), failure_kind(&error)),
        }
    }

    /// The unexpired cached policy of `domain` and its id.
    fn cached(&self, domain: &str) -> Option<(String, Arc<Policy>)> {
        let cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        cache
            .get(domain)
            .filter(|entry| entry.expires > Instant::now())
            .map(|entry| (entry.id.clone(), entry.policy.clone()))
    }

    /// The unexpired policy of `domain` the memory holds, and its id, now in this process's
    /// cache too. A memory that cannot answer leaves the domain as if nothing were remembered.
    async fn remembered(&self, domain: &str) -> Option<(String, Arc<Policy>)> {
        let now_ms = unix_millis(SystemTime::now());
        let found = match self.shared.get(domain, now_ms).await {
            Ok(found) => found?,
            Err(error) => {
                tracing::warn!(%domain, %error, "cannot read the remembered MTA-STS policy");
                return None;
            }
        };
        let policy = Arc::new(found.policy);
        let left = Duration::from_millis(found.expires_ms.saturating_sub(now_ms));
        self.cache_in_memory(domain, found.id.clone(), policy.clone(), left);
        Some((found.id, policy))
    }

    /// Remembers a policy just fetched, in this process and in the memory, for its `max_age`.
    async fn remember(&self, domain: &str, id: String, policy: Arc<Policy>) {
        let max_age = policy.max_age;
        self.cache_in_memory(domain, id.clone(), policy.clone(), max_age);
        let expires_ms = unix_millis(SystemTime::now())
            .saturating_add(u64::try_from(max_age.as_millis()).unwrap_or(u64::MAX));
        let remembered = Remembered {
            id,
            policy: Policy::clone(&policy),
            expires_ms,
        };
        if let Err(error) = self.shared.put(domain, &remembered).await {
            // This process still remembers it; others fetch it themselves.
            tracing::warn!(%domain, %error, "cannot store the MTA-STS policy");
        }
    }

    fn cache_in_memory(&self, domain: &str, id: String, policy: Arc<Policy>, lifetime: Duration) {
        let now = Instant::now();
        let expires = now.checked_add(lifetime).unwrap_or(now);
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= CACHE_SWEEP {
            cache.retain(|_, entry| entry.expires > now);
        }
        cache.insert(
            domain.to_owned(),
            Cached {
                id,
                policy,
                expires,
            },
        );
    }
}

/// What a failed fetch is in SMTP TLS reports (RFC 8460 §4.3.2): a policy host whose
/// certificate does not verify, a policy that cannot be read, or a fetch that failed.
fn failure_kind(error: &FetchError) -> TlsFailureKind {
    match error {
        FetchError::Tls { .. } => TlsFailureKind::StsWebpkiInvalid,
        FetchError::Malformed(_) | FetchError::NotText | FetchError::TooLarge => {
            TlsFailureKind::StsPolicyInvalid
        }
        _ => TlsFailureKind::StsPolicyFetchError,
    }
}

/// After a failed lookup or fetch: the cached policy if there is one.
fn fallback(
    domain: &str,
    cached: Option<(String, Arc<Policy>)>,
    reason: &str,
    kind: TlsFailureKind,
) -> Found {
    match cached {
        Some((_, policy)) => {
            tracing::warn!(%domain, %reason, "MTA-STS policy not refreshed; the cached one applies");
            Found::Policy(policy)
        }
        None => Found::Unavailable(reason.to_owned(), kind),
    }
}

/// The exchangers of `items` that `policy` allows (`host` names each), in their order; or
/// the temporary failure of every recipient when an enforced policy allows none. A
/// `testing` policy allows all, logging those enforcing would refuse.
pub(crate) fn select<T>(
    policy: Option<&Policy>,
    domain: &str,
    items: Vec<T>,
    host: impl Fn(&T) -> &str,
    metrics: &OutboundMetrics,
) -> Result<Vec<T>, Outcome> {
    let Some(policy) = policy else {
        return Ok(items);
    };
    match policy.mode {
        Mode::None => Ok(items),
        Mode::Testing => {
            let refused: Vec<&str> = items
                .iter()
                .map(&host)
                .filter(|name| !policy.allows(name))
                .collect();
            if !refused.is_empty() {
                metrics.mta_sts("testing_mismatch");
                tracing::warn!(%domain, refused = ?refused, mx = %policy.patterns(), "MTA-STS policy in testing mode: enforcing it would refuse these MX hosts");
            }
            Ok(items)
        }
        Mode::Enforce => {
            let total = items.len();
            let allowed: Vec<T> = items
                .into_iter()
                .filter(|item| policy.allows(host(item)))
                .collect();
            if allowed.is_empty() && total > 0 {
                metrics.mta_sts("enforce_mismatch");
                return Err(Outcome::TempFailed(format!(
                    "451 4.7.5 no MX host of {domain} is allowed by its MTA-STS policy (mx: {})",
                    policy.patterns()
                )));
            }
            Ok(allowed)
        }
    }
}

/// Whether `policy` makes verified TLS mandatory (RFC 8461 §4.2).
pub(crate) fn enforced(policy: Option<&Policy>) -> bool {
    policy.is_some_and(|p| p.mode == Mode::Enforce)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts() -> Vec<String> {
        ["mx1.example.org", "backup.other.test", "mx2.example.org"]
            .map(String::from)
            .to_vec()
    }

    fn chosen(mode: &str) -> Result<Vec<String>, Outcome> {
        let text = format!("version: STSv1\nmode: {mode}\nmx: *.example.org\nmax_age: 60\n");
        let policy = policy::parse(&text).unwrap_or_else(|e| panic!("{e}"));
        let metrics = OutboundMetrics::default();
        select(
            Some(&policy),
            "example.org",
            hosts(),
            String::as_str,
            &metrics,
        )
    }

    #[test]
    fn enforce_keeps_the_allowed_hosts_in_order() {
        assert_eq!(
            chosen("enforce"),
            Ok(vec!["mx1.example.org".into(), "mx2.example.org".into()])
        );
    }

    #[test]
    fn testing_and_none_keep_every_host() {
        assert_eq!(chosen("testing"), Ok(hosts()));
        assert_eq!(chosen("none"), Ok(hosts()));
    }

    #[test]
    fn enforce_without_an_allowed_host_is_a_temporary_failure() {
        let policy = policy::parse("version: STSv1\nmode: enforce\nmx: mail.test\nmax_age: 60\n")
            .unwrap_or_else(|e| panic!("{e}"));
        let metrics = OutboundMetrics::default();
        let result = select(
            Some(&policy),
            "example.org",
            hosts(),
            String::as_str,
            &metrics,
        );
        assert!(
            matches!(&result, Err(Outcome::TempFailed(reply)) if reply.starts_with("451 4.7.5 ")),
            "{result:?}"
        );
        assert_eq!(metrics.mta_sts_checks("enforce_mismatch"), 1);
        assert!(enforced(Some(&policy)));
        assert!(!enforced(None));
    }

    #[test]
    fn failed_fetches_get_their_tls_report_result_types() {
        let tls = FetchError::Tls {
            host: "mta-sts.example.org".into(),
            error: "invalid peer certificate: UnknownIssuer".into(),
        };
        assert_eq!(failure_kind(&tls), TlsFailureKind::StsWebpkiInvalid);
        assert_eq!(
            failure_kind(&FetchError::NotText),
            TlsFailureKind::StsPolicyInvalid
        );
        assert_eq!(
            failure_kind(&FetchError::Http("connection reset".into())),
            TlsFailureKind::StsPolicyFetchError
        );
    }
}
