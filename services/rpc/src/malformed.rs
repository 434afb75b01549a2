//! [`Malformed`]: a message from the wire that breaks the contract.

use thiserror::Error;

/// A message from the wire breaks the contract: an unspecified or unknown enum value, a missing
/// field, a value out of range. Servers answer it with INVALID_ARGUMENT; clients report it as a
/// protocol violation.
#[derive(Debug, Error)]
#[error("{0}")]
pub(crate) struct Malformed(pub(crate) String);

impl Malformed {
    /// An enum field holds UNSPECIFIED or a value this build does not know.
    pub(crate) fn enum_value(field: &str, value: i32) -> Self {
        Self(format!(
            "{field}: unspecified or unknown enum value {value}"
        ))
    }

    /// A field that must be set is absent.
    pub(crate) fn missing(field: &str) -> Self {
        Self(format!("{field}: missing"))
    }
}
