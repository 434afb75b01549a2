//! `queue.outbound.dead.*`: Postfix's defaults, and every bad value refused with the file,
//! line and key path.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use ferrymail_config::load_str;

mod support;
use support::{BASE, assert_refused_at_their_line};

#[test]
fn the_defaults_are_postfix_s() {
    let dead = load_str("ok.toml", BASE).unwrap().queue.dead;
    assert_eq!(dead.failed_cohort_limit, 1);
    assert_eq!(dead.min_backoff, Duration::from_secs(300));
    assert_eq!(dead.max_backoff, Duration::from_secs(4000));
    assert!(dead.enabled());
}

#[test]
fn values_are_read_and_zero_turns_it_off() {
    let text = format!(
        "{BASE}[queue.outbound.dead]\nfailed-cohort-limit = 0\nmin-backoff = \"2s\"\nmax-backoff = \"1m\"\n"
    );
    let dead = load_str("ok.toml", &text).unwrap().queue.dead;
    assert_eq!(dead.failed_cohort_limit, 0);
    assert!(!dead.enabled());
    assert_eq!(dead.min_backoff, Duration::from_secs(2));
    assert_eq!(dead.max_backoff, Duration::from_secs(60));
}

#[test]
fn bad_values_are_refused_at_their_line() {
    assert_refused_at_their_line(
        "queue.outbound.dead",
        None,
        &[
            ("failed-cohort-limit", "-1", ""),
            ("failed-cohort-limit", "\"one\"", ""),
            ("failed-cohort-limit", "1.5", ""),
            ("failed-cohort-limit", "true", ""),
            ("min-backoff", "\"0s\"", "longer than zero"),
            ("min-backoff", "\"5 fortnights\"", "unknown unit"),
            ("min-backoff", "300", ""),
            ("max-backoff", "\"0s\"", "longer than zero"),
            ("max-backoff", "\"10s\"", "at least min-backoff"),
            ("max-backoff", "\"\"", ""),
            ("unknown", "1", ""),
        ],
    );
}
