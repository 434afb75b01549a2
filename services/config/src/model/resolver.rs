//! `resolver.*`: the DNS resolver used for SPF, DKIM, ARC and DMARC (and MX delivery), in
//! Stalwart's form: the system's configuration, a public service, or custom name servers
//! written `[udp://|tcp://]IP[:PORT]`.
//!
//! Only the settings are read here; the resolver itself is built by the `dns` crate, since
//! this crate does no network I/O.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::bounds::{require_nonzero, require_positive};
use crate::keys;
use crate::reader::TableReader;
use crate::tree::Node;
use crate::value::{Context, FromNode, Invalid, ValueType, enum_value};

enum_value! {
    /// Where the resolver sends its queries (`resolver.type`).
    pub enum ResolverType {
        /// The system's configuration (`/etc/resolv.conf`).
        System = "system",
        /// The name servers listed in `resolver.custom`.
        Custom = "custom",
        /// Cloudflare's public service.
        Cloudflare = "cloudflare",
        /// Cloudflare's public service over TLS.
        CloudflareTls = "cloudflare-tls",
        /// Quad9's public service.
        Quad9 = "quad9",
        /// Quad9's public service over TLS.
        Quad9Tls = "quad9-tls",
        /// Google's public service.
        Google = "google",
    }
}

/// How a custom name server is spoken to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameServerProtocol {
    /// UDP (and TCP when `try-tcp-on-error` says so).
    Udp,
    /// TCP only.
    Tcp,
}

/// One `resolver.custom` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameServer {
    /// UDP or TCP.
    pub protocol: NameServerProtocol,
    /// Address and port (53 when not written).
    pub address: SocketAddr,
}

impl NameServer {
    /// Reads `[udp://|tcp://]IP[:PORT]`; IPv6 addresses with a port go in brackets.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (protocol, rest) = match text.split_once("://") {
            None => (NameServerProtocol::Udp, text),
            Some(("udp", rest)) => (NameServerProtocol::Udp, rest),
            Some(("tcp", rest)) => (NameServerProtocol::Tcp, rest),
            Some((other, _)) => {
                return Err(format!(
                    "unsupported protocol {other:?} in name server {text:?}: use udp:// or tcp://"
                ));
            }
        };
        let address = rest
            .parse::<SocketAddr>()
            .or_else(|_| rest.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
            .map_err(|_| {
                format!(
                    "invalid name server {text:?}: expected [udp://|tcp://]IP[:PORT], e.g. \"udp://192.0.2.1:53\""
                )
            })?;
        Ok(Self { protocol, address })
    }
}

impl ValueType for NameServer {
    const TYPE: &'static str = "name server";
    const LIST_TYPE: &'static str = "list of name servers (\"[udp://|tcp://]IP[:PORT]\")";
}

impl FromNode for NameServer {
    fn from_node(node: &Node, cx: &Context<'_>) -> Result<Self, Invalid> {
        let text = String::from_node(node, cx)?;
        NameServer::parse(&text).map_err(|m| Invalid::at(node, m))
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_server_forms() {
        let udp = NameServer::parse("udp://127.0.0.1:5353").ok();
        assert_eq!(
            udp,
            Some(NameServer {
                protocol: NameServerProtocol::Udp,
                address: "127.0.0.1:5353".parse().unwrap_or_else(|_| unreachable!()),
            })
        );
        let bare = NameServer::parse("8.8.8.8").map(|n| n.address.port());
        assert_eq!(bare, Ok(53));
        let tcp6 = NameServer::parse("tcp://[::1]:53").map(|n| n.protocol);
        assert_eq!(tcp6, Ok(NameServerProtocol::Tcp));
        assert!(NameServer::parse("tls://1.1.1.1").is_err());
        assert!(NameServer::parse("udp://ns.example.org").is_err());
        assert!(NameServer::parse("udp://127.0.0.1:99999").is_err());
    }
}
