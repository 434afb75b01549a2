//! `resolver.*`: the DNS resolver used for SPF, DKIM, ARC and DMARC (and MX delivery), in
//! Stalwart's form: the system's configuration, a public service, or custom name servers
//! written `[udp://|tcp://]IP[:PORT]`.
//!
//! Only the settings are read here; the resolver itself is built by the `dns` crate, since
//! this crate does no network I/O.

use std::time::Duration;

use super::bounds::{require_nonzero, require_positive};
use crate::keys;
use crate::reader::TableReader;

// The values of this section's keys, where other crates have always found them.
pub use crate::value::{NameServer, NameServerProtocol, ResolverType};

/// `resolver.*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolver {
    /// `resolver.type`.
    pub kind: ResolverType,
    /// `resolver.custom`: the name servers of `type = "custom"`.
    pub custom: Vec<NameServer>,
    /// `resolver.concurrency`: name servers asked at once.
    pub concurrency: u32,
    /// `resolver.timeout`: how long one query waits for an answer.
    pub timeout: Duration,
    /// `resolver.attempts`: tries of a query before it fails.
    pub attempts: u32,
    /// `resolver.try-tcp-on-error`: retry over TCP when UDP fails.
    pub try_tcp_on_error: bool,
    /// `resolver.preserve-intermediates`: keep CNAME steps in answers.
    pub preserve_intermediates: bool,
}

pub(crate) fn read(root: &TableReader<'_>) -> Option<Resolver> {
    let t = root.table("resolver");
    let kind = t.get(&keys::RESOLVER_TYPE);
    let custom = t.get(&keys::RESOLVER_CUSTOM);
    let concurrency = t.get(&keys::RESOLVER_CONCURRENCY);
    let timeout = t.get(&keys::RESOLVER_TIMEOUT);
    let attempts = t.get(&keys::RESOLVER_ATTEMPTS);
    let try_tcp_on_error = t.get(&keys::RESOLVER_TRY_TCP_ON_ERROR);
    let preserve_intermediates = t.get(&keys::RESOLVER_PRESERVE_INTERMEDIATES);
    require_positive(&t, "concurrency", concurrency);
    require_positive(&t, "attempts", attempts);
    require_nonzero(&t, "timeout", timeout);
    match (kind, custom.as_deref()) {
        (Some(ResolverType::Custom), Some([])) => t.report(
            "custom",
            "type = \"custom\" needs at least one name server here",
        ),
        (Some(kind), Some([_, ..])) if kind != ResolverType::Custom => t.report(
            "custom",
            format!("name servers are used only with type = \"custom\" (type is \"{kind}\")"),
        ),
        _ => {}
    }
    Some(Resolver {
        kind: kind?,
        custom: custom?,
        concurrency: concurrency?,
        timeout: timeout?,
        attempts: attempts?,
        try_tcp_on_error: try_tcp_on_error?,
        preserve_intermediates: preserve_intermediates?,
    })
}
