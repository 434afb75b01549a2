//! Reads one table through key declarations and reports what it could not use.
//!
//! Written by hand rather than with serde's `deny_unknown_fields` because serde stops at
//! the first problem, while `check-config` must list every problem with its line.

use std::cell::RefCell;

use crate::key::{Key, Presence};
use crate::source::Origin;
use crate::tree::{Entry, Node, Table, Value, display_path, parse_default};
use crate::value::{Context, Environment, FromNode, Invalid};

/// A view of one table. Keys present but never asked for are reported as unknown when the
/// reader is dropped, so no table can be read without that check.
pub(crate) struct TableReader<'a> {
    cx: &'a Context<'a>,
    table: Option<&'a Table>,
    origin: Origin,
    path: Vec<String>,
    asked: RefCell<Vec<String>>,
}

impl<'a> TableReader<'a> {
    /// A reader over the document root.
    pub(crate) fn root(cx: &'a Context<'a>, node: &'a Node) -> Self {
        let table = match &node.value {
            Value::Table(table) => Some(table),
            _ => None,
        };
        Self::new(cx, table, node.origin.clone(), Vec::new())
    }

    fn new(
        cx: &'a Context<'a>,
        table: Option<&'a Table>,
        origin: Origin,
        path: Vec<String>,
    ) -> Self {
        Self {
            cx,
            table,
            origin,
            path,
            asked: RefCell::new(Vec::new()),
        }
    }

    /// Where substitutions and machine facts come from.
    pub(crate) fn env(&self) -> &dyn Environment {
        self.cx.env
    }

    /// The dotted path of a key in this table.
    pub(crate) fn key_path(&self, name: &str) -> String {
        let mut path = self.path.clone();
        path.push(name.to_string());
        display_path(&path)
    }

    fn entry(&self, name: &str) -> Option<&'a Entry> {
        self.asked.borrow_mut().push(name.to_string());
        self.table.and_then(|t| t.get(name))
    }

    /// Records a problem with a key of this table (or with the table when the key is absent).
    pub(crate) fn report(&self, name: &str, message: impl Into<String>) {
        let origin = self
            .table
            .and_then(|t| t.get(name))
            .map_or_else(|| self.origin.clone(), |e| e.node.origin.clone());
        self.cx
            .diagnostics
            .report(origin, self.key_path(name), message.into());
    }

    /// Records a problem found in a value, at the value's own position.
    pub(crate) fn report_invalid(&self, name: &str, invalid: Invalid) {
        self.cx
            .diagnostics
            .report(invalid.origin, self.key_path(name), invalid.message);
    }

    /// Reads a key: its value, its default, or `None` (absent optional key, or a problem
    /// that has been reported — the load fails then, so callers need not tell them apart).
    pub(crate) fn get<T: FromNode>(&self, key: &Key<T>) -> Option<T> {
        let name = key.name();
        match self.entry(name) {
            Some(entry) => self.convert(name, &entry.node),
            None => match key.presence {
                Presence::Required => {
                    self.cx.diagnostics.report(
                        self.origin.clone(),
                        self.key_path(name),
                        format!("missing required key ({})", T::TYPE),
                    );
                    None
                }
                Presence::Default(literal) => {
                    let node = parse_default(literal)?;
                    self.convert(name, &node)
                }
                Presence::Optional | Presence::Derived(_) => None,
            },
        }
    }

    /// Whether the table sets `name` (to tell an absent optional key from a refused one).
    pub(crate) fn contains(&self, name: &str) -> bool {
        self.table.is_some_and(|t| t.get(name).is_some())
    }

    /// Converts a node found under `name`, reporting a refusal.
    pub(crate) fn convert<T: FromNode>(&self, name: &str, node: &Node) -> Option<T> {
        T::from_node(node, self.cx)
            .map_err(|invalid| self.report_invalid(name, invalid))
            .ok()
    }

    /// A sub-table (absent: an empty view).
    pub(crate) fn table(&self, name: &str) -> TableReader<'a> {
        let mut path = self.path.clone();
        path.push(name.to_string());
        match self.entry(name) {
            Some(Entry {
                node:
                    node @ Node {
                        value: Value::Table(table),
                        ..
                    },
                ..
            }) => TableReader::new(self.cx, Some(table), node.origin.clone(), path),
            Some(entry) => {
                self.report_invalid(name, Invalid::expected(&entry.node, "a table"));
                TableReader::new(self.cx, None, entry.node.origin.clone(), path)
            }
            None => TableReader::new(self.cx, None, self.origin.clone(), path),
        }
    }

    /// Every entry of a collection table such as `remote` or `server.listener`: one reader
    /// per named sub-table.
    pub(crate) fn entries(&self) -> Vec<(String, TableReader<'a>)> {
        let Some(table) = self.table else {
            return Vec::new();
        };
        table
            .entries
            .iter()
            .filter_map(|(name, entry)| {
                let reader = self.table(name);
                if matches!(entry.node.value, Value::Table(_)) {
                    Some((name.clone(), reader))
                } else {
                    None
                }
            })
            .collect()
    }

    /// Every entry of a table of values of one key declaration (`lookup.<list>`).
    pub(crate) fn values<T: FromNode>(&self, _key: &Key<T>) -> Vec<(String, T)> {
        let Some(table) = self.table else {
            return Vec::new();
        };
        table
            .entries
            .iter()
            .filter_map(|(name, entry)| {
                self.entry(name);
                self.convert(name, &entry.node)
                    .map(|value| (name.clone(), value))
            })
            .collect()
    }
}

impl Drop for TableReader<'_> {
    fn drop(&mut self) {
        let Some(table) = self.table else { return };
        let asked = self.asked.borrow();
        for (name, entry) in &table.entries {
            if asked.iter().any(|a| a == name) {
                continue;
            }
            let suggestion = asked
                .iter()
                .filter(|a| strsim::damerau_levenshtein(a, name) <= 2)
                .min_by_key(|a| strsim::damerau_levenshtein(a, name))
                .map(|a| format!(" (did you mean `{a}`?)"))
                .unwrap_or_default();
            self.cx.diagnostics.report(
                entry.key_origin.clone(),
                self.key_path(name),
                format!("unknown key{suggestion}"),
            );
        }
    }
}
