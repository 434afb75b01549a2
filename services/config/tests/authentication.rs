//! `authentication.*` and `server.http.allow-plain-text`: who may use the HTTP admin API;
//! every bad value refused with the file, line and key path, and no secret ever shown.

#![allow(clippy::unwrap_used)]

use ferrymail_config::load_str;

mod support;
use ferrymail_config::value::StoredPassword;
use support::{BASE, errors};

/// The argon2id hash of `s3cret-admin`, made by an independent implementation (argon2-cffi).
const HASH: &str = "$argon2id$v=19$m=8192,t=1,p=1$JEzACw1HxgpiBuPVNiRrCA$phc1WYh7faHzNl4vvBaqIMTrjsmRX+NFJhGTU/x4MrU";

#[test]
fn by_default_nobody_may_use_the_api_and_plain_text_is_refused() {
    let config = load_str("ok.toml", BASE).unwrap();
    assert!(!config.authentication.any());
    assert!(!config.server.http_allow_plain_text);
}

#[test]
fn hashes_and_clear_values_are_read() {
    let text = format!(
        "{BASE}[server.http]\nallow-plain-text = true\n\
         [authentication.fallback-admin]\nuser = \"admin\"\nsecret = \"{HASH}\"\n\
         [authentication.api-key.ci]\nsecret = \"token-of-ci\"\n"
    );
    let config = load_str("ok.toml", &text).unwrap();
    let admin = config.authentication.fallback_admin.clone().unwrap();
    assert_eq!(admin.user, "admin");
    assert_eq!(admin.secret, StoredPassword::Argon2(HASH.into()));
    let ci = &config.authentication.api_keys["ci"];
    assert!(ci.is_clear());
    assert!(config.server.http_allow_plain_text);
    // Neither form shows in a debug print of the configuration.
    let debug = format!("{config:?}");
    assert!(
        !debug.contains("token-of-ci") && !debug.contains("phc1WY"),
        "{debug}"
    );
}

#[test]
fn bad_values_are_refused_at_their_line() {
    let line = BASE.lines().count() + 2;
    for (table, key, value, message) in [
        (
            "authentication.fallback-admin",
            "secret",
            "\"$6$salt$abc\"",
            "not a PHC",
        ),
        (
            "authentication.fallback-admin",
            "secret",
            "\"$argon2id$garbage\"",
            "not a PHC",
        ),
        (
            "authentication.fallback-admin",
            "secret",
            "\"$pbkdf2-sha256$i=1000$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA\"",
            "only argon2",
        ),
        (
            "authentication.fallback-admin",
            "secret",
            "\"\"",
            "must not be empty",
        ),
        ("authentication.fallback-admin", "secret", "42", "string"),
        (
            "authentication.api-key.ci",
            "secret",
            "\"$nope\"",
            "only argon2",
        ),
        ("authentication.api-key.ci", "secret", "[]", "string"),
        ("server.http", "allow-plain-text", "\"yes\"", ""),
    ] {
        let text = format!("[{table}]\n{key} = {value}\n");
        let errors = errors(&text);
        let expected = format!("{table}.{key}");
        assert!(
            errors
                .iter()
                .any(|(l, k, m)| *l == line && *k == expected && m.contains(message)),
            "{text}: {errors:?}"
        );
        // The refused value is not repeated in the message: it may be a password.
        if key == "secret" {
            assert!(
                errors
                    .iter()
                    .all(|(_, _, m)| !m.contains("abc") && !m.contains("garbage"))
            );
        }
    }
}

#[test]
fn user_and_secret_go_together() {
    let errors_of = |body: &str| errors(&format!("[authentication.fallback-admin]\n{body}\n"));
    let missing = errors_of("user = \"admin\"");
    assert!(
        missing
            .iter()
            .any(|(_, k, m)| k == "authentication.fallback-admin.secret" && m.contains("together")),
        "{missing:?}"
    );
    let missing = errors_of(&format!("secret = \"{HASH}\""));
    assert!(
        missing
            .iter()
            .any(|(_, k, m)| k == "authentication.fallback-admin.user" && m.contains("together")),
        "{missing:?}"
    );
    let empty = errors_of(&format!("user = \"\"\nsecret = \"{HASH}\""));
    assert!(
        empty
            .iter()
            .any(|(_, k, _)| k == "authentication.fallback-admin.user"),
        "{empty:?}"
    );
    let unknown = errors("[authentication.api-key.ci]\nsecret = \"t\"\nrole = \"admin\"\n");
    assert!(
        unknown
            .iter()
            .any(|(_, k, m)| k == "authentication.api-key.ci.role" && m.contains("unknown")),
        "{unknown:?}"
    );
    let without = errors("[authentication.api-key.ci]\n");
    assert!(
        without
            .iter()
            .any(|(_, k, m)| k == "authentication.api-key.ci.secret" && m.contains("missing")),
        "{without:?}"
    );
}
