//! `report.dmarc.aggregate.*` and `report.tls.aggregate.*`: Stalwart's defaults, every key
//! read as written, and every bad value refused with its file, line and key path.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use ferrymail_config::model::report::AggregateReport;
use ferrymail_config::{Config, ConfigError, load_str};

/// Where the configuration keeps one kind of report's settings.
type Settings = fn(Config) -> AggregateReport;

/// Both kinds of aggregate report: their table and their settings.
const KINDS: [(&str, Settings); 2] = [("dmarc", |c| c.dmarc_reports), ("tls", |c| c.tls_reports)];

const BASE: &str = "[server]\nhostname = \"mx.example.org\"\n";

fn load(text: &str) -> Result<Config, Vec<ConfigError>> {
    load_str("report.toml", &format!("{BASE}{text}")).map_err(|e| e.0)
}

#[track_caller]
fn assert_error(value: &str, key: &str, message: &str) {
    for (kind, _) in KINDS {
        assert_error_in(kind, value, key, message);
    }
}

#[track_caller]
fn assert_error_in(kind: &str, value: &str, key: &str, message: &str) {
    let text = format!("[report.{kind}.aggregate]\n{key} = {value}\n");
    let errors = load(&text)
        .err()
        .unwrap_or_else(|| panic!("accepted:\n{text}"));
    let line = BASE.lines().count() + 2;
    let path = format!("report.{kind}.aggregate.{key}");
    assert!(
        errors.iter().any(|e| e.file == "report.toml"
            && e.key == path
            && e.line == line
            && e.message.contains(message)),
        "expected {path} at line {line} containing {message:?}, got:\n{}",
        errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn daily_reports_from_the_host_by_default() {
    for (kind, of) in KINDS {
        let reports = of(load("").unwrap());
        assert_eq!(reports.period, Some(Duration::from_secs(86_400)));
        assert!(reports.enabled());
        assert_eq!(reports.from_name, "Report Subsystem");
        assert_eq!(
            reports.from_address,
            format!("noreply-{kind}@mx.example.org")
        );
        assert_eq!(reports.org_name, "mx.example.org");
        assert_eq!(reports.contact_info, None);
        assert_eq!(reports.max_size, 26_214_400);
        assert!(reports.sign.is_empty());
        assert_eq!(reports.max_records, 10_000);
    }
}

#[test]
fn every_key_is_read_as_written() {
    for (kind, of) in KINDS {
        every_key_is_read_as_written_in(kind, of);
    }
}

fn every_key_is_read_as_written_in(kind: &str, of: Settings) {
    let config = load(&format!(
        "[report.{kind}.aggregate]\nsend = \"hourly\"\nfrom-name = \"DMARC\"\n\
         from-address = \"dmarc@example.org\"\norg-name = \"Example\"\n\
         contact-info = \"https://example.org/dmarc\"\nmax-size = \"1MB\"\nmax-records = 50\n",
    ))
    .unwrap();
    let reports = of(config);
    assert_eq!(reports.period, Some(Duration::from_secs(3_600)));
    assert_eq!(reports.from_name, "DMARC");
    assert_eq!(reports.from_address, "dmarc@example.org");
    assert_eq!(reports.org_name, "Example");
    assert_eq!(
        reports.contact_info.as_deref(),
        Some("https://example.org/dmarc")
    );
    assert_eq!(reports.max_size, 1024 * 1024);
    assert_eq!(reports.max_records, 50);
}

#[test]
fn frequencies_and_durations() {
    for (value, period) in [
        ("\"weekly\"", Some(Duration::from_secs(7 * 86_400))),
        ("\"daily\"", Some(Duration::from_secs(86_400))),
        ("\"never\"", None),
        ("\"disable\"", None),
        ("false", None),
        ("\"1m\"", Some(Duration::from_secs(60))),
    ] {
        for (kind, of) in KINDS {
            let config = load(&format!("[report.{kind}.aggregate]\nsend = {value}\n")).unwrap();
            assert_eq!(of(config).period, period, "{kind}: {value}");
        }
    }
}

#[test]
fn signatures_must_exist() {
    assert_error("[\"rsa\"]", "sign", "no signature named \"rsa\"");
    assert_error("42", "sign", "list of signature ids");
}

#[test]
fn malformed_values_are_refused() {
    assert_error("\"monthly\"", "send", "unknown value \"monthly\"");
    assert_error("\"1s\"", "send", "shorter than the 10s minimum");
    assert_error("true", "send", "expected");
    assert_error("7", "send", "expected");
    assert_error("\"nobody\"", "from-address", "not an email address");
    assert_error("12", "from-name", "expected");
    assert_error("[]", "org-name", "expected");
    assert_error("false", "contact-info", "expected");
    assert_error("\"lots\"", "max-size", "size");
    assert_error("0", "max-size", "larger than zero");
    assert_error("0", "max-records", "larger than zero");
    assert_error("-1", "max-records", "");
    assert_error("\"x\"", "unknown-key", "unknown");
}

#[test]
fn each_kind_keeps_its_own_settings() {
    let config = load(
        "[report.dmarc.aggregate]\nsend = \"never\"\n\
         [report.tls.aggregate]\nsend = \"1m\"\nmax-records = 7\n",
    )
    .unwrap();
    assert_eq!(config.dmarc_reports.period, None);
    assert_eq!(config.dmarc_reports.max_records, 10_000);
    assert_eq!(config.tls_reports.period, Some(Duration::from_secs(60)));
    assert_eq!(config.tls_reports.max_records, 7);
}
