//! Durations such as `"100ms"`, `"60s"`, `"1m"`, `"2h"`, `"1d"`, `"1w"`.

use std::time::Duration;

use super::{Context, FromNode, Invalid, ValueType};
use crate::tree::{Node, Value};

/// Parses a duration: a whole number followed by `ms`, `s`, `m`, `h`, `d` or `w`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits_end);
    if number.is_empty() {
        return Err(format!(
            "invalid duration {text:?}: expected a number followed by a unit such as \"60s\""
        ));
    }
    let number: u64 = number
        .parse()
        .map_err(|_| format!("invalid duration {text:?}: number too large"))?;
    let millis_per_unit: u64 = match unit.trim() {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "w" => 604_800_000,
        "" => {
            return Err(format!(
                "invalid duration {text:?}: missing unit (ms, s, m, h, d or w), e.g. \"{number}s\""
            ));
        }
        other => {
            return Err(format!(
                "invalid duration {text:?}: unknown unit {other:?} (use ms, s, m, h, d or w)"
            ));
        }
    };
    number
        .checked_mul(millis_per_unit)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("invalid duration {text:?}: too large"))
}

impl ValueType for Duration {
    const TYPE: &'static str = "duration";
    const LIST_TYPE: &'static str = "list of durations";
}

impl FromNode for Duration {
    fn from_node(node: &Node, _: &Context<'_>) -> Result<Self, Invalid> {
        match &node.value {
            Value::String(s) => parse_duration(s).map_err(|message| Invalid::at(node, message)),
            Value::Integer(n) => Err(Invalid::at(
                node,
                format!(
                    "expected a duration string with a unit, e.g. \"{n}s\", found the integer {n}"
                ),
            )),
            _ => Err(Invalid::expected(node, "a duration such as \"60s\"")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(parse_duration("100ms"), Ok(Duration::from_millis(100)));
        assert_eq!(parse_duration("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("1w"), Ok(Duration::from_secs(604_800)));
        assert_eq!(parse_duration(" 5 s "), Ok(Duration::from_secs(5)));
    }

    #[test]
    fn malformed() {
        for bad in [
            "",
            "s",
            "60",
            "1.5h",
            "-1s",
            "10 years",
            "1x",
            "99999999999999999999s",
            "18446744073709551615w",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
