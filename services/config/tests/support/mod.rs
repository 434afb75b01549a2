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

/// Checks that each `(key, value, message)` of `cases`, written alone in `[table]` (then
/// `required`'s `key = value`, unless the case is about that key), is refused at its own line
/// with an error on `table.key` whose text contains `message`.
// Each test file is its own crate, and not every one checks a table's bad values.
#[allow(dead_code)]
pub fn assert_refused_at_their_line(
    table: &str,
    required: Option<(&str, &str)>,
    cases: &[(&str, &str, &str)],
) {
    let line = BASE.lines().count() + 2;
    for (key, value, message) in cases {
        let rest = match required {
            Some((needed, needed_value)) if needed != *key => {
                format!("{needed} = {needed_value}\n")
            }
            _ => String::new(),
        };
        let errors = errors(&format!("[{table}]\n{key} = {value}\n{rest}"));
        let path = format!("{table}.{key}");
        assert!(
            errors
                .iter()
                .any(|(at, k, text)| *at == line && *k == path && text.contains(message)),
            "{key} = {value}: expected an error containing {message:?}, got {errors:?}"
        );
    }
}
