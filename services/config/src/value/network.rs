//! Socket addresses for `bind` and networks for trust lists.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

use super::{Context, FromNode, Invalid, ValueType};
use crate::tree::{Node, Value};

/// One or more addresses a listener binds, written as a string or a list of strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind(pub Vec<SocketAddr>);

impl ValueType for Bind {
    const TYPE: &'static str = "address or list of addresses (\"[::]:25\", \"127.0.0.1:2525\")";
}

fn address(node: &Node, cx: &Context<'_>) -> Result<SocketAddr, Invalid> {
    let text = String::from_node(node, cx)?;
    text.parse().map_err(|_| {
        Invalid::at(
            node,
            format!(
                "invalid address {text:?}: expected IP:port such as \"0.0.0.0:25\" or \"[::]:25\""
            ),
        )
    })
}

impl FromNode for Bind {
    fn from_node(node: &Node, cx: &Context<'_>) -> Result<Self, Invalid> {
        let addresses = match &node.value {
            Value::Array(items) => items
                .iter()
                .map(|item| address(item, cx))
                .collect::<Result<Vec<_>, _>>()?,
            _ => vec![address(node, cx)?],
        };
        if addresses.is_empty() {
            return Err(Invalid::at(node, "at least one address is needed"));
        }
        Ok(Bind(addresses))
    }
}

impl ValueType for IpNet {
    const TYPE: &'static str = "network (\"10.0.0.0/8\", \"::1/128\"; a bare address is one host)";
    const LIST_TYPE: &'static str =
        "list of networks (\"10.0.0.0/8\", \"::1/128\"; a bare address is one host)";
}

impl FromNode for IpNet {
    fn from_node(node: &Node, cx: &Context<'_>) -> Result<Self, Invalid> {
        let text = String::from_node(node, cx)?;
        let text = text.trim();
        if let Ok(address) = text.parse::<IpAddr>() {
            return Ok(IpNet::from(address));
        }
        let network: IpNet = text.parse().map_err(|_| {
            Invalid::at(
                node,
                format!(
                    "invalid network {text:?}: expected an address and prefix length such as \"10.0.0.0/8\" or \"fd00::/8\""
                ),
            )
        })?;
        // Like Postfix's CIDR tables: "10.0.0.1/8" is more likely a typo for a host or for
        // "10.0.0.0/8" than a deliberate choice, and in a trust list a guess is not safe.
        if network.addr() != network.network() {
            return Err(Invalid::at(
                node,
                format!(
                    "network {text:?} has host bits set: write {:?} for the whole network, or the bare address for one host",
                    network.trunc().to_string()
                ),
            ));
        }
        Ok(network)
    }
}
