//! A main file plus an include directory, merged in name order.

use std::path::Path;

use ferrymail_config::{ConfigSource, load};

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

struct Layout {
    _dir: tempfile::TempDir,
    main: std::path::PathBuf,
    include: std::path::PathBuf,
}

fn layout(main: &str) -> Layout {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let include = dir.path().join("conf.d");
    std::fs::create_dir(&include).unwrap_or_else(|e| panic!("{e}"));
    let main_path = dir.path().join("config.toml");
    write(&main_path, main);
    Layout {
        main: main_path,
        include,
        _dir: dir,
    }
}

const MAIN: &str = "[server]\nhostname = \"mx.example.org\"\n[server.listener.smtp]\nbind = \"127.0.0.1:2525\"\nprotocol = \"smtp\"\n";

#[test]
fn included_files_add_remotes_directories_and_listeners() {
    let l = layout(MAIN);
    write(
        &l.include.join("remotes.toml"),
        "[remote.lmtp]\naddress = \"127.0.0.1\"\nprotocol = \"lmtp\"\n",
    );
    write(
        &l.include.join("directories.toml"),
        "[directory.corp]\ntype = \"lmtp\"\naddress = \"127.0.0.1\"\n[server.listener.lmtp]\nbind = \"127.0.0.1:2424\"\nprotocol = \"lmtp\"\n",
    );
    // Kubernetes mounts ConfigMaps with hidden `..data` entries; those and non-TOML files are skipped.
    write(&l.include.join(".hidden.toml"), "this is not toml");
    write(&l.include.join("README"), "not read");
    let source = ConfigSource::file(&l.main).with_include_dir(&l.include);
    let loaded = load(&source).unwrap_or_else(|e| panic!("{e}"));
    assert!(loaded.config.remotes.contains_key("lmtp"));
    assert!(loaded.config.directories.contains_key("corp"));
    assert_eq!(loaded.config.server.listeners.len(), 2);
    let names: Vec<_> = loaded
        .files
        .iter()
        .filter_map(|f| f.file_name()?.to_str())
        .collect();
    assert_eq!(names, ["config.toml", "directories.toml", "remotes.toml"]);
}

#[test]
fn a_remote_defined_in_two_files_is_a_duplicate_naming_both() {
    let l = layout(&format!(
        "{MAIN}[remote.lmtp]\naddress = \"a\"\nprotocol = \"lmtp\"\n"
    ));
    write(
        &l.include.join("remotes.toml"),
        "\n[remote.lmtp]\naddress = \"b\"\nprotocol = \"lmtp\"\n",
    );
    let errors = load(&ConfigSource::file(&l.main).with_include_dir(&l.include))
        .err()
        .unwrap_or_else(|| panic!("accepted"));
    let error = errors
        .iter()
        .find(|e| e.key == "remote.lmtp")
        .unwrap_or_else(|| panic!("{errors}"));
    assert!(
        error.file.ends_with("remotes.toml") && error.line == 2,
        "{error}"
    );
    assert!(
        error
            .message
            .starts_with("duplicate table (first defined at ")
            && error.message.ends_with("config.toml:6)"),
        "{error}"
    );
}

#[test]
fn a_key_set_in_two_files_is_a_duplicate() {
    let l = layout(MAIN);
    write(
        &l.include.join("a.toml"),
        "[server]\nhostname = \"other\"\n",
    );
    let errors = load(&ConfigSource::file(&l.main).with_include_dir(&l.include))
        .err()
        .unwrap_or_else(|| panic!("accepted"));
    assert!(
        errors
            .iter()
            .any(|e| e.key == "server.hostname" && e.message.starts_with("duplicate key")),
        "{errors}"
    );
}

#[test]
fn errors_in_an_included_file_name_that_file() {
    let l = layout(MAIN);
    write(
        &l.include.join("remotes.toml"),
        "[remote.x]\naddress = \"a\"\nprotocol = \"lmtp\"\ntimeout = \"forever\"\n",
    );
    let errors = load(&ConfigSource::file(&l.main).with_include_dir(&l.include))
        .err()
        .unwrap_or_else(|| panic!("accepted"));
    let error = errors.iter().next().unwrap_or_else(|| panic!("no error"));
    assert!(
        error.file.ends_with("remotes.toml") && error.line == 4 && error.key == "remote.x.timeout",
        "{error}"
    );
}

#[test]
fn missing_files_are_reported() {
    let errors = load(&ConfigSource::file("/nonexistent/ferrymail.toml"))
        .err()
        .unwrap_or_else(|| panic!("accepted"));
    assert!(
        errors.iter().any(
            |e| e.file == "/nonexistent/ferrymail.toml" && e.message.starts_with("cannot read")
        ),
        "{errors}"
    );
    let l = layout(MAIN);
    let errors = load(&ConfigSource::file(&l.main).with_include_dir(l.include.join("missing")))
        .err()
        .unwrap_or_else(|| panic!("accepted"));
    assert!(
        errors
            .iter()
            .any(|e| e.message.starts_with("cannot list the include directory")),
        "{errors}"
    );
}

#[test]
fn the_hash_changes_exactly_when_the_text_does() {
    let l = layout(MAIN);
    let source = ConfigSource::file(&l.main).with_include_dir(&l.include);
    let first = load(&source).unwrap_or_else(|e| panic!("{e}")).hash;
    assert_eq!(first, load(&source).unwrap_or_else(|e| panic!("{e}")).hash);
    write(
        &l.include.join("r.toml"),
        "[remote.r]\naddress = \"a\"\nprotocol = \"smtp\"\n",
    );
    let second = load(&source).unwrap_or_else(|e| panic!("{e}")).hash;
    assert_ne!(first, second);
    assert_eq!(second.len(), 64);
}

#[test]
fn files_read_through_substitutions_are_listed_and_hashed() {
    let l = layout("");
    let secret = l
        .include
        .parent()
        .unwrap_or_else(|| panic!("no parent"))
        .join("secret.txt");
    write(&secret, "one\n");
    let text = format!(
        "{MAIN}[remote.r]\naddress = \"a\"\nprotocol = \"smtp\"\nauth.username = \"u\"\nauth.secret = \"%{{file:{}}}%\"\n",
        secret.display()
    );
    write(&l.main, &text);
    let source = ConfigSource::file(&l.main);
    let first = load(&source).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(first.referenced_files, std::slice::from_ref(&secret));
    // A rotated secret (or certificate) changes the hash, though no config file changed.
    write(&secret, "two\n");
    let second = load(&source).unwrap_or_else(|e| panic!("{e}"));
    assert_ne!(first.hash, second.hash);
}
