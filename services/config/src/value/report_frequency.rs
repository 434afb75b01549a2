//! `report.dmarc.aggregate.send`: how often aggregate reports are sent.

use std::time::Duration;

use super::duration::parse_duration;
use super::{Context, FromNode, Invalid, ValueType};
use crate::tree::{Node, Value};

/// The length of a reporting period, or `None` when reports are not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReportFrequency(pub Option<Duration>);

/// Shortest period a duration may give: a report per period per domain must stay rare.
pub const MIN_REPORT_PERIOD: Duration = Duration::from_secs(10);

impl ValueType for ReportFrequency {
    const TYPE: &'static str =
        "\"hourly\" | \"daily\" | \"weekly\" | \"never\" | false | a duration such as \"10m\"";
}

impl FromNode for ReportFrequency {
    fn from_node(node: &Node, _: &Context<'_>) -> Result<Self, Invalid> {
        let text = match &node.value {
            Value::Boolean(false) => return Ok(Self(None)),
            Value::String(text) => text.trim(),
            _ => return Err(Invalid::expected(node, Self::TYPE)),
        };
        let period = match text {
            "never" | "disable" => return Ok(Self(None)),
            "hourly" => Duration::from_secs(3_600),
            "daily" => Duration::from_secs(86_400),
            "weekly" => Duration::from_secs(7 * 86_400),
            other => parse_duration(other).map_err(|_| {
                Invalid::at(
                    node,
                    format!("unknown value {other:?}, expected {}", Self::TYPE),
                )
            })?,
        };
        if period < MIN_REPORT_PERIOD {
            return Err(Invalid::at(
                node,
                format!(
                    "a reporting period of {period:?} is shorter than the {}s minimum",
                    MIN_REPORT_PERIOD.as_secs()
                ),
            ));
        }
        Ok(Self(Some(period)))
    }
}
