//! An owned TOML tree in which every key and value remembers where it was written.
//!
//! The `toml` crate parses; this module only keeps its spans, so that every later
//! error can name a file and a line, and merges the include directory into the main file.

use std::collections::BTreeMap;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::diagnostics::Diagnostics;
use crate::key_paths::{KeyPaths, WrittenKey};
use crate::source::{FileId, Origin};

/// A value with its position.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub(crate) origin: Origin,
    pub(crate) value: Value,
}

/// The TOML value kinds.
#[derive(Debug, Clone)]
pub(crate) enum Value {
    String(String),
    Integer(i64),
    Float,
    Boolean(bool),
    Datetime,
    Array(Vec<Node>),
    Table(Table),
}

impl Value {
    /// The TOML name of the kind, for "expected X, found Y" messages.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Value::String(_) => "a string",
            Value::Integer(_) => "an integer",
            Value::Float => "a float",
            Value::Boolean(_) => "a boolean",
            Value::Datetime => "a date-time",
            Value::Array(_) => "an array",
            Value::Table(_) => "a table",
        }
    }
}

/// A table entry: where the key was written, and its value.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) key_origin: Origin,
    pub(crate) node: Node,
}

/// A TOML table in key order.
#[derive(Debug, Clone, Default)]
pub(crate) struct Table {
    pub(crate) entries: BTreeMap<String, Entry>,
}

impl Table {
    pub(crate) fn get(&self, key: &str) -> Option<&Entry> {
        self.entries.get(key)
    }
}

/// Parses one file; syntax errors (all of them, the parser recovers) go to `diagnostics`.
pub(crate) fn parse_file(text: &str, file: FileId, diagnostics: &Diagnostics) -> Node {
    let (document, errors) = DeTable::parse_recoverable(text);
    // Only needed to name the keys of errors; most files have none.
    let key_paths = (!errors.is_empty()).then(|| KeyPaths::of(text));
    for error in errors {
        let span = error.span().unwrap_or(0..0);
        let written = key_paths
            .as_ref()
            .and_then(|k| Some((k, k.at(span.start)?)));
        let origin = Origin { file, span };
        let message = error.message().trim_end();
        match written {
            Some((keys, key)) if message == "duplicate key" => {
                report_duplicate_in_file(keys, key, origin, diagnostics);
            }
            Some((_, key)) => diagnostics.report(
                origin,
                display_path(&key.path),
                format!("invalid TOML: {message}"),
            ),
            None => {
                diagnostics.report(origin, String::new(), format!("invalid TOML: {message}"));
            }
        }
    }
    let origin = Origin { file, span: 0..0 };
    Node {
        origin,
        value: Value::Table(convert_table(document.into_inner(), file, diagnostics)),
    }
}

/// Reports a key or table the parser found defined twice in one file, as [`merge`] does
/// for one defined in two files: with its path and where it was first defined.
fn report_duplicate_in_file(
    keys: &KeyPaths,
    key: &WrittenKey,
    origin: Origin,
    diagnostics: &Diagnostics,
) {
    // A header, or a dotted key reaching into a table, (re)defines a table.
    let what = if key.in_header || !key.defines {
        "table"
    } else {
        "key"
    };
    let first = keys
        .first_definition(&key.path, key.span.start)
        .map(|first| Origin {
            file: origin.file,
            span: first.span.clone(),
        });
    diagnostics.report_duplicate(origin, display_path(&key.path), what, first.as_ref());
}

/// Parses a built-in default literal (a TOML value such as `"60s"` or `["1d", "3d"]`).
pub(crate) fn parse_default(literal: &str) -> Option<Node> {
    let value = DeValue::parse(literal).ok()?;
    let diagnostics = Diagnostics::default();
    let node = convert(value, crate::source::SourceMap::DEFAULTS, &diagnostics);
    diagnostics.is_empty().then_some(node)
}

fn convert_table(table: DeTable<'_>, file: FileId, diagnostics: &Diagnostics) -> Table {
    let entries = table
        .into_iter()
        .map(|(key, value)| {
            let key_origin = Origin {
                file,
                span: key.span(),
            };
            let node = convert(value, file, diagnostics);
            (key.into_inner().into_owned(), Entry { key_origin, node })
        })
        .collect();
    Table { entries }
}

fn convert(value: Spanned<DeValue<'_>>, file: FileId, diagnostics: &Diagnostics) -> Node {
    let origin = Origin {
        file,
        span: value.span(),
    };
    let value = match value.into_inner() {
        DeValue::String(s) => Value::String(s.into_owned()),
        DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
            Ok(n) => Value::Integer(n),
            Err(_) => {
                diagnostics.report(origin.clone(), String::new(), "integer out of range".into());
                Value::Integer(0)
            }
        },
        DeValue::Float(_) => Value::Float,
        DeValue::Boolean(b) => Value::Boolean(b),
        DeValue::Datetime(_) => Value::Datetime,
        DeValue::Array(items) => Value::Array(
            items
                .iter()
                .cloned()
                .map(|item| convert(item, file, diagnostics))
                .collect(),
        ),
        DeValue::Table(table) => Value::Table(convert_table(table, file, diagnostics)),
    };
    Node { origin, value }
}

/// True for tables that several files may add to: the top level, each section
/// (`server`, `remote`, …) and the listener collection. Any deeper table names one
/// thing (a remote, a listener, `queue.schedule`) and belongs to one file.
fn may_span_files(path: &[String]) -> bool {
    path.len() <= 1 || (path.len() == 2 && path[0] == "server" && path[1] == "listener")
}

/// Merges `from` (a later file) into `into`, reporting keys and tables defined twice.
pub(crate) fn merge(
    into: &mut Table,
    from: Table,
    path: &mut Vec<String>,
    diagnostics: &Diagnostics,
) {
    for (key, entry) in from.entries {
        path.push(key.clone());
        match into.entries.get_mut(&key) {
            None => {
                into.entries.insert(key, entry);
            }
            Some(existing) => match (&mut existing.node.value, entry.node.value) {
                (Value::Table(target), Value::Table(source)) if may_span_files(path) => {
                    merge(target, source, path, diagnostics);
                }
                (Value::Table(_), Value::Table(_)) => diagnostics.report_duplicate(
                    entry.key_origin,
                    display_path(path),
                    "table",
                    Some(&existing.key_origin),
                ),
                _ => diagnostics.report_duplicate(
                    entry.key_origin,
                    display_path(path),
                    "key",
                    Some(&existing.key_origin),
                ),
            },
        }
        path.pop();
    }
}

/// Renders a key path the way TOML would write it (`remote."mx.example".port`).
pub fn display_path<S: AsRef<str>>(path: &[S]) -> String {
    path.iter()
        .map(|segment| {
            let segment = segment.as_ref();
            let bare = !segment.is_empty()
                && segment
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if bare {
                segment.to_string()
            } else {
                format!("{segment:?}")
            }
        })
        .collect::<Vec<_>>()
        .join(".")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_quote_segments_that_are_not_bare_keys() {
        assert_eq!(
            display_path(&["remote", "mx.example", "port"]),
            "remote.\"mx.example\".port"
        );
        assert_eq!(
            display_path(&["server", "listener", "smtp-in_1"]),
            "server.listener.smtp-in_1"
        );
    }
}
