//! `server.auto-ban.auth.rate`: Stalwart's auto-ban key for failed authentications. In
//! ferrymail it limits AUTH, per login name and per client address, rather than banning the
//! address from every service (README, "Brute force").

use crate::tree::{Node, Value};
use crate::value::{Context, FromNode, Invalid, Rate, ValueType, parse_rate};

/// A rate such as `"100/1d"`, or `false` for no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BanRate(pub Option<Rate>);

impl ValueType for BanRate {
    const TYPE: &'static str = "rate such as \"100/1d\", or false";
}

impl FromNode for BanRate {
    fn from_node(node: &Node, _: &Context<'_>) -> Result<Self, Invalid> {
        match &node.value {
            Value::Boolean(false) => Ok(BanRate(None)),
            Value::String(text) => parse_rate(text)
                .map(|rate| BanRate(Some(rate)))
                .map_err(|message| Invalid::at(node, message)),
            _ => Err(Invalid::expected(
                node,
                "a rate such as \"100/1d\", or false to turn the limit off",
            )),
        }
    }
}
