//! `queue.lease.max-clock-skew`: its default, and every bad value refused with the file,
//! line and key path.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use ferrymail_config::load_str;

const BASE: &str = "[server]\nhostname = \"mx.example.org\"\n";

/// The errors of `text` as `key: message` at their line.
fn errors(text: &str) -> Vec<(usize, String, String)> {
    match load_str("bad.toml", &format!("{BASE}{text}")) {
        Ok(_) => panic!("configuration was accepted:\n{text}"),
        Err(errors) => errors
            .0
            .into_iter()
            .map(|e| (e.line, e.key, e.message))
            .collect(),
    }
}

#[test]
fn the_clock_skew_defaults_to_a_second_and_takes_durations() {
    let config = load_str("ok.toml", BASE).unwrap();
    assert_eq!(config.queue.max_clock_skew, Duration::from_secs(1));
    for (text, skew) in [
        ("\"0s\"", Duration::ZERO),
        ("\"250ms\"", Duration::from_millis(250)),
    ] {
        let text = format!("{BASE}[queue.lease]\nmax-clock-skew = {text}\n");
        let config = load_str("ok.toml", &text).unwrap();
        assert_eq!(config.queue.max_clock_skew, skew);
    }
}

#[test]
fn bad_clock_skews_are_refused_at_their_line() {
    let line = BASE.lines().count() + 2;
    for (value, message) in [
        ("\"10s\"", "must be shorter than 10s"),
        ("\"1h\"", "must be shorter than 10s"),
        ("\"5 fortnights\"", "unknown unit"),
        ("\"-1s\"", ""),
        ("\"\"", ""),
        ("3", ""),
        ("true", ""),
    ] {
        let text = format!("[queue.lease]\nmax-clock-skew = {value}\n");
        let errors = errors(&text);
        assert!(
            errors.iter().any(|(at, key, text)| *at == line
                && key == "queue.lease.max-clock-skew"
                && text.contains(message)),
            "{value}: expected an error containing {message:?}, got {errors:?}"
        );
    }
}

#[test]
fn unknown_lease_keys_are_refused() {
    let errors = errors("[queue.lease]\nduration = \"30s\"\n");
    assert!(
        errors
            .iter()
            .any(|(_, key, _)| key == "queue.lease.duration"),
        "{errors:?}"
    );
}
