//! `queue.limiter.inbound.<id>.match`: which sessions and commands an inbound limiter
//! counts. Conditions are tables in the rule form, all of which must hold:
//! `{ if = "<variable>", in-list = "<directory>/<list>" }`, the same with `not-in-list`,
//! or `{ if = "<variable>", is-empty = true|false }` (a null sender, no AUTH).

use super::rules::{ListRef, Variable, only_keys, table_of};
use super::{Context, FromNode, Invalid, ValueType};
use crate::tree::{Node, Value};

/// What a condition asks of its variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimiterTest {
    /// The value is in the list.
    InList(ListRef),
    /// The value is not in the list.
    NotInList(ListRef),
    /// The value is empty (`true`) or not (`false`).
    IsEmpty(bool),
}

/// One condition of a limiter's `match`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimiterCondition {
    /// What is tested.
    pub variable: Variable,
    /// How.
    pub test: LimiterTest,
}

/// A limiter's `match`: every condition must hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimiterMatch(pub Vec<LimiterCondition>);

impl ValueType for LimiterMatch {
    const TYPE: &'static str =
        "a condition { if = …, in-list | not-in-list | is-empty = … } or a list of them";
}

impl FromNode for LimiterMatch {
    fn from_node(node: &Node, cx: &Context<'_>) -> Result<Self, Invalid> {
        let items: Vec<&Node> = match &node.value {
            Value::Array(items) if items.is_empty() => {
                return Err(Invalid::at(
                    node,
                    "a match list needs at least one condition",
                ));
            }
            Value::Array(items) => items.iter().collect(),
            _ => vec![node],
        };
        items
            .into_iter()
            .map(|item| condition(item, cx))
            .collect::<Result<Vec<_>, _>>()
            .map(LimiterMatch)
    }
}

/// One condition table.
fn condition(item: &Node, cx: &Context<'_>) -> Result<LimiterCondition, Invalid> {
    const TESTS: [&str; 3] = ["in-list", "not-in-list", "is-empty"];
    let table = table_of(item, "a condition table ({ if = …, in-list = … })")?;
    only_keys(table, &["if", "in-list", "not-in-list", "is-empty"])?;
    let Some(variable) = table.get("if") else {
        return Err(Invalid::at(item, "condition is missing \"if\""));
    };
    let variable = Variable::from_node(&variable.node, cx)?;
    let tests: Vec<(&str, &Node)> = TESTS
        .iter()
        .filter_map(|name| table.get(name).map(|e| (*name, &e.node)))
        .collect();
    let [(name, value)] = tests.as_slice() else {
        return Err(Invalid::at(
            item,
            "a condition needs exactly one of in-list, not-in-list, is-empty",
        ));
    };
    let list = || -> Result<ListRef, Invalid> {
        let text = String::from_node(value, cx)?;
        ListRef::parse(&text).map_err(|m| Invalid::at(value, m))
    };
    let test = match *name {
        "in-list" => LimiterTest::InList(list()?),
        "not-in-list" => LimiterTest::NotInList(list()?),
        _ => LimiterTest::IsEmpty(bool::from_node(value, cx)?),
    };
    Ok(LimiterCondition { variable, test })
}
