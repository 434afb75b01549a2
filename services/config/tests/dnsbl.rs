//! `session.dnsbl.*`: the defaults, every key read, and every bad value refused with the
//! file, line and key path.

#![allow(clippy::unwrap_used)]

use std::net::Ipv4Addr;
use std::time::Duration;

use ferrymail_config::load_str;
use ferrymail_config::model::dnsbl::ReplyRange;
use ferrymail_config::value::DnsblScope;

mod support;
use support::{BASE, assert_refused_at_their_line, errors};

#[test]
fn by_default_no_zone_is_asked_and_the_threshold_is_postfix_s() {
    let dnsbl = load_str("ok.toml", BASE).unwrap().session.dnsbl;
    assert!(dnsbl.zones.is_empty());
    assert_eq!(dnsbl.threshold, 1);
    assert_eq!(dnsbl.allow_threshold, 0);
    assert_eq!(dnsbl.timeout, Duration::from_secs(5));
}

#[test]
fn every_key_is_read() {
    let text = format!(
        "{BASE}[session.dnsbl]\nthreshold = 3\nallow-threshold = -2\ntimeout = \"2s\"\n\
         [session.dnsbl.server.zen]\nzone = \"Zen.Spamhaus.org.\"\nweight = 3\n\
         replies = [\"127.0.0.2-127.0.0.11\", \"127.0.1.0/24\", \"127.0.0.20\"]\n\
         [session.dnsbl.server.wl]\nzone = \"list.dnswl.example\"\nweight = -2\n\
         [session.dnsbl.server.dbl]\nzone = \"dbl.example\"\nscope = \"sender-domain\"\n\
         [session.dnsbl.server.helo]\nzone = \"helo.example\"\nscope = \"helo\"\n\
         [session.dnsbl.server.off]\nzone = \"off.example\"\nenable = false\n"
    );
    let dnsbl = load_str("ok.toml", &text).unwrap().session.dnsbl;
    assert_eq!(dnsbl.threshold, 3);
    assert_eq!(dnsbl.allow_threshold, -2);
    assert_eq!(dnsbl.timeout, Duration::from_secs(2));
    let ids: Vec<&str> = dnsbl.zones.iter().map(|z| z.id.as_str()).collect();
    assert_eq!(
        ids,
        ["dbl", "helo", "wl", "zen"],
        "the disabled zone is left out"
    );
    let zen = dnsbl.zones.iter().find(|z| z.id == "zen").unwrap();
    assert_eq!(zen.zone, "zen.spamhaus.org");
    assert_eq!(zen.scope, DnsblScope::Ip);
    assert_eq!(zen.weight, 3);
    assert_eq!(zen.replies.len(), 3);
    assert!(zen.lists(Ipv4Addr::new(127, 0, 1, 7)));
    assert!(!zen.lists(Ipv4Addr::new(127, 0, 0, 12)));
    let wl = dnsbl.zones.iter().find(|z| z.id == "wl").unwrap();
    assert_eq!(wl.weight, -2);
    assert_eq!(
        wl.replies,
        [ReplyRange {
            first: Ipv4Addr::new(127, 0, 0, 0),
            last: Ipv4Addr::new(127, 255, 255, 255)
        }]
    );
    assert_eq!(dnsbl.zones_of(DnsblScope::SenderDomain).count(), 1);
    assert_eq!(dnsbl.zones_of(DnsblScope::Helo).count(), 1);
    assert_eq!(dnsbl.zones_of(DnsblScope::Ip).count(), 2);
}

#[test]
fn bad_global_values_are_refused_at_their_line() {
    let line = BASE.lines().count() + 2;
    for (key, value, message) in [
        ("threshold", "0", "at least 1"),
        ("threshold", "-1", "out of range"),
        ("threshold", "\"2\"", "integer"),
        ("allow-threshold", "1", "negative"),
        ("allow-threshold", "1.5", "integer"),
        ("allow-threshold", "3000000000", "out of range"),
        ("timeout", "\"0s\"", "longer than zero"),
        ("timeout", "\"soon\"", ""),
        ("unknown", "1", ""),
    ] {
        let text = format!("[session.dnsbl]\n{key} = {value}\n");
        let errors = errors(&text);
        let path = format!("session.dnsbl.{key}");
        assert!(
            errors
                .iter()
                .any(|(at, k, text)| *at == line && *k == path && text.contains(message)),
            "{key} = {value}: expected an error containing {message:?}, got {errors:?}"
        );
    }
}

#[test]
fn bad_zone_values_are_refused_at_their_line() {
    assert_refused_at_their_line(
        "session.dnsbl.server.bl",
        Some(("zone", "\"bl.example\"")),
        &[
            ("zone", "\"bl example\"", "not a zone name"),
            ("zone", "\"\"", "not a zone name"),
            ("zone", "3", "string"),
            ("scope", "\"url\"", "unknown value"),
            ("weight", "0", "must not be 0"),
            ("weight", "\"1\"", "integer"),
            ("replies", "[]", "at least one"),
            ("replies", "[\"10.0.0.1\"]", "outside 127.0.0.0/8"),
            ("replies", "[\"127.0.0.[2..11]\"]", "not an IPv4 address"),
            ("replies", "\"127.0.0.2\"", "list"),
            ("enable", "\"yes\"", "boolean"),
            ("unknown", "1", ""),
        ],
    );
}

#[test]
fn a_zone_needs_its_name() {
    let errors = errors("[session.dnsbl.server.bl]\nweight = 2\n");
    assert!(
        errors
            .iter()
            .any(|(_, k, text)| k == "session.dnsbl.server.bl.zone" && text.contains("missing")),
        "{errors:?}"
    );
}
