//! The values of a DKIM signature's keys: its algorithm and its canonicalization.

use crate::tree::Node;
use crate::value::{Context, FromNode, Invalid, ValueType, enum_value};

enum_value! {
    /// `signature.<id>.algorithm`. RSA-SHA1 is not offered: RFC 8301 forbids signing with it.
    pub enum SignatureAlgorithm {
        /// RSA with SHA-256 (RFC 6376).
        RsaSha256 = "rsa-sha256",
        /// Ed25519 with SHA-256 (RFC 8463).
        Ed25519Sha256 = "ed25519-sha256",
    }
}

enum_value! {
    /// One half of `signature.<id>.canonicalization`.
    pub enum CanonicalizationMode {
        /// Whitespace and header-name case are normalized.
        Relaxed = "relaxed",
        /// The text as sent.
        Simple = "simple",
    }
}

/// `signature.<id>.canonicalization`: `"<header>/<body>"`, e.g. `"relaxed/relaxed"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Canonicalization {
    /// How the signed header fields are canonicalized.
    pub header: CanonicalizationMode,
    /// How the body is canonicalized.
    pub body: CanonicalizationMode,
}

impl ValueType for Canonicalization {
    const TYPE: &'static str =
        "\"relaxed/relaxed\" | \"relaxed/simple\" | \"simple/relaxed\" | \"simple/simple\"";
}

impl FromNode for Canonicalization {
    fn from_node(node: &Node, cx: &Context<'_>) -> Result<Self, Invalid> {
        let text = String::from_node(node, cx)?;
        let mode = |m: &str| match m {
            "relaxed" => Some(CanonicalizationMode::Relaxed),
            "simple" => Some(CanonicalizationMode::Simple),
            _ => None,
        };
        let (header, body) = text.split_once('/').unwrap_or((&text, "simple"));
        match (mode(header), mode(body)) {
            (Some(header), Some(body)) => Ok(Self { header, body }),
            _ => Err(Invalid::at(
                node,
                format!("unknown canonicalization {text:?}, expected {}", Self::TYPE),
            )),
        }
    }
}
