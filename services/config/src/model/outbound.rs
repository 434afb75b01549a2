//! `queue.outbound.*` beyond routing: how MX delivery connects to the recipient domains'
//! mail exchangers (port, how many hosts and addresses, TLS policies, time limits), with
//! Stalwart's names and defaults.

use std::time::Duration;

use super::bounds::{require_nonzero, require_positive};
use crate::keys;
use crate::reader::TableReader;

// The values of this section's keys, where other crates have always found them.
pub use crate::value::{IpStrategy, TlsPolicy};

/// `queue.outbound.timeouts.*`: time limits of each stage of an MX delivery session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// `connect`: opening the TCP connection.
    pub connect: Duration,
    /// `greeting`: the server's `220`.
    pub greeting: Duration,
    /// `tls`: the STARTTLS command and handshake.
    pub tls: Duration,
    /// `ehlo`: the EHLO reply.
    pub ehlo: Duration,
    /// `mail-from`: the MAIL FROM reply.
    pub mail_from: Duration,
    /// `rcpt-to`: each RCPT TO reply.
    pub rcpt_to: Duration,
    /// `data`: DATA, the body and the final reply.
    pub data: Duration,
    /// `mta-sts`: fetching a recipient domain's MTA-STS policy.
    pub mta_sts: Duration,
}

impl Timeouts {
    /// The same limit for every stage (relays have one `timeout`).
    pub fn uniform(limit: Duration) -> Self {
        Self {
            connect: limit,
            greeting: limit,
            tls: limit,
            ehlo: limit,
            mail_from: limit,
            rcpt_to: limit,
            data: limit,
            mta_sts: limit,
        }
    }
}

/// `queue.outbound.*` for MX delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outbound {
    /// `queue.outbound.mx-port`: the port MX hosts are connected on.
    pub mx_port: u16,
    /// `queue.outbound.limits.mx`: most MX hosts tried per attempt.
    pub max_mx: u32,
    /// `queue.outbound.limits.multihomed`: most addresses tried per MX host.
    pub max_multihomed: u32,
    /// `queue.outbound.ip-strategy`.
    pub ip_strategy: IpStrategy,
    /// `queue.outbound.tls.starttls`.
    pub starttls: TlsPolicy,
    /// `queue.outbound.tls.allow-invalid-certs`.
    pub allow_invalid_certs: bool,
    /// `queue.outbound.tls.dane`: DANE (RFC 7672) for MX hosts with DNSSEC-secure TLSA records.
    pub dane: TlsPolicy,
    /// `queue.outbound.tls.mta-sts`.
    pub mta_sts: TlsPolicy,
    /// `queue.outbound.timeouts.*`.
    pub timeouts: Timeouts,
}

pub(crate) fn read(outbound: &TableReader<'_>) -> Option<Outbound> {
    let mx_port = outbound.get(&keys::QUEUE_OUTBOUND_MX_PORT);
    if mx_port == Some(0) {
        outbound.report("mx-port", "must be a port between 1 and 65535");
    }
    let limits = outbound.table("limits");
    let max_mx = limits.get(&keys::QUEUE_OUTBOUND_LIMITS_MX);
    let max_multihomed = limits.get(&keys::QUEUE_OUTBOUND_LIMITS_MULTIHOMED);
    require_positive(&limits, "mx", max_mx);
    require_positive(&limits, "multihomed", max_multihomed);
    let ip_strategy = outbound.get(&keys::QUEUE_OUTBOUND_IP_STRATEGY);
    let tls = outbound.table("tls");
    let starttls = tls.get(&keys::QUEUE_OUTBOUND_TLS_STARTTLS);
    let allow_invalid_certs = tls.get(&keys::QUEUE_OUTBOUND_TLS_ALLOW_INVALID_CERTS);
    let dane = tls.get(&keys::QUEUE_OUTBOUND_TLS_DANE);
    let mta_sts = tls.get(&keys::QUEUE_OUTBOUND_TLS_MTA_STS);
    let timeouts = read_timeouts(&outbound.table("timeouts"));
    Some(Outbound {
        mx_port: mx_port?,
        max_mx: max_mx?,
        max_multihomed: max_multihomed?,
        ip_strategy: ip_strategy?,
        starttls: starttls?,
        allow_invalid_certs: allow_invalid_certs?,
        dane: dane?,
        mta_sts: mta_sts?,
        timeouts: timeouts?,
    })
}

fn read_timeouts(t: &TableReader<'_>) -> Option<Timeouts> {
    // Every key is read before any is unwrapped, so that each problem is reported.
    let read = |key: &crate::key::Key<Duration>| {
        let value = t.get(key);
        require_nonzero(t, key.name(), value);
        value
    };
    let connect = read(&keys::QUEUE_OUTBOUND_TIMEOUTS_CONNECT);
    let greeting = read(&keys::QUEUE_OUTBOUND_TIMEOUTS_GREETING);
    let tls = read(&keys::QUEUE_OUTBOUND_TIMEOUTS_TLS);
    let ehlo = read(&keys::QUEUE_OUTBOUND_TIMEOUTS_EHLO);
    let mail_from = read(&keys::QUEUE_OUTBOUND_TIMEOUTS_MAIL_FROM);
    let rcpt_to = read(&keys::QUEUE_OUTBOUND_TIMEOUTS_RCPT_TO);
    let data = read(&keys::QUEUE_OUTBOUND_TIMEOUTS_DATA);
    let mta_sts = read(&keys::QUEUE_OUTBOUND_TIMEOUTS_MTA_STS);
    Some(Timeouts {
        connect: connect?,
        greeting: greeting?,
        tls: tls?,
        ehlo: ehlo?,
        mail_from: mail_from?,
        rcpt_to: rcpt_to?,
        data: data?,
        mta_sts: mta_sts?,
    })
}
