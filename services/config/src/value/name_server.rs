//! Custom name servers, written `[udp://|tcp://]IP[:PORT]` as in Stalwart.

use std::net::{IpAddr, SocketAddr};

use crate::tree::Node;
use crate::value::{Context, FromNode, Invalid, ValueType};

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
