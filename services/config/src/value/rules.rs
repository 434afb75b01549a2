//! Stalwart's rule form: `[{ if = "rcpt-domain", in-list = "corp/domains", then = … }, { else = … }]`.

use super::{Context, FromNode, Invalid, ValueType, enum_value};
use crate::tree::{Node, Table, Value};

enum_value! {
    /// What a rule condition looks at.
    pub enum Variable {
        /// The client's IP address.
        RemoteIp = "remote-ip",
        /// The name the client gave in HELO/EHLO/LHLO.
        HeloDomain = "helo-domain",
        /// The envelope sender address.
        Sender = "sender",
        /// The domain of the envelope sender.
        SenderDomain = "sender-domain",
        /// The recipient address.
        Rcpt = "rcpt",
        /// The domain of the recipient.
        RcptDomain = "rcpt-domain",
        /// The account the client authenticated as.
        AuthenticatedAs = "authenticated-as",
        /// The id of the listener the session arrived on.
        Listener = "listener",
    }
}

/// A list a value is looked up in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListRef {
    /// `"<directory>/<list>"`: a lookup list of a directory.
    Directory {
        /// The directory's name.
        directory: String,
        /// The list's name (`domains` or a custom list).
        list: String,
    },
    /// `"remote/<id>"`: the address exists at that remote host.
    Remote {
        /// The remote's id.
        id: String,
    },
}

impl std::fmt::Display for ListRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListRef::Directory { directory, list } => write!(f, "{directory}/{list}"),
            ListRef::Remote { id } => write!(f, "remote/{id}"),
        }
    }
}

impl ListRef {
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        match text.split_once('/') {
            Some(("remote", id)) if !id.is_empty() => Ok(ListRef::Remote { id: id.to_string() }),
            Some((directory, list))
                if !directory.is_empty() && !list.is_empty() && !list.contains('/') =>
            {
                Ok(ListRef::Directory {
                    directory: directory.to_string(),
                    list: list.to_string(),
                })
            }
            _ => Err(format!(
                "invalid list {text:?}: expected \"<directory>/<list>\" or \"remote/<id>\""
            )),
        }
    }
}

/// One `{ if = …, in-list = …, then = … }` branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Branch<T> {
    /// What is tested.
    pub variable: Variable,
    /// The list it must be in.
    pub list: ListRef,
    /// The result when it is.
    pub then: T,
}

/// One `{ if = …, in-list = … }` test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    /// What is tested.
    pub variable: Variable,
    /// The list it must be in.
    pub list: ListRef,
}

/// A `match` setting: one condition or a list of them, all of which must hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match(pub Vec<Condition>);

impl ValueType for Match {
    const TYPE: &'static str = "a condition { if = …, in-list = … } or a list of them";
}

impl FromNode for Match {
    fn from_node(node: &Node, cx: &Context<'_>) -> Result<Self, Invalid> {
        let items = match &node.value {
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
            .map(|item| {
                let table = table_of(item, "a condition table ({ if = …, in-list = … })")?;
                only_keys(table, &["if", "in-list"])?;
                condition(item, table, cx)
            })
            .collect::<Result<Vec<_>, Invalid>>()
            .map(Match)
    }
}

/// The `if` and `in-list` of a rule or condition table.
fn condition(item: &Node, table: &Table, cx: &Context<'_>) -> Result<Condition, Invalid> {
    let list_node = field(item, table, "in-list")?;
    let list = String::from_node(list_node, cx)?;
    Ok(Condition {
        variable: Variable::from_node(field(item, table, "if")?, cx)?,
        list: ListRef::parse(&list).map_err(|m| Invalid::at(list_node, m))?,
    })
}

/// A setting that is either one value or a list of branches ending in `{ else = … }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules<T> {
    /// Branches tried in order.
    pub branches: Vec<Branch<T>>,
    /// The result when no branch applies (the only result of a plain value).
    pub otherwise: T,
}

impl<T> Rules<T> {
    /// Every result the setting can produce.
    pub fn outcomes(&self) -> impl Iterator<Item = &T> {
        self.branches
            .iter()
            .map(|b| &b.then)
            .chain(std::iter::once(&self.otherwise))
    }
}

/// The table `node` holds, or an error naming the `expected` one.
pub(crate) fn table_of<'n>(node: &'n Node, expected: &str) -> Result<&'n Table, Invalid> {
    match &node.value {
        Value::Table(table) => Ok(table),
        _ => Err(Invalid::expected(node, expected)),
    }
}

fn rule_table(node: &Node) -> Result<&Table, Invalid> {
    table_of(node, "a rule table ({ if = …, in-list = …, then = … })")
}

pub(crate) fn only_keys(table: &Table, allowed: &[&str]) -> Result<(), Invalid> {
    match table
        .entries
        .iter()
        .find(|(key, _)| !allowed.contains(&key.as_str()))
    {
        Some((key, entry)) => Err(Invalid {
            origin: entry.key_origin.clone(),
            message: format!(
                "unknown key {key:?} in rule (expected {})",
                allowed.join(", ")
            ),
        }),
        None => Ok(()),
    }
}

pub(crate) fn field<'t>(rule: &Node, table: &'t Table, name: &str) -> Result<&'t Node, Invalid> {
    table
        .get(name)
        .map(|e| &e.node)
        .ok_or_else(|| Invalid::at(rule, format!("rule is missing {name:?}")))
}

/// Reads a plain value or a rule list.
pub(crate) fn parse_rules<T: FromNode>(node: &Node, cx: &Context<'_>) -> Result<Rules<T>, Invalid> {
    let Value::Array(items) = &node.value else {
        return Ok(Rules {
            branches: Vec::new(),
            otherwise: T::from_node(node, cx)?,
        });
    };
    let Some((last, branches)) = items.split_last() else {
        return Err(Invalid::at(
            node,
            "a rule list needs at least an { else = … } entry",
        ));
    };
    let branches = branches
        .iter()
        .map(|item| {
            let table = rule_table(item)?;
            only_keys(table, &["if", "in-list", "then"])?;
            let Condition { variable, list } = condition(item, table, cx)?;
            Ok(Branch {
                variable,
                list,
                then: T::from_node(field(item, table, "then")?, cx)?,
            })
        })
        .collect::<Result<Vec<_>, Invalid>>()?;
    let table = rule_table(last)?;
    let last_rule = |e: Invalid| Invalid {
        message: format!("{} (the last rule must be {{ else = … }})", e.message),
        ..e
    };
    only_keys(table, &["else"]).map_err(last_rule)?;
    let otherwise = field(last, table, "else").map_err(last_rule)?;
    Ok(Rules {
        branches,
        otherwise: T::from_node(otherwise, cx)?,
    })
}
