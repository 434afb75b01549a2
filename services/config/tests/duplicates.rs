//! A key or table defined twice is refused naming its key path, the line of the second
//! definition and where the first one is: within one file (where the TOML parser finds it)
//! and across the main file and the include files (where the merge finds it).

use ferrymail_config::{ConfigError, ProcessEnvironment, load_documents};

const BASE: &str = "[server]\nhostname = \"mx.example.org\"\n";

/// The problems of `files` (name, text), the first file starting with BASE.
fn errors_of(files: &[(&str, &str)]) -> Vec<ConfigError> {
    let documents = files
        .iter()
        .enumerate()
        .map(|(i, (name, text))| {
            let text = if i == 0 {
                format!("{BASE}{text}")
            } else {
                text.to_string()
            };
            (name.to_string(), text)
        })
        .collect();
    match load_documents(documents, &ProcessEnvironment) {
        Ok(_) => panic!("configuration was accepted:\n{files:?}"),
        Err(errors) => errors.0,
    }
}

/// 1-based line of the `nth` (0-based) line of `text` containing `needle`, in a file that
/// starts with BASE when `based`.
fn line_of(text: &str, needle: &str, nth: usize, based: bool) -> usize {
    let offset = if based { BASE.lines().count() } else { 0 };
    let index = text
        .lines()
        .enumerate()
        .filter(|(_, l)| l.contains(needle))
        .nth(nth)
        .map(|(i, _)| i)
        .unwrap_or_else(|| panic!("{needle:?} #{nth} not in text"));
    offset + index + 1
}

/// Asserts the duplicate `key` in `file` at `line`, first defined at `first`.
#[track_caller]
fn assert_duplicate(errors: &[ConfigError], file: &str, line: usize, key: &str, message: &str) {
    let found = errors
        .iter()
        .any(|e| e.file == file && e.line == line && e.key == key && e.message == message);
    assert!(
        found,
        "expected {file}:{line}: {key}: {message}, got:\n{}",
        errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// One file with a duplicate: the error names `key`, at the `nth` line containing `at`, first
/// defined at the first line containing `first`.
#[track_caller]
fn assert_in_one_file(text: &str, key: &str, what: &str, at: (&str, usize), first: &str) {
    let errors = errors_of(&[("bad.toml", text)]);
    let line = line_of(text, at.0, at.1, true);
    let first = line_of(text, first, 0, true);
    let message = format!("duplicate {what} (first defined at bad.toml:{first})");
    assert_duplicate(&errors, "bad.toml", line, key, &message);
}

#[test]
fn a_key_set_twice_in_one_table() {
    let text = "[remote.a]\naddress = \"h\"\nprotocol = \"smtp\"\naddress = \"i\"\n";
    assert_in_one_file(
        text,
        "remote.a.address",
        "key",
        ("address", 1),
        "address = \"h\"",
    );
}

#[test]
fn a_table_header_written_twice() {
    // The seed's own second example repeats `[directory."imap".tls]` this way.
    let text = "[directory.imap]\ntype = \"imap\"\naddress = \"h\"\n[directory.imap.tls]\nimplicit = true\n[directory.\"imap\".tls]\nimplicit = false\n";
    assert_in_one_file(
        text,
        "directory.imap.tls",
        "table",
        ("tls]", 1),
        "[directory.imap.tls]",
    );
}

#[test]
fn a_section_header_written_twice() {
    let text = "[session]\ntimeout = \"1m\"\n[remote.a]\naddress = \"h\"\nprotocol = \"smtp\"\n[session]\nduration = \"5m\"\n";
    assert_in_one_file(text, "session", "table", ("[session]", 1), "[session]");
}

#[test]
fn a_table_header_after_dotted_keys_made_that_table() {
    let text = "[remote.a]\naddress = \"h\"\nprotocol = \"smtp\"\ntls.implicit = true\n[remote.a.tls]\nallow-invalid-certs = true\n";
    assert_in_one_file(
        text,
        "remote.a.tls",
        "table",
        ("[remote.a.tls]", 0),
        "tls.implicit",
    );
}

#[test]
fn a_table_header_where_a_value_was_set() {
    let text = "[remote.a]\naddress = \"h\"\nprotocol = \"smtp\"\n[remote.a.address]\nx = 1\n";
    assert_in_one_file(
        text,
        "remote.a.address",
        "table",
        ("[remote.a.address]", 0),
        "address = \"h\"",
    );
}

#[test]
fn a_dotted_key_set_twice() {
    let text = "[remote.a]\naddress = \"h\"\nprotocol = \"smtp\"\ntls.implicit = true\ntls.implicit = false\n";
    assert_in_one_file(
        text,
        "remote.a.tls.implicit",
        "key",
        ("tls.implicit", 1),
        "tls.implicit = true",
    );
}

#[test]
fn a_dotted_key_reaching_into_a_table_defined_by_a_header() {
    let text = "[remote.a.tls]\nimplicit = true\n[remote.a]\naddress = \"h\"\nprotocol = \"smtp\"\ntls.allow-invalid-certs = true\n";
    assert_in_one_file(
        text,
        "remote.a.tls",
        "table",
        ("tls.allow-invalid-certs", 0),
        "[remote.a.tls]",
    );
}

#[test]
fn a_key_set_twice_in_an_inline_table() {
    let text = "[remote.a]\naddress = \"h\"\nprotocol = \"smtp\"\ncache.ttl = { positive = \"1d\", positive = \"2d\" }\n";
    let errors = errors_of(&[("bad.toml", text)]);
    let line = line_of(text, "cache.ttl", 0, true);
    assert!(
        errors.iter().any(|e| e.line == line
            && e.key == "remote.a.cache.ttl.positive"
            && e.message.starts_with("duplicate key")),
        "{errors:?}"
    );
}

#[test]
fn an_array_of_tables_over_a_table() {
    let text = "[queue.schedule]\nexpire = \"1d\"\n[[queue.schedule]]\nexpire = \"2d\"\n";
    assert_in_one_file(
        text,
        "queue.schedule",
        "table",
        ("[[queue.schedule]]", 0),
        "[queue.schedule]",
    );
}

#[test]
fn a_table_over_an_array_of_tables() {
    let text = "[[queue.schedule]]\nexpire = \"1d\"\n[queue.schedule]\nexpire = \"2d\"\n";
    assert_in_one_file(
        text,
        "queue.schedule",
        "table",
        // The first line containing `[queue.schedule]` is the `[[queue.schedule]]` header.
        ("[queue.schedule]", 1),
        "[[queue.schedule]]",
    );
}

#[test]
fn an_array_of_tables_over_a_value() {
    let text = "[queue.schedule]\nretry = [\"1m\"]\n[[queue.schedule.retry]]\nx = 1\n";
    assert_in_one_file(
        text,
        "queue.schedule.retry",
        "table",
        ("[[queue.schedule.retry]]", 0),
        "retry = ",
    );
}

#[test]
fn quoted_keys_keep_their_quotes_in_the_path() {
    let text = "[remote.\"mx.example\"]\naddress = \"h\"\nprotocol = \"smtp\"\n'address' = \"i\"\n";
    assert_in_one_file(
        text,
        "remote.\"mx.example\".address",
        "key",
        ("'address'", 0),
        "address = \"h\"",
    );
}

#[test]
fn a_table_in_the_main_file_and_an_include_file() {
    let main = "[remote.lmtp]\naddress = \"a\"\nprotocol = \"lmtp\"\n";
    let include = "# rendered\nremote.lmtp.port = 24\n";
    let errors = errors_of(&[("config.toml", main), ("conf.d/remotes.toml", include)]);
    let first = line_of(main, "[remote.lmtp]", 0, true);
    assert_duplicate(
        &errors,
        "conf.d/remotes.toml",
        2,
        "remote.lmtp",
        &format!("duplicate table (first defined at config.toml:{first})"),
    );
}

#[test]
fn a_key_in_two_include_files() {
    let a = "[server]\nmax-connections = 10\n";
    let b = "\n[server]\nmax-connections = 20\n";
    let errors = errors_of(&[("config.toml", ""), ("a.toml", a), ("b.toml", b)]);
    assert_duplicate(
        &errors,
        "b.toml",
        3,
        "server.max-connections",
        "duplicate key (first defined at a.toml:2)",
    );
}

#[test]
fn a_remote_in_two_include_files() {
    let a = "[remote.r]\naddress = \"a\"\nprotocol = \"smtp\"\n";
    let b = "\n[remote.r]\naddress = \"b\"\nprotocol = \"smtp\"\n";
    let errors = errors_of(&[("config.toml", ""), ("a.toml", a), ("b.toml", b)]);
    assert_duplicate(
        &errors,
        "b.toml",
        2,
        "remote.r",
        "duplicate table (first defined at a.toml:1)",
    );
}

#[test]
fn arrays_of_tables_in_two_files() {
    let main = "[[queue.schedule]]\nexpire = \"1d\"\n";
    let include = "[[queue.schedule]]\nexpire = \"2d\"\n";
    let errors = errors_of(&[("config.toml", main), ("more.toml", include)]);
    let first = line_of(main, "[[queue.schedule]]", 0, true);
    assert_duplicate(
        &errors,
        "more.toml",
        1,
        "queue.schedule",
        &format!("duplicate key (first defined at config.toml:{first})"),
    );
}
