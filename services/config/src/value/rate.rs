//! Rates written `count/period`, such as `"100/1m"`: throttles and the auto-ban limit.

use std::time::Duration;

use crate::tree::{Node, Value};
use crate::value::{Context, FromNode, Invalid, ValueType, parse_duration};

/// `count/period`, such as `"100/1m"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Events allowed per period.
    pub count: u64,
    /// The period.
    pub period: Duration,
}

impl ValueType for Rate {
    const TYPE: &'static str = "rate such as \"100/1m\"";
}

impl FromNode for Rate {
    fn from_node(node: &Node, _: &Context<'_>) -> Result<Self, Invalid> {
        let Value::String(text) = &node.value else {
            return Err(Invalid::expected(node, "a rate such as \"100/1m\""));
        };
        parse_rate(text).map_err(|message| Invalid::at(node, message))
    }
}

/// Parses `count/period`.
pub fn parse_rate(text: &str) -> Result<Rate, String> {
    let (count, period) = text.split_once('/').ok_or_else(|| {
        format!("{text:?} is not a rate: expected count/period, such as \"100/1m\"")
    })?;
    let count: u64 = count
        .trim()
        .parse()
        .map_err(|_| format!("{text:?}: {count:?} is not a count"))?;
    let period = parse_duration(period.trim()).map_err(|e| format!("{text:?}: {e}"))?;
    if count == 0 || period.is_zero() {
        return Err(format!("{text:?}: count and period must be more than zero"));
    }
    Ok(Rate { count, period })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        assert_eq!(
            parse_rate("100/1m"),
            Ok(Rate {
                count: 100,
                period: Duration::from_secs(60)
            })
        );
        assert_eq!(parse_rate(" 5 / 2s ").map(|r| r.count), Ok(5));
        for bad in ["100", "x/1m", "0/1m", "5/0s", "5/soon", "-1/1s", "/1s", ""] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }
}
