//! Socket addresses for `bind`.

use std::net::SocketAddr;

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
