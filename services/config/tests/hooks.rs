//! `session.hook.<id>`: Stalwart's defaults, every key read, secrets never shown, and every
//! bad value refused with the file, line and key path.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use ferrymail_config::load_str;
use ferrymail_config::model::stage_rules::Stage;

mod support;
use support::{BASE, assert_refused_at_their_line, errors};

#[test]
fn no_hook_by_default() {
    assert!(load_str("ok.toml", BASE).unwrap().session.hooks.is_empty());
}

#[test]
fn a_minimal_hook_takes_stalwart_s_defaults() {
    let text = format!("{BASE}[session.hook.scan]\nurl = \"https://hooks.example.org/scan\"\n");
    let hooks = load_str("ok.toml", &text).unwrap().session.hooks;
    let hook = &hooks[0];
    assert_eq!(hook.id, "scan");
    assert_eq!(hook.url, "https://hooks.example.org/scan");
    assert_eq!(hook.stages, vec![Stage::Data]);
    assert_eq!(hook.timeout, Duration::from_secs(30));
    assert!(hook.tempfail_on_error);
    assert_eq!(hook.max_response_size, 52_428_800);
    assert!(!hook.allow_invalid_certs);
    assert!(hook.headers.is_empty() && hook.auth.is_none());
}

#[test]
fn every_key_is_read_in_id_order_and_secrets_stay_hidden() {
    let text = format!(
        "{BASE}[session.hook.b]\nurl = \"https://hooks.example.org/b\"\n\
         stages = [\"connect\", \"ehlo\", \"mail\", \"rcpt\", \"data\"]\ntimeout = \"5s\"\n\
         tempfail-on-error = false\nmax-response-size = \"1KB\"\nallow-invalid-certs = true\n\
         headers = [\"X-Team: mail\"]\nauth.username = \"mta\"\nauth.secret = \"hunter2\"\n\
         [session.hook.a]\nurl = \"http://127.0.0.1:9000/\"\nstages = [\"rcpt\"]\n\
         auth.username = \"local\"\nauth.secret = \"loopback-only\"\n\
         [session.hook.off]\nurl = \"http://127.0.0.1:9001/\"\nenable = false\n"
    );
    let hooks = load_str("ok.toml", &text).unwrap().session.hooks;
    let ids: Vec<&str> = hooks.iter().map(|h| h.id.as_str()).collect();
    assert_eq!(ids, ["a", "b"], "in id order, the disabled one left out");
    let b = &hooks[1];
    assert_eq!(b.stages.len(), 5);
    assert_eq!(b.timeout, Duration::from_secs(5));
    assert!(!b.tempfail_on_error);
    assert_eq!(b.max_response_size, 1024);
    assert!(b.allow_invalid_certs);
    assert_eq!(b.headers, vec![("X-Team".to_owned(), "mail".to_owned())]);
    let (user, secret) = b.auth.as_ref().unwrap();
    assert_eq!((user.as_str(), secret.expose()), ("mta", "hunter2"));
    assert!(!format!("{hooks:?}").contains("hunter2"));
    assert_eq!(hooks[0].stages, vec![Stage::Rcpt]);
}

#[test]
fn bad_values_are_refused_at_their_line() {
    assert_refused_at_their_line(
        "session.hook.h",
        Some(("url", "\"https://hooks.example.org/\"")),
        &[
            ("url", "\"ftp://hooks.example.org\"", "not an http"),
            ("url", "\"https:///x\"", "names no host"),
            ("url", "3", "string"),
            ("stages", "[]", "at least one stage"),
            ("stages", "[\"auth\"]", "not supported"),
            ("stages", "[\"quit\"]", "unknown stage"),
            ("stages", "\"data\"", "list of stages"),
            ("timeout", "\"0s\"", "longer than zero"),
            ("timeout", "\"soon\"", ""),
            ("tempfail-on-error", "\"yes\"", "boolean"),
            ("max-response-size", "0", "at least 1"),
            ("max-response-size", "\"10 parsecs\"", "invalid size"),
            ("allow-invalid-certs", "1", "boolean"),
            ("headers", "[\"no colon\"]", "Name: value"),
            ("headers", "[\"Bad Name: x\"]", "not a valid header name"),
            ("enable", "\"yes\"", "boolean"),
            ("unknown", "1", ""),
        ],
    );
}

#[test]
fn a_hook_needs_a_url() {
    let errors = errors("[session.hook.h]\nstages = [\"data\"]\n");
    assert!(
        errors.iter().any(|(_, k, _)| k == "session.hook.h.url"),
        "{errors:?}"
    );
}

#[test]
fn credentials_need_both_halves_and_tls_off_loopback() {
    let half =
        errors("[session.hook.h]\nurl = \"https://h.example.org/\"\nauth.username = \"u\"\n");
    assert!(
        half.iter()
            .any(|(_, k, m)| k == "session.hook.h.auth.secret" && m.contains("not")),
        "{half:?}"
    );
    let clear = errors(
        "[session.hook.h]\nurl = \"http://hooks.example.org/\"\nauth.username = \"u\"\nauth.secret = \"p\"\n",
    );
    assert!(
        clear
            .iter()
            .any(|(_, k, m)| k == "session.hook.h.auth.secret" && m.contains("without TLS")),
        "{clear:?}"
    );
    let v6 = errors(
        "[session.hook.h]\nurl = \"http://[2001:db8::1]:8080/\"\nauth.username = \"u\"\nauth.secret = \"p\"\n",
    );
    assert!(
        v6.iter().any(|(_, _, m)| m.contains("without TLS")),
        "{v6:?}"
    );
    let loopback = format!(
        "{BASE}[session.hook.h]\nurl = \"http://[::1]:8080/\"\nauth.username = \"u\"\nauth.secret = \"p\"\n"
    );
    assert!(load_str("ok.toml", &loopback).is_ok());
}
