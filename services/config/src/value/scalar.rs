//! Strings, booleans, integers and secrets.

use secrecy::{ExposeSecret, SecretString};

use super::substitution::expand;
use super::{Context, FromNode, Invalid, ValueType};
use crate::tree::{Node, Value};

impl ValueType for String {
    const TYPE: &'static str = "string";
    const LIST_TYPE: &'static str = "list of strings";
}

impl FromNode for String {
    fn from_node(node: &Node, cx: &Context<'_>) -> Result<Self, Invalid> {
        match &node.value {
            Value::String(s) => expand(s, node, cx),
            _ => Err(Invalid::expected(node, "a string")),
        }
    }
}

impl ValueType for bool {
    const TYPE: &'static str = "boolean";
}

impl FromNode for bool {
    fn from_node(node: &Node, _: &Context<'_>) -> Result<Self, Invalid> {
        match &node.value {
            Value::Boolean(b) => Ok(*b),
            _ => Err(Invalid::expected(node, "a boolean (true or false)")),
        }
    }
}

macro_rules! unsigned {
    ($($ty:ty),*) => {$(
        impl ValueType for $ty {
            const TYPE: &'static str = "integer";
            const LIST_TYPE: &'static str = "list of integers";
        }

        impl FromNode for $ty {
            fn from_node(node: &Node, _: &Context<'_>) -> Result<Self, Invalid> {
                match &node.value {
                    Value::Integer(n) => <$ty>::try_from(*n).map_err(|_| {
                        Invalid::at(node, format!("{n} is out of range (0 to {})", <$ty>::MAX))
                    }),
                    _ => Err(Invalid::expected(node, "an integer")),
                }
            }
        }
    )*};
}
unsigned!(u16, u32, u64);

impl ValueType for i32 {
    const TYPE: &'static str = "integer (may be negative)";
    const LIST_TYPE: &'static str = "list of integers";
}

impl FromNode for i32 {
    fn from_node(node: &Node, _: &Context<'_>) -> Result<Self, Invalid> {
        match &node.value {
            Value::Integer(n) => i32::try_from(*n).map_err(|_| {
                Invalid::at(
                    node,
                    format!("{n} is out of range ({} to {})", i32::MIN, i32::MAX),
                )
            }),
            _ => Err(Invalid::expected(node, "an integer")),
        }
    }
}

/// A string that must never be printed: passwords, private keys.
#[derive(Clone)]
pub struct Secret(SecretString);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(SecretString::from(value.into()))
    }

    /// The value itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Two secrets are equal when their values are (a changed password is a changed setting).
impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.expose() == other.expose()
    }
}

impl Eq for Secret {}

impl ValueType for Secret {
    const TYPE: &'static str = "string (secret; use %{file:…}% or %{env:…}%)";
}

impl FromNode for Secret {
    fn from_node(node: &Node, cx: &Context<'_>) -> Result<Self, Invalid> {
        String::from_node(node, cx).map(Secret::new)
    }
}
