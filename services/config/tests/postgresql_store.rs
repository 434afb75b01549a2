//! `store.<id>` of `type = "postgresql"`: Stalwart's keys, their defaults, and every way
//! they can be wrong.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::Duration;

use ferrymail_config::model::store::StoreBackend;
use ferrymail_config::{ConfigError, load_str};

const BASE: &str = "[server]\nhostname = \"mx.example.org\"\n[storage]\ndata = \"db\"\n";

fn backend(store: &str) -> StoreBackend {
    let config = load_str("pg.toml", &format!("{BASE}[store.db]\n{store}"))
        .unwrap_or_else(|errors| panic!("refused: {errors}"));
    config.data_store().unwrap().1.backend.clone()
}

fn errors(store: &str) -> Vec<ConfigError> {
    match load_str("pg.toml", &format!("{BASE}[store.db]\n{store}")) {
        Ok(_) => panic!("accepted:\n{store}"),
        Err(errors) => errors.0,
    }
}

#[track_caller]
fn assert_refused(store: &str, key: &str, message: &str) {
    let errors = errors(store);
    assert!(
        errors
            .iter()
            .any(|e| e.key == key && e.message.contains(message)),
        "expected {key}: {message:?}, got:\n{}",
        errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    );
}

const MINIMAL: &str =
    "type = \"postgresql\"\nhost = \"localhost\"\ndatabase = \"mail\"\nuser = \"ferrymail\"\n";

#[test]
fn the_defaults_are_stalwarts() {
    let StoreBackend::PostgreSql {
        host,
        port,
        database,
        user,
        password,
        timeout,
        tls,
        allow_invalid_certs,
        max_connections,
    } = backend(MINIMAL)
    else {
        panic!("not a PostgreSQL store");
    };
    assert_eq!(
        (host.as_str(), port, database.as_str(), user.as_str()),
        ("localhost", 5432, "mail", "ferrymail")
    );
    assert!(password.is_none());
    assert_eq!(timeout, Duration::from_secs(15));
    assert_eq!(
        (tls, allow_invalid_certs, max_connections),
        (false, false, 10)
    );
}

#[test]
fn every_key_is_read() {
    let store = "type = \"postgresql\"\nhost = \"db.example.org\"\nport = 6432\n\
                 database = \"mail\"\nuser = \"mx\"\npassword = \"s3cret\"\ntimeout = \"3s\"\n\
                 tls.enable = true\ntls.allow-invalid-certs = true\npool.max-connections = 40\n";
    let StoreBackend::PostgreSql {
        host,
        port,
        password,
        timeout,
        tls,
        allow_invalid_certs,
        max_connections,
        ..
    } = backend(store)
    else {
        panic!("not a PostgreSQL store");
    };
    assert_eq!((host.as_str(), port), ("db.example.org", 6432));
    assert_eq!(password.as_ref().map(|p| p.expose()), Some("s3cret"));
    assert_eq!(timeout, Duration::from_secs(3));
    assert_eq!(
        (tls, allow_invalid_certs, max_connections),
        (true, true, 40)
    );
}

#[test]
fn the_password_never_appears_in_debug_output() {
    let store = format!("{MINIMAL}password = \"hunter2-secret\"\n");
    let backend = backend(&store);
    assert!(!format!("{backend:?}").contains("hunter2-secret"));
}

#[test]
fn the_password_may_come_from_the_environment() {
    // `load_str` reads the process environment; PATH is set wherever tests run, and
    // reading it needs no change to the environment shared by parallel tests.
    let store = format!("{MINIMAL}password = \"%{{env:PATH}}%\"\n");
    let StoreBackend::PostgreSql { password, .. } = backend(&store) else {
        panic!("not a PostgreSQL store");
    };
    assert_eq!(
        password.as_ref().map(|p| p.expose().to_owned()),
        std::env::var("PATH").ok()
    );
}

#[test]
fn host_database_and_user_are_required_and_not_empty() {
    assert_refused("type = \"postgresql\"\n", "store.db.host", "needs a host");
    assert_refused(
        "type = \"postgresql\"\n",
        "store.db.database",
        "needs a database",
    );
    assert_refused("type = \"postgresql\"\n", "store.db.user", "needs a user");
    let empty = "type = \"postgresql\"\nhost = \"localhost\"\ndatabase = \"\"\nuser = \"u\"\n";
    assert_refused(empty, "store.db.database", "must not be empty");
}

#[test]
fn wrong_types_and_ranges_are_refused() {
    assert_refused(
        &format!("{MINIMAL}port = 0\n"),
        "store.db.port",
        "between 1 and 65535",
    );
    assert_refused(
        &format!("{MINIMAL}port = 70000\n"),
        "store.db.port",
        "out of range",
    );
    assert_refused(
        &format!("{MINIMAL}port = \"5432\"\n"),
        "store.db.port",
        "integer",
    );
    assert_refused(
        &format!("{MINIMAL}timeout = \"0s\"\n"),
        "store.db.timeout",
        "longer than zero",
    );
    assert_refused(&format!("{MINIMAL}timeout = 15\n"), "store.db.timeout", "");
    assert_refused(
        &format!("{MINIMAL}tls.enable = \"yes\"\n"),
        "store.db.tls.enable",
        "boolean",
    );
    assert_refused(
        &format!("{MINIMAL}pool.max-connections = 0\n"),
        "store.db.pool.max-connections",
        "at least 1",
    );
    assert_refused(
        &format!("{MINIMAL}password = 42\n"),
        "store.db.password",
        "string",
    );
}

#[test]
fn keys_of_another_type_are_refused() {
    assert_refused(
        "type = \"embedded\"\npath = \"data\"\nhost = \"localhost\"\n",
        "store.db.host",
        "applies only to type = \"postgresql\"",
    );
    assert_refused(
        "type = \"embedded\"\npath = \"data\"\ntls.enable = true\n",
        "store.db.tls.enable",
        "applies only to type = \"postgresql\"",
    );
    assert_refused(
        "type = \"foundationdb\"\npool.max-connections = 4\n",
        "store.db.pool.max-connections",
        "applies only to type = \"postgresql\"",
    );
    assert_refused(
        &format!("{MINIMAL}path = \"data\"\n"),
        "store.db.path",
        "applies only to type = \"embedded\"",
    );
    assert_refused(
        &format!("{MINIMAL}cluster-file = \"fdb.cluster\"\n"),
        "store.db.cluster-file",
        "applies only to type = \"foundationdb\"",
    );
    assert_refused(
        &format!("{MINIMAL}hots = \"x\"\n"),
        "store.db.hots",
        "unknown key",
    );
}

#[test]
fn a_password_goes_to_a_remote_host_only_over_tls() {
    let remote = "type = \"postgresql\"\nhost = \"db.example.org\"\ndatabase = \"mail\"\n\
                  user = \"mx\"\npassword = \"pw\"\n";
    assert_refused(remote, "store.db.password", "without TLS");
    // With TLS, or said to be acceptable, or to this machine: accepted.
    backend(&format!("{remote}tls.enable = true\n"));
    backend(&format!("{remote}tls.allow-plain-text = true\n"));
    backend(&format!("{MINIMAL}password = \"pw\"\n"));
    let loopback = MINIMAL.replace("localhost", "127.0.0.1");
    backend(&format!("{loopback}password = \"pw\"\n"));
    // Without a password nothing secret is sent.
    backend(&remote.replace("password = \"pw\"\n", ""));
}

#[test]
fn tls_options_need_the_matching_tls_setting() {
    assert_refused(
        &format!("{MINIMAL}tls.allow-invalid-certs = true\n"),
        "store.db.tls.allow-invalid-certs",
        "tls.enable = true",
    );
    assert_refused(
        &format!("{MINIMAL}tls.enable = true\ntls.allow-plain-text = true\n"),
        "store.db.tls.allow-plain-text",
        "tls.enable = false",
    );
}
