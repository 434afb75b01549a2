//! The configuration reference, generated from the key catalogue.

use crate::key::Presence;
use crate::keys::ALL;

/// Markdown tables of every key, grouped by top-level section.
pub fn markdown() -> String {
    let mut out = String::new();
    let mut section = "";
    for key in ALL {
        let top = key.path().split('.').next().unwrap_or_default();
        if top != section {
            section = top;
            out.push_str(&format!(
                "\n#### `{section}`\n\n| Key | Type | Default | Meaning |\n|---|---|---|---|\n"
            ));
        }
        let default = match key.presence() {
            Presence::Required => "*required*".to_string(),
            Presence::Optional => "—".to_string(),
            Presence::Default(literal) => format!("`{literal}`"),
            Presence::Derived(text) => text.to_string(),
        };
        out.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            key.path(),
            escape(key.type_name()),
            escape(&default),
            escape(key.doc())
        ));
    }
    out.trim_start().to_string()
}

fn escape(text: &str) -> String {
    text.replace('|', "\\|")
}
