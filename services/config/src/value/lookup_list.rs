//! Lookup lists: values written in the configuration, or read one per line from a file.

use std::path::Path;

use crate::tree::{Node, Value};
use crate::value::{Context, FromNode, Invalid, ValueType};

/// The values of one lookup list.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LookupList {
    /// Values, with `file://` entries replaced by the file's lines.
    pub values: Vec<String>,
}

impl ValueType for LookupList {
    const TYPE: &'static str =
        "list of strings (an entry \"file:///path\" reads one value per line)";
}

impl FromNode for LookupList {
    fn from_node(node: &Node, cx: &Context<'_>) -> Result<Self, Invalid> {
        let entries = match &node.value {
            Value::Array(_) => Vec::<String>::from_node(node, cx)?,
            Value::String(_) => vec![String::from_node(node, cx)?],
            _ => return Err(Invalid::expected(node, "a list of strings")),
        };
        let mut values = Vec::new();
        for entry in entries {
            match entry.strip_prefix("file://") {
                Some(path) => {
                    let text = cx.env.read_file(Path::new(path)).map_err(|e| {
                        Invalid::at(node, format!("cannot read lookup list {path}: {e}"))
                    })?;
                    values.extend(
                        text.lines()
                            .map(str::trim)
                            .filter(|line| !line.is_empty() && !line.starts_with('#'))
                            .map(str::to_string),
                    );
                }
                None => values.push(entry),
            }
        }
        Ok(LookupList { values })
    }
}
