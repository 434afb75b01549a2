//! Settings written as one value or as a rule list choosing one: where a message goes next
//! (`queue.outbound.next-hop`), whether a client may relay (`session.rcpt.relay`), what a
//! message-authentication check does (`auth.*.verify`), which signatures sign
//! (`auth.dkim.sign`) and which one seals forwarded mail (`auth.arc.seal`).

use crate::tree::{Node, Value};
use crate::value::rules::{Rules, parse_rules};
use crate::value::{Context, FromNode, Invalid, ValueType, enum_value};

/// Where a message goes next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hop {
    /// Look up the recipient domain's MX hosts.
    Mx,
    /// Relay through `remote.<id>`.
    Remote(String),
}

impl ValueType for Hop {
    const TYPE: &'static str = "\"mx\" or a remote id";
}

impl FromNode for Hop {
    fn from_node(node: &Node, cx: &Context<'_>) -> Result<Self, Invalid> {
        let text = String::from_node(node, cx)?;
        Ok(match text.as_str() {
            "mx" => Hop::Mx,
            "" => {
                return Err(Invalid::at(
                    node,
                    "expected \"mx\" or a remote id, found an empty string",
                ));
            }
            _ => Hop::Remote(text),
        })
    }
}

/// `queue.outbound.next-hop`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextHop(pub Rules<Hop>);

impl ValueType for NextHop {
    const TYPE: &'static str = "\"mx\", a remote id, or a rule list";
}

impl FromNode for NextHop {
    fn from_node(node: &Node, cx: &Context<'_>) -> Result<Self, Invalid> {
        parse_rules(node, cx).map(NextHop)
    }
}

/// `session.rcpt.relay`: whether an unauthenticated client may send to a domain that is
/// not local (authenticated clients always may).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayRule(pub Rules<bool>);

impl ValueType for RelayRule {
    const TYPE: &'static str = "boolean or rule list";
}

impl FromNode for RelayRule {
    fn from_node(node: &Node, cx: &Context<'_>) -> Result<Self, Invalid> {
        parse_rules(node, cx).map(RelayRule)
    }
}

enum_value! {
    /// What a check does with a message: record its result, refuse a failure, or nothing.
    pub enum VerifyMode {
        /// Check and record the result in `Authentication-Results`.
        Relaxed = "relaxed",
        /// Check, record, and refuse mail that fails.
        Strict = "strict",
        /// Do not check.
        Disable = "disable",
    }
}

impl VerifyMode {
    /// Whether the check runs at all.
    pub fn verifies(self) -> bool {
        self != VerifyMode::Disable
    }
}

/// A verification setting: one mode, or a rule list choosing one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyRule(pub Rules<VerifyMode>);

impl ValueType for VerifyRule {
    const TYPE: &'static str = "\"relaxed\" | \"strict\" | \"disable\", or a rule list";
}

impl FromNode for VerifyRule {
    fn from_node(node: &Node, cx: &Context<'_>) -> Result<Self, Invalid> {
        parse_rules(node, cx).map(VerifyRule)
    }
}

/// The ids of the `signature.<id>` a message is signed with; `false` means none.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SignatureList(pub Vec<String>);

impl ValueType for SignatureList {
    const TYPE: &'static str = "list of signature ids, or false";
}

impl FromNode for SignatureList {
    fn from_node(node: &Node, cx: &Context<'_>) -> Result<Self, Invalid> {
        match &node.value {
            Value::Boolean(false) => Ok(SignatureList::default()),
            Value::String(_) => Ok(SignatureList(vec![String::from_node(node, cx)?])),
            Value::Array(_) => Vec::<String>::from_node(node, cx).map(SignatureList),
            _ => Err(Invalid::expected(node, Self::TYPE)),
        }
    }
}

/// `auth.dkim.sign`: a list of signature ids, or a rule list choosing one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignRule(pub Rules<SignatureList>);

impl ValueType for SignRule {
    const TYPE: &'static str = "list of signature ids, false, or a rule list";
}

impl FromNode for SignRule {
    fn from_node(node: &Node, cx: &Context<'_>) -> Result<Self, Invalid> {
        // A list of strings is the plain form; a list of tables is a rule list.
        let plain = match &node.value {
            Value::Array(items) => items.iter().all(|i| matches!(i.value, Value::String(_))),
            _ => true,
        };
        if plain {
            return SignatureList::from_node(node, cx).map(|list| {
                SignRule(Rules {
                    branches: Vec::new(),
                    otherwise: list,
                })
            });
        }
        parse_rules(node, cx).map(SignRule)
    }
}

/// The `signature.<id>` a forwarded message is ARC-sealed with; `false` means none.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SealSignature(pub Option<String>);

impl ValueType for SealSignature {
    const TYPE: &'static str = "a signature id, or false";
}

impl FromNode for SealSignature {
    fn from_node(node: &Node, cx: &Context<'_>) -> Result<Self, Invalid> {
        match &node.value {
            Value::Boolean(false) => Ok(SealSignature(None)),
            Value::String(_) => {
                let id = String::from_node(node, cx)?;
                if id.is_empty() {
                    return Err(Invalid::at(
                        node,
                        "expected a signature id or false, found an empty string",
                    ));
                }
                Ok(SealSignature(Some(id)))
            }
            _ => Err(Invalid::expected(node, Self::TYPE)),
        }
    }
}

/// `auth.arc.seal`: the signature that seals forwarded mail, or a rule list choosing one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealRule(pub Rules<SealSignature>);

impl ValueType for SealRule {
    const TYPE: &'static str = "a signature id, false, or a rule list";
}

impl FromNode for SealRule {
    fn from_node(node: &Node, cx: &Context<'_>) -> Result<Self, Invalid> {
        parse_rules(node, cx).map(SealRule)
    }
}
