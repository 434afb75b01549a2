//! `queue.limiter.inbound.<id>`: every key read, the stage each limiter is taken at, and
//! every bad value refused with the line and key path.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use ferrymail_config::load_str;
use ferrymail_config::model::inbound_limits::{InboundLimiter, Test};
use ferrymail_config::model::rules::Variable;
use ferrymail_config::model::stage_rules::Stage;
use ferrymail_config::value::LimiterKey;

mod support;
use support::{BASE, errors};

const LISTS: &str = "[directory.d]\ntype = \"lmtp\"\naddress = \"127.0.0.1\"\n\
    lookup.domains = [\"example.org\"]\nlookup.trusted = [\"192.0.2.0/24\"]\n\
    [remote.r]\naddress = \"127.0.0.1\"\nprotocol = \"lmtp\"\nlookup = true\n";

fn limiters(text: &str) -> std::collections::BTreeMap<String, InboundLimiter> {
    load_str("ok.toml", &format!("{BASE}{LISTS}{text}"))
        .unwrap_or_else(|e| panic!("{e}"))
        .queue
        .inbound_limiters
}

#[test]
fn none_by_default() {
    assert!(limiters("").is_empty());
}

#[test]
fn every_key_is_read_and_disabled_limiters_are_left_out() {
    let all = limiters(
        "[queue.limiter.inbound.ip]\nkey = [\"remote-ip\"]\nrate = \"5/1m\"\n\
         [queue.limiter.inbound.net]\nkey = [\"remote-network\", \"listener\"]\n\
         concurrency = 3\nlease = \"10s\"\n\
         [queue.limiter.inbound.off]\nrate = \"1/1s\"\nenable = false\n",
    );
    assert_eq!(all.keys().collect::<Vec<_>>(), ["ip", "net"]);
    let ip = &all["ip"];
    assert_eq!(ip.key, [LimiterKey::RemoteIp]);
    assert_eq!(
        ip.rate.map(|r| (r.count, r.period)),
        Some((5, Duration::from_secs(60)))
    );
    assert_eq!(ip.concurrency, None);
    assert_eq!(ip.lease, Duration::from_secs(30), "the default lease");
    assert!(ip.conditions.is_empty());
    let net = &all["net"];
    assert_eq!(net.key, [LimiterKey::RemoteNetwork, LimiterKey::Listener]);
    assert_eq!((net.rate, net.concurrency), (None, Some(3)));
    assert_eq!(net.lease, Duration::from_secs(10));
}

#[test]
fn each_limiter_is_taken_where_all_its_variables_are_known() {
    let all = limiters(
        "[queue.limiter.inbound.connect]\nrate = \"1/1s\"\n\
         [queue.limiter.inbound.ehlo]\nkey = [\"helo-domain\"]\nrate = \"1/1s\"\n\
         [queue.limiter.inbound.mail]\nkey = [\"remote-ip\"]\nrate = \"1/1s\"\n\
         match = [{ if = \"sender\", is-empty = false }, { if = \"authenticated-as\", is-empty = true }]\n\
         [queue.limiter.inbound.rcpt]\nkey = [\"sender-domain\", \"rcpt-domain\"]\nrate = \"1/1s\"\n\
         [queue.limiter.inbound.user]\nkey = [\"authenticated-as\"]\nconcurrency = 1\n",
    );
    let stage = |id: &str| all[id].stage;
    assert_eq!(stage("connect"), Stage::Connect);
    assert_eq!(stage("ehlo"), Stage::Ehlo);
    assert_eq!(
        stage("mail"),
        Stage::Mail,
        "a condition on the sender waits for MAIL"
    );
    assert_eq!(stage("rcpt"), Stage::Rcpt);
    assert_eq!(stage("user"), Stage::Mail);
}

#[test]
fn conditions_spare_dsns_authenticated_clients_and_listed_values() {
    let all = limiters(
        "[queue.limiter.inbound.l]\nrate = \"1/1s\"\nmatch = [\
         { if = \"sender\", is-empty = false }, { if = \"authenticated-as\", is-empty = true }, \
         { if = \"remote-ip\", not-in-list = \"d/trusted\" }, { if = \"rcpt-domain\", in-list = \"d/domains\" }]\n",
    );
    let conditions = &all["l"].conditions;
    assert_eq!(conditions.len(), 4);
    let [sender, auth, ip, domain] = [0, 1, 2, 3].map(|i| &conditions[i]);
    assert_eq!(sender.variable, Variable::Sender);
    assert!(!sender.holds(""), "a DSN is spared");
    assert!(sender.holds("a@example.net"));
    assert!(auth.holds(""));
    assert!(!auth.holds("alice"), "an authenticated client is spared");
    assert!(matches!(ip.test, Test::NotInList(..)));
    assert!(!ip.holds("192.0.2.9"));
    assert!(ip.holds("198.51.100.1"));
    assert!(domain.holds("EXAMPLE.org"));
    assert!(!domain.holds("example.net"));
    assert!(!domain.holds(""));
}

/// Each bad value is reported at its line with its key path.
#[test]
fn malformed_values_are_refused_with_their_key() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "key = [\"remote-ip\"]\n",
            "queue.limiter.inbound.l.rate",
            "needs `rate`, `concurrency` or both",
        ),
        (
            "rate = \"100\"\n",
            "queue.limiter.inbound.l.rate",
            "expected count/period",
        ),
        (
            "rate = \"0/1m\"\n",
            "queue.limiter.inbound.l.rate",
            "more than zero",
        ),
        ("rate = 5\n", "queue.limiter.inbound.l.rate", "rate"),
        (
            "concurrency = 0\n",
            "queue.limiter.inbound.l.concurrency",
            "more than zero",
        ),
        (
            "concurrency = -1\n",
            "queue.limiter.inbound.l.concurrency",
            "out of range",
        ),
        (
            "concurrency = \"many\"\n",
            "queue.limiter.inbound.l.concurrency",
            "",
        ),
        (
            "rate = \"1/1s\"\nkey = [\"mx\"]\n",
            "queue.limiter.inbound.l.key",
            "mx",
        ),
        (
            "rate = \"1/1s\"\nkey = \"remote-ip\"\n",
            "queue.limiter.inbound.l.key",
            "",
        ),
        (
            "rate = \"1/1s\"\nlease = \"500ms\"\n",
            "queue.limiter.inbound.l.lease",
            "at least",
        ),
        (
            "rate = \"1/1s\"\nlease = \"soon\"\n",
            "queue.limiter.inbound.l.lease",
            "",
        ),
        (
            "rate = \"1/1s\"\nenable = \"yes\"\n",
            "queue.limiter.inbound.l.enable",
            "",
        ),
        (
            "rate = \"1/1s\"\nburst = 3\n",
            "queue.limiter.inbound.l.burst",
            "unknown key",
        ),
        (
            "rate = \"1/1s\"\nmatch = \"true\"\n",
            "queue.limiter.inbound.l.match",
            "condition table",
        ),
        (
            "rate = \"1/1s\"\nmatch = []\n",
            "queue.limiter.inbound.l.match",
            "at least one condition",
        ),
        (
            "rate = \"1/1s\"\nmatch = { if = \"sender\" }\n",
            "queue.limiter.inbound.l.match",
            "exactly one of in-list, not-in-list, is-empty",
        ),
        (
            "rate = \"1/1s\"\nmatch = { if = \"sender\", is-empty = true, in-list = \"d/domains\" }\n",
            "queue.limiter.inbound.l.match",
            "exactly one",
        ),
        (
            "rate = \"1/1s\"\nmatch = { in-list = \"d/domains\" }\n",
            "queue.limiter.inbound.l.match",
            "missing \"if\"",
        ),
        (
            "rate = \"1/1s\"\nmatch = { if = \"mx\", is-empty = true }\n",
            "queue.limiter.inbound.l.match",
            "mx",
        ),
        (
            "rate = \"1/1s\"\nmatch = { if = \"sender\", is-empty = \"no\" }\n",
            "queue.limiter.inbound.l.match",
            "",
        ),
        (
            "rate = \"1/1s\"\nmatch = { if = \"sender\", is-blank = true }\n",
            "queue.limiter.inbound.l.match",
            "unknown key",
        ),
        (
            "rate = \"1/1s\"\nmatch = { if = \"rcpt\", in-list = \"remote/r\" }\n",
            "queue.limiter.inbound.l.match",
            "remote lists need a lookup",
        ),
        (
            "rate = \"1/1s\"\nmatch = { if = \"rcpt\", not-in-list = \"nowhere/domains\" }\n",
            "queue.limiter.inbound.l.match",
            "no directory named \"nowhere\"",
        ),
        (
            "rate = \"1/1s\"\nmatch = { if = \"rcpt\", in-list = \"d/missing\" }\n",
            "queue.limiter.inbound.l.match",
            "no lookup list \"missing\"",
        ),
    ];
    for (body, key, message) in cases {
        let text = format!("{LISTS}[queue.limiter.inbound.l]\n{body}");
        let errors = errors(&text);
        let first_line = BASE.lines().count() + LISTS.lines().count() + 2;
        assert!(
            errors
                .iter()
                .any(|(line, k, m)| k == key && m.contains(message) && *line >= first_line - 1),
            "{body}: expected {key} with {message:?}, got {errors:?}"
        );
    }
}

#[test]
fn outbound_limiters_are_not_ferrymail_s() {
    let errors = errors("[queue.limiter.outbound.o]\nrate = \"1/1s\"\n");
    assert!(
        errors
            .iter()
            .any(|(_, key, m)| key.starts_with("queue.limiter.outbound")
                && m.contains("unknown key")),
        "{errors:?}"
    );
}
