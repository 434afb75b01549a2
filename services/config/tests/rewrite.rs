//! `session.mail.rewrite`, `session.rcpt.rewrite` and `session.rcpt.aliases`: rules and
//! aliases read and applied, and every bad one refused with the file, line and key path.

#![allow(clippy::unwrap_used)]

use ferrymail_config::load_str;
use ferrymail_config::model::rules::Variable;

mod support;
use support::{BASE, errors};

#[test]
fn by_default_nothing_is_rewritten() {
    let config = load_str("ok.toml", BASE).unwrap();
    assert!(config.session.mail_rewrite.0.is_empty());
    assert!(config.session.rcpt_rewrite.0.is_empty());
}

#[test]
fn rules_are_read_and_the_first_match_decides() {
    let text = format!(
        "{BASE}[session.rcpt]\nrewrite = [ {{ if = \"rcpt\", matches = \"^(?i)(.+)@old\\\\.example$\", then = \"$1@new.example\" }},\n\
         {{ if = \"rcpt-domain\", matches = \"^legacy\\\\.(.+)$\", then = \"postmaster@${{1}}\" }},\n\
         {{ else = false }} ]\n"
    );
    let rules = load_str("ok.toml", &text).unwrap().session.rcpt_rewrite;
    let rcpt = |address: &'static str| {
        move |v: Variable| match v {
            Variable::Rcpt => Some(address),
            Variable::RcptDomain => address.rsplit_once('@').map(|(_, d)| d),
            _ => None,
        }
    };
    assert_eq!(
        rules.apply(rcpt("Bob@OLD.example")).as_deref(),
        Some("Bob@new.example")
    );
    assert_eq!(
        rules.apply(rcpt("x@legacy.example.org")).as_deref(),
        Some("postmaster@example.org")
    );
    assert_eq!(rules.apply(rcpt("x@example.org")), None);
}

#[test]
fn bad_rules_are_refused_at_their_line() {
    let line = BASE.lines().count() + 2;
    for (table, value, message) in [
        ("session.rcpt", "true", "false, or a list"),
        ("session.rcpt", "[]", "at least an { else = false }"),
        ("session.rcpt", "[ { else = true } ]", "else must be false"),
        (
            "session.rcpt",
            "[ { if = \"rcpt\", matches = \"a\", then = \"b\" } ]",
            "the last rule must be",
        ),
        (
            "session.rcpt",
            "[ { if = \"rcpt\", matches = \"(\", then = \"b\" }, { else = false } ]",
            "invalid regular expression",
        ),
        (
            "session.rcpt",
            "[ { if = \"rcpt\", matches = \"^(.+)$\", then = \"$2@x\" }, { else = false } ]",
            "does not capture",
        ),
        (
            "session.rcpt",
            "[ { if = \"rcpt\", matches = \"^(.+)$\", then = \"\" }, { else = false } ]",
            "must not be empty",
        ),
        (
            "session.rcpt",
            "[ { if = \"rcpt\", then = \"a@b\" }, { else = false } ]",
            "missing \"matches\"",
        ),
        (
            "session.rcpt",
            "[ { if = \"rcpt\", matches = \"x\", then = \"a@b\", in-list = \"a/b\" }, { else = false } ]",
            "unknown key",
        ),
        (
            "session.rcpt",
            "[ { if = \"nothing\", matches = \"x\", then = \"a@b\" }, { else = false } ]",
            "",
        ),
        (
            "session.rcpt",
            "[ { if = \"sender\", matches = \"x\", then = \"a@b\" }, { else = false } ]",
            "cannot test sender",
        ),
        (
            "session.mail",
            "[ { if = \"rcpt\", matches = \"x\", then = \"a@b\" }, { else = false } ]",
            "cannot test rcpt",
        ),
    ] {
        let text = format!("[{table}]\nrewrite = {value}\n");
        let errors = errors(&text);
        let key = format!("{table}.rewrite");
        assert!(
            errors
                .iter()
                .any(|(l, k, m)| *l == line && *k == key && m.contains(message)),
            "{text}: {errors:?}"
        );
    }
}

/// A directory whose lookup list `aliases` holds `entries`, and the key naming it.
fn aliases_config(entries: &str) -> String {
    format!(
        "[directory.corp]\ntype = \"lmtp\"\naddress = \"127.0.0.1\"\nport = 9\n\
         [directory.corp.lookup]\naliases = [{entries}]\n[session.rcpt]\naliases = \"corp/aliases\"\n"
    )
}

#[test]
fn aliases_are_read_from_a_lookup_list() {
    let text = format!(
        "{BASE}{}",
        aliases_config("\"Sales@Example.org = a@example.org, b@example.net\"")
    );
    let aliases = load_str("ok.toml", &text).unwrap().session.aliases;
    assert_eq!(
        aliases.targets("sales@EXAMPLE.org"),
        Some(["a@example.org".to_owned(), "b@example.net".to_owned()].as_slice())
    );
    assert_eq!(aliases.targets("other@example.org"), None);
}

#[test]
fn bad_aliases_are_refused() {
    for (entries, message) in [
        ("\"no-equals-sign\"", "is not `alias = target"),
        ("\"a@x = \"", "is not an address"),
        ("\"a@x = b@y, \"", "is not an address"),
        ("\"a = b@y\"", "is not an address"),
        ("\"a@x = b y@z\"", "is not an address"),
        ("\"a@x = b@y\", \"A@X = c@z\"", "given twice"),
    ] {
        let errors = errors(&aliases_config(entries));
        assert!(
            errors
                .iter()
                .any(|(_, k, m)| k == "session.rcpt.aliases" && m.contains(message)),
            "{entries}: {errors:?}"
        );
    }
    for (reference, message) in [
        ("corp/nothing", "has no lookup list"),
        ("nobody/aliases", "no directory"),
        ("not-a-list", "invalid list"),
        ("remote/x", "no remote"),
    ] {
        let text = aliases_config("").replace("\"corp/aliases\"", &format!("\"{reference}\""));
        let errors = errors(&text);
        assert!(
            errors
                .iter()
                .any(|(_, k, m)| k == "session.rcpt.aliases" && m.contains(message)),
            "{reference}: {errors:?}"
        );
    }
}
