//! MX delivery (RFC 5321 §5.1): the recipients of one domain go in one transaction to the
//! domain's mail exchangers, tried in preference order (equal preferences in random order),
//! or to the domain's own address when it has no MX record (the implicit MX).
//!
//! What ends an attempt for good: a null MX (RFC 7505, `556 5.1.10`) and a domain without MX
//! or address records, NXDOMAIN included (`550 5.1.2`). A DNS failure is always temporary:
//! mail is never bounced because DNS could not be asked. A host that refuses the connection,
//! does not greet with `220`, or cannot give the required TLS, is passed over for the next
//! one (at most `limits.mx` hosts and `limits.multihomed` addresses each); when none takes
//! the message, the recipients fail temporarily with the last host's reason.
//!
//! STARTTLS (`queue.outbound.tls.starttls`): `optional`, the default, encrypts whenever the
//! host offers STARTTLS without verifying its certificate — opportunistic TLS protects
//! against passive eavesdropping, and a certificate check that cannot be enforced would only
//! push mail back to clear text — and retries in clear text on a new connection when the
//! handshake fails, as Stalwart and Postfix do. `require` delivers only over a session whose
//! certificate verifies for the MX host name (or any certificate with
//! `tls.allow-invalid-certs`); `disable` never starts TLS. A host with DNSSEC-secure TLSA
//! records must instead satisfy them, whatever `starttls` says (DANE, `tls.dane`, see
//! `dane`).
//!
//! MTA-STS (`queue.outbound.tls.mta-sts`, module `mta_sts`): a domain's `enforce` policy
//! keeps only the MX hosts it names and requires STARTTLS with a certificate that verifies
//! for the host, whatever `starttls` and `allow-invalid-certs` say; when no host qualifies,
//! the recipients fail temporarily. Where DANE applies to a host, DANE decides its TLS
//! (RFC 8461 §2).
//!
//! Dead addresses (`MxContext::hosts`): an address the caller remembers as dead is passed
//! over without a connection; when all are, the recipients are deferred without an attempt.
//! Only reaching a host (connection, greeting, EHLO) is reported, never its TLS, which is
//! the recipient domain's policy.
//!
//! Sessions are kept open for the next message to the same host and address under the same
//! STARTTLS requirement (`pool`), with a remote's default limits: 50 messages, 3 refusals.
//! DANE sessions are not kept: each is verified against its own delivery's TLSA records.

use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};

use bytes::Bytes;
use ferrymail_config::model::outbound::{IpStrategy, Outbound, TlsPolicy};
use ferrymail_dns::{LookupError, MessageAuthenticator, MxHost};
use ferrymail_rpc::queue::{Envelope, Recipient};
use futures::Stream;
use rand::seq::SliceRandom;

use super::dane::{self, Dane, HostDane};
use super::host_health::{Connection, HostHealth, SUSPENDED, Suspension, of_opening};
use super::mta_sts::{self, MtaSts, Policy};
use super::pool::{ReuseLimits, SessionPool};
use super::session::{Session, connect};
use super::tls_report::{DomainReporter, TlsFailure, TlsFailureKind, TlsResults, session_failure};
use super::transaction::{settle, unanswered};
use super::{Deadline, DeliveryError, Outcome};
use ferrymail_tls::TlsSettings;

/// What MX delivery of one message needs besides the recipients and the body.
pub struct MxContext<'a> {
    /// The resolver, or why it could not be built.
    pub dns: Result<&'a MessageAuthenticator, &'a str>,
    /// TLS client settings.
    pub tls: &'a TlsSettings,
    /// MTA-STS policies.
    pub mta_sts: &'a MtaSts,
    /// `queue.outbound.*`.
    pub settings: &'a Outbound,
    /// Our name in EHLO.
    pub helo: &'a str,
    /// The envelope.
    pub envelope: &'a Envelope,
    /// DANE (`tls.dane`).
    pub dane: Dane<'a>,
    /// MX sessions kept open between messages.
    pub sessions: &'a SessionPool,
    /// After it, the message is not handed over.
    pub deadline: &'a Deadline,
    /// The memory of addresses whose connections keep failing, when dead destinations are
    /// on: a dead address is passed over without a connection.
    pub hosts: Option<&'a dyn HostHealth>,
    /// Where the TLS of each session is reported, when SMTP TLS reports are on.
    pub tls_results: Option<&'a dyn TlsResults>,
}

/// A mail exchanger to try: its name (for TLS and replies) and, when already known, its
/// addresses.
struct Exchanger {
    host: String,
    addresses: Option<Vec<IpAddr>>,
}

/// Delivers `recipients` (by recipient index) by MX: one transaction per recipient domain,
/// the domains at once. `body` opens the message body; it is called once per transaction.
#[tracing::instrument(name = "delivery.mx", skip_all, fields(recipients = recipients.len()))]
pub async fn deliver<S, E>(
    context: &MxContext<'_>,
    recipients: Vec<(u32, Recipient)>,
    body: impl Fn() -> S,
) -> Vec<(u32, Outcome)>
where
    S: Stream<Item = Result<Bytes, E>>,
    E: std::fmt::Display,
{
    let mut domains: Vec<(String, Vec<(u32, Recipient)>)> = Vec::new();
    for (index, recipient) in recipients {
        let domain = domain_of(&recipient.address);
        match domains.iter_mut().find(|(d, _)| *d == domain) {
            Some((_, group)) => group.push((index, recipient)),
            None => domains.push((domain, vec![(index, recipient)])),
        }
    }
    let deliveries = domains.iter().map(|(domain, group)| {
        let body = &body;
        async move {
            let addresses: Vec<Recipient> = group.iter().map(|(_, r)| r.clone()).collect();
            let outcomes = deliver_domain(context, domain, &addresses, body).await;
            group.iter().map(|(index, _)| *index).zip(outcomes)
        }
    });
    futures::future::join_all(deliveries)
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// The domain of `address`, lower case (empty when it has none).
fn domain_of(address: &str) -> String {
    address
        .rsplit_once('@')
        .map_or("", |(_, domain)| domain)
        .trim_end_matches('.')
        .to_ascii_lowercase()
}

/// Delivers the message to `recipients`, all of `domain`; one outcome per recipient.
async fn deliver_domain<S, E>(
    context: &MxContext<'_>,
    domain: &str,
    recipients: &[Recipient],
    body: &impl Fn() -> S,
) -> Vec<Outcome>
where
    S: Stream<Item = Result<Bytes, E>>,
    E: std::fmt::Display,
{
    let exchangers = match context.dns {
        Ok(dns) => {
            let settings = context.settings;
            exchangers(dns, domain, settings.max_mx, settings.ip_strategy).await
        }
        Err(reason) => Err(Outcome::TempFailed(format!(
            "451 4.4.3 no DNS resolver: {reason}"
        ))),
    };
    // The MX answer first: a domain that receives no mail bounces whatever MTA-STS says.
    let policy = match exchangers {
        Ok(_) => {
            let unavailable = |reason: &str, kind| {
                let reporter = DomainReporter {
                    sink: context.tls_results,
                    domain,
                    sts: None,
                };
                reporter.sts_unavailable(reason, kind);
            };
            mta_sts_policy(context, domain, unavailable).await
        }
        Err(_) => Ok(None),
    };
    let policy = match policy {
        Ok(policy) => policy,
        Err(outcome) => return vec![outcome; recipients.len()],
    };
    let policy = policy.as_deref();
    let reporter = DomainReporter {
        sink: context.tls_results,
        domain,
        sts: policy,
    };
    let exchangers = exchangers.and_then(|exchangers| {
        context
            .mta_sts
            .select(policy, domain, exchangers, |e| &e.host)
    });
    let exchangers = match exchangers {
        Ok(exchangers) => exchangers,
        Err(outcome) => return vec![outcome; recipients.len()],
    };
    let domain_secure = match dnssec_signed(context, domain, &exchangers).await {
        Ok(secure) => secure,
        Err(reason) => return vec![Outcome::TempFailed(reason); recipients.len()],
    };
    let mut outcomes: Vec<Option<Outcome>> = vec![None; recipients.len()];
    let mut failure = None;
    // Addresses passed over as dead, and whether any other was connected to.
    let (mut skipped, mut connected) = (Vec::new(), false);
    for exchanger in exchangers {
        let addresses = match (exchanger.addresses, context.dns) {
            (Some(addresses), _) => addresses,
            (None, Ok(dns)) => match ferrymail_dns::ip_addresses(
                dns,
                &exchanger.host,
                context.settings.ip_strategy,
            )
            .await
            {
                Ok(addresses) => addresses,
                Err(error) => {
                    failure = Some(error.to_string());
                    continue;
                }
            },
            (None, Err(_)) => continue,
        };
        let host_dane = match context.dane.host(domain_secure, &exchanger.host).await {
            Ok(host_dane) => host_dane,
            Err(error) => {
                let detail = error.reason.clone();
                let tls = TlsFailure {
                    kind: error.kind,
                    detail,
                };
                reporter.session(&exchanger.host, None, true, Some(tls));
                failure = Some(error.reason);
                continue;
            }
        };
        let dane = matches!(host_dane, HostDane::Required(_));
        let max_addresses = usize::try_from(context.settings.max_multihomed).unwrap_or(usize::MAX);
        for ip in addresses.into_iter().take(max_addresses) {
            if let Some(suspension) = suspended(context, ip).await {
                skipped.push(suspension);
                continue;
            }
            connected = true;
            let target = Target {
                host: &exchanger.host,
                mta_sts_enforced: mta_sts::enforced(policy),
                dane: &host_dane,
            };
            let connection = Mutex::new(Connection::Unknown);
            let delivery = (body(), &mut outcomes[..], &connection);
            let result = attempt(context, target, ip, recipients, delivery).await;
            match &result {
                Ok(()) => reporter.session(&exchanger.host, Some(ip), dane, None),
                Err(error) => {
                    if let Some(tls) = session_failure(error, dane) {
                        reporter.session(&exchanger.host, Some(ip), dane, Some(tls));
                    }
                }
            }
            if let Some(hosts) = context.hosts {
                let connection = connection
                    .into_inner()
                    .unwrap_or_else(PoisonError::into_inner);
                hosts.report(ip, connection).await;
            }
            let Err(error) = result else {
                return settle(outcomes, None);
            };
            let place = format!("{}[{ip}]:{}", exchanger.host, context.settings.mx_port);
            let reason = unanswered(&place, error);
            tracing::debug!(%domain, reason = reason.reply(), "MX host failed");
            // Once a host has answered for a recipient, the transaction is under way there:
            // the rest wait for the next attempt rather than going to another host. Past the
            // deadline, no other host may be given the message either.
            if outcomes.iter().any(Option::is_some) || matches!(reason, Outcome::Abandoned(_)) {
                return settle(outcomes, Some(reason));
            }
            failure = Some(reason.reply().to_owned());
        }
    }
    if !connected && let Some(deferral) = every_host_dead(skipped) {
        return vec![deferral; recipients.len()];
    }
    let failure =
        failure.unwrap_or_else(|| format!("451 4.4.4 no address for the MX hosts of {domain}"));
    settle(outcomes, Some(Outcome::TempFailed(failure)))
}

/// Why address `ip` must not be connected to now, if it is dead.
async fn suspended(context: &MxContext<'_>, ip: IpAddr) -> Option<Suspension> {
    context.hosts?.admit(ip).await.err()
}

/// When every address was passed over as dead: the recipients wait, without an attempt,
/// until the first of them may be probed.
fn every_host_dead(skipped: Vec<Suspension>) -> Option<Outcome> {
    let first = skipped.into_iter().min_by_key(|s| s.until_ms)?;
    Some(Outcome::Deferred {
        until_ms: first.until_ms,
        reason: format!("{SUSPENDED}: {}", first.reason),
    })
}

/// The MTA-STS policy that applies to `domain` (none for an address literal), or the
/// outcome for every recipient when `mta-sts = "require"` cannot be met.
async fn mta_sts_policy(
    context: &MxContext<'_>,
    domain: &str,
    unavailable: impl FnOnce(&str, TlsFailureKind),
) -> Result<Option<std::sync::Arc<Policy>>, Outcome> {
    let (Ok(dns), None) = (context.dns, address_literal(domain)) else {
        return Ok(None);
    };
    let settings = context.settings;
    context
        .mta_sts
        .policy_for(settings, dns, domain, unavailable)
        .await
}

/// Whether the records naming `domain`'s exchangers are DNSSEC-secure (for DANE): its MX
/// records, or its own address records for an implicit MX; never for an address literal.
async fn dnssec_signed(
    context: &MxContext<'_>,
    domain: &str,
    exchangers: &[Exchanger],
) -> Result<bool, String> {
    if address_literal(domain).is_some() {
        return Ok(false);
    }
    let implicit = exchangers.iter().any(|e| e.addresses.is_some());
    context.dane.domain_is_secure(domain, implicit).await
}

/// The exchangers of `domain`, most preferred first, at most `limit`; or the outcome for every
/// recipient when there is none to try.
async fn exchangers(
    dns: &MessageAuthenticator,
    domain: &str,
    limit: u32,
    strategy: IpStrategy,
) -> Result<Vec<Exchanger>, Outcome> {
    if let Some(literal) = address_literal(domain) {
        return Ok(vec![Exchanger {
            host: literal.to_string(),
            addresses: Some(vec![literal]),
        }]);
    }
    if domain.is_empty() {
        return Err(Outcome::PermFailed(
            "550 5.1.3 the recipient address has no domain".into(),
        ));
    }
    match ferrymail_dns::mx_hosts(dns, domain).await {
        Ok(hosts) if !hosts.is_empty() => preference_order(domain, hosts, limit),
        Ok(_) | Err(LookupError::NotFound { .. }) => implicit_mx(dns, domain, strategy).await,
        Err(error) => Err(Outcome::TempFailed(format!("451 4.4.3 {error}"))),
    }
}

/// The MX hosts in preference order, equal preferences shuffled (RFC 5321 §5.1), or the
/// permanent failure of a null MX (RFC 7505).
fn preference_order(
    domain: &str,
    mut hosts: Vec<MxHost>,
    limit: u32,
) -> Result<Vec<Exchanger>, Outcome> {
    // A null MX is "." (an empty name once the root dot is trimmed).
    hosts.retain(|mx| !mx.host.is_empty());
    if hosts.is_empty() {
        return Err(Outcome::PermFailed(format!(
            "556 5.1.10 {domain} does not accept mail (null MX, RFC 7505)"
        )));
    }
    hosts.shuffle(&mut rand::rng());
    hosts.sort_by_key(|mx| mx.preference);
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    Ok(hosts
        .into_iter()
        .take(limit)
        .map(|mx| Exchanger {
            host: mx.host,
            addresses: None,
        })
        .collect())
}

/// The domain itself as its only exchanger, when it has an address (RFC 5321 §5.1).
async fn implicit_mx(
    dns: &MessageAuthenticator,
    domain: &str,
    strategy: IpStrategy,
) -> Result<Vec<Exchanger>, Outcome> {
    match ferrymail_dns::ip_addresses(dns, domain, strategy).await {
        Ok(addresses) if !addresses.is_empty() => Ok(vec![Exchanger {
            host: domain.to_owned(),
            addresses: Some(addresses),
        }]),
        Ok(_) | Err(LookupError::NotFound { .. }) => Err(Outcome::PermFailed(format!(
            "550 5.1.2 {domain} has no MX or address record: the domain does not receive mail"
        ))),
        Err(error) => Err(Outcome::TempFailed(format!("451 4.4.3 {error}"))),
    }
}

/// The address of a domain written as an address literal (`[192.0.2.1]`,
/// `[IPv6:2001:db8::1]`, RFC 5321 §4.1.3).
fn address_literal(domain: &str) -> Option<IpAddr> {
    let inner = domain.strip_prefix('[')?.strip_suffix(']')?;
    match inner.get(..5) {
        Some(tag) if tag.eq_ignore_ascii_case("ipv6:") => inner.get(5..)?.parse().ok(),
        _ => inner.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::from),
    }
}

/// An MX host and the transport security it must give.
struct Target<'a> {
    /// Its name (for TLS and replies).
    host: &'a str,
    /// Its domain has an MTA-STS policy in `enforce` mode.
    mta_sts_enforced: bool,
    /// What DANE requires of it.
    dane: &'a HostDane,
}

/// Messages one MX session carries before it is replaced and refusals after which it is
/// closed (the defaults of a remote's `limits.requests` and `limits.errors`), and idle
/// sessions kept per host, address and STARTTLS requirement.
const MX_REUSE: ReuseLimits = ReuseLimits {
    requests: 50,
    errors: 3,
    idle: 8,
};

impl Target<'_> {
    /// Which kept sessions a delivery to this target at `ip` may use: those opened to the
    /// same host and address under the same STARTTLS requirement. None under DANE, whose
    /// sessions are verified against the TLSA records of their own delivery.
    fn reuse_key(&self, context: &MxContext<'_>, ip: IpAddr) -> Option<String> {
        if matches!(self.dane, HostDane::Required(_)) {
            return None;
        }
        let (starttls, allow_invalid_certs) = starttls_requirement(context, self.mta_sts_enforced);
        Some(format!(
            "{}\u{0}{ip}\u{0}{}\u{0}{allow_invalid_certs}",
            self.host.to_ascii_lowercase(),
            starttls.as_str()
        ))
    }
}

/// One delivery to `target` at `ip`, with its DANE policy, or else the STARTTLS policy
/// (verified STARTTLS under an enforced MTA-STS policy), over a session kept from an earlier
/// delivery when one is open; fills `outcomes` as the host answers, then keeps the session
/// for the next message or closes it; notes in `connection` whether the host was reached.
async fn attempt(
    context: &MxContext<'_>,
    target: Target<'_>,
    ip: IpAddr,
    recipients: &[Recipient],
    (body, outcomes, connection): (
        impl Stream<Item = Result<Bytes, impl std::fmt::Display>>,
        &mut [Option<Outcome>],
        &Mutex<Connection>,
    ),
) -> Result<(), DeliveryError> {
    let key = target.reuse_key(context, ip);
    let note = |noted| *connection.lock().unwrap_or_else(PoisonError::into_inner) = noted;
    let sessions = context.sessions;
    // Only reaching the host counts for or against its address: what TLS it must then give
    // is the recipient domain's policy (DANE, MTA-STS), and the same address may serve
    // domains with other policies.
    let opening = || async {
        let opened = open(context, ip).await;
        note(match &opened {
            Ok(_) => Connection::Reached,
            Err(error) => of_opening(error),
        });
        secure(context, &target, ip, opened?).await
    };
    let pooled = sessions
        .transact(
            key.as_deref(),
            opening,
            (context.envelope, recipients),
            body,
            context.deadline,
            outcomes,
        )
        .await?;
    // A kept session carried it, or a new one was opened.
    note(Connection::Reached);
    sessions
        .give_back(key.as_deref(), pooled, outcomes, MX_REUSE)
        .await;
    Ok(())
}

/// `session`, new, to `target` at `ip`, with the security it must give.
async fn secure(
    context: &MxContext<'_>,
    target: &Target<'_>,
    ip: IpAddr,
    session: Session,
) -> Result<Session, DeliveryError> {
    match target.dane {
        HostDane::Required(policy) => {
            dane::secure(session, policy, context.tls, context.dane.metrics).await
        }
        HostDane::NotApplicable => {
            let enforced = target.mta_sts_enforced;
            starttls_policy(context, target.host, ip, session, enforced).await
        }
    }
}

/// The STARTTLS policy and whether any certificate will do: `tls.starttls` and
/// `tls.allow-invalid-certs`, or verified STARTTLS when an MTA-STS policy is `enforced`.
fn starttls_requirement(context: &MxContext<'_>, enforced: bool) -> (TlsPolicy, bool) {
    let settings = context.settings;
    if enforced {
        (TlsPolicy::Require, false)
    } else {
        (settings.starttls, settings.allow_invalid_certs)
    }
}

/// The session after applying the STARTTLS policy (`tls.starttls`, or verified STARTTLS when
/// an MTA-STS policy is `enforced`) to a host without DANE.
async fn starttls_policy(
    context: &MxContext<'_>,
    host: &str,
    ip: IpAddr,
    session: Session,
    enforced: bool,
) -> Result<Session, DeliveryError> {
    let (starttls, allow_invalid_certs) = starttls_requirement(context, enforced);
    Ok(match starttls {
        TlsPolicy::Disable => session,
        TlsPolicy::Optional if !session.offers_starttls() => session,
        TlsPolicy::Require if !session.offers_starttls() => {
            session.quit().await;
            return Err(DeliveryError::StartTlsNotOffered);
        }
        TlsPolicy::Require => {
            session
                .starttls(host, allow_invalid_certs, context.tls)
                .await?
        }
        TlsPolicy::Optional => match session.starttls(host, true, context.tls).await {
            Ok(session) => session,
            Err(error) => {
                tracing::info!(%host, %ip, %error, "STARTTLS failed; delivering in clear text (queue.outbound.tls.starttls = \"optional\")");
                open(context, ip).await?
            }
        },
    })
}

/// Connects to `ip` on the MX port, reads the greeting and says EHLO.
async fn open(context: &MxContext<'_>, ip: IpAddr) -> Result<Session, DeliveryError> {
    let settings = context.settings;
    let stream = connect(
        &ip.to_string(),
        settings.mx_port,
        false,
        false,
        context.tls,
        settings.timeouts.connect,
    )
    .await?;
    Session::open(stream, false, context.helo, settings.timeouts).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mx(preference: u16, host: &str) -> MxHost {
        MxHost {
            preference,
            host: host.into(),
        }
    }

    fn names(exchangers: &[Exchanger]) -> Vec<&str> {
        exchangers.iter().map(|e| e.host.as_str()).collect()
    }

    #[test]
    fn hosts_go_in_preference_order_up_to_the_limit() {
        let hosts = vec![mx(30, "c"), mx(10, "a"), mx(20, "b"), mx(40, "d")];
        let ordered = preference_order("example.org", hosts, 3).unwrap_or_default();
        assert_eq!(names(&ordered), ["a", "b", "c"]);
    }

    #[test]
    fn a_null_mx_is_a_permanent_failure() {
        let result = preference_order("example.org", vec![mx(0, "")], 5).err();
        assert!(
            matches!(&result, Some(Outcome::PermFailed(reply)) if reply.starts_with("556 5.1.10 ")),
            "{result:?}"
        );
    }

    #[test]
    fn domains_and_address_literals() {
        assert_eq!(domain_of("Bob@Example.ORG."), "example.org");
        assert_eq!(domain_of("postmaster"), "");
        assert_eq!(
            address_literal("[127.0.0.1]"),
            Some(IpAddr::from([127, 0, 0, 1]))
        );
        assert_eq!(
            address_literal("[ipv6:::1]"),
            Some(IpAddr::from(std::net::Ipv6Addr::LOCALHOST))
        );
        assert_eq!(address_literal("[example.org]"), None);
        assert_eq!(address_literal("example.org"), None);
    }
}
