//! `cluster.cache-key`: read from a file or the environment, at least 32 bytes, never printed.

#![allow(clippy::expect_used)]

use ferrymail_config::{ConfigError, load_str};

const BASE: &str = "[server]\nhostname = \"mx.test\"\n";

fn errors(text: &str) -> Vec<ConfigError> {
    match load_str("cache.toml", &format!("{BASE}{text}")) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(errors) => errors.0,
    }
}

#[track_caller]
fn assert_error(text: &str, message: &str) -> ConfigError {
    let errors = errors(text);
    errors
        .iter()
        .find(|e| e.key == "cluster.cache-key" && e.message.contains(message))
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "expected cluster.cache-key: {message:?}, got:\n{}",
                errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        })
}

#[test]
fn a_short_key_is_refused_without_being_printed() {
    let key = "only-thirty-one-bytes-long-key!";
    assert_eq!(key.len(), 31);
    let error = assert_error(
        &format!("[cluster]\ncache-key = \"{key}\"\n"),
        "too short: 31 bytes, at least 32",
    );
    assert!(!error.to_string().contains(key), "{error}");
}

#[test]
fn a_key_of_32_bytes_from_a_file_is_taken_without_its_newline() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("cache-key");
    let key = "k".repeat(32);
    std::fs::write(&path, format!("{key}\n")).expect("write");
    let text = format!(
        "{BASE}[cluster]\ncache-key = \"%{{file:{}}}%\"\n",
        path.display()
    );
    let config = load_str("cache.toml", &text).unwrap_or_else(|e| panic!("{e}"));
    let read = config.cluster.cache_key.expect("the key");
    assert_eq!(read.expose(), key);

    // The same file a byte shorter (the newline does not count) is refused.
    std::fs::write(&path, format!("{}\n", "k".repeat(31))).expect("write");
    assert_error(
        &format!("[cluster]\ncache-key = \"%{{file:{}}}%\"\n", path.display()),
        "too short: 31 bytes",
    );
}

#[test]
fn malformed_keys_are_named() {
    assert_error("[cluster]\ncache-key = 42\n", "expected a string");
    assert_error(
        "[cluster]\ncache-key = \"%{env:FERRYMAIL_TEST_UNSET_CACHE_KEY}%\"\n",
        "is not set",
    );
    assert_error(
        "[cluster]\ncache-key = \"%{file:/nonexistent/cache-key}%\"\n",
        "cannot read /nonexistent/cache-key",
    );
}
