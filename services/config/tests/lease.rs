//! `queue.lease.duration` and `queue.lease.max-clock-skew`: their defaults, and every bad
//! value refused with the file, line and key path.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use ferrymail_config::load_str;

mod support;
use support::{BASE, errors};

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
fn the_lease_defaults_to_thirty_seconds_and_bounds_the_skew() {
    let config = load_str("ok.toml", BASE).unwrap();
    assert_eq!(config.queue.lease, Duration::from_secs(30));
    let text = format!("{BASE}[queue.lease]\nduration = \"3s\"\nmax-clock-skew = \"500ms\"\n");
    let config = load_str("ok.toml", &text).unwrap();
    assert_eq!(config.queue.lease, Duration::from_secs(3));
    assert_eq!(config.queue.max_clock_skew, Duration::from_millis(500));
    // The skew's bound follows the lease: 1 s is the default, and too much for a 3 s lease.
    let errors = errors("[queue.lease]\nduration = \"3s\"\n");
    assert!(
        errors
            .iter()
            .any(|(_, key, text)| key == "queue.lease.max-clock-skew"
                && text.contains("shorter than 1s")),
        "{errors:?}"
    );
}

#[test]
fn bad_lease_durations_are_refused_at_their_line() {
    let line = BASE.lines().count() + 2;
    for (value, message) in [
        ("\"999ms\"", "must be at least 1s"),
        ("\"0s\"", "must be at least 1s"),
        ("\"soon\"", ""),
        ("30", ""),
        ("[]", ""),
    ] {
        let errors = errors(&format!("[queue.lease]\nduration = {value}\n"));
        assert!(
            errors.iter().any(|(at, key, text)| *at == line
                && key == "queue.lease.duration"
                && text.contains(message)),
            "{value}: expected an error containing {message:?}, got {errors:?}"
        );
    }
}

#[test]
fn unknown_lease_keys_are_refused() {
    let errors = errors("[queue.lease]\nlength = \"30s\"\n");
    assert!(
        errors.iter().any(|(_, key, _)| key == "queue.lease.length"),
        "{errors:?}"
    );
}
