//! What the configuration tests share: a minimal valid configuration and the errors of a
//! refused one. (A directory module, so that it is not taken for a test of its own.)

use ferrymail_config::load_str;

/// The smallest configuration that loads.
pub const BASE: &str = "[server]\nhostname = \"mx.example.org\"\n";

/// The errors of `BASE` followed by `text`, as `(line, key, message)`; panics when it loads.
pub fn errors(text: &str) -> Vec<(usize, String, String)> {
    match load_str("bad.toml", &format!("{BASE}{text}")) {
        Ok(_) => panic!("configuration was accepted:\n{text}"),
        Err(errors) => errors
            .0
            .into_iter()
            .map(|e| (e.line, e.key, e.message))
            .collect(),
    }
}
