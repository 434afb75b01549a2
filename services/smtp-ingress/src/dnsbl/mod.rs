//! DNS blocklists (RFC 5782): the zones of `session.dnsbl.server.<id>` asked about the
//! client's address, its EHLO name or its sender's domain, their weights added up against
//! `session.dnsbl.threshold` as Postfix's postscreen does.
//!
//! A zone lists a name only when its A answer is among the zone's `replies`. The
//! blocklists' own error answers (`127.0.0.1`, `127.255.255.0/24`, anything outside
//! 127.0.0.0/8) never list: they mean the operator's resolver is being refused, and are
//! logged (at most once a minute per zone) and counted. A zone that cannot be asked in time
//! counts as not listing: a DNS failure never refuses mail.

mod answer;
mod answer_cache;
pub(crate) mod query_name;
mod score;
mod warnings;

use std::net::IpAddr;
use std::time::Duration;

use ferrymail_config::model::dnsbl::DnsblZone;
use ferrymail_dns::MessageAuthenticator;
use tokio::time::Instant;

use crate::metrics::IngressMetrics;
use answer::{Answer, classify};
use answer_cache::AnswerCache;
pub(crate) use score::Score;
use warnings::RateLimitedWarnings;

/// What the zones of one scope are asked about.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Subject<'a> {
    /// The client's address.
    Address(IpAddr),
    /// A domain: the EHLO name or the sender's domain.
    Domain(&'a str),
}

/// The blocklist state of a process: answers cached and warnings rate-limited across
/// sessions.
#[derive(Default)]
pub(crate) struct Blocklists {
    cache: AnswerCache,
    warnings: RateLimitedWarnings,
}

/// How one stage asks: through which resolver, for how long, counted where.
pub(crate) struct Asking<'a> {
    pub(crate) dns: &'a MessageAuthenticator,
    pub(crate) timeout: Duration,
    pub(crate) metrics: &'a IngressMetrics,
}

impl Blocklists {
    /// The score `zones` give `subject`, asking them all at once, within `asking.timeout`.
    pub(crate) async fn score(
        &self,
        zones: &[&DnsblZone],
        subject: Subject<'_>,
        asking: &Asking<'_>,
    ) -> Score {
        let deadline = Instant::now() + asking.timeout;
        let lookups = zones.iter().filter_map(|&zone| {
            let name = match subject {
                Subject::Address(ip) => query_name::for_address(ip, &zone.zone),
                Subject::Domain(domain) => query_name::for_domain(domain, &zone.zone)?,
            };
            Some(async move { (zone, self.ask(zone, &name, deadline, asking).await) })
        });
        let answers = futures::future::join_all(lookups).await;
        Score::of(answers)
    }

    /// Asks `zone` about `name`, by `deadline`; counts and logs the outcome.
    async fn ask(
        &self,
        zone: &DnsblZone,
        name: &str,
        deadline: Instant,
        asking: &Asking<'_>,
    ) -> Answer {
        let lookup = tokio::time::timeout_at(deadline, self.cache.lookup(asking.dns, name)).await;
        let answer = match lookup {
            Ok(Ok(cached)) => classify(zone, &cached.addresses),
            Ok(Err(error)) => {
                if self.warnings.due(&zone.zone, "failed") {
                    tracing::warn!(zone = %zone.zone, %error, "DNS blocklist could not be asked; counted as not listed");
                }
                Answer::Failed
            }
            Err(_) => {
                if self.warnings.due(&zone.zone, "failed") {
                    tracing::warn!(zone = %zone.zone, timeout = ?asking.timeout, "DNS blocklist did not answer in time; counted as not listed");
                }
                Answer::Failed
            }
        };
        if let Answer::ErrorCode(code) = answer
            && self.warnings.due(&zone.zone, "error_answer")
        {
            tracing::warn!(
                zone = %zone.zone,
                %code,
                "DNS blocklist answered with an error code, not a listing: it refuses this resolver (public resolver, rate limit or unregistered use)"
            );
        }
        asking.metrics.dnsbl_lookup(&zone.zone, answer.label());
        answer
    }
}
