//! A password or token as the configuration stores it: an argon2 hash, or the value itself.

use argon2::password_hash::PasswordHash;

use super::{Context, FromNode, Invalid, Secret, ValueType};
use crate::tree::Node;

/// A stored password: what a presented one is checked against.
#[derive(Clone, PartialEq, Eq)]
pub enum StoredPassword {
    /// An argon2 hash in PHC form (`$argon2id$v=19$m=…`), as `argon2` and Stalwart write it.
    Argon2(String),
    /// The password itself.
    Clear(Secret),
}

impl StoredPassword {
    /// Whether the configuration holds the password itself rather than its hash.
    pub fn is_clear(&self) -> bool {
        matches!(self, StoredPassword::Clear(_))
    }
}

/// Never shows the value, hashed or not: a hash is still something to brute-force.
impl std::fmt::Debug for StoredPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoredPassword::Argon2(_) => f.write_str("StoredPassword::Argon2(<redacted>)"),
            StoredPassword::Clear(_) => f.write_str("StoredPassword::Clear(<redacted>)"),
        }
    }
}

impl ValueType for StoredPassword {
    const TYPE: &'static str = "string (secret: an argon2 hash `$argon2id$…`, or the value itself; use %{file:…}% or %{env:…}%)";
}

impl FromNode for StoredPassword {
    fn from_node(node: &Node, cx: &Context<'_>) -> Result<Self, Invalid> {
        let text = Secret::from_node(node, cx)?;
        if text.expose().is_empty() {
            return Err(Invalid::at(node, "must not be empty"));
        }
        if !text.expose().starts_with('$') {
            return Ok(StoredPassword::Clear(text));
        }
        // A `$` first means a hash: a typo must not turn it into a clear password.
        match PasswordHash::new(text.expose()) {
            Ok(hash) if hash.algorithm.as_str().starts_with("argon2") => {
                if hash.salt.is_none()
                    || hash.hash.is_none()
                    || argon2::Params::try_from(&hash).is_err()
                {
                    return Err(Invalid::at(
                        node,
                        "not a PHC hash string: an argon2 hash has parameters, a salt and a hash",
                    ));
                }
                Ok(StoredPassword::Argon2(text.expose().to_owned()))
            }
            Ok(hash) => Err(Invalid::at(
                node,
                format!(
                    "a {} hash: only argon2 hashes ($argon2id$…) are supported",
                    hash.algorithm
                ),
            )),
            Err(e) => Err(Invalid::at(
                node,
                format!("starts with `$` but is not a PHC hash string ({e})"),
            )),
        }
    }
}
