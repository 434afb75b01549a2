//! `queue.outbound.*` for MX delivery: Stalwart's defaults, and every bad value refused
//! with the file, line and key path.

use std::time::Duration;

use ferrymail_config::model::outbound::{IpStrategy, TlsPolicy};
use ferrymail_config::{ConfigError, load_str};

const BASE: &str = "[server]\nhostname = \"mx.example.org\"\n";

fn errors(text: &str) -> Vec<ConfigError> {
    match load_str("bad.toml", &format!("{BASE}{text}")) {
        Ok(_) => panic!("configuration was accepted:\n{text}"),
        Err(errors) => errors.0,
    }
}

#[track_caller]
fn assert_error(text: &str, key: &str, at: &str, message: &str) {
    let errors = errors(text);
    let index = text
        .lines()
        .position(|l| l.contains(at))
        .unwrap_or_else(|| panic!("{at:?} not in text"));
    let line = BASE.lines().count() + index + 1;
    assert!(
        errors
            .iter()
            .any(|e| e.key == key && e.line == line && e.message.contains(message)),
        "expected {key} at line {line} containing {message:?}, got:\n{}",
        errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn stalwart_defaults_apply() {
    let config = load_str("ok.toml", BASE).unwrap_or_else(|e| panic!("{e:?}"));
    let outbound = &config.queue.outbound;
    assert_eq!(outbound.mx_port, 25);
    assert_eq!((outbound.max_mx, outbound.max_multihomed), (5, 2));
    assert_eq!(outbound.ip_strategy, IpStrategy::Ipv4ThenIpv6);
    assert_eq!(outbound.starttls, TlsPolicy::Optional);
    assert_eq!(outbound.dane, TlsPolicy::Optional);
    assert_eq!(outbound.mta_sts, TlsPolicy::Optional);
    assert!(!outbound.allow_invalid_certs);
    let minutes = |m: u64| Duration::from_secs(60 * m);
    assert_eq!(outbound.timeouts.connect, minutes(5));
    assert_eq!(outbound.timeouts.tls, minutes(3));
    assert_eq!(outbound.timeouts.data, minutes(10));
    assert_eq!(outbound.timeouts.mta_sts, minutes(10));
}

#[test]
fn values_that_are_accepted() {
    let text = format!(
        "{BASE}[queue.outbound]\nmx-port = 2525\nip-strategy = \"ipv6_only\"\n[queue.outbound.tls]\nstarttls = \"disable\"\ndane = \"disable\"\nmta-sts = \"disable\"\nallow-invalid-certs = true\n[queue.outbound.limits]\nmx = 1\nmultihomed = 1\n[queue.outbound.timeouts]\nehlo = \"30s\"\nmta-sts = \"1m\"\n"
    );
    let config = load_str("ok.toml", &text).unwrap_or_else(|e| panic!("{e:?}"));
    let outbound = &config.queue.outbound;
    assert_eq!(outbound.mx_port, 2525);
    assert_eq!(outbound.ip_strategy, IpStrategy::Ipv6Only);
    assert_eq!(outbound.starttls, TlsPolicy::Disable);
    assert_eq!(outbound.timeouts.ehlo, Duration::from_secs(30));
    assert_eq!(outbound.mta_sts, TlsPolicy::Disable);
    assert_eq!(outbound.timeouts.mta_sts, Duration::from_secs(60));
    let require = format!("{BASE}[queue.outbound.tls]\nmta-sts = \"require\"\n");
    let config = load_str("ok.toml", &require).unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(config.queue.outbound.mta_sts, TlsPolicy::Require);
}

#[test]
fn dane_accepts_every_policy() {
    for (value, policy) in [
        ("optional", TlsPolicy::Optional),
        ("require", TlsPolicy::Require),
        ("disable", TlsPolicy::Disable),
    ] {
        let text = format!("{BASE}[queue.outbound.tls]\ndane = \"{value}\"\n");
        let config = load_str("ok.toml", &text).unwrap_or_else(|e| panic!("{value}: {e:?}"));
        assert_eq!(config.queue.outbound.dane, policy, "dane = {value:?}");
    }
}

#[test]
fn bad_ports_and_limits() {
    let cases = [
        (
            "mx-port = 0",
            "queue.outbound.mx-port",
            "between 1 and 65535",
        ),
        ("mx-port = 70000", "queue.outbound.mx-port", "out of range"),
        (
            "mx-port = \"smtp\"",
            "queue.outbound.mx-port",
            "expected an integer",
        ),
        (
            "limits.mx = 0",
            "queue.outbound.limits.mx",
            "must be at least 1",
        ),
        (
            "limits.multihomed = 0",
            "queue.outbound.limits.multihomed",
            "must be at least 1",
        ),
        (
            "limits.multihomed = -1",
            "queue.outbound.limits.multihomed",
            "out of range",
        ),
        (
            "ip-strategy = \"ipv4_first\"",
            "queue.outbound.ip-strategy",
            "expected \"ipv4_only\" | \"ipv6_only\" | \"ipv4_then_ipv6\" | \"ipv6_then_ipv4\"",
        ),
        (
            "ip-strategy = 4",
            "queue.outbound.ip-strategy",
            "expected a string",
        ),
        (
            "limits.hosts = 3",
            "queue.outbound.limits.hosts",
            "unknown key",
        ),
    ];
    for (line, key, message) in cases {
        assert_error(&format!("[queue.outbound]\n{line}\n"), key, line, message);
    }
}

#[test]
fn bad_tls_policies() {
    let cases = [
        (
            "starttls = \"sometimes\"",
            "queue.outbound.tls.starttls",
            "expected \"optional\" | \"require\" | \"disable\"",
        ),
        (
            "starttls = true",
            "queue.outbound.tls.starttls",
            "expected a string",
        ),
        (
            "allow-invalid-certs = \"yes\"",
            "queue.outbound.tls.allow-invalid-certs",
            "expected a boolean",
        ),
        (
            "dane = \"always\"",
            "queue.outbound.tls.dane",
            "unknown value \"always\"",
        ),
        ("dane = 1", "queue.outbound.tls.dane", "expected a string"),
        (
            "mta-sts = \"enforce\"",
            "queue.outbound.tls.mta-sts",
            "unknown value \"enforce\"",
        ),
    ];
    for (line, key, message) in cases {
        assert_error(
            &format!("[queue.outbound.tls]\n{line}\n"),
            key,
            line,
            message,
        );
    }
}

#[test]
fn bad_timeouts() {
    for name in [
        "connect",
        "greeting",
        "tls",
        "ehlo",
        "mail-from",
        "rcpt-to",
        "data",
        "mta-sts",
    ] {
        let key = format!("queue.outbound.timeouts.{name}");
        let zero = format!("{name} = \"0s\"");
        assert_error(
            &format!("[queue.outbound.timeouts]\n{zero}\n"),
            &key,
            &zero,
            "must be longer than zero",
        );
        let bad = format!("{name} = \"5 fortnights\"");
        assert_error(
            &format!("[queue.outbound.timeouts]\n{bad}\n"),
            &key,
            &bad,
            "unknown unit",
        );
    }
}
