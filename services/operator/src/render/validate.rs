//! Checking rendered text with the real configuration loader.
//!
//! The operator does not see the files the pods mount (the Secret projection, `file://`
//! lists), so they are read as a placeholder: what is checked is everything the operator
//! controls — keys, types, values, references between the rendered sections.

use std::path::Path;

use ferrymail_config::Environment;

use super::{DIRECTORIES_FILE, REMOTES_FILE, Rendered, Section};
use crate::OperatorError;

/// The least a main file must hold for rendered sections to load: the pods' main file
/// supplies it; this stands in for it.
const MAIN_STAND_IN: (&str, &str) = ("main.toml", "[server]\nhostname = \"operator.invalid\"\n");

fn stand_in() -> (String, String) {
    (MAIN_STAND_IN.0.to_string(), MAIN_STAND_IN.1.to_string())
}

/// Answers every substitution with a placeholder.
struct Placeholders;

impl Environment for Placeholders {
    fn var(&self, _name: &str) -> Option<String> {
        Some("placeholder".into())
    }

    fn read_file(&self, _path: &Path) -> std::io::Result<String> {
        Ok("placeholder".into())
    }
}

/// Checks one section alone; on success returns it unchanged.
pub(super) fn section(root: &str, name: &str, section: Section) -> Result<Section, String> {
    let mut named = toml::Table::new();
    named.insert(name.to_string(), toml::Value::Table(section.table.clone()));
    let mut document = toml::Table::new();
    document.insert(root.to_string(), toml::Value::Table(named));
    let text = toml::to_string(&document).map_err(|e| format!("cannot write TOML: {e}"))?;
    ferrymail_config::load_documents(
        vec![stand_in(), (format!("{root}.{name}"), text)],
        &Placeholders,
    )
    .map(|_| section)
    .map_err(|errors| {
        errors
            .0
            .iter()
            .map(|e| format!("{}: {}", e.key, e.message))
            .collect::<Vec<_>>()
            .join("; ")
    })
}

/// Checks both files together, as the pods will read them.
pub(super) fn whole(rendered: &Rendered) -> Result<(), OperatorError> {
    ferrymail_config::load_documents(
        vec![
            stand_in(),
            (REMOTES_FILE.to_string(), rendered.remotes_toml.clone()),
            (
                DIRECTORIES_FILE.to_string(),
                rendered.directories_toml.clone(),
            ),
        ],
        &Placeholders,
    )
    .map(|_| ())
    .map_err(|errors| OperatorError::Rendered(errors.to_string()))
}
