//! Sizes such as `"50MB"`, `"512KB"` or a plain number of bytes.

use super::{Context, FromNode, Invalid, ValueType};
use crate::tree::{Node, Value};

/// A size in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

/// Parses a size: a whole number with an optional unit `B`, `KB`, `MB`, `GB` (powers of
/// 1024, as Postfix and Stalwart count them; `K`, `M`, `G` and the `KiB` forms are accepted).
pub fn parse_size(text: &str) -> Result<ByteSize, String> {
    let text = text.trim();
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits_end);
    let number: u64 = number.parse().map_err(|_| {
        format!("invalid size {text:?}: expected a number with a unit such as \"50MB\"")
    })?;
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => {
            return Err(format!(
                "invalid size {text:?}: unknown unit {other:?} (use B, KB, MB or GB)"
            ));
        }
    };
    number
        .checked_mul(multiplier)
        .map(ByteSize)
        .ok_or_else(|| format!("invalid size {text:?}: too large"))
}

impl ValueType for ByteSize {
    const TYPE: &'static str = "size";
}

impl FromNode for ByteSize {
    fn from_node(node: &Node, _: &Context<'_>) -> Result<Self, Invalid> {
        match &node.value {
            Value::String(s) => parse_size(s).map_err(|message| Invalid::at(node, message)),
            Value::Integer(n) => u64::try_from(*n)
                .map(ByteSize)
                .map_err(|_| Invalid::at(node, format!("a size cannot be negative ({n})"))),
            _ => Err(Invalid::expected(node, "a size such as \"50MB\"")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(parse_size("512"), Ok(ByteSize(512)));
        assert_eq!(parse_size("10KB"), Ok(ByteSize(10 * 1024)));
        assert_eq!(parse_size("50MB"), Ok(ByteSize(50 * 1024 * 1024)));
        assert_eq!(parse_size("1gb"), Ok(ByteSize(1 << 30)));
        assert_eq!(parse_size("2 MiB"), Ok(ByteSize(2 << 20)));
    }

    #[test]
    fn malformed() {
        for bad in [
            "",
            "MB",
            "1.5MB",
            "-1",
            "5TB",
            "99999999999999999999GB",
            "50 M B",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
