//! `session.milter.<id>`: Stalwart's defaults, every key read, and every bad value refused
//! with the file, line and key path.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use ferrymail_config::load_str;
use ferrymail_config::model::stage_rules::Stage;

mod support;
use support::{BASE, assert_refused_at_their_line, errors};

#[test]
fn no_milter_by_default() {
    let session = load_str("ok.toml", BASE).unwrap().session;
    assert!(session.milters.is_empty());
}

#[test]
fn a_minimal_milter_takes_stalwart_s_defaults() {
    let text = format!("{BASE}[session.milter.rspamd]\nhostname = \"127.0.0.1\"\n");
    let milters = load_str("ok.toml", &text).unwrap().session.milters;
    let m = &milters[0];
    assert_eq!(
        (m.id.as_str(), m.hostname.as_str(), m.port),
        ("rspamd", "127.0.0.1", 11332)
    );
    assert_eq!(m.stages, [Stage::Data]);
    assert!(!m.tls && !m.allow_invalid_certs);
    assert_eq!(m.timeout_connect, Duration::from_secs(30));
    assert_eq!(m.timeout_command, Duration::from_secs(30));
    assert_eq!(m.timeout_data, Duration::from_secs(60));
    assert!(m.tempfail_on_error);
    assert_eq!(m.max_response_size, 52_428_800);
    assert_eq!((m.version, m.actions, m.protocol), (6, 0xff, 0x42));
}

#[test]
fn every_key_is_read_and_disabled_milters_are_left_out() {
    let text = format!(
        "{BASE}[session.milter.dkim]\nhostname = \"milter.example.org\"\nport = 8891\n\
         stages = [\"connect\", \"ehlo\", \"mail\", \"rcpt\", \"data\"]\ntls = true\n\
         allow-invalid-certs = true\ntimeout.connect = \"2s\"\ntimeout.command = \"3s\"\n\
         timeout.data = \"4s\"\noptions.tempfail-on-error = false\n\
         options.max-response-size = \"1MB\"\noptions.version = 2\n\
         options.flags.actions = 0x3f\noptions.flags.protocol = 0\n\
         [session.milter.off]\nhostname = \"127.0.0.1\"\nenable = false\n"
    );
    let milters = load_str("ok.toml", &text).unwrap().session.milters;
    assert_eq!(milters.len(), 1, "the disabled milter is left out");
    let m = &milters[0];
    assert_eq!((m.hostname.as_str(), m.port), ("milter.example.org", 8891));
    assert_eq!(m.stages.len(), 5);
    assert!(m.tls && m.allow_invalid_certs && !m.tempfail_on_error);
    assert_eq!(
        (m.timeout_connect, m.timeout_command, m.timeout_data),
        (
            Duration::from_secs(2),
            Duration::from_secs(3),
            Duration::from_secs(4)
        )
    );
    assert_eq!(m.max_response_size, 1 << 20);
    assert_eq!((m.version, m.actions, m.protocol), (2, 0x3f, 0));
}

#[test]
fn version_2_offers_only_version_2_actions() {
    let text =
        format!("{BASE}[session.milter.old]\nhostname = \"127.0.0.1\"\noptions.version = 2\n");
    let milters = load_str("ok.toml", &text).unwrap().session.milters;
    assert_eq!(milters[0].actions, 0x3f);
}

#[test]
fn bad_values_are_refused_at_their_line() {
    assert_refused_at_their_line(
        "session.milter.m",
        Some(("hostname", "\"127.0.0.1\"")),
        &[
            ("hostname", "\"\"", "not a host name"),
            ("hostname", "\"milter host\"", "not a host name"),
            ("hostname", "1", "string"),
            ("port", "0", "port number"),
            ("port", "70000", "out of range"),
            ("stages", "[]", "at least one"),
            ("stages", "[\"eom\"]", "unknown stage"),
            ("stages", "[\"auth\"]", "not supported"),
            ("stages", "[\"data\", \"data\"]", "twice"),
            ("stages", "\"data\"", "list"),
            ("tls", "\"yes\"", "boolean"),
            ("allow-invalid-certs", "1", "boolean"),
            ("enable", "\"listener = 'smtp'\"", "boolean"),
            ("timeout.connect", "\"0s\"", "longer than zero"),
            ("timeout.command", "\"soon\"", ""),
            ("timeout.data", "\"0s\"", "longer than zero"),
            ("options.tempfail-on-error", "\"true\"", "boolean"),
            ("options.max-response-size", "10", "at least 1024"),
            ("options.max-response-size", "\"lots\"", ""),
            ("options.version", "4", "not supported"),
            ("options.version", "\"6\"", "integer"),
            ("options.flags.actions", "0x1ff", "does not carry out"),
            ("options.flags.actions", "-1", "out of range"),
            ("options.flags.protocol", "0x400000", "outside"),
            ("unknown", "1", ""),
        ],
    );
}

#[test]
fn a_milter_needs_a_hostname() {
    let errors = errors("[session.milter.m]\nport = 11332\n");
    assert!(
        errors
            .iter()
            .any(|(_, k, _)| k == "session.milter.m.hostname"),
        "{errors:?}"
    );
}
